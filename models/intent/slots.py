"""The slot extractor: taxonomy phrases (exact, then fuzzy for typos), negation scope, durations,
track references and artist names found in one listener turn, then assembled into `Slots` for an intent.

Order matters: artists, durations and track references are matched first and masked, so "Quiet Harbour"
(an artist) is not mood/soft, "no longer than 5 min" is not a negation and "the last one" is never read
as a typo of "fast".
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import OSA
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from models.labels import NON_RETRIEVAL_INTENTS, DurationRange, Intent, Slots, TrackRef
from models.taxonomy import FACETS, Taxonomy

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
}
ORDINAL_WORDS = {
    "first": 0,
    "1st": 0,
    "second": 1,
    "2nd": 1,
    "third": 2,
    "3rd": 2,
    "fourth": 3,
    "4th": 3,
    "fifth": 4,
    "5th": 4,
    "last": -1,
    "final": -1,
}
# Cues whose scope is the next taxonomy phrase. "less"/"fewer"/"tone down" soften rather than forbid, but
# they land in the same place: `excluded`, or the facet itself under less_like (see `assemble_slots`).
NEGATION_CUES = (
    ("no",),
    ("not",),
    ("without",),
    ("nothing",),
    ("avoid",),
    ("skip",),
    ("less",),
    ("fewer",),
    ("minus",),
    ("except",),
    ("tone", "down"),
    ("don't", "want"),
    ("dont", "want"),
    ("no", "more"),
)
# Intents whose text may point at shown tracks ("more like the second one").
REFERENCE_INTENTS = frozenset({Intent.MORE_LIKE, Intent.LESS_LIKE, Intent.ASK_ABOUT_TRACK})

_NUMBER = rf"(\d+(?:\.\d+)?|{'|'.join(NUMBER_WORDS)})"
_UNIT = r"(min\w*|m|sec\w*|s)\b"  # "min\w*" also takes typos: "minutse"
_AT_MOST = r"under|below|less than|shorter than|no longer than|not longer than|not more than|at most|max(?:imum)?|up to|within"
_AT_LEAST = r"over|above|more than|longer than|at least|min(?:imum)?"
DURATION_BETWEEN = re.compile(rf"\bbetween\s+{_NUMBER}\s*(?:and|-|to)\s*{_NUMBER}\s*{_UNIT}")
DURATION_BOUND = re.compile(rf"\b({_AT_MOST}|{_AT_LEAST})\s+{_NUMBER}\s*{_UNIT}")
ORDINAL_REF = re.compile(rf"\b(?:the\s+)?({'|'.join(ORDINAL_WORDS)})\s+(?:one|song|track|tune|pick)\b")
NUMBERED_REF = re.compile(rf"\b(?:track|song|number|#)\s*({_NUMBER})\b")
DEMONSTRATIVE_REF = re.compile(r"\b(?:that|this)\s+(?:one|song|track|tune)\b")
BARE_IT = re.compile(r"\bit\b")
# "heavy on the keys" asks for lots of keys, not a heavy mood: a mood word followed by "on the" is an idiom.
IDIOM_AFTER_MOOD = ("on", "the")
# "i'd love jazz" and "love these!" are the verb, not mood/love.
VERB_AFTER = {("love",): frozenset({"i", "i'd", "we", "we'd", "would", "you", "u"})}
VERB_BEFORE = {("love",): frozenset({"it", "its", "this", "that", "these", "those", "them", "the"})}
NEGATION_WINDOW = 3  # a cue reaches a phrase starting within the next 3 tokens: "not that much sad"
CLAUSE_BREAKS = frozenset(",.;!?")  # and no further than the clause it is in
TOKEN = re.compile(r"[a-z0-9&'#]+|[,.;!?]")


@dataclass(frozen=True)
class FuzzyConfig:
    """When a token that matches no phrase word exactly may still be a typo of one (judged word by word).

    A single edit (insert, delete, substitute, swap: OSA distance 1) covers most real misspellings;
    two edits are allowed only for words of 9+ characters, where two edits still leave most of the
    word. Words under 5 characters never match fuzzily (stricter than a 4-character floor: one edit
    turns "fast" into "last", "calm" into "call", "love" into "live"), the first letter must agree
    (typists rarely miss it; it also keeps "hello" from becoming "cello"), and a token that is itself a
    common word of listeners' requests (`known_words`) or of English (scikit-learn's stop words: "would"
    is not a typo of "world") is never a typo.
    """

    min_word_chars: int = 5
    max_edits: int = 1
    long_word_chars: int = 9
    long_word_max_edits: int = 2


@dataclass(frozen=True)
class Extraction:
    """What the text mentions, before the intent decides which slots it carries."""

    nodes: tuple[str, ...] = ()
    negated: tuple[str, ...] = ()
    duration: DurationRange | None = None
    track_refs: tuple[TrackRef, ...] = ()
    artists: tuple[str, ...] = ()


@dataclass
class Gazetteer:
    """Phrase -> taxonomy node ids, plus artist names and the words that are never typos."""

    phrases: Mapping[str, tuple[str, ...]]
    artists: Sequence[str] = ()
    known_words: frozenset[str] = frozenset()
    fuzzy: FuzzyConfig = field(default_factory=FuzzyConfig)

    def __post_init__(self) -> None:
        self._index = {tuple(tokenize(p)): ids for p, ids in self.phrases.items() if tokenize(p)}
        self._artists = {tuple(tokenize(a)): a for a in self.artists if tokenize(a)}
        self._max_tokens = max((len(k) for k in [*self._index, *self._artists]), default=1)
        self._fuzzy_choices: dict[int, list[tuple[str, ...]]] = {}
        for phrase in self._index:
            self._fuzzy_choices.setdefault(len(phrase), []).append(phrase)
        self._vocabulary = {t for k in self._index for t in k} | set(self.known_words) | ENGLISH_STOP_WORDS
        self._fuzzy_cache: dict[str, tuple[str, ...] | None] = {}

    @classmethod
    def from_taxonomy(
        cls, taxonomy: Taxonomy, artists: Iterable[str] = (), known_words: Iterable[str] = ()
    ) -> "Gazetteer":
        """Names, aliases and synonyms; a synonym's targets lose those implied by an ancestor also named."""
        phrases = {p: _without_descendants(ids, taxonomy) for p, ids in taxonomy.phrase_index().items()}
        return cls(phrases, sorted(set(artists)), frozenset(known_words))

    def to_dict(self) -> dict[str, object]:
        return {
            "phrases": {p: list(ids) for p, ids in sorted(self.phrases.items())},
            "artists": list(self.artists),
            "known_words": sorted(self.known_words),
            "fuzzy": self.fuzzy.__dict__,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Gazetteer":
        return cls(
            phrases={p: tuple(ids) for p, ids in dict(data["phrases"]).items()},
            artists=list(data["artists"]),
            known_words=frozenset(data["known_words"]),
            fuzzy=FuzzyConfig(**dict(data["fuzzy"])),
        )

    def extract(self, text: str) -> Extraction:
        lowered = text.casefold().replace("-", " ")
        lowered, duration = _take_duration(lowered)
        lowered, refs = _take_refs(lowered)
        tokens = tokenize(lowered)
        artists, nodes, negated = [], [], []
        pending_negation = -1  # first token index the last negation cue no longer reaches
        i = 0
        while i < len(tokens):
            if cue := _cue_length(tokens, i):
                pending_negation = i + cue + NEGATION_WINDOW
                i += cue
                continue
            if tokens[i] in CLAUSE_BREAKS:
                pending_negation = -1
                i += 1
                continue
            if artist := self._match_artist(tokens, i):
                name, length = artist
                artists.append(name)
                i += length
                continue
            match = self._match_phrase(tokens, i)
            if match is None:
                i += 1
                continue
            ids, length = match
            if self._not_a_mention(tokens, i, length, ids):
                i += length
                continue
            if i < pending_negation:
                negated.extend(ids)
                pending_negation = -1  # a cue reaches one phrase only: "no vocals, piano" keeps piano
            else:
                nodes.extend(ids)
            i += length
        negated = list(dict.fromkeys(negated))
        if not (refs or nodes or negated) and BARE_IT.search(lowered):
            # "more like it" points at the track in focus; in "make it darker" "it" is the request itself.
            refs = [TrackRef(index=None)]
        return Extraction(
            nodes=tuple(n for n in dict.fromkeys(nodes) if n not in negated),
            negated=tuple(negated),
            duration=duration,
            track_refs=tuple(refs),
            artists=tuple(dict.fromkeys(artists)),
        )

    @staticmethod
    def _not_a_mention(tokens: Sequence[str], i: int, length: int, ids: tuple[str, ...]) -> bool:
        phrase = tuple(tokens[i : i + length])
        if i > 0 and tokens[i - 1] in VERB_AFTER.get(phrase, ()):
            return True
        if i + length < len(tokens) and tokens[i + length] in VERB_BEFORE.get(phrase, ()):
            return True
        return tuple(tokens[i + length : i + length + 2]) == IDIOM_AFTER_MOOD and all(
            n.startswith("mood/") for n in ids
        )

    def _match_artist(self, tokens: Sequence[str], i: int) -> tuple[str, int] | None:
        for n in range(min(self._max_tokens, len(tokens) - i), 0, -1):
            if (name := self._artists.get(tuple(tokens[i : i + n]))) is not None:
                return name, n
        return None

    def _match_phrase(self, tokens: Sequence[str], i: int) -> tuple[tuple[str, ...], int] | None:
        """The longest phrase starting at token i, exact before fuzzy at each length ("deep hous" is deep house)."""
        for n in range(min(self._max_tokens, len(tokens) - i), 0, -1):
            window = tokens[i : i + n]
            if (ids := self._index.get(tuple(window))) is not None or (
                ids := self._fuzzy_match(window)
            ) is not None:
                return ids, n
        return None

    def _fuzzy_match(self, window: Sequence[str]) -> tuple[str, ...] | None:
        key = " ".join(window)
        if key not in self._fuzzy_cache:
            self._fuzzy_cache[key] = self._closest(tuple(window))
        return self._fuzzy_cache[key]

    def _closest(self, window: tuple[str, ...]) -> tuple[str, ...] | None:
        """The phrase each of whose words the window's words equal or misspell (the fewest edits wins)."""
        if all(t in self._vocabulary for t in window):
            return None
        best: tuple[int, tuple[str, ...]] | None = None
        for phrase in self._fuzzy_choices.get(len(window), ()):
            edits = 0
            for token, word in zip(window, phrase, strict=True):
                if token != word:
                    distance = self._typo_distance(token, word)
                    if distance is None:
                        break
                    edits += distance
            else:
                if best is None or edits < best[0]:
                    best = (edits, phrase)
        return self._index[best[1]] if best else None

    def _typo_distance(self, token: str, word: str) -> int | None:
        """Edits from a phrase word to a token, if the token may be its typo (see `FuzzyConfig`)."""
        fuzzy = self.fuzzy
        if len(word) < fuzzy.min_word_chars or token in self._vocabulary or token[0] != word[0]:
            return None
        allowed = fuzzy.long_word_max_edits if len(word) >= fuzzy.long_word_chars else fuzzy.max_edits
        distance = OSA.distance(token, word, score_cutoff=allowed)
        return distance if distance <= allowed else None


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.casefold().replace("-", " "))


