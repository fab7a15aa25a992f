"""When things run: schedules, sensors and declarative automation conditions.

Assets stay free of scheduling: conditions are attached here with `dg.map_asset_specs`.
- The input files (catalog location, golden files, prompt files) are observable source assets versioned by
  content; the `source_files_changed` sensor observes them and records an observation only when a version
  changed, so no run starts while nothing changes.
- Everything downstream is eager: it rematerializes when an upstream asset, a source's data version or its
  own code version changes, so a changed input reruns exactly what depends on it.
- A new partition is launched by whoever adds it (the registry sensor, a schedule, `setlist run`);
  automation only reruns partitions that exist, so none is launched twice.
"""

from collections.abc import Callable, Sequence
from datetime import timedelta

import dagster as dg

from models.catalog.sources import CatalogSourceError
from orchestration.partitions import CANDIDATES, SYNTHETIC_GENERATORS
from orchestration.registry_sensor import current_candidates
from orchestration.settings import Settings
from orchestration.stages import synthetic_partition_keys

PARTITION_COLUMN = "dagster_partition"  # must match orchestration/bigquery_io_manager.py
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster keeps an observation's data version

CATALOG_ASSETS = dg.AssetSelection.assets("catalog_file", "catalog", "catalog_quarantine")
EAGER = dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed()
# `eager()` also launches a partition that is missing, which its launcher has already requested.
EAGER_EXISTING_PARTITIONS = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.missing()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, existing partitions") | dg.AutomationCondition.code_version_changed()
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
    candidates = [key for a in assets if a.partitions_def == CANDIDATES for key in a.keys]
    over_candidates = eager_over(candidates)

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if settings.profile == "gcp" and spec.partitions_def is not None:
            # BigQuery tables hold every partition; the IO manager finds a partition's rows by this column.
            spec = spec.replace_attributes(metadata={**spec.metadata, "partition_expr": PARTITION_COLUMN})
        if spec.key == dg.AssetKey("catalog"):
            spec = spec.replace_attributes(freshness_policy=CATALOG_FRESHNESS)
        if spec.partitions_def is not None:
            condition = EAGER_EXISTING_PARTITIONS
        elif any(dep.asset_key in candidates for dep in spec.deps):
            condition = over_candidates
        else:
            condition = EAGER
        return spec.replace_attributes(automation_condition=condition)

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
        SYNTHETIC_GENERATORS.name,
        lambda: synthetic_partition_keys(settings),
    )


def nightly_evaluation_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """Nightly: evaluate every candidate in the MLflow registry; the gate and report follow by automation."""
    return _partition_schedule(
        "nightly_evaluation",
        "setlist_candidates",
        settings.schedules.nightly_evaluation,
        settings,
        CANDIDATES.name,
        lambda: [c.key for c in current_candidates(settings)],
    )


def build_source_observation_sensor(
    sources: Sequence[dg.AssetsDefinition], interval_s: int
) -> dg.SensorDefinition:
    """Observe the source assets in the sensor itself (no run): an observation is recorded only when a data
    version differs from the last one recorded, so the first tick after `setlist run` (which observed them)
    and every tick without a change do nothing, and eager automation reacts to each real change."""
    resource_keys = {key for source in sources for key in source.required_resource_keys} - {"io_manager"}

    @dg.sensor(
        name="source_files_changed",
        minimum_interval_seconds=interval_s,
        required_resource_keys=resource_keys,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Hashes the catalog file, golden files and prompt files; records a new data version on change.",
    )
    def source_files_changed(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        changed, unreadable = [], []
        for source in sources:
            wanted = {
                key: getattr(context.resources, key) for key in source.required_resource_keys - {"io_manager"}
            }
            name = source.key.to_user_string()
            try:
                result: dg.ObserveResult = source(**wanted)  # the source asset's own observation
            except (
                CatalogSourceError,
                OSError,
                dg.Failure,
            ) as err:  # e.g. an empty drop folder: others still count
                unreadable.append(f"{name}: {err}")
                continue
            version = result.data_version.value
            record = context.instance.get_latest_data_version_record(source.key, is_source=True)
            if record is None or record.event_log_entry.asset_observation.data_version != version:
                changed.append(
                    dg.AssetObservation(
                        source.key, metadata=result.metadata, tags={DATA_VERSION_TAG: version}
                    )
                )
        for problem in unreadable:
            context.log.warning(f"cannot observe {problem}")
        if not changed:
            return dg.SkipReason("; ".join(["no source file changed", *unreadable]))
        return dg.SensorResult(asset_events=changed)

    return source_files_changed


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "setlist_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING
    )
