"""Content-addressed response cache in SQLite, safe for several processes at once."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""
_LOOKUP_CHUNK = 500  # stays under SQLite's bound-parameter limit


def cache_key(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    schema: Mapping[str, Any] | None,
    tools: Sequence[Mapping[str, Any]] | None,
    prompt_version: str,
) -> str:
    """sha256 over everything that changes the answer; key order does not matter."""
    material = {
        "model": model,
        "messages": messages,
        "params": params,
        "schema": schema,
        "tools": tools,
        "prompt_version": prompt_version,
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


class ResponseCache:
    """Successful responses by key. WAL lets readers run beside one writer; writes are short
    ``INSERT OR IGNORE`` transactions, so racing processes agree on the first answer stored."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used from whichever thread runs the batch; the lock serialises them.
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, payload FROM responses WHERE key IN ({marks})", chunk)
                found.update((key, json.loads(payload)) for key, payload in rows)
        return found

    def put_many(self, entries: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> None:
        """Store ``(key, model, prompt_version, payload)`` rows in one transaction."""
        rows = [(key, model, version, json.dumps(payload)) for key, model, version, payload in entries]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO responses (key, model, prompt_version, payload) VALUES (?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
