"""Judge calibration: every judge version's agreement with human labels, as a table and MLflow runs."""

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.eval.calibration import (
    EXPERIMENT,
    below_floor,
    calibrate_judges,
    calibration_table,
    golden_tasks,
    log_calibration,
)
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource, batch_stats_metadata
from orchestration.resources import MLflowTracking, PlatformConfig

GROUP = "evaluation"


class JudgeCalibrationConfig(dg.Config):
    cpcd_items: int = 600  # CPCD (turn, track) items sampled, half liked and half disliked


@dg.asset(
    group_name=GROUP,
    # "openai" because the LLM judges run whenever the gateway is configured; offline only code graders run.
    kinds={"polars", "mlflow", "openai"},
    description=(
        "Each judge version's agreement with human labels: Cohen's kappa, accuracy and confusion matrix on "
        "CPCD liked/disliked tracks and on the team's curated response ratings and preferences. Code graders "
        "always; LLM judges when the gateway is configured. One MLflow run per judge version in "
        f"'{EXPERIMENT}'. Judge-based metrics are reported beside these numbers (calibration_note)."
    ),
)
def judge_calibration(
    config: JudgeCalibrationConfig,
    platform: PlatformConfig,
    llm: LLMGatewayResource,
    mlflow: MLflowTracking,
    golden_cpcd: pl.DataFrame,
    cpcd_corpus: pl.DataFrame,
    golden_curated: pl.DataFrame,
    golden_ratings: pl.DataFrame,
    taxonomy: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    tasks = golden_tasks(
        golden_cpcd, cpcd_corpus, golden_ratings, golden_curated, config.cpcd_items, platform.seed
    )
    gateway = llm.get_gateway() if llm.base_url else None
    calibrations = calibrate_judges(
        tasks, Taxonomy.from_table(taxonomy), cpcd_corpus, gateway, llm.judge_items, platform.seed
    )
    client, experiment_id = mlflow.client(), mlflow.experiment_id(EXPERIMENT)
    runs = {
        c.judge_version: log_calibration(client, experiment_id, c, mlflow.registry_lock()).run_id
        for c in calibrations
    }
    table = calibration_table(calibrations)
    metadata: dict[str, object] = {
        "dagster/row_count": table.height,
        "llm_mode": "online" if gateway else "offline (code graders only)",
        "llm_judge_items": llm.judge_items if gateway else 0,
        "kappa_floor": platform.judge_kappa_floor,
        "calibration": preview(table.drop("confusion", "dataset_hash"), rows=50),
        "mlflow_runs": dg.MetadataValue.json(runs),
        "items": dg.MetadataValue.json(
            {t: len(getattr(tasks, t).items) for t in ("relevance", "responses", "pairs")}
        ),
    }
    for calibration in calibrations:
        if calibration.llm_stats is not None:
            stats = batch_stats_metadata(calibration.llm_stats)
            metadata |= {f"{calibration.judge}.{key}": value for key, value in stats.items()}
    return dg.Output(table, metadata=metadata)


@dg.asset_check(
    asset="judge_calibration",
    blocking=False,
    description="Every judge's kappa on every label set reaches the floor (PlatformConfig.judge_kappa_floor).",
)
def judge_kappa_floor(judge_calibration: pl.DataFrame, platform: PlatformConfig) -> dg.AssetCheckResult:
    floor = platform.judge_kappa_floor
    low = below_floor(judge_calibration, floor)
    label = pl.concat_str("judge_version", pl.lit(" on "), "label_set")
    names = low.select(label).to_series().to_list()
    # JSON has no NaN: an undefined kappa shows as null.
    kappas = dict(judge_calibration.select(label, pl.col("kappa").fill_nan(None).round(3)).iter_rows())
    return dg.AssetCheckResult(
        passed=low.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,  # an untrusted judge is reported, not a reason to stop the graph
        description=(
            f"below kappa floor {floor}: {', '.join(names)}; metrics from these judges are not to be trusted"
            if names
            else f"every judge reaches kappa {floor}"
        ),
        metadata={
            "kappa_floor": floor,
            "kappas": dg.MetadataValue.json(kappas),
            "below_floor": ", ".join(names) or "none",
        },
    )
