"""Catalog sourcing: one read of the configured source into the normalized catalog and its quarantine."""

import time
import warnings

import dagster as dg
import polars as pl

from assets.ui_metadata import bar_chart, counts_table, preview, suite_result
from checks.catalog_suite import validate_catalog
from checks.quarantine_suite import validate_quarantine
from models.catalog.sources import CatalogSourceSpec, location_version, read_catalog

GROUP = "catalog"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # observable source assets are beta in Dagster 1.13

    @dg.multi_observable_source_asset(
        specs=[
            dg.AssetSpec(
                "catalog_file",
                group_name=GROUP,
                description=(
                    "The file SETLIST_CATALOG__LOCATION stands for now (a folder: its newest file), versioned by "
                    "its content: a new, replaced or rewritten file is a new data version, which reruns the catalog."
                ),
            )
        ]
    )
    def catalog_file(catalog_source: dg.ResourceParam[CatalogSourceSpec]) -> dg.ObserveResult:
        path, version = location_version(catalog_source.location)
        return dg.ObserveResult(
            data_version=dg.DataVersion(version), metadata={"file": dg.MetadataValue.path(path)}
        )


@dg.multi_asset(
    group_name=GROUP,
    deps=[catalog_file],
    outs={
        "catalog": dg.AssetOut(
            kinds={"polars"},
            description="Every valid track of the configured source in the one catalog schema.",
        ),
        "catalog_quarantine": dg.AssetOut(
            kinds={"polars"},
            description="Every rejected source row with the rule it broke and where it was.",
        ),
    },
)
def catalog_assets(context: dg.AssetExecutionContext, catalog_source: dg.ResourceParam[CatalogSourceSpec]):
    started = time.perf_counter()
    read = read_catalog(catalog_source)
    seconds = round(time.perf_counter() - started, 3)
    catalog, quarantine = read.kept, read.quarantined
    shared = {
        "source_file": dg.MetadataValue.path(read.source_file),
        "source_kind": catalog_source.kind,
        "rows_read": read.rows_read,
        "read_seconds": seconds,
    }
    tag_counts = _tag_counts(catalog)
    yield dg.Output(
        catalog,
        output_name="catalog",
        metadata={
            **shared,
            "dagster/row_count": catalog.height,
            "rows_quarantined": quarantine.height,
            "rows_per_second": round(read.rows_read / seconds) if seconds else None,
            "distinct_tags": len(tag_counts),
            "preview": preview(catalog),
            "tag_distribution": bar_chart(tag_counts, "tracks per tag (top 25)") if tag_counts else "no tags",
        },
    )
    rules = dict(quarantine.group_by("rule").len().sort("len", descending=True).iter_rows())
    yield dg.Output(
        quarantine,
        output_name="catalog_quarantine",
        metadata={
            **shared,
            "dagster/row_count": quarantine.height,
            "rows_by_rule": counts_table(rules, "rule", "rows") if rules else "none",
            "preview": preview(quarantine),
        },
    )


def _tag_counts(catalog: pl.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for column, prefix in (("genres", "genre"), ("instruments", "instrument"), ("moods", "mood")):
        exploded = catalog.select(pl.col(column).explode().drop_nulls())
        for value, n in exploded.group_by(column).len().iter_rows():
            counts[f"{prefix}:{value}"] = n
    return counts


@dg.asset_check(asset="catalog", blocking=True, description="Great Expectations suite over the catalog.")
def catalog_expectations(catalog: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = validate_catalog(catalog)
    return suite_result(outcome)


@dg.asset_check(
    asset="catalog",
    blocking=True,
    additional_ins={"catalog_quarantine": dg.AssetIn()},
    description="Rows read = rows kept + rows quarantined: nothing was lost.",
)
def catalog_counts_reconcile(
    context: dg.AssetCheckExecutionContext, catalog: pl.LazyFrame, catalog_quarantine: pl.LazyFrame
) -> dg.AssetCheckResult:
    # Lazy inputs: a row count comes from the Parquet footer instead of loading every row.
    event = context.instance.get_latest_materialization_event(dg.AssetKey("catalog"))
    rows_read = event.asset_materialization.metadata["rows_read"].value
    kept = catalog.select(pl.len()).collect().item()
    quarantined = catalog_quarantine.select(pl.len()).collect().item()
    return dg.AssetCheckResult(
        passed=rows_read == kept + quarantined,
        metadata={"rows_read": rows_read, "rows_kept": kept, "rows_quarantined": quarantined},
    )


@dg.asset_check(
    asset="catalog_quarantine", description="Every quarantined row names a known rule and its line."
)
def quarantine_expectations(catalog_quarantine: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = validate_quarantine(catalog_quarantine)
    return suite_result(outcome)
