"""Feedback: usage signals (interaction logs), DPO preference pairs, and the simulated online A/B test."""

from pathlib import Path

import dagster as dg
import polars as pl
from mlflow import MlflowClient

from assets.ui_metadata import counts_table, preview, suite_result
from checks.preference_suite import (
    evaluation_overlap,
    intent_balance,
    intent_shares,
    length_balance,
    length_bias,
    validate_preference_pairs,
)
from models.assistant.assistant import Assistant
from models.assistant.retrieval import CatalogIndex
from models.catalog.schema import empty_quarantine
from models.eval.judges import LLMPairwiseJudge, ResponseRulesGrader
from models.feedback.interactions import EVENTS, read_interaction_logs
from models.feedback.online import (
    EXPERIMENT,
    OnlineExperiment,
    log_online_experiment,
    offline_online_correlation,
    offline_run_ids,
    resolve_arms,
    run_online_experiment,
    session_table,
)
from models.feedback.preferences import (
    PairExtraction,
    combine,
    cpcd_pairs,
    export_pairs,
    feedback_pairs,
    length_balanced,
    llm_judged_pairs,
    rated_pairs,
    synthetic_responses,
)
from models.feedback.simulator import AssistantServer, ListenerPopulation, simulate
from models.golden.cpcd import CPCD_PREFERENCE_SHARE, CPCD_SPLIT_SALT
from models.lifecycle.build import Resolved, build_assistant, resolve, resolve_alias
from models.lifecycle.candidates import Candidate, baseline_candidate
from models.lifecycle.registry import CHAMPION
from models.llm import LLMUnavailable
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource
from orchestration.resources import MLflowTracking, PlatformConfig

GROUP = "feedback"
BASELINE = baseline_candidate()  # the keyword parser with hybrid retrieval: no model, no LLM
MEMORYLESS = f"{BASELINE.key}.no-memory"  # the same assistant answering each turn without the conversation


class SimulationConfig(dg.Config):
    listeners: int = 300
    sessions_per_listener: int = 3


@dg.multi_asset(
    group_name=GROUP,
    # The simulated listeners are served by the champion: reading it after the gate has settled makes the
    # champion an input of record, so a rerun with the same champion and seed logs the same events.
    deps=["champion_gate"],
    outs={
        "interaction_logs": dg.AssetOut(
            kinds={"polars"},
            description=(
                "Listener events (impression, play, skip, like, save) per served slate. From "
                "SETLIST_INTERACTION_LOGS_PATH (JSONL/Parquet) when set; otherwise simulated listeners with "
                "latent tastes over the taxonomy, served by the champion assistant once the gate has run (or "
                "the keyword-parser stand-in without one)."
            ),
        ),
        "interaction_quarantine": dg.AssetOut(
            kinds={"polars"}, description="Log rows that broke a rule, with the rule and the raw row."
        ),
    },
)
def interaction_logs_assets(
    config: SimulationConfig,
    platform: PlatformConfig,
    mlflow: MLflowTracking,
    llm: LLMGatewayResource,
    catalog: pl.DataFrame,
    retrieval_index: CatalogIndex,
    taxonomy: pl.DataFrame,
):
    metadata: dict[str, object] = {}
    if platform.interaction_logs_path:
        read = read_interaction_logs(platform.interaction_logs_path)
        if not read.reconciles:
            raise dg.Failure(
                f"{read.source}: {read.rows_read} rows read but {read.kept.height} kept + "
                f"{read.quarantined.height} quarantined"
            )
        events, quarantined = read.kept, read.quarantined
        metadata |= {"source": dg.MetadataValue.path(read.source), "rows_read": read.rows_read}
    else:
        tree = Taxonomy.from_table(taxonomy)
        server, fallback = _deployed_server(mlflow.client(), llm, retrieval_index, tree)
        listeners = _simulated_listeners(config.listeners, llm, [server.variant])
        population = ListenerPopulation.sample(tree, catalog, listeners, platform.seed)
        run = simulate(population, server, sessions_per_listener=config.sessions_per_listener)
        events, quarantined = run.events, empty_quarantine()
        sessions = session_table(run.events, run.sessions)
        correlation = offline_online_correlation(sessions, seed=platform.seed)
        metadata |= {
            "source": "simulated",
            "served_by": server.variant,
            "served_note": fallback or "setlist-assistant@champion",
            "listeners": listeners,
            "taste_nodes": len(population.nodes),
            "offline_online_spearman": round(correlation.spearman, 3),
            "offline_online_ci": f"[{correlation.ci_low:.3f}, {correlation.ci_high:.3f}]",
            "offline_online_note": (
                f"per-session Spearman of graded nDCG vs latent taste and like rate, {correlation.n} sessions, "
                f"bootstrap over {correlation.n_clusters} listeners"
            ),
        }
    per_event = dict(events.group_by("event").len().iter_rows())
    impressions = per_event.get("impression", 0)
    yield dg.Output(
        events,
        output_name="interaction_logs",
        metadata={
            **metadata,
            "dagster/row_count": events.height,
            "sessions": events["session_id"].n_unique(),
            "users": events["user_id"].n_unique(),
            "events": counts_table({e: per_event.get(e, 0) for e in EVENTS}, "event", "rows"),
            "like_per_impression": round(per_event.get("like", 0) / max(impressions, 1), 4),
            "skip_per_play": round(per_event.get("skip", 0) / max(per_event.get("play", 0), 1), 4),
            "quarantined": quarantined.height,
            "preview": preview(
                events.select("session_id", "turn_index", "request", "event", "track_id", "position")
            ),
        },
    )
    yield dg.Output(
        quarantined,
        output_name="interaction_quarantine",
        metadata={
            "dagster/row_count": quarantined.height,
            "rules": counts_table(dict(quarantined.group_by("rule").len().iter_rows()), "rule", "rows")
            if quarantined.height
            else "none",
        },
    )


