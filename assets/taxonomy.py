"""Taxonomy design: the curated tree merged with what the catalog shows."""

from pathlib import Path

import dagster as dg
import polars as pl

from assets.ui_metadata import counts_table, preview, suite_result
from checks.taxonomy_suite import validate_taxonomy
from models.taxonomy import SYNONYM, Taxonomy, assess_taxonomy, design_taxonomy, load_curated
from orchestration.resources import PlatformConfig


@dg.asset(
    group_name="catalog",
    kinds={"polars"},
    description=(
        "Facets genre, mood, instrument, activity and era as a tree with aliases and synonyms "
        "(data/taxonomy.yaml), merged with catalog tag counts and co-occurrence. "
        "It is the vocabulary of the parsers, generators and evaluation."
    ),
)
def taxonomy(platform: PlatformConfig, catalog: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    curated = load_curated(Path(platform.taxonomy_file))
    table = design_taxonomy(curated, catalog)
    report = assess_taxonomy(curated, catalog)
    per_facet = dict(table.group_by("facet").len().sort("facet").iter_rows())
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "nodes": report.nodes,
            "synonyms": per_facet.get(SYNONYM, 0),
            "catalog_tag_coverage": round(report.tag_coverage, 4),
            "node_coverage": round(report.nodes_with_tracks / report.nodes, 4) if report.nodes else 0.0,
            "unmapped_tags": ", ".join(report.unmapped_tags) or "none",
            "ambiguous_aliases": ", ".join(report.ambiguous_aliases) or "none",
            "nodes_per_facet": counts_table(per_facet, "facet", "nodes"),
            "preview": preview(table.sort("subtree_track_count", descending=True)),
        },
    )


@dg.asset_check(
    asset="taxonomy",
    blocking=True,
    additional_ins={"catalog": dg.AssetIn()},
    description="Unique ids, valid parents and implications, every catalog tag mapped, no cycles, no ambiguous alias.",
)
def taxonomy_expectations(taxonomy: pl.DataFrame, catalog: pl.DataFrame) -> dg.AssetCheckResult:
    report = assess_taxonomy(Taxonomy.from_table(taxonomy), catalog)
    outcome = validate_taxonomy(taxonomy, report)
    return suite_result(outcome)
