"""Evaluation: each candidate on the golden sets, the CPCD BM25 baseline, the champion gate and the HTML report."""

import base64
import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.assistant.assistant import AssistantConfig
from models.assistant.co_likes import CoLikes, cpcd_sessions
from models.assistant.replay import sample_conversations
from models.assistant.retrieval import CatalogIndex
from models.eval.cpcd_protocol import PROTOCOL_KS
from models.eval.cpcd_runs import BASELINE_CONFIG, RANK_DEPTH
from models.eval.evaluate import (
    CPCD,
    CPCD_VOLATILE_COLUMNS,
    CURATED,
    EVAL_VERSION,
    TIMING_COLUMNS,
    evaluate_cpcd,
    evaluate_curated,
    judge_note_metrics,
    judge_notes,
)
from models.eval.judges import ResponseRulesGrader
from models.eval.report import (
    REPORT_VERSION,
    confusion_figure,
    eval_report_html,
    hit_by_turn_figure,
    turn_matrix,
)
from models.eval.tracking import (
    EXPERIMENTS,
    EvalRun,
    fingerprint,
    log_evaluation,
    of_record,
    run_url,
    table_hash,
)
from models.golden.cpcd import cpcd_evaluation_turns, cpcd_preference_turns
from models.lifecycle.build import build_assistant, resolve
from models.lifecycle.gate_policy import CURATED_PRIMARY, GUARDRAILS, current_evaluations, gate_evaluations
from models.lifecycle.gate_policy import PRIMARY as PRIMARY_PARTS
from models.lifecycle.promotion import apply_gate
from models.lifecycle.registry import CANDIDATE_ARTIFACT, champion_key, register_candidate
from models.llm import LLMUnavailable
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import CANDIDATES, partition_candidate
from orchestration.resources import EvalReports, MLflowTracking, PlatformConfig

GROUP = "evaluation"
PRIMARY = CURATED_PRIMARY.column  # the gate's curated primary per turn: what the report and metadata show
BASELINE_RUN = "bm25-baseline"
REPORT_EXPERIMENT = "eval-report"
# The CPCD replay ranks RANK_DEPTH tracks a turn (the protocol scores 100 after seeds go) and tells no
# stories: they do not change the ranking, and an LLM storyteller would be paid for 1,500 unread stories.
CPCD_ASSISTANT = AssistantConfig(stories=0, rank_depth=RANK_DEPTH)
DECISION_SCHEMA = pl.Schema(
    {
        "challenger": pl.String,
        "champion": pl.String,
        "decision": pl.String,  # promote, keep or inconclusive
        "promoted": pl.Boolean,
        "metric": pl.String,  # the primary: a weighted sum over golden sets
        "champion_mean": pl.Float64,
        "challenger_mean": pl.Float64,
        "delta": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "p_value": pl.Float64,  # one-sided, before the correction
        "p_holm": pl.Float64,  # Holm-adjusted over the challengers gated together
        "mde": pl.Float64,  # the true delta this comparison detects with 80% power (paired)
        "mde_design": pl.Float64,  # ... for a challenger varying independently of the champion per turn
        "guardrails_failed": pl.String,  # guardrails breached or not shown within their margins
        "lift_selection_corrected": pl.Float64,  # promoted challenger only
        "rule": pl.String,
        "evidence": pl.String,  # GateDecision markdown
    }
)


def _data_version(context: dg.AssetExecutionContext, key: str) -> str:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key} has never been materialized")
    return event.asset_materialization.tags["dagster/data_version"]


def _run_metadata(mlflow: MLflowTracking, runs: dict[str, EvalRun]) -> dict[str, dg.MetadataValue]:
    out: dict[str, dg.MetadataValue] = {}
    for golden_set, run in runs.items():
        out[f"mlflow_run.{golden_set}"] = dg.MetadataValue.url(run_url(mlflow.tracking_uri, run))
        out[f"mlflow_run_id.{golden_set}"] = dg.MetadataValue.text(
            run.run_id + ("" if run.created else " (reused: same fingerprint)")
        )
    return out


