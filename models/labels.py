"""The one label schema: what a listener's turn means, and the catalog constraint it implies.

Generators write it, parsers predict it, evaluation compares against it. Slot values are taxonomy
node ids ("genre/techno"); tempo words are mood nodes ("fast" -> mood/fast, "slow" -> mood/slow).
`apply_turn` folds a conversation's labels into the constraint in force after each turn, and
`satisfying_tracks` turns a constraint into the catalog tracks that meet it (retrieval ground truth).
"""

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from models.taxonomy import CATALOG_COLUMN, FACETS, Taxonomy

Facet = Literal["genre", "mood", "instrument", "activity", "era"]
TEMPO_NODES = {"fast": "mood/fast", "slow": "mood/slow"}


class Intent(StrEnum):
    RECOMMEND = "recommend"  # a new request: starts a new topic
    REFINE = "refine"  # adjust the current request ("with piano", "shorter")
    MORE_LIKE = "more_like"  # steer towards shown tracks or attributes
    LESS_LIKE = "less_like"  # steer away ("less sad", "not the second one")
    ASK_ABOUT_TRACK = "ask_about_track"  # a question about a shown track
    CREATE_PLAYLIST = "create_playlist"
    NEEDS_CLARIFICATION = "needs_clarification"  # too vague to act on ("play something good")
    OUT_OF_SCOPE = "out_of_scope"  # not music discovery, or unsafe (prompt injection, other users' data)
    CHITCHAT = "chitchat"


# Intents after which the constraint is unchanged: nothing to retrieve.
NON_RETRIEVAL_INTENTS = frozenset(
    {Intent.ASK_ABOUT_TRACK, Intent.NEEDS_CLARIFICATION, Intent.OUT_OF_SCOPE, Intent.CHITCHAT}
)


class _Strict(BaseModel):
    # Frozen and closed: labels are values, and LLM structured output needs closed schemas.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DurationRange(_Strict):
    """Seconds; either bound may be open ("under 3 minutes" -> max_s=180)."""

    min_s: float | None = Field(default=None, ge=0)
    max_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "DurationRange":
        if self.min_s is not None and self.max_s is not None and self.min_s > self.max_s:
            raise ValueError(f"duration min_s {self.min_s} > max_s {self.max_s}")
        return self


class TrackRef(_Strict):
    """A reference to a track the assistant showed in its last answer.

    `index` is 0-based ("the second one" -> 1); -1 is "the last one"; None is "that one" (the track
    in focus: the only one shown, or the one the conversation was just about).
    """

    index: int | None


