"""The output guard: an answer that repeats the system prompt is replaced, and the replacement flagged.

Catalog text and user turns are data, but a model can still be talked into quoting its instructions;
this check does not trust the prompt to have prevented it. A leak is any run of `SHINGLE` words of a
protected text appearing in the answer (case and whitespace ignored).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

SHINGLE = 8
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Guarded:
    text: str
    flagged: bool


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.casefold())
    return {tuple(words[i : i + SHINGLE]) for i in range(max(len(words) - SHINGLE + 1, 0))}


class OutputGuard:
    def __init__(self, protected: Sequence[str]) -> None:
        self._shingles = set().union(set(), *map(_shingles, protected))

    def leaks(self, text: str) -> bool:
        return not self._shingles.isdisjoint(_shingles(text))

    def check(self, text: str, replacement: str) -> Guarded:
        return Guarded(replacement, True) if self.leaks(text) else Guarded(text, False)