def _retrieval_table(metrics: dict[str, float], prefix: str = "retrieval") -> dg.MetadataValue:
    lines = [
        "| k | hit micro | hit macro | recall micro | MRR micro | nDCG micro |",
        "|---|---|---|---|---|---|",
    ]
    for k in PROTOCOL_KS:
        cells = [
            metrics[f"{prefix}.{avg}.{name}_at_{k}"]
            for avg, name in (
                ("micro", "hit"),
                ("macro", "hit"),
                ("micro", "recall"),
                ("micro", "mrr"),
                ("micro", "ndcg"),
            )
        ]
        lines.append(f"| {k} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "mlflow"},
    description=(
        "The CPCD paper's BM25 baseline on golden_cpcd's evaluation part over cpcd_corpus (the user's utterances "
        "so far as the query), scored with the public CPCD protocol: the goal playlist minus the seeds as "
        "target, seeds out of the ranking, hit/recall/MRR/nDCG at 1, 10, 20, 100, near-duplicates counted once. "
        f"Logged as the '{BASELINE_RUN}' run of MLflow 'eval-golden_cpcd', beside the candidates."
    ),
)
def bm25_baseline(
    context: dg.AssetExecutionContext,
    golden_cpcd: pl.DataFrame,
    cpcd_corpus: pl.DataFrame,
    cpcd_index: CatalogIndex,
    mlflow: MLflowTracking,
) -> dg.Output[pl.DataFrame]:
    version = _data_version(context, "golden_cpcd")
    index = cpcd_index.reconfigured(BASELINE_CONFIG)
    evaluation = evaluate_cpcd(golden_cpcd, cpcd_corpus, index, BASELINE_RUN, version)
    run = log_evaluation(
        mlflow.client(),
        mlflow.experiment_id(EXPERIMENTS[CPCD]),
        run_name=BASELINE_RUN,
        fingerprint=fingerprint(BASELINE_RUN, BASELINE_CONFIG.config_hash, version, EVAL_VERSION),
        lock=mlflow.registry_lock(),
        params={
            "candidate": BASELINE_RUN,
            "retriever": "bm25 (CPCD paper baseline)",
            "retriever_config_hash": BASELINE_CONFIG.config_hash,
            "golden_cpcd_version": version,
            "eval_version": EVAL_VERSION,
        },
        metrics=evaluation.metrics,
        results=evaluation.results,
        artifacts={"hit_by_turn.png": hit_by_turn_figure({BASELINE_RUN: evaluation.results})},
    )
    m = evaluation.metrics
    return dg.Output(
        evaluation.results,
        metadata={
            "dagster/row_count": evaluation.results.height,
            "hit_at_10_micro": round(m["retrieval.micro.hit_at_10"], 4),
            "hit_at_10_macro": round(m["retrieval.macro.hit_at_10"], 4),
            "mrr_at_10_micro": round(m["retrieval.micro.mrr_at_10"], 4),
            "ndcg_at_10_micro": round(m["retrieval.micro.ndcg_at_10"], 4),
            "retrieval": _retrieval_table(m),
            **_run_metadata(mlflow, {CPCD: run}),
        },
    )


