"""Requests- and tokens-per-minute pacing for one event loop."""

from __future__ import annotations

import asyncio
import time


class PerMinuteLimiter:
    """Spaces units evenly at ``per_minute``, allowing a burst of one second's worth.

    A generic cell-rate algorithm: no lock is needed because the check and the update
    run without an ``await`` between them. (aiolimiter would do this, but it is not a
    project dependency.)
    """

    def __init__(self, per_minute: float) -> None:
        self._interval = 60.0 / per_minute
        self._tolerance = 1.0
        self._theoretical_arrival = 0.0

    async def acquire(self, units: float = 1.0) -> None:
        now = time.monotonic()
        self._theoretical_arrival = max(self._theoretical_arrival, now) + units * self._interval
        delay = self._theoretical_arrival - now - self._tolerance
        if delay > 0:
            await asyncio.sleep(delay)
