"""Great Expectations suite for the normalized catalog."""

from dataclasses import replace
from functools import partial

import great_expectations as gx
import polars as pl

from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from checks.quarantine_rules import MAX_DURATION_S
from models.catalog.schema import CATALOG_SCHEMA

SOURCES = ["mtg_jamendo", "cpcd", "tabular"]


def validate_catalog(catalog: pl.DataFrame) -> SuiteOutcome:
    # GX validates pandas, where strings become Python objects (~50 s and +6 GB at 10M rows). Each column goes
    # in as a surrogate that keeps its rule exact: dense codes for track_id (unique iff the ids are), a presence
    # flag for artist_id (null iff it is), a categorical source; list columns as their lengths.
    n_tags = pl.col("genres").list.len() + pl.col("instruments").list.len() + pl.col("moods").list.len()
    flat = catalog.select(
        pl.col("track_id").rank("dense").cast(pl.UInt32),
        pl.col("artist_id").is_not_null().replace(False, None),
        "duration_s",
        pl.col("source").cast(pl.Categorical),
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
    return SuiteOutcome(outcome.suite, [schema, *map(partial(_with_ids, catalog), outcome.outcomes)])


def _with_ids(catalog: pl.DataFrame, outcome: ExpectationOutcome) -> ExpectationOutcome:
    """GX saw codes for track_id: a failed uniqueness check is described with the real ids."""
    if outcome.success or outcome.expectation != "expect_column_values_to_be_unique(track_id)":
        return outcome
    repeated = catalog.filter(pl.col("track_id").is_duplicated() & pl.col("track_id").is_not_null())[
        "track_id"
    ]
    return replace(outcome, observed=f"{repeated.len()} unexpected, e.g. {repeated.head(5).to_list()}")
