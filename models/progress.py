"""Progress of long work (embedding a catalog, judging with a local model): done/total, rate, ETA."""

import math
from dataclasses import dataclass

PROGRESS_EVERY_S = 5.0  # how often long work reports


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed_s: float
    verb: str = "done"
    unit: str = "items"
    # Where items differ in cost and come in a known order (embedding sorts texts by length, so the longest
    # come last), the ETA follows the share of the work done (here: characters), not of the items.
    work_done: float | None = None
    work_total: float | None = None

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        if self.work_done and self.work_total is not None:
            return self.elapsed_s * (self.work_total - self.work_done) / self.work_done
        return (self.total - self.done) / self.rate if self.rate > 0 else math.nan

    def __str__(self) -> str:
        rate = f"{self.rate:,.0f}" if self.rate >= 10 else f"{self.rate:.2g}"  # 0.05/s on a CPU-served model
        return (
            f"{self.verb} {self.done:,}/{self.total:,} {self.unit} ({self.done / max(self.total, 1):.0%}), "
            f"{rate} {self.unit}/s, ETA {self.eta_s:,.0f} s"
        )
