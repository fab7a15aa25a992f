"""Ranking metrics per turn (hit@k, recall@k, MRR@k, nDCG@k) with near-duplicate tracks counted once.

Relevance is binary. A ranking is first collapsed to dedup keys (the first occurrence of a key
keeps its rank, later ones are dropped, so a remaster cannot take a second slot) and the relevant
set is mapped to the same keys. Per-turn scores are numpy arrays, vectorised over turns; they
are NaN for turns with no relevant items, which are excluded from averages and counted.

Averages follow CPCD (Chaganty et al., SIGIR 2023): micro = mean over evaluated turns,
macro = mean over conversations of each conversation's mean over its evaluated turns.
"""

import re
import unicodedata
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.eval.metrics import metric_key

METRICS = ("hit", "recall", "mrr", "ndcg")

# Only version markers are stripped from brackets/dash suffixes, so "Song (Part 1)" and
# "Song (Part 2)" stay distinct while "Song (Remastered 2011)" and "Song - Live" merge.
_VERSION = (
    r"remaster(?:ed)?|live|version|edit|mono|stereo|demo|acoustic|bonus|deluxe|explicit|clean|"
    r"radio|single|extended|re-?recorded|anniversary|feat|ft|featuring|with|\d{4}"
)
_BRACKETED_VERSION = re.compile(rf"[(\[][^()\[\]]*\b(?:{_VERSION})\b[^()\[\]]*[)\]]")
_DASH_VERSION = re.compile(rf"\s[-\u2013\u2014]\s.*\b(?:{_VERSION})\b.*$")
_FEAT_CREDIT = re.compile(r"\s(?:feat|ft|featuring)\b.*$")
_NON_WORD = re.compile(r"[\W_]+")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _BRACKETED_VERSION.sub(" ", text)
    text = _DASH_VERSION.sub("", text)
    text = _FEAT_CREDIT.sub("", text)
    return _NON_WORD.sub(" ", text).strip()


def normalize_track_key(title: str, artists: str | Sequence[str]) -> str:
    """A key equal for near-duplicate releases of one recording: "title|artist1,artist2".

    Casefolds, drops accents, punctuation, version suffixes ("(Remastered 2011)", " - Live"),
    feat. credits and extra whitespace; artist order does not matter.
    """
    names = [artists] if isinstance(artists, str) else list(artists)
    artist_part = ",".join(sorted({a for a in map(_clean, names) if a}))
    return f"{_clean(title) or title.casefold().strip()}|{artist_part}"


def dedup_key_map(
    track_ids: Sequence[str], titles: Sequence[str | None], artists: Sequence[Sequence[str] | None]
) -> dict[str, str]:
    """`{track_id: key}` from catalog columns; tracks without a title keep their own id as key."""
    return {
        tid: normalize_track_key(title, arts or ())
        for tid, title, arts in zip(track_ids, titles, artists, strict=True)
        if title
    }


def relevance_matrix(
    rankings: Sequence[Sequence[Hashable]],
    relevant: Sequence[Collection[Hashable]],
    depth: int,
    dedup_key: Mapping[Hashable, Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_turns, depth) boolean relevance of the deduplicated rankings, and |relevant keys| per turn."""
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevant sets")
    key = dedup_key or {}
    rel = np.zeros((len(rankings), depth), dtype=bool)
    n_relevant = np.empty(len(rankings), dtype=np.int64)
    for i, (ranked, rel_ids) in enumerate(zip(rankings, relevant, strict=True)):
        rel_keys = {key.get(t, t) for t in rel_ids}
        n_relevant[i] = len(rel_keys)
        seen: set[Hashable] = set()
        for t in ranked:
            k = key.get(t, t)
            if k in seen:
                continue
            if k in rel_keys:
                rel[i, len(seen)] = True
            seen.add(k)
            if len(seen) == depth:
                break
    return rel, n_relevant


def turn_scores(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-turn hit/recall/MRR/nDCG at k from a relevance matrix; NaN where nothing is relevant."""
    if not 1 <= k <= rel.shape[1]:
        raise ValueError(f"k={k} must be in [1, {rel.shape[1]}] (the relevance matrix depth)")
    top = rel[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.clip(n_relevant, 1, k) - 1]
    hit = top.any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = {
            "hit": hit.astype(float),
            "recall": top.sum(axis=1) / n_relevant,
            "mrr": np.where(hit, 1.0 / (top.argmax(axis=1) + 1), 0.0),
            "ndcg": (top @ discounts) / ideal,
        }
    excluded = n_relevant == 0
    for values in scores.values():
        values[excluded] = np.nan
    return scores


def micro_macro(values: np.ndarray, conversation_ids: Sequence[Hashable] | np.ndarray) -> tuple[float, float]:
    """Micro (over turns) and macro (over conversations) means, ignoring NaN turns."""
    codes = np.unique(np.asarray(conversation_ids), return_inverse=True)[1].ravel()
    ok = ~np.isnan(values)
    if not ok.any():
        return float("nan"), float("nan")
    sums = np.bincount(codes[ok], weights=values[ok])
    counts = np.bincount(codes[ok])
    has_turns = counts > 0
    return float(values[ok].mean()), float(np.mean(sums[has_turns] / counts[has_turns]))


@dataclass(frozen=True, eq=False)
class RetrievalReport:
    micro: Mapping[str, float]  # e.g. {"ndcg_at_10": 0.41}
    macro: Mapping[str, float]
    per_turn: Mapping[str, np.ndarray]  # paired per-turn values for bootstrap CIs and the gate
    n_turns: int
    n_evaluated: int
    n_excluded: int  # turns with no relevant items
    n_conversations: int

    def to_metrics(self, prefix: str = "retrieval") -> dict[str, float]:
        out = {metric_key(prefix, "micro", name): v for name, v in self.micro.items()}
        out |= {metric_key(prefix, "macro", name): v for name, v in self.macro.items()}
        for name in ("n_turns", "n_evaluated", "n_excluded", "n_conversations"):
            out[metric_key(prefix, name)] = float(getattr(self, name))
        return out


def retrieval_report(
    rankings: Sequence[Sequence[Hashable]],
    relevant: Sequence[Collection[Hashable]],
    conversation_ids: Sequence[Hashable] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    dedup_key: Mapping[Hashable, Hashable] | None = None,
) -> RetrievalReport:
    """All metrics at every k, micro and macro; without conversation ids each turn is its own."""
    rel, n_relevant = relevance_matrix(rankings, relevant, max(ks), dedup_key)
    conv = np.arange(len(rankings)) if conversation_ids is None else np.asarray(conversation_ids)
    if len(conv) != len(rankings):
        raise ValueError(f"{len(conv)} conversation ids for {len(rankings)} turns")
    per_turn: dict[str, np.ndarray] = {}
    for k in sorted(set(ks)):
        per_turn |= {f"{name}_at_{k}": v for name, v in turn_scores(rel, n_relevant, k).items()}
    averages = {name: micro_macro(v, conv) for name, v in per_turn.items()}
    evaluated = n_relevant > 0
    return RetrievalReport(
        micro={name: m[0] for name, m in averages.items()},
        macro={name: m[1] for name, m in averages.items()},
        per_turn=per_turn,
        n_turns=len(rankings),
        n_evaluated=int(evaluated.sum()),
        n_excluded=int((~evaluated).sum()),
        n_conversations=len(np.unique(conv[evaluated])) if evaluated.any() else 0,
    )
