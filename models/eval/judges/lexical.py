"""A code grader for track relevance: BM25-style word overlap between the conversation and the track.

An honest offline baseline, not a stand-in for an LLM: it only sees shared words (an artist or title
named in the conversation, a tag word the listener used), so it cannot tell a liked track from a
disliked one that the same search returned. Its calibration says how far that gets.
"""

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import bm25s

from models.eval.judges.base import Judgements, RelevanceItem, Verdict

_VERSION = "v1"


def tokens(text: str) -> set[str]:
    """Lower-cased words without English stopwords, as the retriever's BM25 index sees them."""
    return set(bm25s.tokenize([text], stopwords="en", return_ids=False, show_progress=False)[0])


def track_text(item: RelevanceItem) -> str:
    return " ".join([item.title, *item.artists, item.album, *item.tags])


class LexicalRelevanceGrader:
    """Relevant when the IDF-weighted share of the track's words found in the conversation reaches `threshold`."""

    name = "lexical_relevance"

    def __init__(self, threshold: float = 0.2, idf: Mapping[str, float] | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.idf = dict(idf or {})
        self._default_idf = max(self.idf.values(), default=1.0)  # unseen words are as rare as the rarest

    @classmethod
    def fit(cls, texts: Iterable[str], threshold: float = 0.2) -> "LexicalRelevanceGrader":
        """IDF from a corpus of track texts, with BM25's formula (rare words say more)."""
        documents = [tokens(t) for t in texts]
        df = Counter(word for doc in documents for word in doc)
        n = len(documents)
        return cls(threshold, {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()})

    @property
    def version(self) -> str:
        weights = "flat"
        if self.idf:
            digest = hashlib.sha256(repr(sorted(self.idf.items())).encode()).hexdigest()[:8]
            weights = f"idf-{digest}"
        return f"{self.name}@{_VERSION}-t{self.threshold:g}-{weights}"

    def grade(self, item: RelevanceItem) -> Verdict:
        track = tokens(track_text(item))
        if not track:
            return Verdict(False, "the track has no words to match")
        matched = track & tokens(item.conversation)
        weight = self._weight
        share = sum(map(weight, matched)) / sum(map(weight, track))
        relevant = share >= self.threshold
        words = ", ".join(sorted(matched)) or "none"
        sign = ">=" if relevant else "<"
        return Verdict(
            relevant,
            f"track words found in the conversation: {words} ({share:.2f} {sign} {self.threshold:g})",
        )

    def judge(self, items: Sequence[RelevanceItem]) -> Judgements:
        return Judgements([self.grade(item) for item in items])

    def _weight(self, word: str) -> float:
        return self.idf.get(word, self._default_idf)
