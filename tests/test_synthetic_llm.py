"""The LLM generator against the project's OpenAI-compatible test server on loopback."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import polars as pl
import pytest

from models.labels import TurnLabels
from models.llm.test_server import FaultPlan
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.llm_generator import LLMGenerator
from models.synthetic.postprocess import postprocess
from models.taxonomy import Taxonomy

pytest_plugins = ["conftest_llm"]

N = 12


def _requested(body: dict[str, Any]) -> list[TurnLabels]:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    block = re.search(r"<labels>\s*(.*?)\s*</labels>", user, re.S)
    assert block, "the prompt carries the requested labels"
    return [TurnLabels.model_validate(item) for item in json.loads(block.group(1))]


def _writer(taxonomy: Taxonomy, catalog: pl.DataFrame, flip_intent: bool = False):
    """A responder that writes grammar text for the requested labels (the "LLM" of these tests)."""
    grammar = GrammarGenerator(taxonomy, catalog)
    rng = random.Random(0)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        turns = []
        for labels in _requested(body):
            intent = "chitchat" if flip_intent else labels.intent.value
            turns.append(
                {
                    "text": grammar.realize(labels, rng),
                    "intent": intent,
                    "slots": labels.slots.model_dump(mode="json"),
                }
            )
        return {"turns": turns}

    return respond


def test_well_formed_answers_become_labelled_conversations(
    start_server, make_gateway, taxonomy, catalog
) -> None:
    server = start_server(responder=_writer(taxonomy, catalog))
    generator = LLMGenerator(taxonomy, catalog, make_gateway(server))

    generation = generator.generate(N, seed=3)

    assert len(generation.conversations) == N and not generation.rejected
    assert all(c.generator == "llm" and c.version == generator.version for c in generation.conversations)
    assert generation.llm_stats is not None and generation.llm_stats.prompt_tokens > 0
    assert generation.llm_stats.cost_usd > 0
    assert "Persona:" in server.bodies[0]["messages"][-1]["content"]
    # What the LLM wrote passes the same filters as the grammar's text.
    checked = postprocess(generation.conversations, taxonomy)
    assert not [r for r in checked.rejected if r.stage == "consistency"]


def test_malformed_json_is_retried(start_server, make_gateway, taxonomy, catalog) -> None:
    server = start_server(responder=_writer(taxonomy, catalog), faults=FaultPlan(script=["malformed"] * 4))
    generation = LLMGenerator(taxonomy, catalog, make_gateway(server, max_concurrency=1)).generate(N, seed=3)

    assert len(generation.conversations) == N
    assert server.request_count == N + 4  # each malformed answer was re-asked once


def test_off_schema_answers_are_rejected_after_retries(start_server, make_gateway, taxonomy, catalog) -> None:
    server = start_server(responder=lambda _body: {"turns": [{"text": "hi"}]})
    generation = LLMGenerator(taxonomy, catalog, make_gateway(server, max_validation_retries=1)).generate(
        N, seed=3
    )

    assert not generation.conversations and len(generation.rejected) == N
    assert {r.reason for r in generation.rejected} == {"invalid_output"}
    assert all(r.stage == "generation" and r.detail for r in generation.rejected)
    assert server.request_count == 2 * N


def test_answers_with_other_labels_are_rejected(start_server, make_gateway, taxonomy, catalog) -> None:
    server = start_server(responder=_writer(taxonomy, catalog, flip_intent=True))
    generation = LLMGenerator(taxonomy, catalog, make_gateway(server)).generate(N, seed=3)

    mismatched = [r for r in generation.rejected if r.reason == "label_mismatch"]
    # Plans whose every turn is chitchat anyway match by chance; everything else is rejected.
    assert mismatched and len(mismatched) + len(generation.conversations) == N
    assert all("intent chitchat != requested" in r.detail for r in mismatched)
    assert all(r.conversation.turns[0].labels.intent.value != "" for r in mismatched)


def test_offline_gateway_says_what_to_configure(taxonomy, catalog) -> None:
    from models.llm import LLMGateway, LLMUnavailable

    with pytest.raises(LLMUnavailable, match="base_url"):
        LLMGenerator(taxonomy, catalog, LLMGateway()).generate(2, seed=1)
