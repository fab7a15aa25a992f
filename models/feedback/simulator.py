"""Simulated listeners with latent tastes, served by an assistant, writing the interaction log.

Each listener has a seeded taste: positive weights (a Dirichlet draw) on a few taxonomy nodes that
carry catalog tags (one genre, one mood, sometimes an instrument) and a negative weight on one
disliked genre, plus an activity offset shared by all their logits (some people like more than others:
the between-listener variance CUPED removes). A track's taste match is the sum of the weights of the
nodes it satisfies (`Taxonomy.catalog_tags`), clipped to [-1, 1].

A session: the listener asks for their taste in words ("some calm jazz with piano"); the server answers
with a slate; for each shown track, play ~ logistic(match, position), skip-given-play, like and save
given a completed play are logistic in the match; the listener asks again (a refinement naming another
liked node) with a probability that grows with how well the slate matched, up to `max_turns`. The offline
metric of a slate is its graded nDCG against the listener's latent taste (gain = positive match).

Randomness is drawn per (seed, period, listener, session), so a listener behaves the same whatever the
batch, and both arms of an experiment see the same listeners (common random numbers).
"""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import polars as pl
import scipy.sparse as sp

from models.assistant.assistant import Assistant, Session
from models.assistant.track_text import track_tags
from models.feedback.interactions import INTERACTION_SCHEMA
from models.taxonomy import Taxonomy

TASTE_FACETS = ("genre", "mood", "instrument")
MIN_TRACKS_PER_NODE = 20  # a taste node the catalog can hardly serve would only measure the catalog
START = datetime(2025, 1, 6, tzinfo=UTC)
_OPENERS = ("play some", "I'd like some", "put on some", "find me some", "I'm in the mood for some")

SESSION_SCHEMA = pl.Schema(
    {
        "session_id": pl.String,
        "user_id": pl.String,
        "variant": pl.String,
        "period": pl.String,  # "pre" (before an experiment) or "experiment"
        "requests": pl.Int32,  # turns the listener stayed for: the session length
        "ndcg": pl.Float64,  # mean over the session's slates of graded nDCG vs the latent taste
        "taste_match": pl.Float64,  # mean match of the shown tracks
    }
)


@dataclass(frozen=True)
class BehaviourModel:
    """Logistic coefficients of the listener's reactions; match is in [-1, 1], position 0-based."""

    play_bias: float = -0.3
    play_match: float = 3.0
    position_decay: float = 0.2  # position bias: lower slots are less often examined
    skip_bias: float = 0.8
    skip_match: float = -4.0
    like_bias: float = -3.0
    like_match: float = 4.0
    save_bias: float = -4.0
    save_match: float = 3.5
    continue_bias: float = -0.8
    continue_match: float = 3.0
    activity_sd: float = 0.6  # sd of the per-listener offset added to play, like and save logits
    max_turns: int = 3


@dataclass(frozen=True)
class Listener:
    user_id: str
    weights: np.ndarray  # over ListenerPopulation.nodes
    activity: float


