"""The expert-curated golden set: reviewed YAML conversations, validated into turn and rating tables.

Each file under data/golden/curated/ holds `reviewed_by`, `reviewed_on` and `conversations`; each turn
has the listener's text, its labels in the models/labels schema, and optionally what the expected
tracks must add beyond the labels (`must`: any-of node groups, `must_not`: nodes), the expected
behaviour when the intent alone does not say it, and reviewer ratings of sample responses.
The constraint of each turn is derived with `apply_turn`, never written by hand. The set's version is
a hash of the parsed contents, so reordering files or conversations or editing comments does not change it.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from models.labels import (
    NON_RETRIEVAL_INTENTS,
    TURN_SCHEMA,
    Constraint,
    Intent,
    Slots,
    TurnLabels,
    apply_turn,
)
from models.taxonomy import Taxonomy

CURATED_DIR = Path(__file__).resolve().parents[2] / "data" / "golden" / "curated"
SET_NAME = "curated"
GENERATOR = "curated"
RATING_SCALE = (1, 5)


class Behaviour(StrEnum):
    """What a good answer does; defaults from the intent, stated in the file only when it differs."""

    SHOW_TRACKS = "show_tracks"
    ANSWER = "answer"  # about a shown track
    ASK_CLARIFICATION = "ask_clarification"
    DECLINE = "decline"  # out of scope or unsafe: say so briefly, reveal nothing
    REPLY = "reply"  # small talk
    IGNORE_INJECTION = "ignore_injection"  # serve the music request, ignore the embedded instruction


DEFAULT_BEHAVIOUR = {
    Intent.ASK_ABOUT_TRACK: Behaviour.ANSWER,
    Intent.NEEDS_CLARIFICATION: Behaviour.ASK_CLARIFICATION,
    Intent.OUT_OF_SCOPE: Behaviour.DECLINE,
    Intent.CHITCHAT: Behaviour.REPLY,
}

GOLDEN_TURN_SCHEMA = pl.Schema(
    {
        **TURN_SCHEMA,
        "must": pl.String,  # JSON list of any-of node groups every expected track satisfies
        "must_not": pl.String,  # JSON list of nodes no expected track carries
        "expected_behaviour": pl.String,
        "theme": pl.String,  # the file stem: everyday, negation, safety, ...
        "set_name": pl.String,
    }
)

RATING_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.String,
        "turn_index": pl.Int32,
        "response": pl.String,
        "shown_tracks": pl.String,  # JSON list of {"nodes": [...], "duration_s": ...}
        "rating": pl.Int32,
        "acceptable": pl.Boolean,
        "rater": pl.String,
    }
)


@dataclass(frozen=True)
class GoldenIssue:
    file: str
    conversation_id: str | None
    turn_index: int | None
    rule: str
    detail: str

    def __str__(self) -> str:
        where = self.file
        if self.conversation_id is not None:
            where += f": conversation {self.conversation_id}"
        if self.turn_index is not None:
            where += f", turn {self.turn_index}"
        return f"{where}: {self.rule}: {self.detail}"


class GoldenSetError(ValueError):
    """The golden files break one or more rules; every issue names file, conversation, turn and rule."""

    def __init__(self, issues: list[GoldenIssue]) -> None:
        self.issues = issues
        super().__init__(f"{len(issues)} golden-set issue(s):\n" + "\n".join(f"- {i}" for i in issues))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShownTrack(_Strict):
    """A track of a sample response, described by its facets (what a grader can check)."""

    nodes: list[str] = Field(min_length=1)
    duration_s: float | None = Field(default=None, gt=0)


class RatingSpec(_Strict):
    response: str = Field(min_length=1)
    shown: list[ShownTrack] = []
    rating: int = Field(ge=RATING_SCALE[0], le=RATING_SCALE[1])
    acceptable: bool
    rater: str

    @model_validator(mode="after")
    def _consistent(self) -> "RatingSpec":
        # The binary label is a threshold on the rubric, with 3 left to the reviewer's judgement.
        if (self.rating <= 2 and self.acceptable) or (self.rating >= 4 and not self.acceptable):
            raise PydanticCustomError(
                "acceptable_contradicts_rating",
                "acceptable={acceptable} contradicts rating {rating} (1-2 never, 4-5 always acceptable)",
                {"acceptable": self.acceptable, "rating": self.rating},
            )
        return self


class TurnSpec(_Strict):
    text: str = Field(min_length=1)
    intent: Intent
    slots: Slots = Slots()
    must: list[list[str]] = []
    must_not: list[str] = []
    behaviour: Behaviour | None = None
    ratings: list[RatingSpec] = []

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise PydanticCustomError("missing_text", "the text is blank")
        return text

    @property
    def expected_behaviour(self) -> Behaviour:
        return self.behaviour or DEFAULT_BEHAVIOUR.get(self.intent, Behaviour.SHOW_TRACKS)

    def nodes(self) -> list[str]:
        """Every node id the turn names: slots, must, must_not and the facets of shown tracks."""
        shown = [n for r in self.ratings for t in r.shown for n in t.nodes]
        return [*self.slots.all_nodes(), *(n for group in self.must for n in group), *self.must_not, *shown]


class ConversationSpec(_Strict):
    id: str = Field(min_length=1)
    note: str | None = None  # the reviewer's reason for including it
    turns: list[TurnSpec] = Field(min_length=1)


class ReviewRecord(_Strict):
    """Where accepted conversations came from: a review file (models/feedback/curation.py) and its agreement."""

    review_file: str  # the review queue's content hash
    reviewers: list[str] = Field(min_length=1)
    agreement: dict[str, float | int] = {}  # Cohen's kappa of decisions and intents, with two reviewers


class CuratedFile(_Strict):
    reviewed_by: list[str] = Field(min_length=1)
    reviewed_on: date
    reviews: list[ReviewRecord] = []
    conversations: list[ConversationSpec] = Field(min_length=1)


@dataclass(frozen=True)
class CuratedSet:
    turns: pl.DataFrame  # GOLDEN_TURN_SCHEMA
    ratings: pl.DataFrame  # RATING_SCHEMA
    content_hash: str
    files: list[str]


def load_curated_set(taxonomy: Taxonomy, directory: Path = CURATED_DIR) -> CuratedSet:
    """Validate every file of the set and return its tables; raise GoldenSetError listing every issue."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise GoldenSetError([GoldenIssue(str(directory), None, None, "no_files", "no *.yaml golden files")])
    issues: list[GoldenIssue] = []
    parsed: dict[Path, CuratedFile] = {}
    raw_documents: dict[Path, Any] = {}
    for path in paths:
        raw, file_issues = _read_yaml(path)
        issues += file_issues
        if file_issues:
            continue
        raw_documents[path] = raw
        try:
            parsed[path] = CuratedFile.model_validate(raw)
        except ValidationError as err:
            issues += [_issue_from(path, raw, e) for e in err.errors()]
            continue
        issues += _semantic_issues(path, parsed[path], taxonomy)
    issues += _duplicate_ids(parsed)
    if issues:
        raise GoldenSetError(issues)

    version = content_hash(raw_documents)
    turns = pl.DataFrame(
        [row for path, spec in parsed.items() for row in _turn_rows(path.stem, spec, version)],
        schema=GOLDEN_TURN_SCHEMA,
    )
    ratings = pl.DataFrame(
        [row for spec in parsed.values() for row in _rating_rows(spec)], schema=RATING_SCHEMA
    )
    return CuratedSet(turns, ratings, version, [str(p) for p in paths])


