"""LLM judges against human labels, chosen prompt versions at a sample size the model at hand can afford.

    eval "$(setlist llm serve)"
    python -m benchmarks.llm_judges --items 40 --versions judge_relevance.v2.yaml judge_relevance.yaml

`judge_calibration` (the asset) runs every judge version at one sample size (SETLIST_LLM__JUDGE_ITEMS);
on a CPU-served 1.5B model that is hours, so this driver runs the versions named, each beside the
task's code grader on the same seeded items (the baseline, in the same run), with the asset's own
functions: `golden_tasks` (CPCD evaluation part, curated ratings and pairs from the bundled files),
`calibrate`, `log_calibration` (MLflow experiment `judge-calibration` of the Setlist home, fingerprinted:
an unchanged rerun adds no run). It prints kappa, accuracy, AUC, position consistency, tokens and
wall time per judge version, and the machine's load average, which moves the seconds, not the verdicts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import polars as pl

from models.eval.calibration import (
    EXPERIMENT,
    CalibrationTask,
    calibrate,
    calibration_table,
    golden_tasks,
    log_calibration,
)
from models.eval.judges import (
    LexicalRelevanceGrader,
    LLMPairwiseJudge,
    LLMRelevanceJudge,
    LLMResponseJudge,
    ResponseRulesGrader,
)
from models.golden.cpcd import import_cpcd
from models.golden.curated import load_curated_set
from models.llm import LLMGateway
from models.prompts import load_prompt
from models.taxonomy import load_curated
from orchestration.resources import MLflowTracking
from orchestration.settings import load_settings

LLM_JUDGES = {j.prompt_name: j for j in (LLMRelevanceJudge, LLMResponseJudge, LLMPairwiseJudge)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=40, help="seeded items per task")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--versions", nargs="+", required=True, help="judge prompt files, e.g. judge_relevance.v2.yaml"
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    if not settings.llm.base_url:
        raise SystemExit('set SETLIST_LLM__BASE_URL (eval "$(setlist llm serve)") first')

    taxonomy = load_curated(settings.taxonomy_file)
    cpcd = import_cpcd(settings.golden_cpcd_path)
    curated = load_curated_set(taxonomy)
    tasks = golden_tasks(cpcd.turns, cpcd.corpus, curated.ratings, curated.turns, seed=args.seed)
    by_prompt: dict[str, CalibrationTask] = {
        "judge_relevance": tasks.relevance,
        "judge_response": tasks.responses,
        "judge_pairwise": tasks.pairs,
    }
    gateway = LLMGateway(settings.llm.model_copy(update={"cache_path": None}))  # measure, never replay
    plan = []
    for file in args.versions:
        prompt = load_prompt(Path(file).stem.removesuffix(".yaml"))
        task = by_prompt[prompt.name].sample(args.items, args.seed)
        plan.append((LLM_JUDGES[prompt.name](gateway, prompt), task))
    # The code grader of each task on the same items: the baseline an LLM judge must beat.
    texts = cpcd.corpus.select(
        pl.concat_str(["title", pl.col("artists").list.join(" "), "album"], separator=" ", ignore_nulls=True)
    ).to_series()
    baselines = {
        "judge_relevance": LexicalRelevanceGrader.fit(texts),
        "judge_response": ResponseRulesGrader(taxonomy),
    }
    for name in dict.fromkeys(judge.prompt_name for judge, _ in plan):
        if name in baselines:
            plan.append((baselines[name], by_prompt[name].sample(args.items, args.seed)))

    tracking = MLflowTracking(
        tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifact_root
    )
    client, experiment_id = tracking.client(), tracking.experiment_id(EXPERIMENT)
    calibrations = []
    for judge, task in plan:
        calibration = calibrate(judge, task)
        log_calibration(client, experiment_id, calibration, tracking.registry_lock())
        calibrations.append(calibration)
        stats = calibration.llm_stats
        print(
            f"{calibration.judge_version}: {len(task.items)} items, {calibration.failures} failed"
            + (
                f", {stats.prompt_tokens:,} / {stats.completion_tokens:,} tokens, {stats.wall_s:.0f} s"
                if stats
                else ""
            ),
            flush=True,
        )
    gateway.close()
    table = calibration_table(calibrations).select(
        "judge_version", "label_set", "n", "kappa", "accuracy", "auc", "position_consistency", "failures"
    )
    with pl.Config(tbl_rows=-1, tbl_width_chars=200, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        print(table)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
