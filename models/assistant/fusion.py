"""Combining ranked lists: reciprocal-rank fusion, and an artist cap so one artist cannot fill a slate."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    track_id: str
    score: float
    artist_id: str | None = None
    ranks: Mapping[str, int] = field(default_factory=dict)  # component -> 1-based rank, for explanations


def fuse(rankings: Mapping[str, Sequence[Hit]], k: int = 60) -> list[Hit]:
    """Reciprocal-rank fusion (Cormack et al. 2009): score = sum over lists of 1 / (k + rank)."""
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    first: dict[str, Hit] = {}
    for component, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            scores[hit.track_id] = scores.get(hit.track_id, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(hit.track_id, {})[component] = rank
            first.setdefault(hit.track_id, hit)
    # sorted() is stable, so equal scores keep first-seen order and results are deterministic
    order = sorted(scores, key=scores.__getitem__, reverse=True)
    return [Hit(tid, scores[tid], first[tid].artist_id, ranks[tid]) for tid in order]


def diversify(hits: Sequence[Hit], max_per_artist: int) -> list[Hit]:
    """Keep the ranking, dropping hits of an artist already shown `max_per_artist` times (unknown artists pass)."""
    shown: dict[str, int] = {}
    kept = []
    for hit in hits:
        if hit.artist_id is not None:
            if shown.get(hit.artist_id, 0) >= max_per_artist:
                continue
            shown[hit.artist_id] = shown.get(hit.artist_id, 0) + 1
        kept.append(hit)
    return kept
