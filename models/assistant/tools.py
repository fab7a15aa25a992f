"""The assistant's tools, defined once: pydantic argument models (whose JSON schemas are the OpenAI
tool definitions) and a `Toolbox` that runs them over a `CatalogIndex` and records every call.

The offline planner and the LLM agent call the same `Toolbox.run`. The conversation's constraint
(exclusions from earlier turns, excluded artists, seeds) is bound to the toolbox and applied to every
call, so a model that forgets it in its arguments still cannot show an excluded track.
"""

import json
import time
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np
import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.assistant.filters import Filters
from models.assistant.retrieval import CatalogIndex
from models.labels import Constraint
from models.taxonomy import CATALOG_COLUMN, FACETS, Taxonomy

CARD_FACETS = {"genres": "genre", "moods": "mood/theme", "instruments": "instrument"}


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
        "title": row["title"],
        "artists": row["artists"] or [],
        "album": row["album"],
        "duration_s": row["duration_s"],
        **{column: row[column] or [] for column in CARD_FACETS},
    }


def card_tags(card: Mapping[str, Any]) -> set[str]:
    return {f"{prefix}---{value}" for column, prefix in CARD_FACETS.items() for value in card[column]}


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
    """

    def __init__(
        self,
        index: CatalogIndex,
        taxonomy: Taxonomy,
        constraint: Constraint,
        excluded_artist_ids: Sequence[str] = (),
    ) -> None:
        self.index, self.taxonomy, self.constraint = index, taxonomy, constraint
        self.required_tags = {
            facet: set().union(*(taxonomy.catalog_tags(n) for n in nodes))
            for facet, nodes in constraint.required.items()
        }
        excluded_tags = set().union(set(), *(taxonomy.catalog_tags(n) for n in constraint.excluded))
        self.exclusions = Filters(
            exclude=_by_prefix(excluded_tags),
            exclude_artist_ids=frozenset(excluded_artist_ids),
            exclude_track_ids=frozenset([*constraint.exclude_track_ids, *constraint.seed_track_ids]),
            min_duration_s=constraint.min_duration_s,
            max_duration_s=constraint.max_duration_s,
        )
        self.mask = self._exact_mask()

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


class Toolbox:
    """Runs tools for one turn over the index, within the conversation's constraint; records every call."""

    def __init__(
        self,
        index: CatalogIndex,
        taxonomy: Taxonomy,
        constraint: Constraint = Constraint(),
        excluded_artist_ids: Sequence[str] = (),
        k: int | None = None,
    ) -> None:
        self.index, self.taxonomy = index, taxonomy
        self.constraint, self.excluded_artist_ids = constraint, list(excluded_artist_ids)
        self.k = k or index.config.slate_size
        self.calls: list[ToolCallRecord] = []

    def run(self, name: str, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Validate, execute and record one call; a bad call becomes an `error` result, never an exception."""
        started = time.perf_counter()
        raw: dict[str, Any] = {}
        try:
            raw = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
            if name not in TOOLS:
                raise ValueError(f"unknown tool {name!r}; tools: {sorted(TOOLS)}")
            result = getattr(self, name)(TOOLS[name].model_validate(raw))
        except (ValueError, ValidationError, KeyError) as err:
            result = {"error": f"{type(err).__name__}: {err}"[:500]}
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
        hits = self.index.search(args.query, matcher.coarse_filters(), k=self.index.config.candidates)
        return self._tracks([h.track_id for h in hits if matcher.keeps(h.track_id)], matcher.count)

    def filter_tracks(self, args: FilterTracks) -> dict[str, Any]:
        matcher = self._matcher(args.filters)
        positions = np.flatnonzero(matcher.mask)[: self.k]
        return self._tracks([self.index.track_ids[i] for i in positions], matcher.count)

    def get_track(self, args: GetTrack) -> dict[str, Any]:
        return {"track": self._card(args.track_id)}

    def similar_tracks(self, args: SimilarTracks) -> dict[str, Any]:
        self._card(args.track_id)  # unknown ids fail here with a clear message
        matcher = self._matcher(TrackFilters())
        hits = self.index.similar(
            [args.track_id], k=self.index.config.candidates, filters=matcher.coarse_filters()
        )
        return self._tracks([h.track_id for h in hits if matcher.keeps(h.track_id)], matcher.count)

    def explain_track(self, args: ExplainTrack) -> dict[str, Any]:
        card = self._card(args.track_id)
        matcher = ConstraintMatcher(self.index, self.taxonomy, self.constraint, self.excluded_artist_ids)
        requested = [n for nodes in self.constraint.required.values() for n in nodes]
        return {"track": card, "requested": requested, "matches": matcher.matched_nodes(card)}

    def _matcher(self, filters: TrackFilters) -> ConstraintMatcher:
        extra = filters.to_constraint()
        merged = Constraint(
            required={**self.constraint.required, **extra.required},
            excluded=list(dict.fromkeys([*self.constraint.excluded, *extra.excluded])),
            min_duration_s=_tighter(self.constraint.min_duration_s, extra.min_duration_s, max),
            max_duration_s=_tighter(self.constraint.max_duration_s, extra.max_duration_s, min),
            exclude_track_ids=self.constraint.exclude_track_ids,
            seed_track_ids=self.constraint.seed_track_ids,
        )
        return ConstraintMatcher(self.index, self.taxonomy, merged, self.excluded_artist_ids)

    def _card(self, track_id: str) -> dict[str, Any]:
        row = self.index.get_track(track_id)
        if row is None:
            raise KeyError(f"no track {track_id!r} in the catalog")
        return track_card(row)

    def _tracks(self, track_ids: list[str], matching: int) -> dict[str, Any]:
        return {"matching": matching, "tracks": [self._card(t) for t in track_ids[: self.k]]}


def _tighter(current: float | None, extra: float | None, pick) -> float | None:
    bounds = [b for b in (current, extra) if b is not None]
    return pick(bounds) if bounds else None
