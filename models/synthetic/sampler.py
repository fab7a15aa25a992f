"""Label plans for synthetic conversations, sampled before any text is written.

Coverage: the first request of each topic cycles through every taxonomy node with tracks in a
seeded shuffled order (round-robin), so 2,000 conversations touch every node of a ~200-node taxonomy.
Realism: each topic is anchored on one catalog track that satisfies its primary node; further slots
(other facets, exclusions, duration bounds, refinements) are drawn so that the anchor still satisfies
the constraint. Recommend turns therefore have a non-empty ground-truth set by construction, and
facet combinations are ones the catalog really holds.
"""

import math
import random
from dataclasses import dataclass

import polars as pl

from models.labels import DurationRange, Intent, Slots, TrackRef, TurnLabels
from models.taxonomy import Taxonomy, catalog_tag_counts, node_track_pairs

MAX_TURNS = 4
# Later-turn intents and their weights: mostly refinements, with the occasional detour.
FOLLOW_UP_WEIGHTS = {
    Intent.REFINE: 26,
    Intent.MORE_LIKE: 14,
    Intent.LESS_LIKE: 12,
    Intent.ASK_ABOUT_TRACK: 10,
    Intent.CREATE_PLAYLIST: 8,
    Intent.RECOMMEND: 8,
    Intent.NEEDS_CLARIFICATION: 4,
    Intent.CHITCHAT: 10,
    Intent.OUT_OF_SCOPE: 6,
}
OPENING_WEIGHTS = {
    Intent.RECOMMEND: 56,
    Intent.CREATE_PLAYLIST: 10,
    Intent.NEEDS_CLARIFICATION: 14,
    Intent.CHITCHAT: 8,
    Intent.OUT_OF_SCOPE: 12,
}
NEGATABLE_FACETS = ("instrument", "genre", "mood")
FICTIONAL_ARTISTS = (
    "Nova Lane",
    "The Paper Kites Club",
    "Mirela Sand",
    "Lowtide Collective",
    "Juno Marr",
    "Kofi Asante Trio",
    "Static Orchard",
    "Elsa Brandt",
    "Midnight Ferry",
    "DJ Kettle",
    "Ana Vidal",
    "Quiet Harbour",
)  # the sample catalog has artist ids only; mentions are labelled but not turned into constraints


@dataclass
class _Topic:
    anchor: str  # track id that satisfies every constraint drawn for this topic
    required: dict[str, list[str]]
    shown: bool = False  # has the assistant shown results for it yet (references make sense)


