"""Calibration on constructed labels, the golden label sets, and judge_calibration materialized offline."""

import json
import math
from collections.abc import Sequence

import dagster as dg
import polars as pl
import pytest
from conftest import require_shared
from mlflow import MlflowClient

import assets.catalog
import assets.golden
import assets.judges
import assets.taxonomy
from models.eval.calibration import (
    EXPERIMENT,
    CalibrationTask,
    LabelSet,
    below_floor,
    calibrate,
    calibrate_judges,
    calibration_note,
    calibration_table,
    cpcd_relevance_task,
    curated_pairs_task,
    golden_tasks,
)
from models.eval.judges import Judgements, RelevanceItem, Verdict
from models.golden.curated import load_curated_set
from models.taxonomy import load_curated
from orchestration.definitions import build_resources
from orchestration.settings import BUNDLED_DATA, load_settings

pytest_plugins = ["conftest_llm"]

HUMAN = [True, True, False, False, True, False]


class ScriptedJudge:
    """A judge that answers from a list; None stands for a failed item."""

    name = "scripted"

    def __init__(self, values: Sequence[object], version: str = "scripted@v1") -> None:
        self.values, self.version = values, version

    def judge(self, items: Sequence[RelevanceItem]) -> Judgements:
        return Judgements(
            [
                Verdict(v, "scripted") if v is not None else Verdict(None, "boom", "server_error")
                for v in self.values
            ]
        )


def _task(human: Sequence[object] = HUMAN) -> CalibrationTask:
    items = [RelevanceItem(str(i), "user: x", "t") for i in range(len(human))]
    return CalibrationTask(items, [LabelSet("toy", list(human), (True, False))], dataset_hash="toy")


def _agreement(values: Sequence[object], human: Sequence[object] = HUMAN):
    return calibrate(ScriptedJudge(values), _task(human)).agreements["toy"]


def test_perfect_judge_has_kappa_one() -> None:
    agreement = _agreement(HUMAN)
    assert agreement.kappa == pytest.approx(1.0) and agreement.accuracy == 1.0
    assert agreement.confusion == ((3, 0), (0, 3))


def test_inverted_judge_has_negative_kappa() -> None:
    agreement = _agreement([not h for h in HUMAN])
    assert agreement.kappa == pytest.approx(-1.0) and agreement.accuracy == 0.0


def test_constant_judge_has_kappa_zero_and_undefined_kappa_is_below_any_floor() -> None:
    assert _agreement([True] * 6).kappa == pytest.approx(0.0)
    both_constant = calibrate(ScriptedJudge([True] * 6, "constant@v1"), _task([True] * 6))
    assert math.isnan(both_constant.agreements["toy"].kappa)
    table = calibration_table([both_constant, calibrate(ScriptedJudge(HUMAN), _task())])
    assert below_floor(table, 0.4)["judge_version"].to_list() == ["constant@v1"]


def test_failures_are_counted_not_scored_and_the_note_reports_the_judge() -> None:
    calibration = calibrate(ScriptedJudge([True, None, False, False, True, None]), _task())
    items = calibration.items["toy"]
    assert calibration.failures == 2 and items["failure"].to_list().count("server_error") == 2
    table = calibration_table([calibration])
    row = table.row(0, named=True)
    assert row["n"] == 4 and row["failures"] == 2 and row["kappa"] == pytest.approx(1.0)
    assert json.loads(row["confusion"]) == {"labels": ["True", "False"], "matrix": [[2, 0], [0, 2]]}
    assert calibration_note(table, "scripted@v1") == {
        "judge_version": "scripted@v1",
        "label_set": "toy",
        "kappa": pytest.approx(1.0),
        "accuracy": 1.0,
        "n": 4,
    }
    with pytest.raises(ValueError, match="exactly one calibration row"):
        calibration_note(table, "unknown@v0")


def test_all_failed_gives_nan_row() -> None:
    row = calibration_table([calibrate(ScriptedJudge([None] * 6), _task())]).row(0, named=True)
    assert row["n"] == 0 and math.isnan(row["kappa"]) and row["failures"] == 6


