"""The assistant's tools, defined once: pydantic argument models (whose JSON schemas are the OpenAI
tool definitions) and a `Toolbox` that runs them over a `CatalogIndex` and records every call.

The offline planner and the LLM agent call the same `Toolbox.run`. The conversation's constraint
(exclusions from earlier turns, excluded artists, seeds) is bound to the toolbox and applied to every
call, so a model that forgets it in its arguments still cannot show an excluded track. So is its
`Steering` (older words, named artists, likes, dislikes, tracks already shown): every ranking tool fuses
the retriever's candidates with what the listener liked and named, then shapes the result.

Constraints are hard only where the catalog can check them: a genre or mood no track carries (CPCD has no
tags at all) is a search word instead of a filter, a duration bound on a catalog without durations is
dropped, and a combination nothing satisfies is relaxed to ranking by all its words (`ConstraintMatcher`
says which, so the answer can say so).
"""

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, reduce
from typing import Any

import numpy as np
import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.assistant.co_likes import CoLikes
from models.assistant.filters import Filters
from models.assistant.fusion import Hit
from models.assistant.retrieval import CatalogIndex
from models.assistant.stories import card_tags, describe_constraint
from models.labels import Constraint
from models.taxonomy import CATALOG_COLUMN, FACETS, Taxonomy

CARD_FACETS = ("genres", "moods", "instruments")  # a card's tag columns (prefixes: taxonomy.CATALOG_COLUMN)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrackFilters(_Args):
    require: list[str] = Field(
        default=[], description="taxonomy node ids ('mood/calm'); a track matches one node per facet named"
    )
    exclude: list[str] = Field(default=[], description="taxonomy node ids no track may carry")
    min_duration_s: float | None = None
    max_duration_s: float | None = None

    def to_constraint(self) -> Constraint:
        required: dict[str, list[str]] = {}
        for node in self.require:
            facet = node.split("/", 1)[0]
            if facet not in FACETS:
                raise ValueError(
                    f"{node!r} is not a taxonomy node id ('<facet>/<name>', facet one of {FACETS})"
                )
            required.setdefault(facet, []).append(node)
        return Constraint(
            required=required,
            excluded=self.exclude,
            min_duration_s=self.min_duration_s,
            max_duration_s=self.max_duration_s,
        )


class SearchCatalog(_Args):
    """Rank catalog tracks for a free-text query within filters (the conversation's constraints always apply)."""

    query: str
    filters: TrackFilters = TrackFilters()


class FilterTracks(_Args):
    """Count the tracks that meet filters and list the first few (catalog order, no ranking)."""

    filters: TrackFilters


class GetTrack(_Args):
    """A track's metadata: title, artists, album, duration, genres, moods, instruments."""

    track_id: str


class SimilarTracks(_Args):
    """Tracks that sound like the given one (tag similarity), within the conversation's constraints."""

    track_id: str


class ExplainTrack(_Args):
    """Which of the listener's requested taxonomy nodes a track carries, with its metadata."""

    track_id: str


TOOLS: dict[str, type[_Args]] = {
    "search_catalog": SearchCatalog,
    "filter_tracks": FilterTracks,
    "get_track": GetTrack,
    "similar_tracks": SimilarTracks,
    "explain_track": ExplainTrack,
}


def tool_definitions() -> list[dict[str, Any]]:
    """The tools in OpenAI's function-calling format (strict JSON schemas)."""
    return [dict(openai.pydantic_function_tool(model, name=name)) for name, model in TOOLS.items()]


class ToolCallRecord(BaseModel):
    name: str
    arguments: dict[str, Any]
    latency_ms: float
    result_size: int  # tracks in the result
    error: str | None = None