@dataclass(frozen=True, eq=False)
class ListenerPopulation:
    nodes: list[str]  # taste nodes (taxonomy ids)
    names: list[str]  # their listener-facing names
    facets: list[str]
    track_ids: list[str]
    durations: np.ndarray  # seconds, NaN when unknown
    # A track's match depends only on which taste nodes it satisfies, and a catalog has far fewer such
    # patterns than tracks: the simulator works per pattern, so its cost does not grow with the catalog.
    patterns: sp.csr_matrix  # distinct patterns x nodes, 1 where the pattern satisfies the node
    pattern_of: np.ndarray  # each track's row of `patterns`, in catalog order
    listeners: list[Listener]
    seed: int
    _tastes: dict[int, "_Taste"] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def sample(
        cls,
        taxonomy: Taxonomy,
        catalog: pl.DataFrame,
        n: int,
        seed: int,
        behaviour: BehaviourModel = BehaviourModel(),
    ) -> "ListenerPopulation":
        candidates = sorted(n.node_id for n in taxonomy.nodes.values() if n.facet in TASTE_FACETS)
        tag_sets, set_of = _distinct_tag_sets(catalog)
        hits = _satisfies(tag_sets, [taxonomy.catalog_tags(node) for node in candidates])
        tracks_per_set = np.bincount(set_of, minlength=len(tag_sets)).astype(np.float64)
        keep = tracks_per_set @ hits >= MIN_TRACKS_PER_NODE
        nodes = [c for c, k in zip(candidates, keep, strict=True) if k]
        distinct, pattern_of_set = np.unique(hits[:, keep], axis=0, return_inverse=True)
        pattern_of = pattern_of_set.reshape(-1)[set_of] if len(set_of) else np.zeros(0, dtype=np.intp)
        patterns = sp.csr_matrix(distinct.astype(np.float64))
        tracks_per_pattern = np.bincount(pattern_of, minlength=patterns.shape[0]).astype(np.float64)
        counts = tracks_per_pattern @ patterns.toarray()
        facets = [taxonomy.nodes[n].facet for n in nodes]
        rng = np.random.default_rng([seed, 0xA5])
        listeners = [
            _listener(f"listener-{i:05d}", facets, counts, rng, behaviour.activity_sd) for i in range(n)
        ]
        return cls(
            nodes=nodes,
            names=[taxonomy.nodes[n].name for n in nodes],
            facets=facets,
            track_ids=catalog["track_id"].to_list(),
            durations=catalog["duration_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            patterns=patterns,
            pattern_of=pattern_of,
            listeners=listeners,
            seed=seed,
        )

    @property
    def carries(self) -> sp.csr_matrix:
        """Tracks x nodes, 1 where the track satisfies the node."""
        return self.patterns[self.pattern_of]

    def match(self, listener: Listener) -> np.ndarray:
        """Every catalog track's taste match for the listener, in catalog order."""
        return np.clip(self.patterns @ listener.weights, -1.0, 1.0)[self.pattern_of]

    def taste(self, index: int) -> "_Taste":
        """The listener's match per pattern and the best gains the catalog allows, computed once."""
        if index not in self._tastes:
            weights = self.listeners[index].weights
            self._tastes[index] = _Taste(
                np.clip(self.patterns @ weights, -1.0, 1.0), self._tracks_per_pattern
            )
        return self._tastes[index]

    @cached_property
    def position_of(self) -> dict[str, int]:
        return {tid: i for i, tid in enumerate(self.track_ids)}

    @cached_property
    def _tracks_per_pattern(self) -> np.ndarray:
        return np.bincount(self.pattern_of, minlength=self.patterns.shape[0])


class _Taste:
    """One listener's match per pattern, and the catalog's gains best first (for the ideal slate)."""

    def __init__(self, match: np.ndarray, tracks_per_pattern: np.ndarray) -> None:
        self.match = match  # per pattern
        gains = np.clip(match, 0.0, None)
        order = np.argsort(-gains, kind="stable")
        self._gains, self._repeats = gains[order], tracks_per_pattern[order]
        self._reached = np.cumsum(self._repeats)

    def ideal_gains(self, k: int) -> np.ndarray:
        """The k largest gains over the catalog's tracks, as `np.sort(track_gains)[::-1][:k]` lays them out."""
        used = int(np.searchsorted(self._reached, k)) + 1
        top = np.repeat(self._gains[:used], self._repeats[:used])[:k]
        return np.sort(top)[::-1]


def _distinct_tag_sets(catalog: pl.DataFrame) -> tuple[list[list[str]], np.ndarray]:
    """The catalog's distinct tag lists (as listed: sorting 1M lists of strings costs more than it saves),
    and each track's index among them."""
    tags = track_tags(catalog)
    names = tags.explode().drop_nulls().unique()
    # Joined by a character no tag holds, a track's tags are a faithful key of its tag list.
    separator = next(
        chr(c) for c in range(0x1F, 0x110000) if not names.str.contains(chr(c), literal=True).any()
    )
    keyed = pl.DataFrame({"tags": tags}).with_columns(
        set=pl.col("tags").list.join(separator).rank("dense").cast(pl.Int64) - 1
    )
    distinct = keyed.filter(pl.col("set").is_first_distinct()).sort("set")
    return distinct["tags"].to_list(), keyed["set"].to_numpy()


def _satisfies(tag_sets: list[list[str]], wanted: list[set[str]]) -> np.ndarray:
    """Tag sets x wanted sets, True where the tag set holds a wanted tag."""
    names = sorted({tag for tags in tag_sets for tag in tags})
    code = {tag: i for i, tag in enumerate(names)}
    rows = np.repeat(np.arange(len(tag_sets)), [len(tags) for tags in tag_sets])
    cols = np.array([code[tag] for tags in tag_sets for tag in tags], dtype=np.intp)
    held = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(tag_sets), len(names)))
    asked = np.zeros((len(names), len(wanted)))
    for j, tags in enumerate(wanted):
        asked[[code[t] for t in tags if t in code], j] = 1.0
    return np.asarray(held @ asked) > 0