TOY_TURNS = pl.DataFrame(
    {
        "conversation_id": ["c1", "c1", "c2"],
        "turn_index": [0, 1, 0],
        "history": ["", "user: jazz\nsystem: here", ""],
        "user_query": ["jazz", "more sax", "rock"],
        "liked": [["t1", "t2", "t3"], ["t4"], ["t5", "t9"]],
        "disliked": [["t6"], ["t7", "t9"], ["t9"]],  # t9 in c2 is both: no usable label
    }
)
TOY_CORPUS = pl.DataFrame(
    {
        "track_id": [f"t{i}" for i in range(1, 10)],
        "title": [f"Song {i}" for i in range(1, 10)],
        "artists": [[f"Artist {i}"] for i in range(1, 10)],
        "album": ["A"] * 9,
    }
)


def test_cpcd_task_is_balanced_bounded_and_seeded() -> None:
    task = cpcd_relevance_task(TOY_TURNS, TOY_CORPUS, max_items=4, seed=1)
    human = task.label_sets[0].human
    assert sorted(human) == [False, False, True, True]
    assert all(":t9" not in i.item_id or i.item_id.startswith("c1:1") for i in task.items)
    second_turn = next(i for i in task.items if i.item_id.startswith("c1:1"))
    assert second_turn.conversation == "user: jazz\nsystem: here\nuser: more sax"
    assert cpcd_relevance_task(TOY_TURNS, TOY_CORPUS, max_items=4, seed=1).dataset_hash == task.dataset_hash


def test_curated_pairs_prefer_the_higher_rating_and_mix_positions() -> None:
    curated = load_curated_set(load_curated(BUNDLED_DATA / "taxonomy.yaml"))
    task = curated_pairs_task(curated.ratings, curated.turns)
    human = task.label_sets[0].human
    assert len(human) >= 10 and {"A", "B"} == set(human)
    ratings = {f"{r['conversation_id']}:{r['turn_index']}": r for r in curated.ratings.iter_rows(named=True)}
    assert all(p.a.item_id.rsplit(":", 1)[0] in ratings for p in task.items)


def test_online_calibration_runs_the_llm_judges_through_the_gateway(start_server, make_gateway) -> None:
    taxonomy = load_curated(BUNDLED_DATA / "taxonomy.yaml")
    curated = load_curated_set(taxonomy)
    tasks = golden_tasks(TOY_TURNS, TOY_CORPUS, curated.ratings, curated.turns, max_cpcd_items=4)
    # The default responder answers the smallest valid JSON: never relevant, rating 1, always "first".
    server = start_server()
    table = calibration_table(calibrate_judges(tasks, taxonomy, TOY_CORPUS, make_gateway(server)))
    # Every prompt version of each LLM judge (the default file and its variants) is calibrated.
    assert set(table["judge"]) == {
        "lexical_relevance",
        "response_rules",
        "llm_relevance",
        "llm_relevance.v2",
        "llm_relevance.logprobs",
        "llm_response",
        "llm_response.v2",
        "llm_response.logprobs",
        "llm_pairwise",
        "llm_pairwise.v2",
    }
    llm = table.filter(pl.col("judge").str.starts_with("llm_"))
    assert llm["failures"].sum() == 0 and llm["judge_version"].str.ends_with("/gpt-4o-mini").all()
    pairwise = table.filter(pl.col("judge") == "llm_pairwise").row(0, named=True)
    assert pairwise["position_consistency"] == 0.0 and pairwise["kappa"] == pytest.approx(0.0)
    n_requests = (
        3 * len(tasks.relevance.items) + 3 * len(tasks.responses.items) + 2 * 2 * len(tasks.pairs.items)
    )
    assert server.request_count <= n_requests  # identical requests are asked once


