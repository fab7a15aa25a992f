"""Great Expectations suite for the normalized catalog."""

import great_expectations as gx
import polars as pl

from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from checks.quarantine_rules import MAX_DURATION_S
from models.catalog.schema import CATALOG_SCHEMA

SOURCES = ["mtg_jamendo", "cpcd", "tabular"]


def validate_catalog(catalog: pl.DataFrame) -> SuiteOutcome:
    # GX sees scalar columns only; list columns enter as their lengths.
    n_tags = pl.col("genres").list.len() + pl.col("instruments").list.len() + pl.col("moods").list.len()
    flat = catalog.select(
        "track_id",
        "artist_id",
        "duration_s",
        "source",
        (pl.col("title").is_not_null() | (n_tags > 0)).alias("findable"),
    )
    outcome = run_suite(
        "catalog",
        flat,
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="track_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="track_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="artist_id"),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="duration_s", min_value=0, max_value=MAX_DURATION_S, strict_min=True
            ),
            gx.expectations.ExpectColumnValuesToBeInSet(column="source", value_set=SOURCES),
            # A track nobody can find (no title, no tags) is dead weight; a few are tolerated.
            gx.expectations.ExpectColumnValuesToBeInSet(column="findable", value_set=[True], mostly=0.99),
        ],
    )
    schema_ok = catalog.schema == CATALOG_SCHEMA
    schema = ExpectationOutcome(
        "schema_equals(CATALOG_SCHEMA)", schema_ok, "matches" if schema_ok else str(catalog.schema)
    )
    return SuiteOutcome(outcome.suite, [schema, *outcome.outcomes])