def assemble_slots(intent: Intent, extraction: Extraction) -> Slots:
    """The slots an intent carries, following the label rules of models/labels.py.

    Chitchat, clarification and out-of-scope turns carry nothing; a question about a track carries only
    its reference (the track in focus when none is named). Under less_like the negated nodes go to their
    facets, as the labels write them: apply_turn excludes a less_like turn's facet nodes anyway.
    """
    if intent in NON_RETRIEVAL_INTENTS - {Intent.ASK_ABOUT_TRACK}:
        return Slots()
    refs = list(extraction.track_refs) if intent in REFERENCE_INTENTS else []
    if intent is Intent.ASK_ABOUT_TRACK:
        return Slots(track_refs=refs or [TrackRef(index=None)])
    positive = list(extraction.nodes)
    excluded = list(extraction.negated)
    if intent is Intent.LESS_LIKE:
        positive, excluded = [*positive, *excluded], []
    by_facet = {facet: [n for n in positive if n.split("/", 1)[0] == facet] for facet in FACETS}
    if intent in (Intent.MORE_LIKE, Intent.LESS_LIKE) and not refs and not any(by_facet.values()):
        refs = [TrackRef(index=None)]  # "more like that" with nothing named: the track in focus
    return Slots(
        **by_facet,
        excluded=excluded,
        duration=extraction.duration,
        track_refs=refs,
        artists=list(extraction.artists),
    )