def test_llm_judges_see_a_capped_seeded_sample_and_code_graders_everything(
    start_server, make_gateway
) -> None:
    taxonomy = load_curated(BUNDLED_DATA / "taxonomy.yaml")
    curated = load_curated_set(taxonomy)
    tasks = golden_tasks(TOY_TURNS, TOY_CORPUS, curated.ratings, curated.turns, max_cpcd_items=4)
    gateway = make_gateway(start_server())
    table = calibration_table(calibrate_judges(tasks, taxonomy, TOY_CORPUS, gateway, llm_items=5, seed=3))
    rating = table.filter(pl.col("label_set") == "curated_rating")
    n = dict(zip(rating["judge"], rating["n"] + rating["failures"], strict=True))
    assert n["response_rules"] == len(tasks.responses.items) > 5
    assert n["llm_response"] == n["llm_response.v2"] == 5
    again = tasks.responses.sample(5, seed=3)
    assert again.item_ids == tasks.responses.sample(5, seed=3).item_ids  # seeded
    assert again.item_ids == sorted(again.item_ids, key=tasks.responses.item_ids.index)  # original order


def test_scores_from_logprobs_give_an_auc_beside_kappa() -> None:
    class ScoringJudge(ScriptedJudge):
        def judge(self, items):
            # Greedy answers always True (kappa 0), but the probabilities rank the items perfectly.
            return Judgements([Verdict(True, "s", score=0.9 if h else 0.6) for h in HUMAN])

    calibration = calibrate(ScoringJudge([]), _task())
    assert calibration.aucs == {"toy": pytest.approx(1.0)}
    assert calibration.agreements["toy"].kappa == pytest.approx(0.0)
    row = calibration_table([calibration]).row(0, named=True)
    assert row["auc"] == pytest.approx(1.0)
    assert calibration.items["toy"]["score"].to_list() == [0.9, 0.9, 0.6, 0.6, 0.9, 0.6]
    unscored = calibration_table([calibrate(ScriptedJudge(HUMAN), _task())]).row(0, named=True)
    assert unscored["auc"] is None


# --- end to end ----------------------------------------------------------------------------------


def test_judge_calibration_materializes_offline_with_a_warning_check(settings, monkeypatch) -> None:
    monkeypatch.setenv(
        "SETLIST_GOLDEN_CPCD_PATH", str(require_shared("cpcd/cpcd_v1.dialogs.dev.train.jsonl"))
    )
    settings = load_settings()
    modules = (assets.catalog, assets.taxonomy, assets.golden, assets.judges)
    result = dg.materialize(
        [*dg.load_assets_from_modules(modules), *dg.load_asset_checks_from_modules([assets.judges])],
        resources=build_resources(settings),
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    assert result.success
    table = result.output_for_node("judge_calibration")
    assert set(table["judge"]) == {"lexical_relevance", "response_rules"}  # offline: code graders only
    assert set(table["label_set"]) == {"cpcd_relevance", "curated_acceptable", "curated_rating"}
    cpcd = table.filter(pl.col("label_set") == "cpcd_relevance").row(0, named=True)
    assert cpcd["n"] == 600 and cpcd["failures"] == 0

    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "judge_kappa_floor" and check.severity == dg.AssetCheckSeverity.WARN
    below = check.metadata["below_floor"].value
    assert check.passed == (below == "none")
    # The lexical grader cannot tell a liked track from a disliked one the same search returned.
    assert not check.passed and "lexical_relevance" in below
    assert set(check.metadata["kappas"].value) == set(
        table.select(pl.concat_str("judge_version", pl.lit(" on "), "label_set")).to_series()
    )

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.params["judge"] for r in runs} == {"lexical_relevance", "response_rules"}
    lexical = next(r for r in runs if r.data.params["judge"] == "lexical_relevance")
    assert lexical.data.metrics["cpcd_relevance.kappa"] == pytest.approx(cpcd["kappa"])
    artifacts = {
        a.path for d in ("confusion", "items") for a in client.list_artifacts(lexical.info.run_id, d)
    }
    assert artifacts == {"confusion/cpcd_relevance.json", "items/cpcd_relevance.json"}  # items via log_table

    # A rerun with the same inputs gives the same table and reuses the runs (fingerprint): none is added.
    rerun = dg.materialize(
        [*dg.load_assets_from_modules(modules)],
        selection=["judge_calibration"],
        resources=build_resources(settings),
        instance=dg.DagsterInstance.get(),
    )
    assert rerun.output_for_node("judge_calibration").equals(table)
    assert sorted(r.info.run_id for r in client.search_runs([experiment.experiment_id])) == sorted(
        r.info.run_id for r in runs
    )