@dg.asset(
    partitions_def=CANDIDATES,
    group_name=GROUP,
    kinds={"polars", "mlflow"},
    description=(
        "One candidate (partition) on both golden sets, one row per item with a `golden_set` column. Curated: "
        "intent and slot P/R/F1, clarification, constraint satisfaction of the shown slate, story groundedness "
        "and safety (response_rules grader, reported beside its calibration), latency, cost, and turn_success "
        "(the gate's primary). CPCD (evaluation part, public protocol): the candidate's assistant replayed turn by "
        "turn with the protocol's seeds as likes, 100 deep (hit/recall/MRR/nDCG@k per turn), the retriever alone "
        "beside it as a diagnostic (`retriever_*`). One MLflow run per golden set (reused when nothing changed); "
        "the candidate is registered as a `setlist-assistant` version."
    ),
    pool="llm",
)
def candidate_evaluation(
    context: dg.AssetExecutionContext,
    assistant_runs: pl.DataFrame,
    golden_curated: pl.DataFrame,
    golden_cpcd: pl.DataFrame,
    cpcd_corpus: pl.DataFrame,
    cpcd_index: CatalogIndex,
    catalog: pl.DataFrame,
    taxonomy: pl.DataFrame,
    judge_calibration: pl.DataFrame,
    mlflow: MLflowTracking,
    llm: LLMGatewayResource,
) -> dg.Output[pl.DataFrame]:
    candidate = partition_candidate(context)
    tree = Taxonomy.from_table(taxonomy)
    judge_version = ResponseRulesGrader(tree).version
    versions = {
        "golden_curated_version": golden_curated["version"][0],
        "golden_cpcd_version": _data_version(context, "golden_cpcd"),
    }
    # An LLM candidate may have replayed a sample of the conversations (SETLIST_LLM__EVAL_CONVERSATIONS).
    replayed = golden_curated.filter(
        pl.col("conversation_id").is_in(assistant_runs["conversation_id"].unique())
    )
    curated = evaluate_curated(assistant_runs, replayed, catalog, tree)
    client = mlflow.client()
    config = candidate.retriever_config
    # The CPCD corpus has no embeddings asset: a dense candidate embeds it here (assets/retrieval.py says why).
    index = (
        CatalogIndex.build(cpcd_corpus, config=config) if config.embedder else cpcd_index.reconfigured(config)
    )
    co_likes = CoLikes.from_sessions(cpcd_sessions(cpcd_preference_turns(golden_cpcd)))
    try:
        gateway = llm.get_gateway() if candidate.uses_llm else None
        assistant = build_assistant(
            resolve(client, candidate), index, tree, gateway, CPCD_ASSISTANT, co_likes
        )
    except (LLMUnavailable, LookupError) as err:
        raise dg.Failure(str(err)) from err
    # An LLM candidate replays the same-sized seeded sample of CPCD conversations as of the curated ones.
    cpcd_turns = cpcd_evaluation_turns(golden_cpcd)
    if candidate.uses_llm and llm.eval_conversations:
        cpcd_turns = sample_conversations(cpcd_turns, llm.eval_conversations)
    # Lockstep: one parser batch per turn index (CPCD latency is not a metric; the curated run times turns).
    cpcd = evaluate_cpcd(
        cpcd_turns,
        cpcd_corpus,
        index,
        candidate.key,
        versions["golden_cpcd_version"],
        assistant,
        lockstep=True,
    )
    notes = judge_notes(judge_calibration, judge_version)
    params = {**candidate.params(), **versions, "judge_version": judge_version, "eval_version": EVAL_VERSION}
    fingerprints = {
        CURATED: fingerprint(
            candidate.key,
            table_hash(assistant_runs, exclude=TIMING_COLUMNS),
            versions["golden_curated_version"],
            judge_version,
            EVAL_VERSION,
        ),
        CPCD: fingerprint(
            candidate.key,
            table_hash(cpcd.results, exclude=CPCD_VOLATILE_COLUMNS),
            versions["golden_cpcd_version"],
            EVAL_VERSION,
        ),
    }
    figures = {
        CURATED: {
            "intent_confusion.png": confusion_figure(
                curated.results["gold_intent"].to_list(),
                curated.results["pred_intent"].to_list(),
                candidate.key,
            ),
            "judge_calibration.json": json.dumps(notes, indent=2),
        },
        CPCD: {"hit_by_turn.png": hit_by_turn_figure({candidate.key: cpcd.results})},
    }
    runs = {
        golden_set: log_evaluation(
            client,
            mlflow.experiment_id(EXPERIMENTS[golden_set]),
            run_name=candidate.key,
            fingerprint=fingerprints[golden_set],
            lock=mlflow.registry_lock(),
            params=params,
            metrics=evaluation.metrics | (judge_note_metrics(notes) if golden_set == CURATED else {}),
            results=evaluation.results,
            artifacts={CANDIDATE_ARTIFACT: candidate.artifact(), **figures[golden_set]},
            tags={"setlist.candidate": candidate.key},
        )
        for golden_set, evaluation in ((CURATED, curated), (CPCD, cpcd))
    }
    with mlflow.registry_lock():  # a concurrent run must not register the same candidate twice
        registered = register_candidate(client, candidate.key, runs[CURATED].run_id)
    curated, cpcd = of_record(client, runs[CURATED], curated), of_record(client, runs[CPCD], cpcd)
    m, r = curated.metrics, cpcd.metrics
    table = pl.concat([curated.results, cpcd.results], how="diagonal_relaxed")
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "curated_conversations": f"{replayed['conversation_id'].n_unique()} of {golden_curated['conversation_id'].n_unique()}",
            PRIMARY: round(m[f"{PRIMARY}.mean"], 4),
            "intent_macro_f1": round(m["intent.macro_f1"], 4),
            "cpcd_hit_at_10_micro": round(r["retrieval.micro.hit_at_10"], 4),
            "cpcd_hit_at_10_macro": round(r["retrieval.macro.hit_at_10"], 4),
            "cpcd_retriever_hit_at_10_micro": round(r["retriever.micro.hit_at_10"], 4),
            "cpcd_empty_slates": int(r["empty_slates"]),
            "headline": dg.MetadataValue.json(
                {
                    f"{PRIMARY} (95% CI)": [
                        round(m[f"{PRIMARY}.mean{s}"], 4) for s in ("", ".ci_low", ".ci_high")
                    ],
                    "slot_f1": round(m["slot.f1"], 4),
                    "clarification_precision": round(m["clarification.precision"], 4),
                    "clarification_recall": round(m["clarification.recall"], 4),
                    "constraint_rate": round(m["constraint.rate"], 4),
                    # None when no replayed turn had a story or a safety expectation (a small LLM sample).
                    "groundedness": _rounded(m.get("groundedness.mean"), 4),
                    "safety": _rounded(m.get("safe.mean"), 4),
                    "judge_rating_mean": round(m["judge.rating_mean"], 4),
                    "latency_p50_ms": round(m["latency_ms.p50"], 3),
                    "latency_p95_ms": round(m["latency_ms.p95"], 3),
                    "cost_usd": round(m["cost.total_usd"], 6),
                    "cpcd_mrr_at_10_micro": round(r["retrieval.micro.mrr_at_10"], 4),
                    "cpcd_ndcg_at_10_micro": round(r["retrieval.micro.ndcg_at_10"], 4),
                }
            ),
            "judge_calibration": dg.MetadataValue.json(notes),
            "cpcd_retrieval": _retrieval_table(r),
            "cpcd_retriever_alone": _retrieval_table(r, "retriever"),
            "cpcd_protocol": (
                "public CPCD protocol, evaluation part: the assistant replayed with the seeds (first 3 likes of "
                "each earlier turn) as likes; target = goal playlist minus seeds; the corpus holds rated tracks only"
            ),
            **_run_metadata(mlflow, runs),
            "assistant_version": f"models:/setlist-assistant/{registered.version}"
            + (" (champion)" if registered.champion else ""),
            "preview": preview(
                curated.results.select(
                    "conversation_id",
                    "turn_index",
                    "text",
                    "pred_intent",
                    PRIMARY,
                    "groundedness",
                    "judge_reason",
                )
            ),
        },
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