class LabelSampler:
    """Draws conversation label plans (one `TurnLabels` per turn) from a taxonomy and a catalog."""

    def __init__(self, taxonomy: Taxonomy, catalog: pl.DataFrame) -> None:
        self.taxonomy = taxonomy
        # Kept as polars (sorted, so seeded draws match a sorted list): per-track Python sets and dicts
        # took ~20 s and GBs at 1M tracks.
        pairs = node_track_pairs(taxonomy, catalog_tag_counts(catalog)).sort("node_id", "track_id")
        self.node_tracks: dict[str, pl.Series] = {
            node_id: group["track_id"]
            for (node_id,), group in pairs.partition_by("node_id", as_dict=True, maintain_order=True).items()
        }
        self._by_track = (
            pairs.group_by("track_id")
            .agg(pl.col("node_id"))
            .join(catalog.select("track_id", "duration_s"), on="track_id", how="left")
            .sort("track_id")
        )
        if not self.node_tracks:
            raise ValueError("no taxonomy node selects any catalog track: cannot sample label plans")

    def _anchor_row(self, track_id: str) -> dict:
        """The nodes an anchor satisfies and its duration (a binary search; anchors always have nodes)."""
        return self._by_track.row(self._by_track["track_id"].search_sorted(track_id), named=True)

    def _anchor_nodes(self, track_id: str) -> set[str]:
        return set(self._anchor_row(track_id)["node_id"])

    def plans(self, n_conversations: int, rng: random.Random) -> list[list[TurnLabels]]:
        order: list[str] = []
        plans = []
        for _ in range(n_conversations):
            plans.append(self._conversation(rng, order))
        return plans

    def _next_primary(self, rng: random.Random, order: list[str]) -> str:
        if not order:
            order.extend(rng.sample(sorted(self.node_tracks), len(self.node_tracks)))
        return order.pop()

    def _conversation(self, rng: random.Random, order: list[str]) -> list[TurnLabels]:
        n_turns = rng.choices(range(1, MAX_TURNS + 1), weights=(25, 35, 25, 15))[0]
        topic: _Topic | None = None
        turns: list[TurnLabels] = []
        for index in range(n_turns):
            weights = OPENING_WEIGHTS if index == 0 or topic is None else FOLLOW_UP_WEIGHTS
            intent = rng.choices(list(weights), weights=list(weights.values()))[0]
            if intent in (Intent.RECOMMEND, Intent.CREATE_PLAYLIST) and (
                topic is None or intent is Intent.RECOMMEND
            ):
                topic = self._new_topic(rng, order)
                slots = self._opening_slots(rng, topic)
            else:
                slots = self._follow_up_slots(rng, intent, topic) if topic else Slots()
            if topic is not None and intent not in (
                Intent.CHITCHAT,
                Intent.OUT_OF_SCOPE,
                Intent.NEEDS_CLARIFICATION,
            ):
                topic.shown = True
            turns.append(TurnLabels(intent=intent, slots=slots))
        return turns

    def _new_topic(self, rng: random.Random, order: list[str]) -> _Topic:
        primary = self._next_primary(rng, order)
        anchor = rng.choice(self.node_tracks[primary])
        return _Topic(anchor=anchor, required={primary.split("/", 1)[0]: [primary]})

    def _opening_slots(self, rng: random.Random, topic: _Topic) -> Slots:
        (facet, [primary]) = next(iter(topic.required.items()))
        anchor_nodes = sorted(self._anchor_nodes(topic.anchor))
        if rng.random() < 0.1:  # "jazz or blues": any-of within the facet
            alternative = self._other_node(rng, facet, exclude=set(anchor_nodes))
            if alternative:
                topic.required[facet].append(alternative)
        for _ in range(rng.choices((0, 1, 2), weights=(40, 40, 20))[0]):
            extra = [n for n in anchor_nodes if n.split("/", 1)[0] not in topic.required]
            if extra:
                node = rng.choice(extra)
                topic.required[node.split("/", 1)[0]] = [node]
        return Slots(
            **{f: nodes for f, nodes in topic.required.items()},
            excluded=self._exclusions(rng, topic, p=0.2),
            duration=self._duration(rng, topic, p=0.12),
            artists=[rng.choice(FICTIONAL_ARTISTS)] if rng.random() < 0.05 else [],
        )

    def _follow_up_slots(self, rng: random.Random, intent: Intent, topic: _Topic) -> Slots:
        refs = [TrackRef(index=rng.choice((0, 1, 2, 3, -1, None)))] if topic.shown else []
        if intent is Intent.REFINE:
            kind = rng.choices(("facet", "negation", "duration"), weights=(60, 25, 15))[0]
            if kind == "facet" and (node := self._anchor_node(rng, topic)):
                topic.required[node.split("/", 1)[0]] = [node]
                return Slots(**{node.split("/", 1)[0]: [node]})
            if kind == "duration" and (duration := self._duration(rng, topic, p=1.0)):
                return Slots(duration=duration)
            return Slots(excluded=self._exclusions(rng, topic, p=1.0))
        if intent is Intent.MORE_LIKE:
            node = self._anchor_node(rng, topic) if rng.random() < 0.3 else None
            if node:
                topic.required[node.split("/", 1)[0]] = [node]
            return Slots(
                track_refs=refs or [TrackRef(index=None)], **({node.split("/", 1)[0]: [node]} if node else {})
            )
        if intent is Intent.LESS_LIKE:
            if refs and rng.random() < 0.35:
                return Slots(track_refs=refs)
            facet = rng.choice(NEGATABLE_FACETS)
            node = self._other_node(rng, facet, exclude=self._anchor_nodes(topic.anchor))
            return Slots(**{facet: [node]}) if node else Slots(track_refs=refs or [TrackRef(index=None)])
        if intent is Intent.ASK_ABOUT_TRACK:
            return Slots(track_refs=refs or [TrackRef(index=None)])
        return Slots()  # create_playlist of the current topic, clarification, chitchat, out of scope

    def _anchor_node(self, rng: random.Random, topic: _Topic) -> str | None:
        """A node the anchor satisfies in a facet not yet asked for (or a narrower one in an asked facet)."""
        asked = {n for nodes in topic.required.values() for n in nodes}
        candidates = [
            n
            for n in sorted(self._anchor_nodes(topic.anchor))
            if n not in asked
            and (
                n.split("/", 1)[0] not in topic.required
                or self._narrows(n, topic.required[n.split("/", 1)[0]])
            )
        ]
        return rng.choice(candidates) if candidates else None

    def _narrows(self, node: str, current: list[str]) -> bool:
        return any(node in self.taxonomy.descendants(c) for c in current)

    def _other_node(self, rng: random.Random, facet: str, exclude: set[str]) -> str | None:
        """A node of the facet the anchor does not satisfy (excluding it keeps the anchor valid)."""
        if facet == "instrument" and "instrument/voice" not in exclude and rng.random() < 0.4:
            return "instrument/voice"  # "no vocals" is the most common negation by far
        candidates = [n.node_id for n in self.taxonomy.nodes_of(facet) if n.node_id in self.node_tracks]
        candidates = [n for n in candidates if n not in exclude]
        return rng.choice(candidates) if candidates else None

    def _exclusions(self, rng: random.Random, topic: _Topic, p: float) -> list[str]:
        if rng.random() >= p:
            return []
        node = self._other_node(rng, rng.choice(NEGATABLE_FACETS), exclude=self._anchor_nodes(topic.anchor))
        return [node] if node else []

    def _duration(self, rng: random.Random, topic: _Topic, p: float) -> DurationRange | None:
        seconds = self._anchor_row(topic.anchor)["duration_s"]
        if seconds is None or rng.random() >= p:
            return None
        if rng.random() < 0.6:
            return DurationRange(max_s=60.0 * (math.ceil(seconds / 60) + rng.randint(0, 2)))
        floor_minutes = math.floor(seconds / 60)
        return DurationRange(min_s=60.0 * floor_minutes) if floor_minutes >= 1 else None
