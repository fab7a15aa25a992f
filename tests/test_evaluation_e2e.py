"""The default comparison through the stages in-process: three offline candidates (the trained parser with
hybrid and with BM25 retrieval, the keyword parser with hybrid), MLflow runs per golden set, one gate over both
challengers, the aliases it moves, the report. The graph is materialized once per module; the last test reruns
the foundation, candidate and comparison stages.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from conftest import require_shared
from mlflow import MlflowClient

from models.eval.evaluate import TIMING_COLUMNS
from models.eval.tracking import EXPERIMENTS, PER_ITEM_TABLE
from models.lifecycle.registry import ASSISTANT_MODEL, CHALLENGER, CHAMPION, GATE_TAG
from orchestration.definitions import build_definitions
from orchestration.local_state import prepare_home
from orchestration.settings import Settings, load_settings
from orchestration.stages import plan_stages, stage_partition_keys

CHAMPION_KEY, CHALLENGER_KEY = "intent-v1.hybrid.template", "intent-v1.bm25.template"
KEYWORD_KEY = "keyword-v1.hybrid.template"
CANDIDATES = [CHAMPION_KEY, CHALLENGER_KEY, KEYWORD_KEY]  # what `setlist run` proposes, in its order


@dataclass
class Home:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    results: dict[str, list[dg.ExecuteInProcessResult]]

    def run_stage(self, name: str) -> list[dg.ExecuteInProcessResult]:
        (stage,) = [s for s in plan_stages(list(self.defs.assets)) if s.name == name]
        keys = stage_partition_keys(stage, self.settings, self.instance)
        if name == "candidates":
            assert keys == CANDIDATES  # the first evaluated becomes the champion
        job = self.defs.resolve_job_def(f"setlist_{name}")
        return [job.execute_in_process(instance=self.instance, partition_key=key) for key in keys]

    def client(self) -> MlflowClient:
        return MlflowClient(self.settings.mlflow_tracking_uri)

    def metadata(self, stage: str, asset: str) -> list[dict]:
        return [
            {k: v.value for k, v in e.step_materialization_data.materialization.metadata.items()}
            for r in self.results[stage]
            for e in r.get_asset_materialization_events()
            if e.asset_key.to_user_string() == asset
        ]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    require_shared("cpcd/cpcd_v1.dialogs.dev.train.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("SETLIST_") and k != "SETLIST_SHARED_DATA"]:
            mp.delenv(key)
        mp.setenv("SETLIST_HOME", str(tmp_path_factory.mktemp("evaluation") / "home"))
        settings = load_settings()
        mp.setenv("DAGSTER_HOME", str(settings.dagster_home))
        prepare_home(settings)
        defs = build_definitions(settings)
        state = Home(settings, defs, dg.DagsterInstance.get(), {})
        for stage in ("foundation", "synthetic", "training", "candidates", "comparison"):
            state.results[stage] = state.run_stage(stage)
        yield state


def _runs(client: MlflowClient, experiment: str) -> dict[str, str]:
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {r.info.run_id: r.info.run_name for r in found}


def test_each_candidate_gets_one_run_per_golden_set_and_one_assistant_version(home: Home) -> None:
    client = home.client()
    assert sorted(_runs(client, EXPERIMENTS["golden_curated"]).values()) == sorted(CANDIDATES)
    assert sorted(_runs(client, EXPERIMENTS["golden_cpcd"]).values()) == sorted(
        [*CANDIDATES, "bm25-baseline"]
    )
    (run,) = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENTS["golden_curated"]).experiment_id],
        filter_string=f"tags.`setlist.candidate` = '{CHALLENGER_KEY}'",
    )
    assert run.data.params["retriever"] == "bm25" and run.data.params["judge_version"] == "response_rules@v1"
    assert {"golden_curated_version", "golden_cpcd_version", "parser"} <= run.data.params.keys()
    assert "judge_calibration.curated_rating.kappa" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {PER_ITEM_TABLE, "results.parquet", "candidate.json", "intent_confusion.png"} <= artifacts
    versions = client.search_model_versions(f"name = '{ASSISTANT_MODEL}'")
    assert sorted(v.tags["candidate"] for v in versions) == sorted(CANDIDATES)
    assert all(v.source.endswith("/candidate.json") for v in versions)

    (meta,) = home.metadata("candidates", "candidate_evaluation")[:1]
    assert (
        0 <= meta["turn_success"] <= 1
        and meta["judge_calibration"]["groundedness"]["label_set"] == "curated_rating"
    )
    table = pl.read_parquet(home.settings.assets_dir / "candidate_evaluation" / f"{CHALLENGER_KEY}.parquet")
    assert set(table["golden_set"]) == {"golden_curated", "golden_cpcd"}
    # CPCD: the product path per scored turn (what the gate pairs by dialog), the retriever alone beside it.
    cpcd = table.filter(pl.col("golden_set") == "golden_cpcd")
    assert {"conversation_id", "turn_index", "hit_at_10", "retriever_hit_at_10", "intent"} <= set(
        cpcd.columns
    )
    assert (
        cpcd.select("conversation_id", "turn_index").is_unique().all()
        and cpcd["hit_at_10"].is_not_null().all()
    )
    assert 0 < meta["cpcd_hit_at_10_micro"] <= 1 and 0 < meta["cpcd_retriever_hit_at_10_micro"] <= 1


def test_gate_decides_once_and_the_alias_follows_the_decision(home: Home) -> None:
    (meta,) = home.metadata("comparison", "champion_gate")
    decision_md = meta[f"gate: {CHALLENGER_KEY}"]
    assert "0.5 turn_success@golden_curated + 0.5 hit_at_10@golden_cpcd (primary)" in decision_md
    assert "guardrail hit_at_10 @ golden_cpcd" in decision_md and "guardrail safety" in decision_md
    assert "guardrail latency_ms" in decision_md and meta["primary_sets"].startswith(
        "golden_curated and golden_cpcd"
    )
    assert meta["champion_before"] == CHAMPION_KEY
    gate = pl.read_parquet(home.settings.assets_dir / "champion_gate.parquet")
    assert sorted(gate["challenger"]) == sorted([CHALLENGER_KEY, KEYWORD_KEY])
    assert set(gate["decision"]) <= {"promote", "keep", "inconclusive"} and (gate["mde"] > 0).all()
    assert gate["rule"][0].startswith("Holm step-down over the 2 challenger(s)")
    promoted = gate.filter("promoted")["challenger"].to_list()
    expected = promoted[0] if promoted else CHAMPION_KEY
    client = home.client()
    champion = client.get_model_version_by_alias(ASSISTANT_MODEL, CHAMPION)
    assert champion.tags["candidate"] == expected == meta["champion_after"]
    assert meta["decision"].startswith("promote" if promoted else "keep")
    # The runner-up holds @challenger; every gated version records its decision for the MLflow UI.
    challenger = client.get_model_version_by_alias(ASSISTANT_MODEL, CHALLENGER).tags["candidate"]
    assert challenger in set(CANDIDATES) - {expected}
    versions = {
        v.tags["candidate"]: v.tags for v in client.search_model_versions(f"name = '{ASSISTANT_MODEL}'")
    }
    for key, decision in gate.select("challenger", "decision").rows():
        assert json.loads(versions[key][GATE_TAG])["decision"] == decision

    from orchestration.assistant_loader import load_chat_assistant

    assert expected in load_chat_assistant(home.settings).description
    assert load_chat_assistant(home.settings, alias=CHALLENGER).served["candidate"] == challenger


def test_mlflow_compare_shows_real_differences(home: Home) -> None:
    """The three candidates differ in what they are and in what they score: a compare view worth opening."""
    client = home.client()
    experiment = client.get_experiment_by_name(EXPERIMENTS["golden_curated"]).experiment_id
    runs = {r.info.run_name: r.data for r in client.search_runs([experiment])}
    assert {runs[k].params["parser"] for k in CANDIDATES} == {"models:/setlist-intent/1", "keyword-v1"}
    assert {runs[k].params["retriever"] for k in CANDIDATES} == {"hybrid", "bm25"}
    for metric in ("turn_success.mean", "intent.macro_f1"):
        assert len({round(runs[k].metrics[metric], 6) for k in CANDIDATES}) > 1, metric


def test_the_curation_queue_is_a_review_file_named_by_its_content(home: Home) -> None:
    (meta,) = home.metadata("training", "curation_queue")
    path = Path(meta["review_file"])
    assert path.exists() and path.name == f"review-{meta['queue_hash']}.yaml"
    assert "response_rules only (offline)" in meta["judges"]


def test_report_is_self_contained(home: Home) -> None:
    (meta,) = home.metadata("comparison", "eval_report")
    path = home.settings.home_dir / "reports" / "eval_report.html"
    assert meta["path"] == str(path)
    html = path.read_text()
    assert (
        html.count("data:image/png;base64,") >= 6
    )  # primary CI, CIs, hit by turn, two confusions, calibration
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "<strong>Decision:" in html and "**Decision" not in html  # the gate's Markdown is rendered
    assert html.count('<tr class="') >= 159 and 'id="only-failures"' in html  # the per-turn matrix
    assert meta["turn_success_ci"].startswith("![turn_success per candidate, 95% CI](data:image/png;base64,")
    assert Path(meta["turn_success_ci_png"]).read_bytes().startswith(b"\x89PNG")


def test_rerunning_the_graph_adds_no_mlflow_runs_and_rewrites_identical_tables(home: Home) -> None:
    client = home.client()
    experiments = [e.name for e in client.search_experiments()]
    before = {name: _runs(client, name) for name in experiments}
    versions = len(client.search_model_versions(f"name = '{ASSISTANT_MODEL}'"))
    assets_dir = home.settings.assets_dir
    tables = {p.relative_to(assets_dir): pl.read_parquet(p) for p in sorted(assets_dir.rglob("*.parquet"))}
    (logs,) = home.metadata("comparison", "interaction_logs")
    champion = home.client().get_model_version_by_alias(ASSISTANT_MODEL, CHAMPION).tags["candidate"]
    assert logs["served_by"] == champion  # read after the gate: the same champion serves every rerun

    for stage in (
        "foundation",
        "candidates",
        "comparison",
    ):  # the assistant replays again: only its timings change
        assert all(r.success for r in home.run_stage(stage))

    assert {"judge-calibration", "online-ab", "eval-report", *EXPERIMENTS.values()} <= set(experiments)
    assert {name: _runs(client, name) for name in experiments} == before
    assert len(client.search_model_versions(f"name = '{ASSISTANT_MODEL}'")) == versions
    # Measured timings differ on every replay: latency columns, and the latencies the gate's evidence quotes.
    measured = [*TIMING_COLUMNS, "evidence"]
    for path, table in tables.items():
        rewritten = pl.read_parquet(assets_dir / path)
        assert rewritten.drop(measured, strict=False).equals(table.drop(measured, strict=False)), path
