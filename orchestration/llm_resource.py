"""Dagster face of the LLM gateway: settings in, a gateway out, batch stats back as metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from models.llm import BatchStats, GatewayConfig, LLMGateway
from models.llm.config import DEFAULT_PRICES


class LLMGatewayResource(dg.ConfigurableResource):
    """The gateway's settings. The API key is never one of them: it is read from
    ``SETLIST_LLM_API_KEY`` (or ``OPENAI_API_KEY``). Leave ``base_url`` unset to run offline."""

    base_url: str | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = 60.0
    max_concurrency: int = 32
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_retries: int = 4
    max_validation_retries: int = 2
    structured_output: str = "json_schema"
    prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {name: price.model_dump() for name, price in DEFAULT_PRICES.items()},
        description="USD per 1M tokens by model: {'model': {'prompt': ..., 'completion': ...}}",
    )
    cache_path: str | None = ".setlist/llm_cache.sqlite"
    synthetic_conversations: int = 20
    judge_items: int = 100
    online_listeners: int = 20
    eval_conversations: int | None = 12

    _gateway: LLMGateway | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, config: GatewayConfig, cache_path: Path) -> LLMGatewayResource:
        # Same field names on both sides: the resource is the config as Dagster can show and override it.
        return cls(**{**config.model_dump(mode="json"), "cache_path": str(cache_path)})

    def gateway_config(self) -> GatewayConfig:
        return GatewayConfig.model_validate(self.model_dump(exclude={"_gateway"}))

    def get_gateway(self) -> LLMGateway:
        if self._gateway is None:
            self._gateway = LLMGateway(self.gateway_config())
        return self._gateway

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._gateway is not None:
            self._gateway.close()


def batch_stats_metadata(stats: BatchStats) -> dict[str, dg.MetadataValue]:
    """Asset metadata for one gateway batch: numbers as numbers, failures as a table."""
    metadata: dict[str, dg.MetadataValue] = {
        name: dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(float(value))
        for name, value in stats.as_flat_dict().items()
    }
    if stats.failures_by_reason:
        rows = "\n".join(f"| {reason} | {n} |" for reason, n in stats.failures_by_reason.items())
        metadata["llm_failures"] = dg.MetadataValue.md(f"| reason | count |\n|---|---|\n{rows}")
    return metadata
