"""When things run: schedules, sensors and declarative automation conditions.

Assets stay free of scheduling: conditions are attached here with `dg.map_asset_specs`.
- The catalog is refreshed by a daily schedule (and by the folder sensor when a new file lands).
- Everything downstream is eager: it rematerializes when an upstream asset or its own code version
  (e.g. a prompt file's hash) changes, so a changed input reruns exactly what depends on it.
"""

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dagster as dg
from upath import UPath

from models.catalog.sources import CatalogSourceError, newest_file
from models.golden.curated import CURATED_DIR
from orchestration.registry_sensor import current_candidates
from orchestration.settings import Settings
from orchestration.stages import synthetic_partition_keys

PARTITION_COLUMN = "dagster_partition"  # must match orchestration/bigquery_io_manager.py

CATALOG_ASSETS = dg.AssetSelection.assets("catalog", "catalog_quarantine")
EAGER = dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed()
LLM_POOL = "llm"  # LLM-calling assets share this pool; its limit is set in the instance (local_state.py)
LLM_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)


# The catalog is refreshed daily: a day without a refresh warns, two fail the freshness check.
CATALOG_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)
)


def eager_over(partitioned: list[dg.AssetKey]) -> dg.AutomationCondition:
    """EAGER for an asset that reads every partition of `partitioned` that exists: a partition that is
    missing (a candidate skipped in the current mode, or one never run) does not hold it back."""
    return EAGER.replace(
        "any_deps_missing",
        dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets(*partitioned)),
    )


def with_automation(assets: list[dg.AssetsDefinition], settings: Settings) -> list[dg.AssetsDefinition]:
    candidates = [
        key
        for a in assets
        if isinstance(a.partitions_def, dg.DynamicPartitionsDefinition)
        and a.partitions_def.name == "candidates"
        for key in a.keys
    ]
    over_candidates = eager_over(candidates)

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if settings.profile == "gcp" and spec.partitions_def is not None:
            # BigQuery tables hold every partition; the IO manager finds a partition's rows by this column.
            spec = spec.replace_attributes(metadata={**spec.metadata, "partition_expr": PARTITION_COLUMN})
        if spec.key == dg.AssetKey("catalog"):
            return spec.replace_attributes(freshness_policy=CATALOG_FRESHNESS)
        if spec.key == dg.AssetKey("catalog_quarantine"):
            return spec
        if spec.partitions_def is None and any(dep.asset_key in candidates for dep in spec.deps):
            return spec.replace_attributes(automation_condition=over_candidates)
        return spec.replace_attributes(automation_condition=EAGER)

    return list(dg.map_asset_specs(attach, assets))


def catalog_jobs_and_schedules(settings: Settings) -> tuple[list, list]:
    refresh = dg.define_asset_job(
        "catalog_refresh",
        selection=CATALOG_ASSETS,
        description="Re-read the catalog source; the rest follows.",
    )
    schedule = dg.ScheduleDefinition(
        name="daily_catalog_refresh",
        job=refresh,
        cron_schedule=settings.schedules.catalog_refresh,
        execution_timezone=settings.schedules.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return [refresh], [schedule]


def build_catalog_folder_sensor(settings: Settings) -> dg.SensorDefinition:
    """A new file in the catalog folder (local or a bucket prefix) triggers a catalog refresh."""

    @dg.sensor(
        name="new_catalog_file",
        job_name="catalog_refresh",
        minimum_interval_seconds=settings.schedules.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches SETLIST_CATALOG__LOCATION when it is a folder; the cursor is the newest file seen.",
    )
    def new_catalog_file(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        folder = UPath(settings.catalog.location)
        if not folder.is_dir():
            return dg.SkipReason(f"{folder} is a file, not a watched folder")
        try:
            newest = UPath(newest_file(settings.catalog.location)).name
        except CatalogSourceError as err:
            return dg.SkipReason(str(err))
        if newest == context.cursor:
            return dg.SkipReason(f"no catalog file newer than {newest}")
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=newest)], cursor=newest)

    return new_catalog_file


def _partition_schedule(
    name: str, job_name: str, cron: str, settings: Settings, partitions: str, keys: Callable[[], list[str]]
) -> dg.ScheduleDefinition:
    """A schedule that requests one run per partition key, adding the keys it needs first."""

    @dg.schedule(
        name=name,
        job_name=job_name,
        cron_schedule=cron,
        execution_timezone=settings.schedules.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def partition_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        wanted = keys()
        if not wanted:
            return dg.SkipReason(f"no {partitions} partitions to run")
        context.instance.add_dynamic_partitions(partitions, wanted)
        when = context.scheduled_execution_time
        return [dg.RunRequest(partition_key=key, run_key=f"{key}@{when}") for key in wanted]

    return partition_schedule


def synthetic_refresh_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """Weekly: regenerate the current generator partitions (new seed-stable data if the code or prompt changed)."""
    return _partition_schedule(
        "weekly_synthetic_refresh",
        "setlist_synthetic",
        settings.schedules.synthetic_refresh,
        settings,
        "synthetic_generator",
        lambda: synthetic_partition_keys(settings),
    )


def nightly_evaluation_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """Nightly: evaluate every candidate in the MLflow registry; the gate and report follow by automation."""
    return _partition_schedule(
        "nightly_evaluation",
        "setlist_candidates",
        settings.schedules.nightly_evaluation,
        settings,
        "candidates",
        lambda: [c.key for c in current_candidates(settings)],
    )


def golden_refresh_job_and_sensor(settings: Settings) -> tuple[list, list]:
    """A changed curated golden file rematerializes the golden set; eager automation does the rest."""
    job = dg.define_asset_job(
        "golden_refresh",
        selection=dg.AssetSelection.assets("golden_curated", "golden_ratings"),
        description="Re-read the curated golden files.",
    )
    sensor = build_file_change_sensor(
        "golden_files_changed",
        CURATED_DIR,
        "*.yaml",
        job_name="golden_refresh",
        interval_s=settings.schedules.sensor_interval_s,
    )
    return [job], [sensor]


def build_file_change_sensor(
    name: str, files: Path, glob: str, job_name: str, interval_s: int
) -> dg.SensorDefinition:
    """Request `job` when any matching file's content changes; the cursor maps file -> mtime and size."""

    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def changed_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        seen = json.loads(context.cursor or "{}")
        current = {p.name: f"{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in sorted(files.glob(glob))}
        if current == seen:
            return dg.SkipReason(f"no change in {files}/{glob}")
        run_key = json.dumps(current, sort_keys=True)
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key)], cursor=run_key)

    return changed_files


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "setlist_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING
    )
