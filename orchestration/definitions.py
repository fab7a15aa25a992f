"""The Setlist code location: every asset, check, resource, job and schedule, built from settings."""

import dagster as dg

import assets.catalog
import assets.taxonomy
from orchestration.io_manager import ParquetIOManager
from orchestration.resources import CatalogSource, MLflowTracking, PlatformConfig
from orchestration.settings import Settings, load_settings

ASSET_MODULES = [assets.catalog, assets.taxonomy]


def build_resources(settings: Settings) -> dict[str, object]:
    catalog = settings.catalog
    return {
        "io_manager": ParquetIOManager(base_dir=str(settings.assets_dir)),
        "platform": PlatformConfig(seed=settings.seed, taxonomy_file=str(settings.taxonomy_file)),
        "catalog_source": CatalogSource(
            kind=catalog.kind,
            location=catalog.location,
            format=catalog.format,
            columns=catalog.columns,
            list_separator=catalog.list_separator,
        ),
        "mlflow": MLflowTracking(
            tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifacts_dir.as_uri()
        ),
    }


def build_definitions(settings: Settings, loggers: dict[str, dg.LoggerDefinition] | None = None) -> dg.Definitions:
    all_assets = dg.load_assets_from_modules(ASSET_MODULES)
    all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)
    main_job = dg.define_asset_job("setlist_main", selection=dg.AssetSelection.all(), description="The whole graph.")
    return dg.Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        resources=build_resources(settings),
        jobs=[main_job],
        loggers=loggers,
    )


defs = build_definitions(load_settings())