def _without_descendants(ids: tuple[str, ...], taxonomy: Taxonomy) -> tuple[str, ...]:
    """ "feel good" names happy, positive and upbeat; the last two are below happy, which already covers them."""
    return tuple(n for n in ids if not any(n != other and n in taxonomy.descendants(other) for other in ids))


def _cue_length(tokens: Sequence[str], i: int) -> int:
    """Tokens of the negation cue at i (0 if none); one-word cues of 5+ letters also match with a typo ("witohut")."""
    exact = max((len(cue) for cue in NEGATION_CUES if tuple(tokens[i : i + len(cue)]) == cue), default=0)
    if exact or i >= len(tokens):
        return exact
    token = tokens[i]
    return int(
        any(
            len(c) == 1 and len(c[0]) >= 5 and c[0][0] == token[0] and OSA.distance(token, c[0]) <= 1
            for c in NEGATION_CUES
        )
    )


def _number(word: str) -> float:
    return float(NUMBER_WORDS.get(word, word))


def _seconds(value: str, unit: str) -> float:
    return _number(value) * (1 if unit.startswith("s") else 60)


def _take_duration(text: str) -> tuple[str, DurationRange | None]:
    """The duration bounds named in the text, and the text with them blanked out."""
    if match := DURATION_BETWEEN.search(text):
        low, high = sorted((_seconds(match[1], match[3]), _seconds(match[2], match[3])))
        return _blank(text, match), DurationRange(min_s=low, max_s=high)
    bounds: dict[str, float] = {}
    for match in DURATION_BOUND.finditer(text):
        key = "max_s" if re.fullmatch(_AT_MOST, match[1]) else "min_s"
        bounds[key] = _seconds(match[2], match[3])
    if not bounds:
        return text, None
    if bounds.get("min_s", 0) > bounds.get("max_s", float("inf")):
        bounds.pop("min_s")  # contradictory: the upper bound is the more common request
    return DURATION_BOUND.sub(" ", text), DurationRange(**bounds)


def _take_refs(text: str) -> tuple[str, list[TrackRef]]:
    """Ordinal, numbered and demonstrative references ("the 2nd one", "track 3", "that song"), in order."""
    found: list[tuple[int, TrackRef]] = []
    for match in ORDINAL_REF.finditer(text):
        found.append((match.start(), TrackRef(index=ORDINAL_WORDS[match[1]])))
    for match in NUMBERED_REF.finditer(text):
        if (number := int(_number(match[1]))) >= 1:
            found.append((match.start(), TrackRef(index=number - 1)))
    text = NUMBERED_REF.sub(" ", ORDINAL_REF.sub(" ", text))
    if not found and (match := DEMONSTRATIVE_REF.search(text)):
        found.append((match.start(), TrackRef(index=None)))
    refs = [ref for _, ref in sorted(found, key=lambda item: item[0])]
    return DEMONSTRATIVE_REF.sub(" ", text), list(dict.fromkeys(refs))


def _blank(text: str, match: re.Match[str]) -> str:
    return f"{text[: match.start()]} {text[match.end() :]}"
