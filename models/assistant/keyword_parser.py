"""A rule baseline parser: cue words for the intent, the taxonomy gazetteer for slots.

It is what the assistant runs when no intent model is registered yet (a fresh `setlist chat`),
and the stand-in parser of the assistant's tests and benchmark. Its version says what it is, so
its runs are never mistaken for the trained offline parser's.
"""

import re
from collections.abc import Sequence

from models.assistant.parsing import ParseResult
from models.labels import DurationRange, Intent, Slots, TrackRef, TurnLabels
from models.taxonomy import FACETS, Taxonomy, normalize_phrase

INJECTION = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above|earlier) (instructions|rules)|system prompt|developer mode"
)
CHITCHAT = re.compile(r"^(hi|hello|hey|thanks|thank you|cheers|bye)\b")
ASK = re.compile(r"^(what|who|which|when|where|is|does|how|tell me about)\b")
MORE = re.compile(r"\b(more like|more of|similar|keep going|like that|like the|like this)\b")
LESS = re.compile(r"\b(less|not that|not those|too)\b")
REFINE = re.compile(r"^(with|add|and|but|make it|now|also|only|maybe|can you make|a bit|a little|some)\b")
NEGATION = re.compile(r"\b(no|not|without|nothing|avoid|never|don't|no more)\s+(\w+\s+){0,2}$")
LESSENING = re.compile(r"\b(less|not so|not as)\s+$")
ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "last": -1}
ORDINAL = re.compile(rf"\b({'|'.join(ORDINALS)})\b")
THAT_ONE = re.compile(r"\b(that|this) (one|track|song|artist)\b")
MAX_MINUTES = re.compile(r"\b(under|less than|shorter than|at most|max) (\d+) min")
MIN_MINUTES = re.compile(r"\b(over|more than|longer than|at least) (\d+) min")


class KeywordParser:
    version = "keyword-v1"

    def __init__(self, taxonomy: Taxonomy) -> None:
        self._nodes = {p: ids for p, ids in taxonomy.phrase_index().items() if p}
        alternatives = "|".join(map(re.escape, sorted(self._nodes, key=len, reverse=True)))
        self._phrases = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")

    def parse_batch(self, texts: Sequence[str], histories: Sequence[Sequence[str]]) -> list[ParseResult]:
        return [self.parse(text, history) for text, history in zip(texts, histories, strict=True)]

    def parse(self, text: str, history: Sequence[str] = ()) -> ParseResult:
        t = normalize_phrase(text)
        if INJECTION.search(t):
            return self._result(Intent.OUT_OF_SCOPE, Slots(), 0.9)
        wanted: dict[str, list[str]] = {}
        excluded: list[str] = []
        lessened = False
        for match in self._phrases.finditer(t):
            before = t[: match.start()]
            for node in self._nodes[match[0]]:
                if NEGATION.search(before) and not LESSENING.search(before):
                    excluded.append(node)
                else:  # a lessened node is named like a wanted one; the less_like intent excludes it
                    lessened = lessened or bool(LESSENING.search(before))
                    wanted.setdefault(node.split("/", 1)[0], []).append(node)
        refs = [TrackRef(index=ORDINALS[w]) for w in ORDINAL.findall(t)]
        if not refs and THAT_ONE.search(t):
            refs = [TrackRef(index=None)]
        slots = Slots(
            **{f: list(dict.fromkeys(wanted.get(f, []))) for f in FACETS},
            excluded=list(dict.fromkeys(excluded)),
            track_refs=refs,
            duration=_duration(t),
        )
        intent, confidence = self._intent(t, slots, lessened, bool(history))
        return self._result(intent, slots, confidence)

    def _intent(self, t: str, slots: Slots, lessened: bool, has_history: bool) -> tuple[Intent, float]:
        named = bool(slots.nodes() or slots.excluded or slots.duration)
        if CHITCHAT.search(t) and not named:
            return Intent.CHITCHAT, 0.9
        if "playlist" in t:
            return Intent.CREATE_PLAYLIST, 0.9
        if ASK.search(t) and slots.track_refs:
            return Intent.ASK_ABOUT_TRACK, 0.9
        if has_history and MORE.search(t):
            return Intent.MORE_LIKE, 0.9
        if has_history and (lessened or (LESS.search(t) and (slots.track_refs or named))):
            return Intent.LESS_LIKE, 0.85
        if not named:
            return Intent.NEEDS_CLARIFICATION, 0.8
        if has_history and (REFINE.search(t) or not slots.nodes()):
            return Intent.REFINE, 0.8
        return Intent.RECOMMEND, 0.7 if has_history else 0.9

    def _result(self, intent: Intent, slots: Slots, confidence: float) -> ParseResult:
        return ParseResult(
            labels=TurnLabels(intent=intent, slots=slots), confidence=confidence, parser=self.version
        )


def _duration(t: str) -> DurationRange | None:
    at_most, at_least = MAX_MINUTES.search(t), MIN_MINUTES.search(t)
    if not (at_most or at_least):
        return None
    return DurationRange(
        min_s=int(at_least[2]) * 60 if at_least else None, max_s=int(at_most[2]) * 60 if at_most else None
    )
