"""Great Expectations suite for the designed taxonomy, plus the structural findings GX cannot express."""

import great_expectations as gx
import polars as pl

from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from models.taxonomy import FACETS, SYNONYM, TaxonomyReport


def validate_taxonomy(table: pl.DataFrame, report: TaxonomyReport) -> SuiteOutcome:
    node_ids = table["node_id"].to_list()
    implied = table.select(pl.col("implies").explode().drop_nulls().alias("implied"))
    outcome = run_suite(
        "taxonomy",
        table.select("node_id", "facet", "parent_id"),
        [
            gx.expectations.ExpectColumnValuesToBeUnique(column="node_id"),
            gx.expectations.ExpectColumnValuesToBeInSet(column="facet", value_set=[*FACETS, SYNONYM]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="parent_id", value_set=node_ids),
        ],
    )
    implied_outcome = run_suite(
        "taxonomy_implies",
        implied,
        [gx.expectations.ExpectColumnValuesToBeInSet(column="implied", value_set=node_ids)],
    )
    structural = [
        ExpectationOutcome(
            "every_catalog_tag_maps_to_a_node", not report.unmapped_tags, report.unmapped_tags or "none"
        ),
        ExpectationOutcome("no_parent_cycles", not report.cycles, report.cycles or "none"),
        ExpectationOutcome(
            "no_ambiguous_aliases", not report.ambiguous_aliases, report.ambiguous_aliases or "none"
        ),
    ]
    return SuiteOutcome("taxonomy", [*outcome.outcomes, *implied_outcome.outcomes, *structural])
