"""The gate's error and power by simulation on the structure of the real golden sets (seeded).

Each decision is a full joint gate with 1,000 bootstrap resamples (production uses 10,000); the counts of
decisions are modest so the module runs in seconds on 2 cores: the estimates carry a standard error of
about 0.01-0.02, and the bounds below hold with that margin. `python -m benchmarks.gate_power` runs more.
"""

import polars as pl
import pytest

from models.eval.gate_simulation import CURATED, GoldenStructure, Scenario, promotion_rates
from models.golden.cpcd import cpcd_evaluation_turns, import_cpcd
from models.golden.curated import load_curated_set
from models.taxonomy import load_curated
from orchestration.settings import BUNDLED_DATA

RESAMPLES = 1000


@pytest.fixture(scope="module")
def structure() -> GoldenStructure:
    curated = load_curated_set(load_curated(BUNDLED_DATA / "taxonomy.yaml")).turns
    cpcd = import_cpcd(BUNDLED_DATA / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz").turns
    evaluation = cpcd_evaluation_turns(cpcd).filter(pl.col("liked").list.len() > 0)
    return GoldenStructure.of(curated, evaluation)


def test_the_structure_is_the_real_one(structure):
    assert len(structure.curated_conversations) >= 159 and structure.safety_turns.sum() >= 13
    assert structure.cpcd_conversations.max() + 1 >= 250 and len(structure.cpcd_conversations) >= 1000


def test_a_a_over_five_challengers_promotes_at_most_five_percent(structure):
    # no guardrails: they could only lower the rate, and the primary's error is what is controlled
    rates = promotion_rates(structure, Scenario(challengers=5, guardrails=False), 300, 11, RESAMPLES)
    assert rates.promoted <= 0.05
    # the old rule (each challenger at ALPHA alone, the best promoted) on the same draws does not hold it
    assert rates.promoted_uncorrected > 0.05


def test_power_at_ten_points_on_curated_plus_cpcd_with_guardrails_on(structure):
    rates = promotion_rates(structure, Scenario(lift=0.10), 200, 12, RESAMPLES)
    assert rates.promoted >= 0.8, rates.blocked_by


def test_the_curated_set_alone_is_too_small_for_ten_points(structure):
    rates = promotion_rates(structure, Scenario(lift=0.10, with_cpcd=False), 100, 13, RESAMPLES)
    assert rates.promoted < 0.8


def test_a_true_five_percent_slowdown_passes_the_latency_guardrail(structure):
    scenario = Scenario(lift=0.10, slowdown=1.05)
    rates = promotion_rates(structure, scenario, 100, 14, RESAMPLES)
    assert rates.blocked_by.get("latency_ms", 0) <= 2 and rates.promoted >= 0.8


def test_a_curated_only_gain_is_not_vetoed_by_cpcd(structure):
    rates = promotion_rates(structure, Scenario(lift=0.15, lift_on=(CURATED,)), 100, 15, RESAMPLES)
    assert rates.blocked_by.get("hit_at_10", 0) <= 5
