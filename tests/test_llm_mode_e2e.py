"""`setlist run` in LLM mode against the project's test server completes all five stages; a later
offline run on the same home still works, skipping the LLM candidates without failing them, and a
candidate partition that cannot run never holds back the comparison stage's automation."""

import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from models.labels import TurnLabels
from models.llm.test_server import LLMTestServer, schema_echo_responder
from models.synthetic.grammar import GrammarGenerator
from models.taxonomy import Taxonomy
from orchestration.cli import app
from orchestration.definitions import build_definitions
from orchestration.settings import Settings, load_settings

pytest_plugins = ["conftest_llm"]
# The module fixture runs the whole graph twice (online, then offline): minutes on 2 cores.
pytestmark = pytest.mark.timeout(2400)


def _responder(taxonomy: Taxonomy, catalog) -> Any:
    """Synthetic-conversation prompts get grammar text for the labels they carry; everything else the
    minimal schema-valid answer (a parse with confidence 0, so the assistant asks)."""
    grammar, rng = GrammarGenerator(taxonomy, catalog), random.Random(0)

    def respond(body: dict[str, Any]) -> Any:
        user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "") or ""
        block = re.search(r"<labels>\s*(.*?)\s*</labels>", user, re.S)
        if block is None:
            return schema_echo_responder(body)
        labels = [TurnLabels.model_validate(item) for item in json.loads(block.group(1))]
        return {
            "turns": [
                {
                    "text": grammar.realize(label, rng),
                    "intent": label.intent.value,
                    "slots": label.slots.model_dump(mode="json"),
                }
                for label in labels
            ]
        }

    return respond


@dataclass
class Runs:
    online: Any
    offline: Any
    settings: Settings
    server: LLMTestServer


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, taxonomy, catalog) -> Iterator[Runs]:
    home = tmp_path_factory.mktemp("llm-mode") / "home"
    with pytest.MonkeyPatch.context() as mp, LLMTestServer(_responder(taxonomy, catalog)) as server:
        for key in [k for k in os.environ if k.startswith("SETLIST_") and k != "SETLIST_SHARED_DATA"]:
            mp.delenv(key)
        mp.setenv("SETLIST_HOME", str(home))
        mp.setenv("SETLIST_SYNTHETIC_CONVERSATIONS", "300")
        # The offline comparison set (test_evaluation_e2e's subject) would add two offline candidates to each
        # of the two runs: here only what LLM mode adds is evaluated beside the champion intent model.
        mp.setenv("SETLIST_COMPARISON__RETRIEVERS", '["hybrid"]')
        mp.setenv("SETLIST_COMPARISON__KEYWORD_BASELINE", "false")
        mp.setenv("SETLIST_LLM_API_KEY", "sk-setlist-e2e-test-key")
        online_env = {
            "SETLIST_LLM__BASE_URL": server.base_url,
            "SETLIST_LLM__MODEL": "test-model",
            "SETLIST_LLM__SYNTHETIC_CONVERSATIONS": "8",
            "SETLIST_LLM__JUDGE_ITEMS": "6",
        }
        runner = CliRunner()
        online = runner.invoke(app, ["run"], env=online_env, catch_exceptions=False)
        offline = runner.invoke(app, ["run"], catch_exceptions=False)
        yield Runs(online, offline, load_settings(), server)


def _stages(output: str) -> list[str]:
    return re.findall(r"^(foundation|synthetic|training|candidates|comparison)\b", output, re.M)


def test_llm_mode_completes_all_five_stages(runs: Runs) -> None:
    assert runs.online.exit_code == 0, runs.online.output[-3000:]
    assert "LLM mode: online" in runs.online.output and "run succeeded" in runs.online.output
    assert set(_stages(runs.online.output)) == {
        "foundation",
        "synthetic",
        "training",
        "candidates",
        "comparison",
    }
    # Both generator partitions ran, each checked on its own rows (no dict of partitions).
    assert "synthetic [llm-" in runs.online.output and "synthetic [grammar-v1]" in runs.online.output
    checks = re.findall(r"check synthetic_conversations:synthetic_expectations (\S+)", runs.online.output)
    assert (
        len(checks) == 2
    )  # the grammar partition passes; 8 LLM conversations miss the intent shares (a warning)
    # Two prompt versions of the parser and of the storyteller were evaluated as candidates.
    for key in ("parse-v1", "parse-v2", "story-v1", "story-v2"):
        assert f"candidates [{key}" in runs.online.output or f".{key}]" in runs.online.output, key
    assert runs.server.request_count > 0


def test_judge_versions_are_calibrated_on_the_capped_sample(runs: Runs) -> None:
    client = MlflowClient(runs.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("judge-calibration")
    judges = {r.data.params["judge"]: r for r in client.search_runs([experiment.experiment_id])}
    for judge in (
        "llm_relevance",
        "llm_relevance.v2",
        "llm_relevance.logprobs",
        "llm_response.v2",
        "llm_pairwise.v2",
    ):
        assert judge in judges, sorted(judges)
    relevance = judges["llm_relevance"].data.metrics
    assert relevance["cpcd_relevance.n"] + relevance["failures"] == 6  # SETLIST_LLM__JUDGE_ITEMS
    assert relevance["llm_completion_tokens"] > 0 and relevance["llm_wall_s"] > 0


def test_a_later_offline_run_on_the_same_home_works(runs: Runs) -> None:
    assert runs.offline.exit_code == 0, runs.offline.output[-3000:]
    assert "LLM mode: offline" in runs.offline.output and "run succeeded" in runs.offline.output
    assert set(_stages(runs.offline.output)) == {
        "foundation",
        "synthetic",
        "training",
        "candidates",
        "comparison",
    }
    assert "candidates [parse-" not in runs.offline.output  # LLM candidates are not run offline


def test_offline_llm_candidate_is_skipped_with_a_reason_not_failed(runs: Runs) -> None:
    defs = build_definitions(runs.settings)
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("setlist_candidates").execute_in_process(
        instance=instance, partition_key="parse-v1.agent-v1.hybrid.template"
    )
    assert result.success
    assert not result.get_asset_materialization_events()
    (observation,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    skipped = observation.event_specific_data.asset_observation.metadata["skipped"].value
    assert "needs the LLM gateway" in skipped


def test_a_missing_candidate_partition_does_not_block_the_gate(runs: Runs) -> None:
    defs = build_definitions(runs.settings)
    instance = dg.DagsterInstance.get()
    gate = dg.AssetSelection.assets("champion_gate")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=gate)
    # A candidate partition that cannot run offline, and a fresh evaluation of an offline one.
    instance.add_dynamic_partitions("candidates", ["parse-v9.agent-v1.hybrid.template"])
    candidates = defs.resolve_job_def("setlist_candidates")
    assert candidates.execute_in_process(instance=instance, partition_key="intent-v1.hybrid.template").success
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=gate, cursor=first.cursor
    )
    assert second.get_num_requested(dg.AssetKey("champion_gate")) == 1


def test_no_key_reaches_the_home(runs: Runs) -> None:
    leaked = [
        path
        for path in Path(runs.settings.home_dir).rglob("*")
        if path.is_file() and b"sk-setlist-e2e-test-key" in path.read_bytes()
    ]
    assert leaked == []
