"""The public CPCD protocol (Chaganty et al., SIGIR 2023; the dataset repository's eval.py and metrics.py).

At turn t of a dialog:
- the seeds are the first 3 liked tracks of every earlier turn: what the listener is known to like so far,
  given to a system as feedback before turn t (`feedback` holds the ones new at turn t, from turn t-1);
- the target is the dialog's whole goal playlist minus the seeds, not only the turn's own likes;
- seeds are removed from the ranking, which is then cut at depth 100;
- near-duplicates count once, by the file's `track_cluster_ids` when it has them, else by normalized title and
  artists (`models.eval.retrieval.normalize_track_key`); a seed removes its whole cluster;
- every turn with a non-empty target is scored; hit, recall and MRR (and nDCG, which the reference does not
  compute) at 1, 10, 20 and 100; micro = mean over scored turns, macro = mean over dialogs of the mean over
  their scored turns.

One difference from the reference: it raises when a ranking holds fewer than 100 tracks after filtering (its
corpus has 100k+); here missing positions count as misses, so a small corpus or a short slate is scored too.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.eval.retrieval import RetrievalReport, normalize_track_key, retrieval_report

PROTOCOL_KS = (1, 10, 20, 100)
DEPTH = 100
SEEDS_PER_TURN = 3
PER_TURN_COLUMNS = [f"{m}_at_{k}" for k in PROTOCOL_KS for m in ("hit", "recall", "mrr", "ndcg")]


def dedup_keys(corpus: pl.DataFrame, clusters: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{track_id: key}`: the cluster id when the file gives one, else normalized title+artists, else the id."""
    clusters = clusters or {}
    keys = {}
    for track_id, title, artists in corpus.select("track_id", "title", "artists").iter_rows():
        if track_id in clusters:
            keys[track_id] = f"cluster:{clusters[track_id]}"
        elif title:
            keys[track_id] = normalize_track_key(title, artists or ())
    return keys | {t: f"cluster:{c}" for t, c in clusters.items()}


def with_seeds(turns: pl.DataFrame) -> pl.DataFrame:
    """Adds `feedback` (seeds new at this turn: the first 3 likes of the previous turn) and `seeds` (all so far).

    `turns` needs conversation_id, turn_index and liked; rows come back ordered by conversation and turn.
    """
    ordered = turns.sort("conversation_id", "turn_index")
    feedback, seeds = [], []
    previous_id, so_far, last_liked = None, [], []
    for conversation_id, liked in ordered.select("conversation_id", "liked").iter_rows():
        if conversation_id != previous_id:
            previous_id, so_far, last_liked = conversation_id, [], []
        new = last_liked[:SEEDS_PER_TURN]
        so_far = list(dict.fromkeys([*so_far, *new]))
        feedback.append(new)
        seeds.append(so_far)
        last_liked = list(liked or [])
    return ordered.with_columns(
        feedback=pl.Series(feedback, dtype=pl.List(pl.String)),
        seeds=pl.Series(seeds, dtype=pl.List(pl.String)),
    )


def targets(turns: pl.DataFrame, keys: Mapping[str, str]) -> list[set[str]]:
    """Per turn (of `with_seeds` output, with goal_playlist): the goal playlist's keys minus the seeds' keys."""
    out = []
    for goal, seeds in turns.select("goal_playlist", "seeds").iter_rows():
        seed_keys = {keys.get(t, t) for t in seeds}
        out.append({keys.get(t, t) for t in goal or []} - seed_keys)
    return out


def without_seeds(ranking: Sequence[str], seeds: Sequence[str], keys: Mapping[str, str]) -> list[str]:
    """The ranking minus every track in a seed's cluster, cut after DEPTH distinct keys."""
    seed_keys = {keys.get(t, t) for t in seeds}
    kept, seen = [], set()
    for track_id in ranking:
        key = keys.get(track_id, track_id)
        if key in seed_keys or key in seen:
            continue
        seen.add(key)
        kept.append(track_id)
        if len(kept) == DEPTH:
            break
    return kept


@dataclass(frozen=True, eq=False)
class ProtocolRun:
    results: pl.DataFrame  # one row per scored turn: ids, n_target, ranked (top DEPTH), per-turn metrics
    report: RetrievalReport


def score(turns: pl.DataFrame, rankings: Sequence[Sequence[str]], keys: Mapping[str, str]) -> ProtocolRun:
    """Score one ranking per row of `with_seeds(turns)` (same order); turns with an empty target are left out."""
    if len(rankings) != turns.height:
        raise ValueError(f"{len(rankings)} rankings for {turns.height} turns")
    wanted = targets(turns, keys)
    scored = [i for i, target in enumerate(wanted) if target]
    seeds = turns["seeds"].to_list()
    ranked = [without_seeds(rankings[i], seeds[i], keys) for i in scored]
    rows = turns.filter(pl.Series([bool(t) for t in wanted], dtype=pl.Boolean))
    # Rankings and targets both as keys: near-duplicates are already one item on each side.
    report = retrieval_report(
        [[keys.get(t, t) for t in r] for r in ranked],
        [wanted[i] for i in scored],
        rows["conversation_id"].to_list(),
        ks=PROTOCOL_KS,
    )
    results = rows.select("conversation_id", "turn_index").with_columns(
        n_target=pl.Series([len(wanted[i]) for i in scored], dtype=pl.Int64),
        n_seeds=rows["seeds"].list.len().cast(pl.Int64),
        ranked=pl.Series(ranked, dtype=pl.List(pl.String)),
        **{name: pl.Series(np.asarray(report.per_turn[name], dtype=np.float64)) for name in PER_TURN_COLUMNS},
    )
    return ProtocolRun(results, report)
