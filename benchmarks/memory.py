"""Peak memory of processes a benchmark starts, sampled from a thread (psutil)."""

import threading
from collections.abc import Callable

import psutil

MB = 1024 * 1024


class PeakMemory:
    """The highest RSS of each process `processes()` names, sampled every `interval_s` in a thread, and the
    highest sum over the processes named at one sample (`peak_sum_mb`: a Celery worker with the pool
    processes it has then, which it replaces over a run)."""

    def __init__(self, processes: Callable[[], list[psutil.Process]], interval_s: float = 0.1) -> None:
        self._processes = processes
        self._interval_s = interval_s
        self.peak_mb: dict[int, float] = {}
        self.peak_sum_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            total = 0.0
            for process in self._processes():
                try:
                    rss = process.memory_info().rss / MB
                except psutil.Error:
                    continue
                self.peak_mb[process.pid] = max(self.peak_mb.get(process.pid, 0.0), rss)
                total += rss
            self.peak_sum_mb = max(self.peak_sum_mb, total)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
