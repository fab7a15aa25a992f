"""Per-batch accounting: calls, cache hits, tokens, cost, latency and failures."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.llm.request import LLMResult


@dataclass(frozen=True)
class BatchStats:
    requests: int
    succeeded: int
    failed: int
    cache_hits: int
    api_calls: int  # chat calls the gateway made, re-asks after invalid output included
    http_requests: int  # what went over the wire, the openai client's own retries included
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_p50_s: float
    latency_p95_s: float
    wall_s: float
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_results(
        cls,
        results: Sequence[LLMResult],
        *,
        api_calls: int,
        http_requests: int,
        cost_usd: float,
        wall_s: float,
    ) -> BatchStats:
        paid = [r for r in results if not r.cached]
        latencies = [r.latency_s for r in paid if r.attempts]
        failures = Counter(r.failure for r in results if r.failure is not None)
        return cls(
            requests=len(results),
            succeeded=len(results) - sum(failures.values()),
            failed=sum(failures.values()),
            cache_hits=sum(r.cached for r in results),
            api_calls=api_calls,
            http_requests=http_requests,
            prompt_tokens=sum(r.prompt_tokens for r in paid),
            completion_tokens=sum(r.completion_tokens for r in paid),
            cost_usd=cost_usd,
            latency_p50_s=_quantile(latencies, 0.50),
            latency_p95_s=_quantile(latencies, 0.95),
            wall_s=wall_s,
            failures_by_reason=dict(sorted(failures.items())),
        )

    def as_flat_dict(self, prefix: str = "llm_") -> dict[str, float | int]:
        """One level of numbers, for Dagster metadata or ``mlflow.log_metrics``."""
        flat: dict[str, float | int] = {
            f"{prefix}{name}": value for name, value in vars(self).items() if name != "failures_by_reason"
        }
        flat.update({f"{prefix}failures_{reason}": n for reason, n in self.failures_by_reason.items()})
        return flat


def _quantile(values: Sequence[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(q * 100) - 1]
