"""What callers send to the gateway and what they get back, one per request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One chat completion. ``prompt_version`` is part of the cache key, so bumping it re-asks."""

    messages: Sequence[Mapping[str, Any]]
    output_schema: type[BaseModel] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    tools: Sequence[Mapping[str, Any]] | None = None
    prompt_version: str = "unversioned"
    id: str | None = None
    model: str | None = None  # None: the gateway's configured model


@dataclass(frozen=True, slots=True)
class LLMResult:
    """The answer to one request, or the reason there is none (``failure``, with a scrubbed ``detail``)."""

    index: int
    request_id: str | None
    content: str | None = None
    output: BaseModel | None = None
    tool_calls: list[dict[str, Any]] | None = None
    # Per answer token {"token", "logprob", "top_logprobs"}, when the request asked for logprobs.
    logprobs: list[dict[str, Any]] | None = None
    failure: str | None = None
    detail: str | None = None
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None


class LLMUnavailable(RuntimeError):
    """Raised when the gateway has no endpoint configured (offline mode)."""
