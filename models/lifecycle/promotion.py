"""Promotion: after the gate, the aliases move in MLflow, and what serves follows them.

`@champion` moves to the promoted candidate (its registered components first, the assistant last);
`@challenger` moves to the runner-up: the best (by primary mean) of the challengers not promoted and, after a
promotion, the old champion; so it can be chatted with (`setlist chat --alias challenger`) and A/B tested
(`online_experiment`). Every gated version is tagged with its decision. A person moving `setlist-assistant@champion` in the MLflow UI does the
same as the gate's promotion for serving: `models.lifecycle.build.resolve_alias` reads the alias anew.
"""

from mlflow import MlflowClient

from models.eval.gate import GateReport
from models.lifecycle.candidates import AGENT_PROMPT, PARSER_PROMPT, STORY_PROMPT, Candidate
from models.lifecycle.registry import (
    ASSISTANT_MODEL,
    CHALLENGER,
    CHAMPION,
    INTENT_MODEL,
    assistant_version_of,
    set_model_alias,
    tag_gate_decisions,
)


def promote(client: MlflowClient, candidate: Candidate) -> list[str]:
    """Move the champion aliases to the candidate: each of its registered components, then the assistant.

    The assistant's alias moves last: a kill half-way leaves the old champion in place, so the rerun's gate
    decides the same promotion again and moves every alias (each move is idempotent)."""
    version = _assistant_version(client, candidate)
    moved = []
    if candidate.parser_kind == "offline":
        set_model_alias(client, INTENT_MODEL, CHAMPION, candidate.parser_version)
        moved.append(f"models:/{INTENT_MODEL}@{CHAMPION} -> {candidate.parser_version}")
    prompts = {
        PARSER_PROMPT: candidate.parser_version if candidate.parser_kind == "llm" else None,
        AGENT_PROMPT: candidate.agent_version,
        STORY_PROMPT: candidate.story_version,
    }
    for name, prompt_version in prompts.items():
        if prompt_version is not None:
            client.set_prompt_alias(name, CHAMPION, prompt_version)
            moved.append(f"prompts:/{name}@{CHAMPION} -> {prompt_version}")
    set_model_alias(client, ASSISTANT_MODEL, CHAMPION, version)
    return [f"models:/{ASSISTANT_MODEL}@{CHAMPION} -> {version}", *moved]


def apply_gate(client: MlflowClient, champion: str, report: GateReport) -> list[str]:
    """Move the aliases the gate's decisions call for; returns the moves, as `alias -> version` lines."""
    moved = promote(client, Candidate.from_key(report.promoted)) if report.promoted else []
    # The runner-up: the best of the challengers not promoted and, after a promotion, the old champion (delta
    # 0), by the paired primary delta against the old champion. Not by means: an LLM candidate replays a
    # sample of the conversations, so its mean is over other turns than the rest's.
    deltas = {k: d.primary.delta.estimate for k, d in report.decisions.items() if k != report.promoted}
    if report.promoted:
        deltas[champion] = 0.0
    if deltas:
        runner_up = max(deltas, key=deltas.__getitem__)
        version = _assistant_version(client, Candidate.from_key(runner_up))
        set_model_alias(client, ASSISTANT_MODEL, CHALLENGER, version)
        moved.append(f"models:/{ASSISTANT_MODEL}@{CHALLENGER} -> {version} ({runner_up})")
    tag_gate_decisions(client, {k: d.decision for k, d in report.decisions.items()}, champion)
    return moved


def _assistant_version(client: MlflowClient, candidate: Candidate) -> int:
    version = assistant_version_of(client, candidate.key)
    if version is None:
        raise LookupError(f"{candidate.key} has no {ASSISTANT_MODEL} version; evaluate it first")
    return version