def track_card(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the assistant (and an LLM) may know about a track: catalog metadata only."""
    return {
        "track_id": row["track_id"],
        "artist_id": row["artist_id"],
        "album_id": row["album_id"],
        "title": row["title"],
        "artists": row["artists"] or [],
        "album": row["album"],
        "duration_s": row["duration_s"],
        **{column: row[column] or [] for column in CARD_FACETS},
    }


def _by_prefix(tags: set[str]) -> dict[str, frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for tag in tags:
        prefix = tag.split("---", 1)[0]
        if prefix in CATALOG_COLUMN:
            groups.setdefault(prefix, set()).add(tag)
    return {prefix: frozenset(group) for prefix, group in groups.items()}


class ConstraintMatcher:
    """A constraint as catalog masks: the exact satisfying set, and the part `Filters` can express.

    `Filters` requires one any-of group per tag prefix, but a constraint facet may span prefixes
    (activity/study implies moods and genres) or share one (era tags are genre tags). Such groups
    are left out of the coarse filters and enforced by the exact mask after ranking.

    Only what the catalog can check is hard: a required facet whose tags no track carries is soft
    (`soft_nodes`: ranked by its words), duration bounds on a catalog without durations are dropped
    (`ignored_duration`), and when the hard facets together match nothing they all turn soft (`relaxed`).
    Tracks the listener rated (`rated`: liked or disliked) are never shown again, so a combination only
    they satisfy is relaxed too: "more like those" after liking the only two matches gets the closest.
    """

    def __init__(
        self,
        index: CatalogIndex,
        taxonomy: Taxonomy,
        constraint: Constraint,
        excluded_artist_ids: Sequence[str] = (),
        rated: Sequence[str] = (),
    ) -> None:
        self.index, self.taxonomy, self.constraint = index, taxonomy, constraint
        required_tags = {
            facet: set().union(*(taxonomy.catalog_tags(n) for n in nodes))
            for facet, nodes in constraint.required.items()
        }
        hard = {facet: tags for facet, tags in required_tags.items() if index.mask_any(tags).any()}
        self.ignored_duration = (
            constraint.min_duration_s is not None or constraint.max_duration_s is not None
        ) and not index.has_durations
        excluded_tags = set().union(set(), *(taxonomy.catalog_tags(n) for n in constraint.excluded))
        self.exclusions = Filters(
            exclude=_by_prefix(excluded_tags),
            exclude_artist_ids=frozenset(excluded_artist_ids),
            exclude_track_ids=frozenset([*constraint.exclude_track_ids, *constraint.seed_track_ids, *rated]),
            min_duration_s=None if self.ignored_duration else constraint.min_duration_s,
            max_duration_s=None if self.ignored_duration else constraint.max_duration_s,
        )
        self.required_tags = hard
        self.mask = self._exact_mask()
        self.relaxed = bool(hard) and not self.mask.any()
        # relaxed because the listener rated every match: the answer says "nothing else"
        self.rated_every_match = self.relaxed and any(
            all(tags & card_tags(track_card(row)) for tags in hard.values())
            for row in map(index.get_track, rated)
            if row
        )
        if self.relaxed:
            self.required_tags = {}
            self.mask = self._exact_mask()
        self.soft_nodes = [
            n
            for facet, nodes in constraint.required.items()
            if facet not in self.required_tags
            for n in nodes
        ]

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def coarse_filters(self) -> Filters:
        groups = [_by_prefix(tags) for tags in self.required_tags.values()]
        prefixes = [p for g in groups for p in g]
        require = {
            prefix: tags
            for g in groups
            if len(g) == 1
            for prefix, tags in g.items()
            if prefixes.count(prefix) == 1
        }
        return self.exclusions.model_copy(update={"require": require})

    def keeps(self, track_id: str) -> bool:
        return bool(self.mask[self.index.positions([track_id])[0]])

    def notes(self) -> list[str]:
        """What the answer should say about constraints it could not apply as asked."""
        notes = []
        if self.relaxed:
            other = " else" if self.rated_every_match else ""
            notes.append(f"nothing{other} in the catalog matches all of that, so these are the closest")
        elif self.soft_nodes:
            soft = {f: [n for n in ns if n in self.soft_nodes] for f, ns in self.constraint.required.items()}
            names = describe_constraint(Constraint(required=soft), self.taxonomy)
            notes.append(f"the catalog has no tags for {names}, so I searched for the words instead")
        if self.ignored_duration:
            notes.append("the catalog has no track durations, so I could not check the length")
        return notes

    def matched_nodes(self, card: Mapping[str, Any]) -> list[str]:
        tags = card_tags(card)
        return [
            n
            for nodes in self.constraint.required.values()
            for n in nodes
            if self.taxonomy.catalog_tags(n) & tags
        ]

    def _exact_mask(self) -> np.ndarray:
        everything = np.ones(len(self.index), dtype=bool)
        keep = self.index.mask(self.exclusions)
        keep = everything.copy() if keep is None else keep
        for tags in self.required_tags.values():
            per_prefix = [self.index.mask(Filters(require={p: t})) for p, t in _by_prefix(tags).items()]
            keep &= reduce(np.logical_or, per_prefix, np.zeros(len(self.index), dtype=bool))
        return keep


SIMILAR_TO_LIKED = 10  # "similar" ranks against the centroid of this many most recent likes
# `Toolbox._steer`'s weighted RRF: the listener's words and the artists they name lead, what their likes
# suggest follows (weight 1). Chosen on the bundled CPCD file's preference part (124 dialogs, co-likes off),
# then confirmed on its evaluation part: benchmarks/cpcd_protocol.py, README "Results".
SEARCH_WEIGHT, NAMED_ARTISTS_WEIGHT, STEER_RRF_K = 1.5, 3.0, 20


@dataclass(frozen=True)
class Steering:
    """What the conversation says beyond its constraint, applied by every ranking tool of a turn."""

    history: tuple[tuple[str, float], ...] = ()  # the topic's older words and their weights
    artists: Mapping[str, float] = field(default_factory=dict)  # artist keys named -> recency weight
    named_tracks: tuple[str, ...] = ()  # tracks whose titles the turn named
    liked: Mapping[str, float] = field(default_factory=dict)  # liked track -> recency weight, in order liked
    disliked: tuple[str, ...] = ()
    seen: frozenset[str] = frozenset()  # shown earlier in the conversation: not repeated
    co_likes: CoLikes | None = None
    depth: int = 0  # tracks each ranking call ranks beyond the slate (evaluation ranks 100+ deep)


class Toolbox:
    """Runs tools for one turn over the index, within the conversation's constraint; records every call.

    A ranking tool returns the slate's cards (`k` tracks) to its caller and keeps its whole ranking
    (`depth` tracks) in `rankings`, one entry per call, for the planner and for evaluation.
    """

    def __init__(
        self,
        index: CatalogIndex,
        taxonomy: Taxonomy,
        constraint: Constraint = Constraint(),
        excluded_artist_ids: Sequence[str] = (),
        k: int | None = None,
        steering: Steering = Steering(),
    ) -> None:
        self.index, self.taxonomy = index, taxonomy
        self.constraint, self.excluded_artist_ids = constraint, list(excluded_artist_ids)
        self.k = k or index.config.slate_size
        self.steering = steering
        self.depth = max(self.k, steering.depth)
        self.calls: list[ToolCallRecord] = []
        self.rankings: list[list[str]] = []
        self._ranked: list[str] = []

    @cached_property
    def base(self) -> "ConstraintMatcher":
        """The conversation's constraint as catalog masks (a tool's own filters narrow it further)."""
        return ConstraintMatcher(
            self.index, self.taxonomy, self.constraint, self.excluded_artist_ids, self._rated
        )

    @property
    def _rated(self) -> list[str]:
        return [*self.steering.liked, *self.steering.disliked]

    def run(self, name: str, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Validate, execute and record one call; a bad call becomes an `error` result, never an exception."""
        started = time.perf_counter()
        raw: dict[str, Any] = {}
        self._ranked = []
        try:
            raw = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
            if name not in TOOLS:
                raise ValueError(f"unknown tool {name!r}; tools: {sorted(TOOLS)}")
            result = getattr(self, name)(TOOLS[name].model_validate(raw))
        except (ValueError, ValidationError, KeyError) as err:
            result = {"error": f"{type(err).__name__}: {err}"[:500]}
        self.rankings.append(self._ranked)
        self.calls.append(
            ToolCallRecord(
                name=name,
                arguments=raw,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                result_size=len(result.get("tracks", [])) + ("track" in result),
                error=result.get("error"),
            )
        )
        return result

    def search_catalog(self, args: SearchCatalog) -> dict[str, Any]:
        matcher = self._matcher(args.filters)
        filters = matcher.coarse_filters()
        names = self.index.names
        named = [(names.display[a], w) for a, w in self.steering.artists.items() if not a.startswith("id:")]
        query = [(args.query, 1.0), *self.steering.history, *named]
        hits = self.index.search(query, filters, k=self.index.config.candidates, diverse=False)
        return self._ranking(self._steer({"search": hits}, filters, matcher), matcher)

    def filter_tracks(self, args: FilterTracks) -> dict[str, Any]:
        matcher = self._matcher(args.filters)
        positions = np.flatnonzero(matcher.mask)[: 3 * self.depth]  # room for the artist cap
        return self._ranking(self._shape([self.index.track_ids[i] for i in positions], matcher), matcher)

    def get_track(self, args: GetTrack) -> dict[str, Any]:
        return {"track": self._card(args.track_id)}

    def similar_tracks(self, args: SimilarTracks) -> dict[str, Any]:
        self._card(args.track_id)  # unknown ids fail here with a clear message
        matcher = self._matcher(TrackFilters())
        hits = self.index.similar(
            [args.track_id], k=self.index.config.candidates, filters=matcher.coarse_filters(), diverse=False
        )
        return self._ranking(self._shape([h.track_id for h in hits], matcher), matcher)

    def explain_track(self, args: ExplainTrack) -> dict[str, Any]:
        card = self._card(args.track_id)
        requested = [n for nodes in self.constraint.required.values() for n in nodes]
        return {"track": card, "requested": requested, "matches": self.base.matched_nodes(card)}

    def shape(self, track_ids: Sequence[str]) -> list[str]:
        """A fused ranking made into slates, within the conversation's constraint (see `_shape`)."""
        return self._shape(track_ids, self._matcher(TrackFilters()))

    def _steer(
        self, rankings: dict[str, list[Hit]], filters: Filters, matcher: "ConstraintMatcher"
    ) -> list[str]:
        """The retriever's candidates fused (weighted RRF) with what the listener liked and named.

        Likes add a ranking of tracks similar to the recent ones (`CatalogIndex.similar`: tags, embeddings,
        artist names) and one of tracks co-liked with them; within the candidates, tracks by named artists
        and by liked artists (each weighed by how recent) get rankings of their own. Named titles lead.
        """
        steering, index, names = self.steering, self.index, self.index.names
        lists = [(SEARCH_WEIGHT, index.positions(h.track_id for h in hits)) for hits in rankings.values()]
        if steering.liked:
            recent = list(steering.liked)[-SIMILAR_TO_LIKED:]
            similar = index.similar(recent, k=index.config.candidates, filters=filters, diverse=False)
            lists.append((1.0, index.positions(h.track_id for h in similar)))
        if steering.co_likes is not None and steering.liked:
            counts = steering.co_likes.neighbours(list(steering.liked))
            co_liked = [t for t, _ in counts.most_common() if t in index][: index.config.candidates]
            lists.append((1.0, index.positions(co_liked)))
        pool = np.asarray(list(dict.fromkeys(int(p) for _, ranked in lists for p in ranked)), dtype=np.int64)
        weighted = []
        if steering.artists:
            weighted.append((NAMED_ARTISTS_WEIGHT, names.weights(steering.artists)))
        if steering.liked:
            weighted.append((1.0, names.weights(self._liked_artists())))
        for weight, by_artist in weighted:  # within the candidates, heaviest first (stable: candidate order)
            in_pool = by_artist[pool]
            lists.append((weight, pool[np.argsort(-in_pool, kind="stable")][: int((in_pool > 0).sum())]))
        scores = np.zeros(len(index))
        for weight, ranked in lists:
            scores[ranked] += weight / (STEER_RRF_K + np.arange(1, len(ranked) + 1))
        fused = pool[np.argsort(-scores[pool], kind="stable")]
        named = [t for t in steering.named_tracks if t not in steering.liked]
        return self._shape([*named, *(index.track_ids[p] for p in fused)], matcher)

    def _liked_artists(self) -> dict[str, float]:
        """The artists of the liked tracks, each weighed by its most recent like."""
        names, out = self.index.names, {}
        for track, weight in self.steering.liked.items():
            for artist in names.artists_of(int(self.index.positions([track])[0])):
                out[artist] = max(weight, out.get(artist, 0.0))
        return out

    def _shape(self, track_ids: Sequence[str], matcher: "ConstraintMatcher") -> list[str]:
        """Within the constraint (liked and disliked tracks are outside it); tracks already shown and tracks by disliked
        (primary) artists after the rest; the artist cap per slate, which moves a track back instead of out
        and spares artists the listener named or liked; `depth` tracks in all."""
        steering, index, names = self.steering, self.index, self.index.names
        positions = index.positions(dict.fromkeys(track_ids))
        positions = positions[matcher.mask[positions]]  # rated tracks are outside the mask
        protected = names.codes(steering.artists) | names.codes(self._liked_artists())
        disliked = {a for t in steering.disliked for a in names.artists_of(int(index.positions([t])[0]))}
        disliked_codes = names.codes(disliked) - protected
        seen = index.positions(t for t in steering.seen if t in index)
        later = np.isin(positions, seen) | np.isin(names.primary[positions], list(disliked_codes))
        ordered = np.concatenate([positions[~later], positions[later]])
        cap = index.config.max_per_artist
        if cap:
            ordered = _slates(ordered, names.primary, cap, protected)
        return [index.track_ids[p] for p in ordered[: self.depth]]

    def _matcher(self, filters: TrackFilters) -> ConstraintMatcher:
        if filters == TrackFilters():
            return self.base
        extra = filters.to_constraint()
        merged = Constraint(
            required={**self.constraint.required, **extra.required},
            excluded=list(dict.fromkeys([*self.constraint.excluded, *extra.excluded])),
            min_duration_s=_tighter(self.constraint.min_duration_s, extra.min_duration_s, max),
            max_duration_s=_tighter(self.constraint.max_duration_s, extra.max_duration_s, min),
            exclude_track_ids=self.constraint.exclude_track_ids,
            seed_track_ids=self.constraint.seed_track_ids,
        )
        return ConstraintMatcher(self.index, self.taxonomy, merged, self.excluded_artist_ids, self._rated)

    def _card(self, track_id: str) -> dict[str, Any]:
        row = self.index.get_track(track_id)
        if row is None:
            raise KeyError(f"no track {track_id!r} in the catalog")
        return track_card(row)

    def _ranking(self, track_ids: list[str], matcher: "ConstraintMatcher") -> dict[str, Any]:
        self._ranked = track_ids
        return {"matching": matcher.count, "tracks": [self._card(t) for t in track_ids[: self.k]]}


def _slates(ordered: np.ndarray, primary: np.ndarray, cap: int, exempt: set[int]) -> np.ndarray:
    """The ranking in slates where no artist (unless exempt) appears more than `cap` times: a track that
    would break the cap moves back a slate (or more), never out. One pass: a track's slate is its primary
    artist's count so far // cap; rank order within a slate."""
    placed: Counter[int] = Counter()
    pages = np.zeros(len(ordered), dtype=np.int64)
    for i, artist in enumerate(primary[ordered].tolist()):
        if artist >= 0 and artist not in exempt:
            pages[i] = placed[artist] // cap
            placed[artist] += 1
    return ordered[np.argsort(pages, kind="stable")]


def _tighter(current: float | None, extra: float | None, pick) -> float | None:
    bounds = [b for b in (current, extra) if b is not None]
    return pick(bounds) if bounds else None
