"""Great Expectations suite for the catalog quarantine: every row says where it came from and why."""

import great_expectations as gx
import polars as pl

from checks.gx_runner import SuiteOutcome, run_suite
from checks.quarantine_rules import ROW_RULES


def validate_quarantine(quarantine: pl.DataFrame) -> SuiteOutcome:
    return run_suite(
        "catalog_quarantine",
        quarantine.select("source_file", "line_no", "rule", "detail"),
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="source_file"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="line_no", min_value=1),
            gx.expectations.ExpectColumnValuesToBeInSet(column="rule", value_set=list(ROW_RULES)),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="detail"),
        ],
    )
