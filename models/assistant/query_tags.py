"""Finding taxonomy phrases in a free-text request, to query tag vectors with ("chill piano" -> calm, piano...)."""

import re

from models.taxonomy import normalize_phrase


class PhraseMatcher:
    """One alternation regex over all phrases; longest phrases first so "deep house" wins over "house"."""

    def __init__(self, phrases: dict[str, list[str]]) -> None:
        self._tags_of: dict[str, set[str]] = {}
        for tag, words in phrases.items():
            for phrase in words:
                self._tags_of.setdefault(normalize_phrase(phrase), set()).add(tag)
        alternatives = "|".join(map(re.escape, sorted(self._tags_of, key=len, reverse=True)))
        self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if self._tags_of else None

    def tags(self, text: str) -> set[str]:
        if self._pattern is None:
            return set()
        found = self._pattern.findall(normalize_phrase(text))
        return set().union(*(self._tags_of[phrase] for phrase in found))
