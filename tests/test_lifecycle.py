"""The candidate lifecycle against a real MLflow store: keys, resolution through the registry, serving by
alias (also when a person moves the alias by hand), and the aliases the gate moves."""

import json

import polars as pl
import pytest
from conftest import store_retrieval_index
from mlflow import MlflowClient

from models.assistant.assistant import Session
from models.assistant.chat import json_turn
from models.assistant.retrieval import CatalogIndex
from models.lifecycle.build import resolve, resolve_alias
from models.lifecycle.candidates import (
    AGENT_PROMPT,
    PARSER_PROMPT,
    STORY_PROMPT,
    Candidate,
    CandidateKeyError,
    baseline_candidate,
)
from models.lifecycle.gate_policy import gate_on_golden_sets
from models.lifecycle.promotion import apply_gate
from models.lifecycle.registry import (
    ASSISTANT_MODEL,
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    register_candidate,
    set_model_alias,
    sync_prompt,
)
from models.prompts import load_prompt
from orchestration.assistant_loader import load_chat_assistant
from orchestration.local_state import ensure_mlflow_store


@pytest.fixture
def client(settings) -> MlflowClient:
    ensure_mlflow_store(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


def _register(client: MlflowClient, *keys: str) -> None:
    """setlist-assistant versions as candidate_evaluation registers them (each from an evaluation run)."""
    experiment = client.create_experiment("eval-probe")
    for key in keys:
        register_candidate(client, key, client.create_run(experiment).info.run_id)


@pytest.mark.parametrize(
    "key",
    [
        "intent-v3.hybrid.template",
        "intent-v3.dense.story-v2",
        "keyword-v1.bm25.template",
        "parse-v2.agent-v1.hybrid.story-v1",
    ],
)
def test_candidate_keys_round_trip(key: str) -> None:
    assert Candidate.from_key(key).key == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("parse-v2.hybrid.template", "not a candidate key"),  # an LLM parser names its agent prompt
        ("keyword-v9.hybrid.template", "keyword parser's code is at version 1"),
        ("intent-v1.fancy.template", "not a candidate key"),
    ],
)
def test_bad_keys_say_why(key: str, rule: str) -> None:
    with pytest.raises(CandidateKeyError, match=rule):
        Candidate.from_key(key)


def test_prompts_are_read_from_the_registry_not_the_files(client) -> None:
    for name in (PARSER_PROMPT, AGENT_PROMPT, STORY_PROMPT):
        spec = load_prompt(name)
        sync_prompt(client, spec, spec.schema())
    # A second story version registered by hand (a notebook, the UI): no file has it.
    by_hand = [
        {"role": "system", "content": "Tell why in ten words."},
        {"role": "user", "content": "{{data}}"},
    ]
    client.register_prompt(STORY_PROMPT, template=by_hand, model_config={"temperature": 0.0})

    resolved = resolve(client, Candidate.from_key("parse-v1.agent-v1.hybrid.story-v2"))

    story = resolved.prompts[STORY_PROMPT]
    assert list(story.messages) == by_hand and story.model_parameters == {"temperature": 0}
    assert story.source == "prompts:/track_story/2"
    # A version synced from its file comes back with the file's content, so its hash (and LLM cache key) match.
    for name in (PARSER_PROMPT, AGENT_PROMPT):
        assert resolved.prompts[name].content_hash == load_prompt(name).content_hash
    assert resolved.describe()["components"] == {
        "parser": "prompts:/parse_request/1",
        "agent": "prompts:/assistant_agent/1",
        "retriever": "hybrid",
        "storyteller": "prompts:/track_story/2",
    }
    with pytest.raises(LookupError, match="prompts:/track_story/3"):
        resolve(client, Candidate.from_key("parse-v1.agent-v1.hybrid.story-v3"))


def test_serving_follows_the_champion_alias_also_when_moved_by_hand(
    settings, client, catalog, taxonomy
) -> None:
    store_retrieval_index(settings, CatalogIndex.build(catalog, taxonomy))
    fresh = load_chat_assistant(settings)
    assert fresh.served["candidate"] == baseline_candidate().key and "is not set" in fresh.served["note"]

    _register(client, "keyword-v1.hybrid.template", "keyword-v1.bm25.template")
    first = load_chat_assistant(settings)
    assert first.served["assistant"] == f"models:/{ASSISTANT_MODEL}/1" and first.served["note"] is None
    assert first.assistant.index.config.components == ("bm25", "tags")

    # What a person does in the MLflow UI: move @champion to version 2. No file changes.
    client.set_registered_model_alias(ASSISTANT_MODEL, CHAMPION, "2")
    second = load_chat_assistant(settings)
    assert second.served["candidate"] == "keyword-v1.bm25.template"
    assert second.served["assistant"] == f"models:/{ASSISTANT_MODEL}/2"
    assert second.assistant.index.config.components == ("bm25",)
    answer = json_turn(second.assistant, Session(), "something calm with piano")
    assert answer["tracks"] and {h["name"] for h in answer["tool_calls"]} == {"search_catalog"}
    assert "Serving models:/setlist-assistant@champion = models:/setlist-assistant/2" in second.description