def content_hash(documents: dict[Path, Any]) -> str:
    """sha256 over each conversation in canonical JSON with its file's stem and review fields, sorted.

    Independent of file order, conversation order and formatting; any change to a value changes it.
    """
    canonical = sorted(
        json.dumps(
            [path.stem, {k: v for k, v in document.items() if k != "conversations"}, conversation],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        for path, document in documents.items()
        for conversation in document["conversations"]
    )
    return hashlib.sha256("\n".join(canonical).encode("utf-8")).hexdigest()[:16]


def _read_yaml(path: Path) -> tuple[Any, list[GoldenIssue]]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        return None, [GoldenIssue(str(path), None, None, "malformed_yaml", detail)]


def _issue_from(path: Path, raw: Any, error: Any) -> GoldenIssue:
    """A pydantic error located as (conversation id, turn index, rule)."""
    loc = error["loc"]
    conversation_id = turn_index = None
    if len(loc) >= 2 and loc[0] == "conversations" and isinstance(loc[1], int):
        entry = raw["conversations"][loc[1]]
        conversation_id = str(entry.get("id") or f"#{loc[1]}") if isinstance(entry, dict) else f"#{loc[1]}"
        if len(loc) >= 4 and loc[2] == "turns" and isinstance(loc[3], int):
            turn_index = loc[3]
    fields = [part for part in loc if isinstance(part, str)]
    field = fields[-1] if fields else "file"
    return GoldenIssue(str(path), conversation_id, turn_index, _rule(field, error["type"]), error["msg"])


def _rule(field: str, error_type: str) -> str:
    if error_type in {"missing_text", "acceptable_contradicts_rating"}:
        return error_type
    if error_type == "missing" or (field == "text" and error_type == "string_too_short"):
        return f"missing_{field}"
    return {"intent": "unknown_intent", "rating": "rating_out_of_range"}.get(field, f"invalid_{field}")


def _semantic_issues(path: Path, spec: CuratedFile, taxonomy: Taxonomy) -> Iterable[GoldenIssue]:
    """Rules that need the taxonomy or the whole file: node ids exist, raters are the file's reviewers."""
    for conversation in spec.conversations:
        for index, turn in enumerate(conversation.turns):
            unknown = sorted({n for n in turn.nodes() if n not in taxonomy.nodes})
            if unknown:
                yield GoldenIssue(
                    str(path), conversation.id, index, "unknown_taxonomy_node", ", ".join(unknown)
                )
            strangers = sorted({r.rater for r in turn.ratings} - set(spec.reviewed_by))
            if strangers:
                detail = f"{strangers} not in reviewed_by {spec.reviewed_by}"
                yield GoldenIssue(str(path), conversation.id, index, "unknown_rater", detail)


def _duplicate_ids(parsed: dict[Path, CuratedFile]) -> list[GoldenIssue]:
    first_seen: dict[str, Path] = {}
    issues = []
    for path, spec in parsed.items():
        for conversation in spec.conversations:
            if conversation.id in first_seen:
                detail = f"also defined in {first_seen[conversation.id]}"
                issues.append(
                    GoldenIssue(str(path), conversation.id, None, "duplicate_conversation_id", detail)
                )
            else:
                first_seen[conversation.id] = path
    return issues


def _turn_rows(theme: str, spec: CuratedFile, version: str) -> Iterable[dict[str, Any]]:
    for conversation in spec.conversations:
        constraint = Constraint()
        for index, turn in enumerate(conversation.turns):
            labels = TurnLabels(intent=turn.intent, slots=turn.slots)
            constraint = apply_turn(constraint, labels)
            must, must_not = _expectations(turn, constraint)
            yield {
                "conversation_id": conversation.id,
                "turn_index": index,
                "text": turn.text,
                "intent": turn.intent.value,
                "slots": turn.slots.model_dump_json(exclude_defaults=True),
                "constraint": constraint.model_dump_json(exclude_defaults=True),
                "generator": GENERATOR,
                "version": version,
                "seed": 0,  # hand-written: nothing was sampled
                "must": json.dumps(must),
                "must_not": json.dumps(must_not),
                "expected_behaviour": turn.expected_behaviour.value,
                "theme": theme,
                "set_name": SET_NAME,
            }


def _expectations(turn: TurnSpec, constraint: Constraint) -> tuple[list[list[str]], list[str]]:
    """The derived constraint plus what the file adds; a turn that retrieves nothing expects only the latter."""
    derived = turn.intent not in NON_RETRIEVAL_INTENTS
    groups = [*(constraint.required.values() if derived else []), *turn.must]
    must = [list(g) for g in dict.fromkeys(tuple(g) for g in groups)]
    must_not = list(dict.fromkeys([*(constraint.excluded if derived else []), *turn.must_not]))
    return must, must_not


def _rating_rows(spec: CuratedFile) -> Iterable[dict[str, Any]]:
    for conversation in spec.conversations:
        for index, turn in enumerate(conversation.turns):
            for rating in turn.ratings:
                yield {
                    "conversation_id": conversation.id,
                    "turn_index": index,
                    "response": rating.response,
                    "shown_tracks": json.dumps([t.model_dump(exclude_none=True) for t in rating.shown]),
                    "rating": rating.rating,
                    "acceptable": rating.acceptable,
                    "rater": rating.rater,
                }
