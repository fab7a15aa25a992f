"""Simulated listeners: deterministic per seed, a better-matching slate is liked more, and the A/B analysis
on their sessions (SRM, CUPED, an injected effect recovered)."""

import numpy as np
import polars as pl
import pytest

from models.assistant.assistant import Assistant
from models.assistant.keyword_parser import KeywordParser
from models.assistant.retrieval import CatalogIndex
from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.feedback.experiment import analyze_experiment_frame
from models.feedback.online import analyze, assign, offline_online_correlation, run_online_experiment
from models.feedback.simulator import AssistantServer, ListenerPopulation, Slate, simulate
from models.taxonomy import Taxonomy, design_taxonomy, load_curated
from orchestration.settings import BUNDLED_DATA


@pytest.fixture(scope="module")
def world():
    catalog = read_catalog(
        CatalogSourceSpec(kind="mtg_jamendo", location=str(BUNDLED_DATA / "mtg_jamendo_sample.tsv"))
    ).kept
    taxonomy = Taxonomy.from_table(design_taxonomy(load_curated(BUNDLED_DATA / "taxonomy.yaml"), catalog))
    return catalog, taxonomy


@pytest.fixture(scope="module")
def population(world):
    catalog, taxonomy = world
    return ListenerPopulation.sample(taxonomy, catalog, 240, seed=7)


def _assistant_server(world, name="hybrid") -> AssistantServer:
    catalog, taxonomy = world
    return AssistantServer(
        name, Assistant(KeywordParser(taxonomy), CatalogIndex.build(catalog, taxonomy), taxonomy)
    )


class RandomServer:
    """Serves ten random catalog tracks whatever is asked: the floor any assistant should beat."""

    variant = "random"

    def __init__(self, track_ids: list[str]) -> None:
        self.track_ids, self.rng = track_ids, np.random.default_rng(0)

    def new_session(self) -> None:
        return None

    def serve(self, sessions, requests) -> list[Slate]:
        return [Slate(list(self.rng.choice(self.track_ids, 10, replace=False)), None) for _ in requests]


def test_simulation_is_deterministic_per_seed(world, population):
    catalog, taxonomy = world
    first = simulate(population, _assistant_server(world), sessions_per_listener=1, listeners=range(40))
    again = simulate(
        ListenerPopulation.sample(taxonomy, catalog, 240, seed=7),
        _assistant_server(world),
        sessions_per_listener=1,
        listeners=range(40),
    )
    assert first.events.equals(again.events) and first.sessions.equals(again.sessions)
    other = simulate(
        ListenerPopulation.sample(taxonomy, catalog, 240, seed=8),
        _assistant_server(world),
        sessions_per_listener=1,
        listeners=range(40),
    )
    assert not first.events.equals(other.events)


def test_better_matching_slates_are_liked_more(world, population):
    catalog, _ = world
    served = simulate(population, _assistant_server(world), sessions_per_listener=1)
    random = simulate(population, RandomServer(catalog["track_id"].to_list()), sessions_per_listener=1)

    def like_rate(events: pl.DataFrame) -> float:
        counts = dict(events.group_by("event").len().iter_rows())
        return counts.get("like", 0) / counts["impression"]

    assert served.sessions["ndcg"].mean() > random.sessions["ndcg"].mean() + 0.2
    assert like_rate(served.events) > 2 * like_rate(random.events)


@pytest.fixture(scope="module")
def experiment(world, population):
    """An A/A test: both arms the same assistant, so the true effect is zero."""
    return run_online_experiment(
        population,
        _assistant_server(world, "a"),
        _assistant_server(world, "b"),
        pre_sessions=2,
        sessions=2,
        salt="aa",
    )


def test_cuped_reduces_variance_and_an_injected_effect_is_recovered(experiment):
    like = experiment.results["like_rate"]
    assert not like.srm.flagged
    assert like.variance_reduction > 0.1
    assert like.cuped.ci_high - like.cuped.ci_low < like.raw.ci_high - like.raw.ci_low
    assert like.cuped.ci_low < 0 < like.cuped.ci_high  # A/A: no effect
    injected = experiment.sessions.with_columns(
        pl.when((pl.col("variant") == "b") & (pl.col("period") == "experiment"))
        .then(pl.col("like_rate") + 0.1)
        .otherwise(pl.col("like_rate"))
    )
    lifted = analyze(injected, "a", "b")["like_rate"]
    assert lifted.cuped.ci_low < 0.1 < lifted.cuped.ci_high
    assert lifted.cuped.ci_low > 0  # detected


def test_srm_is_flagged_when_treatment_sessions_go_missing(experiment):
    users = experiment.sessions["user_id"].unique().sort().to_list()
    lost = {u for u, treated in zip(users, assign(users, "lost"), strict=True) if treated}
    # A logging bug drops the sessions of some treatment listeners (one in two by a hash).
    broken = experiment.sessions.filter(~((pl.col("variant") == "b") & pl.col("user_id").is_in(list(lost))))
    result = analyze_experiment_frame(
        broken.filter(pl.col("period") == "experiment"),
        unit="user_id",
        metric="like_rate",
        covariate=None,
        control="a",
        treatment="b",
    )
    assert result.srm.flagged


def test_offline_metric_correlates_with_like_rate_per_session(experiment):
    corr = offline_online_correlation(experiment.sessions, n_resamples=300)
    assert corr.level == "session" and corr.n == experiment.sessions.height
    assert 0 < corr.ci_low <= corr.spearman <= corr.ci_high


def test_the_plan_comes_first_and_every_look_is_tested_with_holm_across_metrics(experiment):
    plan = experiment.plan["like_rate"]
    assert plan.n_control + plan.n_treatment == 240 and plan.mde > 0
    looks = experiment.looks
    assert sorted(looks["look"].unique()) == [1, 2] and set(looks["metric"]) == {
        "like_rate",
        "skip_rate",
        "requests",
    }
    assert (looks["p_holm"] >= looks["p_always_valid"]).all()
    assert (looks["cs_low"] < 0).all() and (looks["cs_high"] > 0).all()  # A/A: zero stays in the sequence
    assert not looks["significant"].any()  # A/A
    assert set(experiment.p_holm) == set(experiment.results)
