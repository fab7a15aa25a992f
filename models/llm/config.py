"""Gateway settings. The API key is read from the environment only, never from config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, SecretStr, field_validator

API_KEY_ENV_VARS = ("SETLIST_LLM_API_KEY", "OPENAI_API_KEY")


class ModelPrice(BaseModel):
    """USD per one million tokens."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


# List prices when this was written; override per deployment through `GatewayConfig.prices`.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(prompt=0.15, completion=0.60),
    "gpt-4o": ModelPrice(prompt=2.50, completion=10.00),
    "gpt-4.1": ModelPrice(prompt=2.00, completion=8.00),
    "gpt-4.1-mini": ModelPrice(prompt=0.40, completion=1.60),
    "gpt-4.1-nano": ModelPrice(prompt=0.10, completion=0.40),
}


class GatewayConfig(BaseModel):
    """Where and how fast to call an OpenAI-compatible endpoint. ``base_url=None`` means offline."""

    model_config = ConfigDict(frozen=True)

    base_url: str | None = None
    model: str = "gpt-4o-mini"
    timeout_s: PositiveFloat = 60.0
    max_concurrency: PositiveInt = 32
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    max_retries: int = Field(
        default=4, ge=0, description="transport retries: 429, 5xx, timeouts, dropped connections"
    )
    max_validation_retries: int = Field(
        default=2, ge=0, description="re-asks after an answer fails its schema"
    )
    structured_output: Literal["json_schema", "json_object"] = Field(
        default="json_schema",
        description="json_schema (OpenAI structured outputs; a 400/422 falls back to JSON mode by itself) or "
        "json_object from the first request: JSON mode with the schema sent along, for servers that answer "
        "json_schema with another error (llama-cpp-python's answers 500)",
    )
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    cache_path: Path | None = Path(".setlist/llm_cache.sqlite")
    # How much work LLM mode sends: a small model on a CPU answers about one short request a second.
    synthetic_conversations: PositiveInt = Field(
        default=20, description="conversations an LLM generator partition writes"
    )
    judge_items: PositiveInt = Field(
        default=100,
        description="items per label set an LLM judge is calibrated on (a seeded sample); also the most "
        "responses or pairs an LLM judge rates for the curation queue and the preference pairs",
    )
    online_listeners: PositiveInt = Field(
        default=20, description="simulated listeners the online experiment samples when an arm calls the LLM"
    )
    eval_conversations: PositiveInt | None = Field(
        default=12,
        description="curated conversations an LLM candidate replays (a seeded sample; None: all); "
        "the gate pairs it with the champion on those turns",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # empty means offline, like unset
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL such as http://127.0.0.1:8080/v1, got {value!r}")
        return value

    def cost_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1_000_000


def api_key_from_env() -> SecretStr | None:
    for name in API_KEY_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return SecretStr(value)
    return None
