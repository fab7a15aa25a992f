"""What a small local model gets wrong, through the gateway and a judge: invalid JSON, a truncated
answer, an answer in the wrong schema, a 30-second stall. Each bad item is a failed verdict with its
reason after the re-asks and timeouts; every other item is judged; nothing is lost or duplicated."""

from __future__ import annotations

import json
import re
import time

from models.eval.judges import LLMRelevanceJudge, RelevanceItem
from models.eval.judges.llm import label_probabilities
from models.llm import LLMRequest
from models.llm.test_server import FaultPlan, Reply

pytest_plugins = ["conftest_llm"]

GOOD = json.dumps({"reason": "fits the request", "relevant": True})


def _items(n: int) -> list[RelevanceItem]:
    return [RelevanceItem(f"item-{i}", f"user: calm piano #{i}", f"Track {i}") for i in range(n)]


def _by_item(answers: dict[int, list[str]]):
    """Answer each item (by the '#i' in its conversation) from its own list, the last answer repeating."""
    asked: dict[int, int] = {}

    def respond(body):
        i = int(re.search(r"calm piano #(\d+)", json.dumps(body["messages"]))[1])
        position = asked.get(i, 0)
        asked[i] = position + 1
        options = answers.get(i, [GOOD])
        return Reply(content=options[min(position, len(options) - 1)])

    return respond


def test_bad_answers_fail_their_item_with_a_reason_and_nothing_else(start_server, make_gateway) -> None:
    answers = {
        1: ["{not json", "still {not json", "{nope"],  # invalid JSON through every re-ask
        2: [json.dumps({"verdict": "yes"})] * 3,  # valid JSON, wrong schema, every time
        3: ["{oops", GOOD],  # invalid once, then corrected after the re-ask
    }
    # The 5th request (item 4's: one in flight, first asks in item order, re-asks queue behind them)
    # stalls for 30 s (the server's timeout fault); the gateway gives up at its timeout.
    server = start_server(
        responder=_by_item(answers), faults=FaultPlan(script=["ok"] * 4 + ["timeout"], timeout_sleep_s=30)
    )
    gateway = make_gateway(server, max_concurrency=1, timeout_s=1.5, max_retries=0, max_validation_retries=2)
    started = time.perf_counter()
    judgements = LLMRelevanceJudge(gateway).judge(_items(6))
    assert time.perf_counter() - started < 20  # the stall cost one timeout, not 30 s

    verdicts = judgements.verdicts
    assert len(verdicts) == 6
    assert [v.failure for v in verdicts] == [None, "invalid_output", "invalid_output", None, "timeout", None]
    assert "Invalid JSON" in verdicts[1].reason and "relevant" in verdicts[2].reason  # what was wrong
    assert [v.value for v in verdicts if v.ok] == [True, True, True]
    stats = judgements.llm_stats
    assert stats.failed == 3 and stats.failures_by_reason == {"invalid_output": 2, "timeout": 1}


def test_truncated_answer_is_a_failure_with_its_reason(start_server, make_gateway) -> None:
    server = start_server(responder=_by_item({}), faults=FaultPlan(script=["ok", "truncated", "ok"]))
    verdicts = LLMRelevanceJudge(make_gateway(server, max_concurrency=1)).judge(_items(3)).verdicts
    assert [v.failure for v in verdicts] == [None, "truncated", None]
    assert verdicts[1].value is None and "max_tokens" in verdicts[1].reason


def test_a_422_for_json_schema_falls_back_to_json_mode_with_the_schema(start_server, make_gateway) -> None:
    # A server that validates response_format as text/json_object only may answer 422 (FastAPI's default).
    server = start_server(reject_json_schema=True, reject_status=422, responder=_by_item({}))
    verdicts = LLMRelevanceJudge(make_gateway(server, max_concurrency=1)).judge(_items(2)).verdicts
    assert all(v.ok for v in verdicts)
    # Both items asked with json_schema before the first 422 came back; each retried once in JSON mode.
    formats = [body["response_format"] for body in server.bodies]
    assert [f["type"] for f in formats] == ["json_schema", "json_schema", "json_object", "json_object"]
    # The schema rides along, so servers whose JSON mode takes one (llama.cpp) constrain decoding to it.
    assert all(f["schema"]["required"] == ["reason", "relevant"] for f in formats[2:])


def test_logprobs_come_back_with_the_answer_and_give_a_probability(start_server, make_gateway) -> None:
    def with_logprobs(_body):
        return Reply(content=json.dumps({"relevant": False}))

    server = start_server(responder=with_logprobs)
    result = make_gateway(server).map(
        [LLMRequest([{"role": "user", "content": "x"}], params={"logprobs": True, "top_logprobs": 5})]
    )[0]
    assert result.ok and result.logprobs is None  # the test server sends none: the score is simply absent
    assert server.bodies[0]["logprobs"] is True

    positions = [
        {"token": '{"', "logprob": -0.01, "top_logprobs": []},
        {"token": "relevant", "logprob": -0.01, "top_logprobs": []},
        {
            "token": " false",
            "logprob": -0.4,
            "top_logprobs": [
                {"token": " false", "logprob": -0.4},
                {"token": " true", "logprob": -1.1},
                {"token": " null", "logprob": -3.0},
            ],
        },
    ]
    probabilities = label_probabilities(positions, ("true", "false"))
    assert probabilities["true"] + probabilities["false"] == 1
    assert probabilities["false"] > probabilities["true"] > 0.3
    assert label_probabilities(None, ("true", "false")) is None


def test_json_object_mode_from_the_first_request_sends_the_schema(start_server, make_gateway) -> None:
    # llama-cpp-python's server answers json_schema with a 500, which is retried, not a signal to fall
    # back: `setlist llm serve` sets SETLIST_LLM__STRUCTURED_OUTPUT=json_object instead.
    server = start_server(reject_json_schema=True, reject_status=500, responder=_by_item({}))
    gateway = make_gateway(server, max_concurrency=1, structured_output="json_object")
    verdicts = LLMRelevanceJudge(gateway).judge(_items(2)).verdicts
    assert all(v.ok for v in verdicts)
    assert [b["response_format"]["type"] for b in server.bodies] == ["json_object", "json_object"]
    assert server.bodies[0]["response_format"]["schema"]["required"] == ["reason", "relevant"]
