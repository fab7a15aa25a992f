"""Run a Great Expectations 1.x suite over a polars frame and return plain results.

GX validates pandas, so frames are converted at the boundary; list columns are exploded by the
suites that need them before they get here. One ephemeral GX context serves the whole process.
"""

import functools
from dataclasses import dataclass

import great_expectations as gx
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations import Expectation


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str  # e.g. "expect_column_values_to_be_unique(track_id)"
    success: bool
    observed: object  # GX's observed value, or the unexpected count and a sample


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        lines = ["| expectation | passed | observed |", "|---|---|---|"]
        lines += [
            f"| `{o.expectation}` | {'yes' if o.success else '**no**'} | {o.observed} |"
            for o in self.outcomes
        ]
        return "\n".join(lines)


@functools.cache
def _batch_definition():
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("setlist")
    return source.add_dataframe_asset(name="frame").add_batch_definition_whole_dataframe("whole")


def _describe(config) -> str:
    kwargs = config.kwargs
    target = kwargs.get("column") or ",".join(kwargs.get("column_list", []) or [])
    return f"{config.type}({target})" if target else config.type


def _observed(result: dict) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list", [])[:5]
        return f"{result['unexpected_count']} unexpected, e.g. {sample}"
    return result


def run_suite(name: str, frame: pl.DataFrame, expectations: list[Expectation]) -> SuiteOutcome:
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    validation = batch.validate(suite, result_format="SUMMARY")
    return SuiteOutcome(
        suite=name,
        outcomes=[
            ExpectationOutcome(_describe(r.expectation_config), bool(r.success), _observed(r.result))
            for r in validation.results
        ],
    )