def _listener(
    user_id: str, facets: list[str], counts: np.ndarray, rng: np.random.Generator, sd: float
) -> Listener:
    weights = np.zeros(len(facets))
    chosen = []
    # Popular nodes are more often someone's taste; sqrt keeps the long tail represented.
    for facet, probability in (("genre", 1.0), ("mood", 1.0), ("instrument", 0.6)):
        pool = [i for i, f in enumerate(facets) if f == facet and i not in chosen]
        if pool and rng.random() < probability:
            p = np.sqrt(counts[pool]) / np.sqrt(counts[pool]).sum()
            chosen.append(int(rng.choice(pool, p=p)))
    weights[chosen] = rng.dirichlet(np.ones(len(chosen))) if chosen else []
    disliked = [i for i, f in enumerate(facets) if f == "genre" and i not in chosen]
    if disliked:
        weights[int(rng.choice(disliked))] = -0.6
    return Listener(user_id, weights, float(rng.normal(0.0, sd)))


@dataclass(frozen=True)
class Slate:
    track_ids: list[str]
    intent: str | None  # what the server understood, when it says


class SlateServer(Protocol):
    """What serves slates to listeners: a candidate's assistant, or anything else that ranks tracks."""

    variant: str

    def new_session(self) -> Any: ...

    def serve(self, sessions: Sequence[Any], requests: Sequence[str]) -> list[Slate]: ...


@dataclass
class AssistantServer:
    """An assistant candidate serving listeners: one `respond_batch` per turn across sessions."""

    variant: str
    assistant: Assistant

    def new_session(self) -> Session:
        return Session()

    def serve(self, sessions: Sequence[Session], requests: Sequence[str]) -> list[Slate]:
        results = self.assistant.respond_batch(sessions, requests)
        return [Slate(r.track_ids, r.labels.intent.value) for r in results]


@dataclass(frozen=True, eq=False)
class Simulation:
    events: pl.DataFrame  # INTERACTION_SCHEMA
    sessions: pl.DataFrame  # SESSION_SCHEMA


@dataclass
class _Live:
    listener_index: int
    session_id: str
    rng: np.random.Generator
    state: Any
    clock: datetime
    asked: list[int] = field(default_factory=list)  # taste nodes named so far
    ndcgs: list[float] = field(default_factory=list)
    matches: list[float] = field(default_factory=list)
    requests: int = 0


def simulate(
    population: ListenerPopulation,
    server: SlateServer,
    *,
    sessions_per_listener: int,
    period: str = "experiment",
    listeners: Sequence[int] | None = None,
    behaviour: BehaviourModel = BehaviourModel(),
    start: datetime = START,
) -> Simulation:
    """Sessions of the given listeners (default all) served by `server`, in lockstep by turn."""
    chosen = range(len(population.listeners)) if listeners is None else listeners
    position_of = population.position_of
    period_code = zlib.crc32(period.encode())
    events: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for s in range(sessions_per_listener):
        live = [
            _Live(
                i,
                f"{period}-{population.listeners[i].user_id}-s{s}",
                np.random.default_rng([population.seed, period_code, i, s]),
                server.new_session(),
                start + timedelta(days=s, minutes=i % 1440),
            )
            for i in chosen
        ]
        finished: list[_Live] = []
        for turn in range(behaviour.max_turns):
            if not live:
                break
            requests = [_request(population, x, turn) for x in live]
            slates = server.serve([x.state for x in live], requests)
            still = []
            for x, request, slate in zip(live, requests, slates, strict=True):
                listener = population.listeners[x.listener_index]
                taste = population.taste(x.listener_index)
                shown = np.array([position_of[t] for t in slate.track_ids if t in position_of], dtype=int)
                match = taste.match[population.pattern_of[shown]]  # of the shown tracks, in slate order
                x.requests += 1
                x.ndcgs.append(_ndcg(match, taste.ideal_gains(len(shown))))
                x.matches.extend(match.tolist())
                events += _react(
                    population, x, listener, match, shown, server.variant, turn, request, slate, behaviour
                )
                satisfaction = float(match.mean()) if len(shown) else 0.0
                go_on = _sigmoid(behaviour.continue_bias + behaviour.continue_match * satisfaction)
                (still if x.rng.random() < go_on else finished).append(x)
            live = still
        finished += live
        sessions += [
            {
                "session_id": x.session_id,
                "user_id": population.listeners[x.listener_index].user_id,
                "variant": server.variant,
                "period": period,
                "requests": x.requests,
                "ndcg": float(np.mean(x.ndcgs)),
                "taste_match": float(np.mean(x.matches)) if x.matches else 0.0,
            }
            for x in finished
        ]
    return Simulation(
        # Stable: a like and a save of one play share a timestamp, and their order must not vary between runs.
        events=pl.DataFrame(events, schema=INTERACTION_SCHEMA).sort(
            "timestamp", "session_id", maintain_order=True
        ),
        sessions=pl.DataFrame(sessions, schema=SESSION_SCHEMA).sort("session_id"),
    )


