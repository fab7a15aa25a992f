"""Structured outputs of the LLM judges (prompt files name them as output_schema).

`reason` comes first so the model writes its reasoning before committing to a verdict.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RelevanceJudgement(_Answer):
    reason: str
    relevant: bool


class ResponseJudgement(_Answer):
    reason: str
    rating: Literal[1, 2, 3, 4, 5]


class PairwiseJudgement(_Answer):
    reason: str
    winner: Literal["first", "second", "tie"]


class RelevanceVerdict(_Answer):
    """The verdict alone, as the answer's first value: its token's logprobs give P(relevant)."""

    relevant: bool


class RatingVerdict(_Answer):
    """The rating alone, as the answer's first value: its token's logprobs give an expected rating."""

    rating: Literal[1, 2, 3, 4, 5]
