"""Replaying evaluation conversations turn by turn through an assistant, into one row per turn.

A turn may carry the listener's reaction to the previous answer in optional list columns
`liked_track_ids` and `disliked_track_ids`; it is given to the session before the turn's text (for CPCD:
exactly the protocol's seeds, so no target leaks). Offline assistants replay one conversation at a time,
so each turn's latency is its own. LLM assistants replay in lockstep by turn index: each gateway batch
holds one turn of every conversation.
"""

import json
import random

import numpy as np
import polars as pl

from models.assistant.assistant import Assistant, Session, TurnResult

RUN_SCHEMA = pl.Schema(
    {
        "candidate": pl.String,
        "conversation_id": pl.String,
        "turn_index": pl.Int32,
        "text": pl.String,
        "intent": pl.String,  # parsed
        "labels": pl.String,  # TurnLabels as JSON
        "confidence": pl.Float64,
        "parse_failure": pl.String,
        "state": pl.String,  # DialogueState as JSON, after the turn
        "asked_clarification": pl.Boolean,
        "clarification_reason": pl.String,
        "track_ids": pl.List(pl.String),  # the slate shown, best first
        "ranked_track_ids": pl.List(pl.String),  # the ranking the slate heads (rank_depth deep)
        "liked_track_ids": pl.List(pl.String),  # feedback given before the turn
        "disliked_track_ids": pl.List(pl.String),
        "ignored_feedback": pl.List(pl.String),  # feedback ids the catalog lacks
        "response": pl.String,
        "stories": pl.List(pl.String),
        "tool_calls": pl.String,  # JSON list of {name, arguments, latency_ms, result_size, error}
        "latency_ms": pl.Float64,
        "cost_usd": pl.Float64,
        "parser": pl.String,
        "orchestrator": pl.String,
        "storyteller": pl.String,
        "guard_flags": pl.Int32,
    }
)


def replay(
    assistant: Assistant, turns: pl.DataFrame, candidate: str, lockstep: bool, logged: bool = False
) -> pl.DataFrame:
    """`turns` needs conversation_id, turn_index and text (TURN_SCHEMA and the golden sets have them), and
    may have `liked_track_ids` / `disliked_track_ids` (null or missing: no feedback).

    `logged=True`: the turns are a real listener's logged conversation (CPCD), whose next turns answer the
    log's recommendations, not these slates; the sessions do not treat these slates as heard (`Session`)."""
    feedback = [c for c in FEEDBACK if c in turns.columns]
    ordered = turns.sort("conversation_id", "turn_index").with_columns(
        *(pl.lit([], dtype=pl.List(pl.String)).alias(c) for c in FEEDBACK if c not in feedback),
        *(pl.col(c).fill_null([]) for c in feedback),
    )
    conversations = {
        cid: list(group.select("turn_index", "text", *FEEDBACK).iter_rows())
        for (cid,), group in ordered.group_by("conversation_id", maintain_order=True)
    }
    rows = []
    if lockstep:
        sessions = {cid: Session(sees_slates=not logged) for cid in conversations}
        for i in range(max(map(len, conversations.values()), default=0)):
            at_turn = [cid for cid, turns_of in conversations.items() if i < len(turns_of)]
            for cid in at_turn:
                _give_feedback(sessions[cid], *conversations[cid][i][2:])
            results = assistant.respond_batch(
                [sessions[c] for c in at_turn], [conversations[c][i][1] for c in at_turn]
            )
            rows += [
                _row(candidate, cid, conversations[cid][i], r)
                for cid, r in zip(at_turn, results, strict=True)
            ]
    else:
        for cid, turns_of in conversations.items():
            session = Session(sees_slates=not logged)
            for turn in turns_of:
                _give_feedback(session, *turn[2:])
                rows.append(_row(candidate, cid, turn, assistant.respond(session, turn[1])))
    return pl.DataFrame(rows, schema=RUN_SCHEMA).sort("conversation_id", "turn_index")


def sample_conversations(turns: pl.DataFrame, n: int, seed: int = 7) -> pl.DataFrame:
    """Every turn of a seeded sample of `n` conversations (all when there are no more than `n`)."""
    ids = sorted(turns["conversation_id"].unique())
    if len(ids) <= n:
        return turns
    keep = random.Random(seed).sample(ids, n)
    return turns.filter(pl.col("conversation_id").is_in(keep))


FEEDBACK = ("liked_track_ids", "disliked_track_ids")


def _give_feedback(session: Session, liked: list[str], disliked: list[str]) -> None:
    session.like(*liked)
    session.dislike(*disliked)


def _row(candidate: str, conversation_id: str, turn: tuple, result: TurnResult) -> dict:
    """`turn` is (turn_index, text, liked_track_ids, disliked_track_ids) as replayed."""
    return {
        "candidate": candidate,
        "conversation_id": conversation_id,
        "turn_index": turn[0],
        "text": result.text,
        "intent": result.labels.intent.value,
        "labels": result.labels.model_dump_json(exclude_defaults=True),
        "confidence": result.confidence,
        "parse_failure": result.parse_failure,
        "state": json.dumps(result.state),
        "asked_clarification": result.asked_clarification,
        "clarification_reason": result.clarification_reason,
        "track_ids": result.track_ids,
        "ranked_track_ids": result.ranked,
        "liked_track_ids": turn[2],
        "disliked_track_ids": turn[3],
        "ignored_feedback": result.ignored_feedback,
        "response": result.response,
        "stories": result.stories,
        "tool_calls": json.dumps([c.model_dump() for c in result.tool_calls]),
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "parser": result.parser,
        "orchestrator": result.orchestrator,
        "storyteller": result.storyteller,
        "guard_flags": result.guard_flags,
    }


def run_summary(runs: pl.DataFrame) -> dict[str, float | int]:
    """The figures a person looks at first: turns, clarification rate, latency, tool calls, cost."""
    latency = runs["latency_ms"].to_numpy()
    tool_calls = runs["tool_calls"].map_elements(lambda s: len(json.loads(s)), return_dtype=pl.Int64)
    return {
        "turns": runs.height,
        "conversations": runs["conversation_id"].n_unique(),
        "clarification_rate": round(float(runs["asked_clarification"].mean() or 0.0), 4),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 3) if runs.height else 0.0,
        "latency_p95_ms": round(float(np.percentile(latency, 95)), 3) if runs.height else 0.0,
        "tool_calls_per_turn": round(float(tool_calls.mean() or 0.0), 3),
        "parse_failures": int(runs["parse_failure"].is_not_null().sum()),
        "guard_flags": int(runs["guard_flags"].sum()),
        "cost_usd": round(float(runs["cost_usd"].sum()), 6),
    }