Evaluations = dict[str, pl.DataFrame] | pl.DataFrame | None
# Every candidate partition; a candidate added but never evaluated is skipped. Typed Any: see _by_candidate.
ALL_EVALUATIONS = dg.AssetIn(metadata={"allow_missing_partitions": True}, dagster_type=dg.Any)


def _by_candidate(loaded: Evaluations) -> dict[str, pl.DataFrame]:
    """The IO manager hands over a bare table when one partition exists, a dict when there are several."""
    frames = loaded.values() if isinstance(loaded, dict) else [] if loaded is None else [loaded]
    return {frame["candidate"][0]: frame for frame in frames}


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "mlflow"},
    ins={"candidate_evaluation": ALL_EVALUATIONS},
    description=(
        "Every challenger against the champion (setlist-assistant@champion), jointly: the primary is "
        f"{' + '.join(f'{w:g} {m.name}@{m.golden_set}' for m, w in PRIMARY_PARTS)} per turn (a stratified "
        "paired bootstrap by conversation), Holm over the challengers; guardrails are non-inferiority tests with "
        "margins from a power analysis (each golden set's primary, "
        f"{', '.join(rule.measure.name for rule in GUARDRAILS)}). Each decision is promote, keep or inconclusive "
        "and logs its minimum detectable effect. At most one challenger, the best promotable, is promoted "
        "(@champion; the runner-up gets @challenger); its lift is reported corrected for that selection."
    ),
)
def champion_gate(
    candidate_evaluation: Evaluations,
    golden_curated: pl.DataFrame,
    platform: PlatformConfig,
    mlflow: MLflowTracking,
) -> dg.Output[pl.DataFrame]:
    client = mlflow.client()
    champion = champion_key(client)
    gated = gate_evaluations(
        champion, _by_candidate(candidate_evaluation), golden_curated["version"][0], platform.seed
    )
    report = gated.report
    decisions = report.decisions if report else {}
    best = report.promoted if report else None
    with mlflow.registry_lock():
        moved = apply_gate(client, champion, report) if report else []
    if champion not in gated.evaluated:
        summary = (
            f"keep — the champion ({champion or 'none registered'}) has no evaluation on this golden version"
        )
    elif not decisions:
        summary = f"keep — no challenger: {champion} is the only candidate evaluated"
    elif best:
        summary = f"promote {best} over {champion}"
    else:
        outcomes = ", ".join(f"{k}: {d.decision}" for k, d in decisions.items())
        summary = f"keep {champion} — no challenger won with confidence within the guardrails ({outcomes})"
    lift = report.lift if report else None
    rows = [
        {
            "challenger": key,
            "champion": champion,
            "decision": d.decision,
            "promoted": key == best,
            "metric": d.primary.metric,
            "champion_mean": d.primary.champion_mean,
            "challenger_mean": d.primary.challenger_mean,
            "delta": d.primary.delta.estimate,
            "ci_low": d.primary.delta.low,
            "ci_high": d.primary.delta.high,
            "p_value": d.primary.p_value,
            "p_holm": d.primary.p_holm,
            "mde": d.primary.mde,
            "mde_design": d.primary.mde_design,
            "guardrails_failed": ", ".join(g.name for g in d.guardrails if g.verdict != "pass"),
            "lift_selection_corrected": lift.corrected if lift and key == best else None,
            "rule": d.rule,
            "evidence": d.to_markdown(),
        }
        for key, d in decisions.items()
    ]
    return dg.Output(
        pl.DataFrame(rows, schema=DECISION_SCHEMA),
        metadata={
            "dagster/row_count": len(rows),
            "candidates_evaluated": len(gated.evaluated),
            "promoted": int(best is not None),
            "decision": summary,
            "rule": report.rule if report else "no challenger gated",
            "primary_sets": gated.primary_sets,
            "champion_before": champion or "none",
            "champion_after": best or champion or "none",
            "aliases_moved": dg.MetadataValue.json(moved),
            "stale_evaluations_skipped": ", ".join(gated.stale) or "none",
            **(
                {
                    "promoted_lift": dg.MetadataValue.json(
                        {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(lift).items()}
                    )
                }
                if lift
                else {}
            ),
            **{f"gate: {key}": dg.MetadataValue.md(d.to_markdown()) for key, d in decisions.items()},
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    ins={"candidate_evaluation": ALL_EVALUATIONS},
    description=(
        f"A static HTML report (plots embedded, no network): {PRIMARY} per candidate with its CI, a per-turn "
        "matrix of the champion against each challenger (failures-only and differences-only views), metrics "
        "with CIs, CPCD hit@10 by turn against the BM25 baseline, intent confusion matrices, judge calibration "
        "and the gate's evidence. Written under the Setlist home and logged to MLflow 'eval-report' with the "
        "per-turn matrix as its table."
    ),
)
def eval_report(
    candidate_evaluation: Evaluations,
    golden_curated: pl.DataFrame,
    bm25_baseline: pl.DataFrame,
    judge_calibration: pl.DataFrame,
    champion_gate: pl.DataFrame,
    platform: PlatformConfig,
    mlflow: MLflowTracking,
    eval_reports: EvalReports,
) -> dg.MaterializeResult:
    client = mlflow.client()
    champion = champion_key(client)
    evaluations = current_evaluations(_by_candidate(candidate_evaluation), golden_curated["version"][0])
    evidence = "\n\n".join(f"## {c}\n{e}" for c, e in champion_gate.select("challenger", "evidence").rows())
    report = eval_report_html(
        evaluations,
        bm25_baseline,
        judge_calibration,
        evidence or "No challenger: the champion is kept.",
        champion,
        platform.judge_kappa_floor,
    )
    folder = Path(eval_reports.directory)
    folder.mkdir(parents=True, exist_ok=True)
    path, plot = folder / "eval_report.html", folder / f"{PRIMARY}_ci.png"
    path.write_text(report.html, encoding="utf-8")
    plot.write_bytes(report.primary_ci_png)
    run = log_evaluation(
        client,
        mlflow.experiment_id(REPORT_EXPERIMENT),
        run_name="eval-report",
        # What the report shows, without the latencies the gate's evidence quotes (measured anew each run).
        fingerprint=fingerprint(
            REPORT_VERSION,
            champion or "",
            *(f"{key}:{table_hash(frame, exclude=TIMING_COLUMNS)}" for key, frame in evaluations.items()),
            table_hash(champion_gate, exclude=["evidence"]),
            table_hash(bm25_baseline),
            table_hash(judge_calibration),
        ),
        lock=mlflow.registry_lock(),
        params={"candidates": ",".join(evaluations), "champion": champion or "none"},
        metrics={"candidates": float(len(evaluations))},
        results=turn_matrix(evaluations, champion),
        artifacts={"eval_report.html": report.html, plot.name: report.primary_ci_png},
    )
    lines = [f"- champion: `{champion}`", f"- candidates: {', '.join(f'`{k}`' for k in evaluations)}"]
    if champion_gate.is_empty():
        lines.append("- gate: keep — no challenger")
    lines += [
        f"- `{c}`: {d} ({PRIMARY} {cm:.3f} -> {xm:.3f})"
        for c, d, cm, xm in champion_gate.select(
            "challenger", "decision", "champion_mean", "challenger_mean"
        ).rows()
    ]
    image = base64.b64encode(report.primary_ci_png).decode()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.md("\n".join(lines)),
            f"{PRIMARY}_ci": dg.MetadataValue.md(
                f"![{PRIMARY} per candidate, 95% CI](data:image/png;base64,{image})"
            ),
            f"{PRIMARY}_ci_png": dg.MetadataValue.path(str(plot)),
            "size_kb": round(len(report.html) / 1024, 1),
            **_run_metadata(mlflow, {"report": run}),
        }
    )