def graded_ndcg(match: np.ndarray, shown: np.ndarray) -> float:
    """nDCG of the shown positions against the best slate of the same length the catalog allows."""
    if len(shown) == 0:
        return 0.0
    gains = np.clip(match, 0.0, None)
    discounts = 1.0 / np.log2(np.arange(2, len(shown) + 2))
    ideal = np.sort(gains)[::-1][: len(shown)] @ discounts
    return float(gains[shown] @ discounts / ideal) if ideal > 0 else 0.0


def _ndcg(shown_match: np.ndarray, ideal_gains: np.ndarray) -> float:
    """`graded_ndcg` from the shown tracks' matches and the catalog's best gains (`_Taste.ideal_gains`)."""
    if len(shown_match) == 0:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, len(shown_match) + 2))
    ideal = ideal_gains @ discounts
    return float(np.clip(shown_match, 0.0, None) @ discounts / ideal) if ideal > 0 else 0.0


def _request(population: ListenerPopulation, x: _Live, turn: int) -> str:
    """Words from the listener's taste: first the strongest liked nodes, later one more liked node."""
    weights = population.listeners[x.listener_index].weights
    liked = [i for i in np.argsort(-weights) if weights[i] > 0]
    fresh = [i for i in liked if i not in x.asked] or liked
    if turn == 0:
        k = min(len(fresh), 1 + int(x.rng.random() < 0.6))
        picked = list(x.rng.choice(fresh, size=k, replace=False, p=_normalised(weights[fresh]))) if k else []
        x.asked += picked
        return _phrase(population, picked, str(x.rng.choice(_OPENERS)))
    node = int(x.rng.choice(fresh, p=_normalised(weights[fresh]))) if fresh else None
    if node is None:
        return "something else please"
    x.asked.append(node)
    name, facet = population.names[node], population.facets[node]
    return f"with {name}" if facet == "instrument" else f"make it more {name}"


def _phrase(population: ListenerPopulation, picked: list[int], opener: str) -> str:
    described = [population.names[i] for i in picked if population.facets[i] != "instrument"]
    instruments = [population.names[i] for i in picked if population.facets[i] == "instrument"]
    words = " ".join(described) or "music"
    return f"{opener} {words}" + (f" with {' and '.join(instruments)}" if instruments else "")


def _react(
    population: ListenerPopulation,
    x: _Live,
    listener: Listener,
    match: np.ndarray,  # of the shown tracks
    shown: np.ndarray,  # their catalog rows
    variant: str,
    turn: int,
    request: str,
    slate: Slate,
    b: BehaviourModel,
) -> list[dict[str, Any]]:
    user = listener.user_id
    base = {
        "session_id": x.session_id,
        "user_id": user,
        "variant": variant,
        "turn_index": turn,
        "request": request,
        "intent": slate.intent,
    }
    rows = []
    for position, track in enumerate(shown):
        m, a = float(match[position]), listener.activity
        track_id = population.track_ids[track]

        def emit(event: str, dwell: float | None = None, position=position, track_id=track_id) -> None:
            rows.append(
                {
                    **base,
                    "event": event,
                    "track_id": track_id,
                    "position": position,
                    "timestamp": x.clock,
                    "dwell_s": dwell,
                }
            )

        emit("impression")
        x.clock += timedelta(seconds=1)
        if x.rng.random() >= _sigmoid(b.play_bias + a + b.play_match * m - b.position_decay * position):
            continue
        length = population.durations[track]
        length = 200.0 if np.isnan(length) else float(length)
        skipped = x.rng.random() < _sigmoid(b.skip_bias + b.skip_match * m)
        dwell = round(float(x.rng.uniform(3.0, min(30.0, length))), 1) if skipped else length
        emit("play", dwell)
        x.clock += timedelta(seconds=dwell)
        if skipped:
            emit("skip", dwell)
            continue
        if x.rng.random() < _sigmoid(b.like_bias + a + b.like_match * m):
            emit("like")
        if x.rng.random() < _sigmoid(b.save_bias + a + b.save_match * m):
            emit("save")
    return rows


def _normalised(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))