def _simulated_listeners(configured: int, llm: LLMGatewayResource, served: list[str]) -> int:
    """Listeners to simulate: a candidate that calls the LLM answers every simulated turn through it, so LLM
    mode's size (`SETLIST_LLM__ONLINE_LISTENERS`) applies."""
    if any(Candidate.from_key(key).uses_llm for key in served):
        return min(configured, llm.online_listeners)
    return configured


def _deployed_server(
    client: MlflowClient, llm: LLMGatewayResource, index: CatalogIndex, tree: Taxonomy
) -> tuple[AssistantServer, str | None]:
    """What `setlist chat` serves: setlist-assistant@champion, or the lifecycle's fallback (and why)."""
    resolved = resolve_alias(client, CHAMPION, online=llm.base_url is not None)
    gateway = llm.get_gateway() if resolved.candidate.uses_llm else None
    assistant = build_assistant(resolved, index, tree, gateway)
    return AssistantServer(resolved.candidate.key, assistant), resolved.note


class PreferencePairsConfig(dg.Config):
    judge_conversations: int = 150  # synthetic conversations answered by each variant and judged
    max_pairs_per_slate: int = 2


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "openai"},
    description=(
        "DPO pairs (prompt, chosen, rejected) with provenance from three sources: liked vs disliked tracks of "
        f"a CPCD turn (only the {CPCD_PREFERENCE_SHARE:.0%} preference-training part of CPCD, by a hash of the "
        "conversation id; the rest is evaluation's), judge outcomes on responses of assistant variants to "
        "synthetic turns (code grader offline, LLM pairwise judge in both orders online), and liked/saved vs "
        "skipped tracks of one logged slate. Pairs touching an evaluation item are removed and counted. "
        "Exported as JSONL and Parquet under <SETLIST_HOME>/exports/."
    ),
)
def preference_pairs(
    config: PreferencePairsConfig,
    platform: PlatformConfig,
    llm: LLMGatewayResource,
    golden_cpcd: pl.DataFrame,
    cpcd_corpus: pl.DataFrame,
    golden_curated: pl.DataFrame,
    intent_training_set: pl.DataFrame,
    interaction_logs: pl.DataFrame,
    catalog: pl.DataFrame,
    retrieval_index: CatalogIndex,
    taxonomy: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    tree = Taxonomy.from_table(taxonomy)
    judged = synthetic_responses(
        intent_training_set,
        response_variants(retrieval_index, tree),
        catalog,
        tree,
        config.judge_conversations,
        memoryless={MEMORYLESS},
    )
    gateway = llm.get_gateway() if llm.base_url else None
    judge = (
        rated_pairs(judged, ResponseRulesGrader(tree))
        if gateway is None
        else llm_judged_pairs(judged, LLMPairwiseJudge(gateway), max_items=llm.judge_items)
    )
    extraction = combine(
        [
            cpcd_pairs(golden_cpcd, cpcd_corpus),
            judge,
            feedback_pairs(interaction_logs, catalog, config.max_pairs_per_slate),
        ]
    )
    balanced = length_balanced(_without_evaluation_items(extraction, golden_curated, golden_cpcd))
    pairs, dropped = balanced.pairs, balanced.dropped
    if not (balance := length_balance(pairs)).success:  # a length-biased set must not reach a trainer
        raise dg.Failure(f"preference pairs are length-biased, not exported:\n{balance.as_markdown()}")
    paths = export_pairs(pairs, Path(platform.exports_dir))
    per_source = dict(pairs.group_by("source").len().sort("source").iter_rows())
    return dg.Output(
        pairs,
        metadata={
            "dagster/row_count": pairs.height,
            "pairs_per_source": counts_table(per_source, "source", "pairs"),
            "dropped": counts_table(dropped, "source: reason", "candidate pairs") if dropped else "none",
            "judge": f"llm pairwise, both orders, the first {llm.judge_items} pairs"
            if gateway
            else "response_rules code grader (offline)",
            "judge_versions": ", ".join(sorted(set(pairs["judge_version"].drop_nulls()))) or "none",
            "cpcd_split": f"sha256('{CPCD_SPLIT_SALT}:<conversation_id>') < {CPCD_PREFERENCE_SHARE} -> preference "
            "training, else evaluation (models.golden.cpcd.cpcd_part)",
            "length_bias": preview(length_bias(pairs), rows=5),
            "intent_shares": preview(intent_shares(pairs), rows=12),
            "export_jsonl": dg.MetadataValue.path(str(paths["jsonl"])),
            "export_parquet": dg.MetadataValue.path(str(paths["parquet"])),
            "preview": preview(pairs.select("source", "intent", "prompt", "chosen", "rejected")),
        },
    )


def response_variants(index: CatalogIndex, tree: Taxonomy) -> dict[str, Assistant]:
    """Variants whose answers differ for a reason: retrieval (hybrid vs BM25) and context (the memoryless
    replay forgets earlier turns). The keyword parser keeps the pairs independent of any trained model."""
    variants = {
        candidate.key: build_assistant(Resolved(candidate), index, tree)
        for candidate in (BASELINE, baseline_candidate("bm25"))
    }
    return {**variants, MEMORYLESS: variants[BASELINE.key]}


def _without_evaluation_items(
    extraction: PairExtraction, curated: pl.DataFrame, cpcd: pl.DataFrame
) -> PairExtraction:
    overlap = evaluation_overlap(extraction.pairs, curated, cpcd)
    removed = extraction.pairs.filter(pl.col("pair_id").is_in(overlap["pair_id"].implode()))
    dropped = dict(extraction.dropped)
    for source, count in removed.group_by("source").len().iter_rows():
        dropped[f"{source}:evaluation_overlap"] = count
    kept = extraction.pairs.filter(~pl.col("pair_id").is_in(overlap["pair_id"].implode()))
    return PairExtraction(kept, dropped)


@dg.asset_check(
    asset="preference_pairs",
    blocking=True,
    additional_ins={"golden_curated": dg.AssetIn(), "golden_cpcd": dg.AssetIn()},
    description="Schema, complete rows, chosen != rejected, unique ids, judge versions, no evaluation item.",
)
def preference_pairs_expectations(
    preference_pairs: pl.DataFrame, golden_curated: pl.DataFrame, golden_cpcd: pl.DataFrame
) -> dg.AssetCheckResult:
    outcome = validate_preference_pairs(preference_pairs, golden_curated, golden_cpcd)
    return suite_result(outcome)


@dg.asset_check(
    asset="preference_pairs",
    blocking=True,
    description="Chosen-longer share within 45-55% per source and overall: a length-biased set is not exported.",
)
def preference_pairs_length_bias(preference_pairs: pl.DataFrame) -> dg.AssetCheckResult:
    return suite_result(length_balance(preference_pairs))


@dg.asset_check(
    asset="preference_pairs",
    blocking=False,
    description="No intent above 60% of the judge and feedback pairs.",
)
def preference_pairs_intent_balance(preference_pairs: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = intent_balance(preference_pairs)
    return suite_result(outcome, dg.AssetCheckSeverity.WARN)  # a skew is for a person to weigh, not a stop


class OnlineExperimentConfig(dg.Config):
    listeners: int = 400
    pre_sessions: int = 2
    sessions: int = 3


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "mlflow"},
    deps=["champion_gate"],  # the gate moves the champion alias this compares against
    output_required=False,  # an arm that needs the LLM while it is offline: skipped with the reason
    description=(
        "A simulated A/B test of setlist-assistant@champion (control) against the latest other evaluated "
        "candidate (or, with only one, the champion with a weaker retriever): like rate, skip rate and "
        "session length per listener. First the power plan from the pre-period (each metric's minimum "
        "detectable effect), then an always-valid mSPRT after every round of sessions (peeking allowed), then "
        "the fixed-horizon analysis: SRM check, CUPED on each listener's pre-period value, Welch intervals; Holm "
        f"across the three metrics throughout. One MLflow run in '{EXPERIMENT}', tagged with the candidates' "
        "offline evaluation runs."
    ),
)
def online_experiment(
    context: dg.AssetExecutionContext,
    config: OnlineExperimentConfig,
    platform: PlatformConfig,
    mlflow: MLflowTracking,
    llm: LLMGatewayResource,
    catalog: pl.DataFrame,
    retrieval_index: CatalogIndex,
    taxonomy: pl.DataFrame,
):
    client = mlflow.client()
    try:
        arms = resolve_arms(client)
    except LookupError as err:
        raise dg.Failure(str(err)) from err
    for candidate in (arms.control, arms.treatment):
        if reason := candidate.skip_reason(online=llm.base_url is not None):
            context.log.warning(f"online experiment skipped: arm {candidate.key} {reason}")
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key, metadata={"skipped": f"{candidate.key} {reason}"}
                )
            )
            return
    tree = Taxonomy.from_table(taxonomy)
    servers = []
    for candidate in (arms.control, arms.treatment):
        try:
            gateway = llm.get_gateway() if candidate.uses_llm else None
            assistant = build_assistant(resolve(client, candidate), retrieval_index, tree, gateway)
            servers.append(AssistantServer(candidate.key, assistant))
        except (LLMUnavailable, LookupError) as err:
            raise dg.Failure(str(err)) from err
    listeners = _simulated_listeners(config.listeners, llm, [arms.control.key, arms.treatment.key])
    population = ListenerPopulation.sample(tree, catalog, listeners, platform.seed)
    result = run_online_experiment(
        population,
        *servers,
        pre_sessions=config.pre_sessions,
        sessions=config.sessions,
        salt=f"{arms.control.key}~{arms.treatment.key}",
    )
    correlation = offline_online_correlation(result.sessions, seed=platform.seed)
    run_id = log_online_experiment(
        client,
        mlflow.experiment_id(EXPERIMENT),
        result,
        {"treatment_chosen_as": arms.how, "listeners": str(listeners), "seed": str(platform.seed)},
        correlation,
        offline_run_ids(client, [arms.control.key, arms.treatment.key]),
        mlflow.registry_lock(),
    )
    table = _effects_table(result)
    like = result.results["like_rate"]
    last_look = result.looks.filter(pl.col("look") == pl.col("look").max())
    yield dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "control": arms.control.key,
            "treatment": arms.treatment.key,
            "treatment_chosen_as": arms.how,
            "listeners": listeners,
            "mlflow_run_id": run_id,
            "srm_p_value": round(like.srm.p_value, 4),
            "srm_flagged": like.srm.flagged,
            "effects": preview(table, rows=len(table)),
            "power_plan": dg.MetadataValue.md(_plan_markdown(result)),
            "sequential_looks": preview(result.looks, rows=result.looks.height),
            "significant_at_last_look": ", ".join(last_look.filter("significant")["metric"]) or "none",
            "offline_online_spearman": round(correlation.spearman, 3),
            "offline_online_ci": f"[{correlation.ci_low:.3f}, {correlation.ci_high:.3f}]",
            "offline_online_note": (
                "per session (nDCG vs latent taste against like rate), bootstrap over listeners; with two "
                "candidates a per-candidate correlation has two points and is not reported"
            ),
        },
    )