def test_an_llm_champion_offline_falls_back_and_says_why(client) -> None:
    _register(client, "parse-v1.agent-v1.hybrid.template")
    resolved = resolve_alias(client, CHAMPION, online=False)
    assert resolved.candidate == baseline_candidate()
    assert "parse-v1.agent-v1.hybrid.template, which needs the LLM gateway" in resolved.note


def _per_turn(success: list[float]) -> pl.DataFrame:
    n = len(success)
    return pl.DataFrame(
        {
            "conversation_id": [f"c{i // 2}" for i in range(n)],
            "turn_index": [i % 2 for i in range(n)],
            "turn_success": success,
            "groundedness": [None] * n,
            "safe": [None] * n,
            "latency_ms": [None] * n,
            "cost_usd": [None] * n,
        },
        schema_overrides={c: pl.Float64 for c in ("groundedness", "safe", "latency_ms", "cost_usd")},
    )


def test_the_gate_moves_champion_to_the_winner_and_challenger_to_the_runner_up(client) -> None:
    keys = ["keyword-v1.hybrid.template", "keyword-v1.bm25.template", "keyword-v1.tags.template"]
    _register(client, *keys)
    champion, better, worse = keys
    tables = {
        champion: _per_turn([float(i % 2) for i in range(200)]),
        better: _per_turn([1.0] * 200),
        worse: _per_turn([0.0] * 200),
    }
    report = gate_on_golden_sets(champion, tables, n_resamples=500)
    assert report.promoted == better

    moved = apply_gate(client, champion, report)

    assert resolve_alias(client, CHAMPION).candidate.key == better
    assert resolve_alias(client, CHALLENGER).candidate.key == champion  # the old champion beats the loser
    assert f"models:/{ASSISTANT_MODEL}@{CHAMPION} -> 2" in moved
    tags = {
        v.tags["candidate"]: v.tags.get(GATE_TAG)
        for v in client.search_model_versions(f"name = '{ASSISTANT_MODEL}'")
    }
    assert json.loads(tags[worse]) == {"decision": "keep", "champion": champion}
    assert tags[champion] is None  # the champion is not gated against itself

    # No promotion: the best challenger gets @challenger.
    set_model_alias(client, ASSISTANT_MODEL, CHAMPION, 1)
    report = gate_on_golden_sets(
        champion, {champion: tables[champion], worse: tables[worse]}, n_resamples=500
    )
    apply_gate(client, champion, report)
    assert resolve_alias(client, CHALLENGER).candidate.key == worse


def test_the_runner_up_is_chosen_by_paired_delta_not_by_a_mean_over_other_turns(client) -> None:
    """An LLM candidate replays a sample of the conversations: its mean is over easier or harder turns."""
    keys = ["keyword-v1.hybrid.template", "keyword-v1.bm25.template", "keyword-v1.tags.template"]
    _register(client, *keys)
    champion, full, sampled = keys
    tables = {
        champion: _per_turn([1.0] * 40 + [0.0] * 160),
        full: _per_turn([1.0] * 30 + [0.0] * 170),  # mean 0.15, paired delta -0.05
        sampled: _per_turn([1.0] * 36 + [0.0] * 4).head(
            40
        ),  # the first 20 conversations: mean 0.9, delta -0.1
    }
    report = gate_on_golden_sets(champion, tables, n_resamples=500)
    assert report.promoted is None
    assert report.decisions[sampled].primary.challenger_mean > report.decisions[full].primary.challenger_mean
    apply_gate(client, champion, report)
    assert resolve_alias(client, CHALLENGER).candidate.key == full


def test_chat_loads_the_index_through_the_profiles_io_manager_not_local_files(
    settings, catalog, taxonomy
) -> None:
    """In the gcp profile the index lives in the bucket; an in-memory fsspec bucket stands in for gs:// here
    (the same universal-pathlib code path, no network)."""
    gcp = settings.model_copy(
        update={
            "profile": "gcp",
            "gcp": settings.gcp.model_copy(update={"project": "p", "bucket": "memory://b/p"}),
        }
    )
    store_retrieval_index(gcp, CatalogIndex.build(catalog, taxonomy))
    assert not (settings.assets_dir / "indexes").exists()  # nothing on the local disk
    loaded = load_chat_assistant(gcp)
    assert (
        len(loaded.assistant.index) == catalog.height
        and loaded.served["candidate"] == baseline_candidate().key
    )
