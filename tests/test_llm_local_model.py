"""The real model behind llama.cpp's server: one judgement and one parse, valid structured output.

`.ci/run` installs the runtime and the model (`setlist llm install`) into the default home before the
tests, so in CI a missing model fails this test; elsewhere it is skipped until `setlist llm install` ran.
"""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import IN_CI

from models.assistant.llm_parser import LLMParser
from models.eval.judges import LLMRelevanceJudge, RelevanceItem
from models.eval.judges.schemas import RelevanceJudgement
from models.labels import FACETS, TurnLabels
from models.llm import GatewayConfig, LLMGateway
from models.llm.local_server import (
    QWEN_CODER_1_5B,
    ServerConfig,
    runtime_problem,
    start_server,
    stop_server,
)
from models.taxonomy import Taxonomy
from orchestration.settings import Settings


def _installed_model() -> Path:
    # The default home, where `.ci/run` (or a developer's `setlist llm install`) put the model.
    path = Settings().local_llm_dir / "models" / QWEN_CODER_1_5B.filename
    problem = runtime_problem() or (None if path.exists() else f"{path} is missing")
    if problem:
        if IN_CI:
            pytest.fail(
                f"the local model is not installed ({problem}); .ci/run must run `setlist llm install`"
            )
        pytest.skip(f"local model not installed: {problem}")
    return path


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMGateway]:
    from test_llm_local_server import free_port

    model_path = _installed_model()
    work = tmp_path_factory.mktemp("local-llm")
    # The parser prompt alone is about 4,000 tokens (rules, glossary, schema): the default 8,192 context.
    config = ServerConfig(model_path, QWEN_CODER_1_5B.name, port=free_port())
    state = start_server(config, work / "server.json", work / "server.log")
    gateway = LLMGateway(
        GatewayConfig(
            base_url=state.base_url,
            model=QWEN_CODER_1_5B.name,
            max_concurrency=state.slots,
            structured_output="json_object",  # as `setlist llm serve` exports
            timeout_s=900,  # a parse prompt of thousands of tokens: minutes on a busy 2-core machine
            cache_path=None,
        )
    )
    yield gateway
    gateway.close()
    assert stop_server(work / "server.json") is not None


def test_one_judgement_is_valid_structured_output(local_gateway: LLMGateway) -> None:
    item = RelevanceItem(
        "smoke-1",
        "user: calm piano music for reading",
        "Gymnopédie No. 1",
        ("Erik Satie",),
        tags=("genre/classical", "instrument/piano", "mood/calm"),
    )
    judgements = LLMRelevanceJudge(local_gateway).judge([item])
    (verdict,) = judgements.verdicts
    assert verdict.ok, verdict.reason
    assert isinstance(verdict.value, bool) and verdict.reason
    assert judgements.llm_stats is not None and judgements.llm_stats.completion_tokens > 0
    # The schema the prompt names is what the model's JSON validated against.
    assert LLMRelevanceJudge(local_gateway).schema is RelevanceJudgement


def taxonomy_slice(taxonomy: Taxonomy, names: set[str], per_facet: int = 6) -> Taxonomy:
    """The first nodes of each facet and those named `names`, links to nodes outside cut."""
    keep = {n for n in taxonomy.nodes if n.rpartition("/")[2] in names}
    for facet in FACETS:
        keep |= set(sorted(n for n in taxonomy.nodes if n.startswith(f"{facet}/"))[:per_facet])
    return Taxonomy(
        {
            key: replace(
                node,
                parent_id=node.parent_id if node.parent_id in keep else None,
                implies=tuple(i for i in node.implies if i in keep),
            )
            for key, node in taxonomy.nodes.items()
            if key in keep
        }
    )


@pytest.mark.timeout(1800)
def test_one_parse_is_valid_labels(local_gateway: LLMGateway, taxonomy) -> None:
    # A 31-node slice of the taxonomy: its glossary and schema make a prompt of about 2,800 tokens instead of
    # 5,200 (the same parser and prompt file; the full taxonomy's parses are measured in the README), which
    # halves the three minutes the full prompt takes on 2 idle cores.
    sliced = taxonomy_slice(taxonomy, {"calm", "piano", "classical"})
    (parsed,) = LLMParser(local_gateway, sliced).parse_batch(["some calm piano music for reading"], [[]])
    assert parsed.failure is None, parsed.failure
    assert isinstance(parsed.labels, TurnLabels)
    assert 0 <= parsed.confidence <= 1
    nodes = {n for values in parsed.labels.slots.nodes().values() for n in values}
    assert nodes <= set(sliced.nodes)