def _effects_table(result: OnlineExperiment) -> pl.DataFrame:
    rows = []
    for metric, r in result.results.items():
        cuped = r.cuped
        rows.append(
            {
                "metric": metric,
                "control_mean": round(r.raw.control_mean, 4),
                "treatment_mean": round(r.raw.treatment_mean, 4),
                "diff": round(r.raw.diff, 4),
                "ci": f"[{r.raw.ci_low:.4f}, {r.raw.ci_high:.4f}]",
                "cuped_diff": round(cuped.diff, 4) if cuped else None,
                "cuped_ci": f"[{cuped.ci_low:.4f}, {cuped.ci_high:.4f}]" if cuped else None,
                "variance_reduction": round(r.variance_reduction, 3)
                if r.variance_reduction is not None
                else None,
                "p_value_cuped": round(cuped.p_value, 4) if cuped else None,
                "p_holm": round(result.p_holm[metric], 4),
                "planned_mde": round(result.plan[metric].mde, 4),
            }
        )
    return pl.DataFrame(rows)


def _plan_markdown(result: OnlineExperiment) -> str:
    lines = [
        "Before the experiment period, from the pre-period alone (without CUPED, so an upper bound):",
        "",
        "| metric | listeners control / treatment | per-listener sd | alpha (per metric) | MDE at 80% power | relative |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.metric} | {p.n_control} / {p.n_treatment} | {p.sd:.4g} | {p.alpha:.3g} | {p.mde:.4g} | "
        f"{p.mde_relative:.1%} |"
        for p in result.plan.values()
    ]
    return "\n".join(lines)