class Slots(_Strict):
    """Taxonomy node ids per facet (any-of within a facet), exclusions, duration, references, artists.

    Negations go to `excluded` ("no vocals" -> instrument/voice, "not rock" -> genre/rock) and may
    name nodes of any facet. Validate against a taxonomy with
    `Slots.model_validate(data, context={"taxonomy": taxonomy})`.
    """

    genre: list[str] = []
    mood: list[str] = []
    instrument: list[str] = []
    activity: list[str] = []
    era: list[str] = []
    excluded: list[str] = []
    duration: DurationRange | None = None
    track_refs: list[TrackRef] = []
    artists: list[str] = []

    @field_validator(*FACETS)
    @classmethod
    def _facet_nodes(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for value in values:
            if not value.startswith(f"{info.field_name}/"):
                raise ValueError(f"{value!r} is not a {info.field_name} node id ('{info.field_name}/<name>')")
        return _known_nodes(values, info)

    @field_validator("excluded")
    @classmethod
    def _excluded_nodes(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for value in values:
            if value.split("/", 1)[0] not in FACETS:
                raise ValueError(f"{value!r} is not a node id ('<facet>/<name>', facet one of {FACETS})")
        return _known_nodes(values, info)

    def nodes(self) -> dict[str, list[str]]:
        """The non-empty facets, facet -> node ids."""
        return {facet: getattr(self, facet) for facet in FACETS if getattr(self, facet)}

    def all_nodes(self) -> list[str]:
        return [*(n for facet in FACETS for n in getattr(self, facet)), *self.excluded]

    def pairs(self) -> set[tuple[str, str]]:
        """(slot name, value) pairs: the unit slot precision and recall count (`models.eval.metrics.slot_report`)."""
        pairs = {(facet, node) for facet, nodes in self.nodes().items() for node in nodes}
        pairs |= {("excluded", node) for node in self.excluded}
        if self.duration is not None:
            pairs |= {
                (f"duration.{k}", f"{v:g}") for k, v in self.duration.model_dump().items() if v is not None
            }
        pairs |= {("track_ref", str(ref.index)) for ref in self.track_refs}
        pairs |= {("artist", artist.casefold()) for artist in self.artists}
        return pairs


def _known_nodes(values: list[str], info: ValidationInfo) -> list[str]:
    taxonomy = (info.context or {}).get("taxonomy")
    if taxonomy is not None:
        unknown = [v for v in values if v not in taxonomy.nodes]
        if unknown:
            raise ValueError(f"unknown taxonomy node(s) {unknown}")
    return values


class TurnLabels(_Strict):
    intent: Intent
    slots: Slots = Slots()


class Constraint(_Strict):
    """What the catalog must satisfy after a turn.

    A track satisfies it when, for every facet in `required`, it carries a catalog tag of at least one
    of that facet's nodes; it carries no tag of any `excluded` node; its duration is within bounds
    (unknown durations fail a bound); and it is neither excluded nor a seed (seeds are what "more like"
    is measured against, so they are not recommended back; similarity to them is a ranking matter).
    """

    required: dict[Facet, list[str]] = {}
    excluded: list[str] = []
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    exclude_track_ids: list[str] = []
    seed_track_ids: list[str] = []

    @property
    def is_empty(self) -> bool:
        return self == Constraint()


class Turn(_Strict):
    text: str
    labels: TurnLabels
    constraint: Constraint  # in force after this turn: apply_turn over the labels so far


class Conversation(_Strict):
    conversation_id: str
    turns: list[Turn]
    generator: str  # "grammar", "llm"
    version: str  # generator version: grammar VERSION or the prompt content hash
    seed: int


# The flat table every generator, golden set and evaluation reads and writes: one row per turn.
TURN_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.String,
        "turn_index": pl.Int32,
        "text": pl.String,
        "intent": pl.String,
        "slots": pl.String,  # Slots as JSON
        "constraint": pl.String,  # Constraint as JSON
        "generator": pl.String,
        "version": pl.String,
        "seed": pl.Int64,
    }
)


def apply_turn(previous: Constraint, labels: TurnLabels, shown: Sequence[str] = ()) -> Constraint:
    """The constraint after a turn, from the one before it (pure; the dialogue state reuses it).

    - recommend resets to the turn's slots; so does create_playlist when it names any (otherwise it
      packages the current request);
    - refine and more_like add: a facet the turn names replaces that facet's nodes, other facets stay;
    - less_like moves the turn's facet nodes to `excluded`; negations always go to `excluded`;
    - a node asked for again leaves `excluded` (the latest word wins);
    - references resolve against `shown`, the track ids of the last answer: more_like makes them seeds,
      less_like excludes them; without `shown` (synthetic data) they stay in the slots only;
    - ask_about_track, needs_clarification, out_of_scope and chitchat leave the constraint unchanged.
    """
    intent, slots = labels.intent, labels.slots
    if intent in NON_RETRIEVAL_INTENTS:
        return previous
    referenced = _resolve_refs(slots.track_refs, shown)
    if intent is Intent.RECOMMEND or (intent is Intent.CREATE_PLAYLIST and (slots.nodes() or slots.excluded)):
        base = Constraint()
    else:
        base = previous

    required = {facet: list(nodes) for facet, nodes in base.required.items()}
    excluded = list(base.excluded)
    if intent is Intent.LESS_LIKE:
        excluded += [n for nodes in slots.nodes().values() for n in nodes]
        required = {f: [n for n in nodes if n not in excluded] for f, nodes in required.items()}
    else:
        required.update(slots.nodes())
        asked = {n for nodes in slots.nodes().values() for n in nodes}
        excluded = [n for n in excluded if n not in asked]
    excluded += slots.excluded
    required = {f: [n for n in nodes if n not in slots.excluded] for f, nodes in required.items()}

    duration = slots.duration
    return Constraint(
        required={f: nodes for f, nodes in required.items() if nodes},
        excluded=list(dict.fromkeys(excluded)),
        min_duration_s=duration.min_s if duration and duration.min_s is not None else base.min_duration_s,
        max_duration_s=duration.max_s if duration and duration.max_s is not None else base.max_duration_s,
        exclude_track_ids=_merge(base.exclude_track_ids, referenced if intent is Intent.LESS_LIKE else []),
        seed_track_ids=_merge(base.seed_track_ids, referenced if intent is Intent.MORE_LIKE else []),
    )


