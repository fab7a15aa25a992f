"""What every judge shares: the items it judges, the verdict it returns, and the interface.

A judge follows Inspect AI's scorer split: it returns one value and a reason per item; agreement
with humans and confidence intervals are computed elsewhere (`models.eval.calibration`, `stats`).
Verdicts are labels (bool, 1-5, "A"/"B"/"tie"), not `metrics.Score` floats, because calibration
compares them with human labels; an LLM call that failed is a verdict with `failure` set.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from models.golden.curated import RATING_SCALE, ShownTrack
from models.llm import BatchStats

Label = bool | int | str


@dataclass(frozen=True)
class Verdict:
    value: Label | None  # None exactly when the judge failed on the item
    reason: str
    failure: str | None = None
    # A graded belief behind the value where the judge has one (an LLM's P(relevant) or expected rating
    # from token logprobs): calibration reports its AUC beside the value's kappa.
    score: float | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Judgements:
    """One verdict per item, in item order, and the LLM accounting when a model was asked."""

    verdicts: list[Verdict]
    llm_stats: BatchStats | None = None

    @property
    def failures(self) -> int:
        return sum(not v.ok for v in self.verdicts)


@dataclass(frozen=True)
class RelevanceItem:
    """Is this track relevant to the conversation so far? (CPCD: liked = yes, disliked = no.)"""

    item_id: str
    conversation: str  # earlier turns and the listener's latest message, as "user: ..." lines
    title: str
    artists: tuple[str, ...] = ()
    album: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseItem:
    """One assistant response to a turn, the tracks it showed and what the turn expected."""

    item_id: str
    conversation: str  # earlier turns, "user: ..." lines
    request: str  # the listener's latest message
    response: str
    shown: tuple[ShownTrack, ...] = ()
    must: tuple[tuple[str, ...], ...] = ()  # any-of node groups every shown track must meet
    must_not: tuple[str, ...] = ()
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    expected_behaviour: str = "show_tracks"  # models.golden.curated.Behaviour


@dataclass(frozen=True)
class PairItem:
    """Two responses (systems A and B) to the same turn."""

    item_id: str
    a: ResponseItem
    b: ResponseItem = field(repr=False)


ItemT = TypeVar("ItemT", contravariant=True)


class Judge(Protocol[ItemT]):
    name: str

    @property
    def version(self) -> str: ...

    def judge(self, items: Sequence[ItemT]) -> Judgements: ...


def acceptable_from_rating(rating: int) -> bool:
    """The rubric's yes/no: 1-2 never, 4-5 always; 3 is the reviewer's call and most of them said yes."""
    low, high = RATING_SCALE
    if not low <= rating <= high:
        raise ValueError(f"rating {rating} is outside the rubric scale {RATING_SCALE}")
    return rating >= 3
