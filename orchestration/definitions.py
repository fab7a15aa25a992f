"""The Setlist code location: every asset, check, resource, job, schedule and sensor, built from settings."""

import dagster as dg

import assets.assistant
import assets.catalog
import assets.curation
import assets.embeddings
import assets.evaluation
import assets.feedback
import assets.golden
import assets.judges
import assets.retrieval
import assets.synthetic
import assets.taxonomy
from assets.intent import build_intent_assets
from assets.prompts import build_prompt_assets
from orchestration import automation, stages
from orchestration.executors import executor_for
from orchestration.io_manager import ParquetIOManager
from orchestration.llm_resource import LLMGatewayResource
from orchestration.registry_sensor import registry_sensor
from orchestration.resources import INDEX_IO_MANAGER, EvalReports, MLflowTracking, PlatformConfig
from orchestration.settings import Settings, load_settings

ASSET_MODULES = [
    assets.catalog,
    assets.taxonomy,
    assets.embeddings,
    assets.retrieval,
    assets.golden,
    assets.synthetic,
    assets.judges,
    assets.assistant,
    assets.evaluation,
    assets.feedback,
    assets.curation,
]


def table_io_manager(settings: Settings) -> dg.ConfigurableIOManagerFactory:
    """Parquet files under the home folder locally; BigQuery tables in the gcp profile."""
    if settings.profile == "gcp":
        # Imported here: dagster-gcp is the `gcp` extra, not needed by the embedded default.
        from orchestration.bigquery_io_manager import PolarsBigQueryIOManager

        return PolarsBigQueryIOManager(
            project=settings.gcp.project, dataset=settings.gcp.dataset, location=settings.gcp.location
        )
    return ParquetIOManager(base_dir=str(settings.assets_dir))


def index_io_manager(settings: Settings) -> dg.FilesystemIOManager:
    """Retrieval indexes are objects, not tables: pickled under the home folder, or in the bucket in gcp
    (Dagster's filesystem IO manager writes through universal-pathlib, so gs:// works with gcsfs)."""
    if settings.profile == "gcp":
        return dg.FilesystemIOManager(base_dir=f"{settings.gcp.bucket.rstrip('/')}/indexes")
    return dg.FilesystemIOManager(base_dir=str(settings.assets_dir / "indexes"))


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "io_manager": table_io_manager(settings),
        INDEX_IO_MANAGER: index_io_manager(settings),
        "platform": PlatformConfig(
            seed=settings.seed,
            taxonomy_file=str(settings.taxonomy_file),
            golden_cpcd_path=settings.golden_cpcd_path,
            synthetic_conversations=settings.synthetic_conversations,
            intent_training_partition=settings.intent_training_partition,
            exports_dir=str(settings.exports_dir),
            interaction_logs_path=settings.interaction_logs_path,
            vector_seed=settings.vector_seed,
        ),
        "catalog_source": settings.catalog,
        "llm": LLMGatewayResource.from_settings(settings.llm, cache_path=settings.llm_cache_path),
        "mlflow": MLflowTracking(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
            lock_url=settings.mlflow_lock_url,
        ),
        "eval_reports": EvalReports(directory=str(settings.home_dir / "reports")),
    }


def build_definitions(
    settings: Settings, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    # Built from settings (the training partition), like the prompt versions.
    intent_assets, intent_checks = build_intent_assets(settings.intent_training_partition)
    loaded = [
        *dg.load_assets_from_modules(ASSET_MODULES),
        *build_prompt_assets(settings.prompts_dir),
        *intent_assets,
    ]
    sources = [a for a in loaded if a.is_observable]  # the input files, observed by content hash
    all_assets = [*sources, *automation.with_automation([a for a in loaded if a not in sources], settings)]
    catalog_jobs, catalog_schedules = automation.catalog_jobs_and_schedules(settings)
    return dg.Definitions(
        assets=all_assets,
        asset_checks=[*dg.load_asset_checks_from_modules(ASSET_MODULES), *intent_checks],
        resources=build_resources(settings),
        jobs=[*stages.stage_jobs(all_assets), *catalog_jobs],
        schedules=[
            *catalog_schedules,
            automation.synthetic_refresh_schedule(settings),
            automation.nightly_evaluation_schedule(settings),
        ],
        sensors=[
            automation.build_source_observation_sensor(sources, settings.schedules.sensor_interval_s),
            registry_sensor,
            automation.automation_sensor(),
        ],
        loggers=loggers,
        executor=executor_for(settings),  # SETLIST_EXECUTOR: in_process, multiprocess or celery
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev -w workspace.yaml` loads; settings are read (and checked) at load time."""
    return build_definitions(load_settings())
