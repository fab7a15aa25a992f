"""Dropped conversations, kept with the stage and reason that dropped them (nothing is silently lost)."""

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from models.labels import TURN_SCHEMA, Conversation, conversations_to_frame

REJECT_SCHEMA = pl.Schema(
    {
        **TURN_SCHEMA,
        "stage": pl.String,  # "generation", "dedup", "consistency", "length", "language", "leakage"
        "reason": pl.String,  # a stable code, e.g. "near_duplicate", "label_mismatch", "timeout"
        "detail": pl.String,  # what a person needs to judge it: the matched item, the mismatch
    }
)


@dataclass(frozen=True)
class Rejected:
    conversation: Conversation
    stage: str
    reason: str
    detail: str = ""


def rejects_to_frame(rejected: Sequence[Rejected]) -> pl.DataFrame:
    """One row per turn of each rejected conversation, with why it was dropped."""
    frame = conversations_to_frame([r.conversation for r in rejected])
    per_turn = {
        column: [getattr(r, column) for r in rejected for _ in r.conversation.turns]
        for column in ("stage", "reason", "detail")
    }
    return frame.with_columns(pl.Series(name, values, dtype=pl.String) for name, values in per_turn.items())