def constraints_over(turns: Sequence[TurnLabels]) -> list[Constraint]:
    """The constraint in force after each turn of a conversation."""
    constraints: list[Constraint] = []
    current = Constraint()
    for labels in turns:
        current = apply_turn(current, labels)
        constraints.append(current)
    return constraints


def _resolve_refs(refs: Sequence[TrackRef], shown: Sequence[str]) -> list[str]:
    if not shown:
        return []
    resolved = []
    for ref in refs:
        index = 0 if ref.index is None and len(shown) == 1 else ref.index
        if index is not None and -len(shown) <= index < len(shown):
            resolved.append(shown[index])
    return resolved


def _merge(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def constraint_expr(constraint: Constraint, taxonomy: Taxonomy) -> pl.Expr:
    """A boolean polars expression over catalog rows: does the track satisfy the constraint?"""
    condition = pl.lit(True)
    for nodes in constraint.required.values():
        condition &= _has_any_tag(set().union(*(taxonomy.catalog_tags(n) for n in nodes)))
    if constraint.excluded:
        condition &= ~_has_any_tag(set().union(*(taxonomy.catalog_tags(n) for n in constraint.excluded)))
    duration = pl.col("duration_s")
    if constraint.min_duration_s is not None:
        condition &= duration.is_not_null() & (duration >= constraint.min_duration_s)
    if constraint.max_duration_s is not None:
        condition &= duration.is_not_null() & (duration <= constraint.max_duration_s)
    not_wanted = [*constraint.exclude_track_ids, *constraint.seed_track_ids]
    if not_wanted:
        condition &= ~pl.col("track_id").is_in(not_wanted)
    return condition


def satisfying_tracks(constraint: Constraint, catalog: pl.DataFrame, taxonomy: Taxonomy) -> pl.Series:
    """Track ids of the catalog that satisfy the constraint, in catalog order."""
    return catalog.filter(constraint_expr(constraint, taxonomy))["track_id"]


def _has_any_tag(tags: set[str]) -> pl.Expr:
    """Catalog tags "<prefix>---<value>" are bare values in the prefix's list column."""
    by_column: dict[str, list[str]] = {}
    for tag in tags:
        prefix, _, value = tag.partition("---")
        if prefix in CATALOG_COLUMN:
            by_column.setdefault(CATALOG_COLUMN[prefix], []).append(value)
    hit = pl.lit(False)
    for column, values in sorted(by_column.items()):
        hit |= pl.col(column).list.eval(pl.element().is_in(sorted(values))).list.any().fill_null(False)
    return hit


def conversations_to_frame(conversations: Sequence[Conversation]) -> pl.DataFrame:
    rows = [
        {
            "conversation_id": c.conversation_id,
            "turn_index": i,
            "text": turn.text,
            "intent": turn.labels.intent.value,
            "slots": turn.labels.slots.model_dump_json(exclude_defaults=True),
            "constraint": turn.constraint.model_dump_json(exclude_defaults=True),
            "generator": c.generator,
            "version": c.version,
            "seed": c.seed,
        }
        for c in conversations
        for i, turn in enumerate(c.turns)
    ]
    return pl.DataFrame(rows, schema=TURN_SCHEMA)


def conversations_from_frame(frame: pl.DataFrame) -> list[Conversation]:
    """The inverse of `conversations_to_frame` (turns ordered by turn_index)."""
    conversations = []
    ordered = frame.sort("conversation_id", "turn_index", maintain_order=True)
    for (conversation_id,), rows in ordered.group_by("conversation_id", maintain_order=True):
        first = rows.row(0, named=True)
        turns = [
            Turn(
                text=row["text"],
                labels=TurnLabels(
                    intent=Intent(row["intent"]), slots=Slots.model_validate(json.loads(row["slots"]))
                ),
                constraint=Constraint.model_validate(json.loads(row["constraint"])),
            )
            for row in rows.iter_rows(named=True)
        ]
        conversations.append(
            Conversation(
                conversation_id=conversation_id,
                turns=turns,
                generator=first["generator"],
                version=first["version"],
                seed=first["seed"],
            )
        )
    return conversations
