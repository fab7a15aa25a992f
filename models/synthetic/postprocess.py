"""Filters between generated conversations and the training set; every drop is kept with its reason.

Order: length, language, label consistency, leakage into evaluation sets, exact duplicates, near
duplicates (dedup runs last so the copy that survives is one that passed every other filter).

Near duplicates: MinHash LSH over character shingles finds candidate pairs in sub-quadratic time
(100k conversations are ~5e9 pairs for pairwise rapidfuzz, but one LSH insert+query each here); a
rapidfuzz ratio then confirms each candidate, so LSH false positives never drop anything.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from datasketch import MinHash, MinHashLSH
from rapidfuzz import fuzz

from models.labels import NON_RETRIEVAL_INTENTS, Conversation, Intent, Turn
from models.synthetic.rejects import Rejected
from models.taxonomy import Taxonomy, normalize_phrase

# Intents that talk about what was shown, so cannot open a conversation.
NEEDS_CONTEXT = frozenset({Intent.REFINE, Intent.MORE_LIKE, Intent.LESS_LIKE, Intent.ASK_ABOUT_TRACK})
ENGLISH_STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "do",
        "for",
        "from",
        "get",
        "give",
        "i",
        "i'd",
        "i'm",
        "in",
        "is",
        "it",
        "it's",
        "like",
        "me",
        "more",
        "my",
        "no",
        "not",
        "of",
        "on",
        "one",
        "or",
        "play",
        "please",
        "some",
        "something",
        "that",
        "the",
        "this",
        "to",
        "up",
        "want",
        "what",
        "with",
        "without",
        "you",
        "hi",
        "hey",
        "pls",
        "thanks",
        "thx",
        "u",
    )
)
STOPWORD_MIN_WORDS = 12
NUMBER_WORDS = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "fifteen",
    "twenty",
)


@dataclass(frozen=True)
class PostprocessConfig:
    min_chars: int = 2  # per turn
    max_chars: int = 300  # per turn: a listener's request, not an essay
    min_ascii_letter_share: float = 0.9
    min_stopword_share: float = 0.05  # only judged from STOPWORD_MIN_WORDS words: requests are telegraphic
    shingle_chars: int = 4
    num_perm: int = 64
    lsh_jaccard: float = 0.7  # candidate threshold (estimated Jaccard of shingle sets)
    confirm_ratio: float = 88.0  # rapidfuzz ratio (0-100) that confirms a candidate
    fuzzy_min_chars: int = 15  # shorter texts only match exactly: similarity of tiny strings means nothing
    slot_fuzzy_ratio: float = 90.0  # partial_ratio accepting a typo'd slot phrase


@dataclass(frozen=True)
class Postprocessed:
    kept: list[Conversation]
    rejected: list[Rejected]


class Match(NamedTuple):
    key: str
    ratio: float  # rapidfuzz ratio 0-100
    exact: bool  # equal after normalization


def normalize_text(text: str) -> str:
    """Casefolded words and digits only: punctuation, emoji and spacing do not make a text new."""
    return " ".join(re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.casefold()))


class NearDuplicateIndex:
    """MinHash LSH over character shingles, with rapidfuzz confirmation of each candidate."""

    def __init__(self, config: PostprocessConfig) -> None:
        self.config = config
        self._lsh = MinHashLSH(threshold=config.lsh_jaccard, num_perm=config.num_perm)
        # One set of permutations for every MinHash: generating them per text would dominate the cost.
        template = MinHash(num_perm=config.num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        self._texts: dict[str, str] = {}
        self._exact: dict[str, str] = {}

    def add(self, key: str, text: str) -> None:
        normalized = normalize_text(text)
        self._exact.setdefault(normalized, key)
        if len(normalized) >= self.config.fuzzy_min_chars:
            self._texts[key] = normalized
            self._lsh.insert(key, self._minhash(normalized))

    def match(self, text: str) -> Match | None:
        """The indexed item this text duplicates, exactly or confirmed near, if any."""
        normalized = normalize_text(text)
        if normalized in self._exact:
            return Match(self._exact[normalized], 100.0, exact=True)
        if len(normalized) < self.config.fuzzy_min_chars:
            return None
        best: Match | None = None
        for key in sorted(self._lsh.query(self._minhash(normalized))):
            ratio = fuzz.ratio(normalized, self._texts[key])
            if ratio >= self.config.confirm_ratio and (best is None or ratio > best.ratio):
                best = Match(key, ratio, exact=False)
        return best

    def _minhash(self, normalized: str) -> MinHash:
        k = self.config.shingle_chars
        shingles = {normalized[i : i + k].encode() for i in range(max(1, len(normalized) - k + 1))}
        minhash = MinHash(num_perm=self.config.num_perm, permutations=self._permutations, scheme=self._scheme)
        minhash.update_batch(shingles)
        return minhash


class LabelConsistency:
    """Do the labels fit the text? Slot phrases present (via the taxonomy's phrase index), intent rules hold."""

    def __init__(self, taxonomy: Taxonomy, config: PostprocessConfig) -> None:
        self.config = config
        self.phrases = phrases_by_node(taxonomy)

    def problem(self, conversation: Conversation) -> str | None:
        for index, turn in enumerate(conversation.turns):
            if found := self._turn_problem(index, turn):
                return f"turn {index}: {found}"
        return None

    def _turn_problem(self, index: int, turn: Turn) -> str | None:
        intent, slots = turn.labels.intent, turn.labels.slots
        if index == 0 and intent in NEEDS_CONTEXT:
            return f"{intent.value} cannot open a conversation"
        if intent in NON_RETRIEVAL_INTENTS - {Intent.ASK_ABOUT_TRACK} and (
            slots.all_nodes() or slots.duration
        ):
            return f"{intent.value} carries catalog slots"
        if intent is Intent.ASK_ABOUT_TRACK and not slots.track_refs:
            return "ask_about_track without a track reference"
        if intent is Intent.RECOMMEND and not (slots.nodes() or slots.artists or slots.excluded):
            return "recommend without anything to recommend by"
        if intent in (Intent.MORE_LIKE, Intent.LESS_LIKE) and not (slots.nodes() or slots.track_refs):
            return f"{intent.value} without a reference or a facet"
        text = normalize_phrase(turn.text)
        for node_id in slots.all_nodes():
            if not self._mentions(text, node_id):
                return f"{node_id} is labelled but not mentioned"
        if slots.duration is not None:
            bounds = [b for b in (slots.duration.min_s, slots.duration.max_s) if b is not None]
            if not any(_mentions_number(text, b) for b in bounds):
                return "duration is labelled but no matching number is mentioned"
        return None

    def _mentions(self, text: str, node_id: str) -> bool:
        for phrase in self.phrases.get(node_id, ()):
            if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text):
                return True
            if len(phrase) >= 5 and fuzz.partial_ratio(phrase, text) >= self.config.slot_fuzzy_ratio:
                return True
        return False


def phrases_by_node(taxonomy: Taxonomy) -> dict[str, list[str]]:
    """Node id -> every phrase that stands for it (its name, aliases, and synonyms naming it)."""
    by_node: dict[str, list[str]] = {}
    for phrase, node_ids in taxonomy.phrase_index().items():
        for node_id in node_ids:
            by_node.setdefault(node_id, []).append(phrase)
    return by_node


def _mentions_number(text: str, seconds: float) -> bool:
    minutes = round(seconds / 60)
    spoken = NUMBER_WORDS[minutes - 1] if 1 <= minutes <= 10 else None
    return bool(re.search(rf"\b({minutes}|{int(seconds)}{'|' + spoken if spoken else ''})\b", text))


def length_problem(conversation: Conversation, config: PostprocessConfig) -> str | None:
    for index, turn in enumerate(conversation.turns):
        n = len(turn.text.strip())
        if not config.min_chars <= n <= config.max_chars:
            return f"turn {index} has {n} characters (allowed {config.min_chars}-{config.max_chars})"
    return None


def ascii_english_heuristic(text: str, config: PostprocessConfig) -> str | None:
    """A cheap language guess, not language identification: mostly ASCII letters, some English function words."""
    letters = [c for c in text if c.isalpha()]
    if letters:
        share = sum(c.isascii() for c in letters) / len(letters)
        if share < config.min_ascii_letter_share:
            return f"ASCII letter share {share:.2f} < {config.min_ascii_letter_share}"
    words = normalize_text(text).split()
    if len(words) >= STOPWORD_MIN_WORDS:
        stop_share = sum(w in ENGLISH_STOPWORDS for w in words) / len(words)
        if stop_share < config.min_stopword_share:
            return f"English stopword share {stop_share:.2f} < {config.min_stopword_share}"
    return None


def postprocess(
    conversations: Sequence[Conversation],
    taxonomy: Taxonomy,
    eval_texts: Iterable[str] = (),
    config: PostprocessConfig = PostprocessConfig(),
) -> Postprocessed:
    """Keep what passes every filter; reject the rest with the first reason that applies."""
    consistency = LabelConsistency(taxonomy, config)
    golden = NearDuplicateIndex(config)
    for i, text in enumerate(eval_texts):
        golden.add(f"eval[{i}]", text)
    seen = NearDuplicateIndex(config)

    kept: list[Conversation] = []
    rejected: list[Rejected] = []
    for conversation in conversations:
        full_text = "\n".join(t.text for t in conversation.turns)
        if found := _first_problem(conversation, full_text, consistency, golden, seen, config):
            rejected.append(Rejected(conversation, *found))
        else:
            kept.append(conversation)
            seen.add(conversation.conversation_id, full_text)
    return Postprocessed(kept, rejected)


def _first_problem(
    conversation: Conversation,
    full_text: str,
    consistency: LabelConsistency,
    golden: NearDuplicateIndex,
    seen: NearDuplicateIndex,
    config: PostprocessConfig,
) -> tuple[str, str, str] | None:
    """(stage, reason, detail) of the first filter the conversation fails, cheapest filters first."""
    if detail := length_problem(conversation, config):
        return "length", "too_short_or_long", detail
    if detail := ascii_english_heuristic(full_text, config):
        return "language", "not_english", detail
    if detail := consistency.problem(conversation):
        return "consistency", "label_mismatch", detail
    for index, turn in enumerate(conversation.turns):
        if hit := golden.match(turn.text):
            return (
                "leakage",
                "eval_leakage",
                f"turn {index} {turn.text!r} matches {hit.key} (ratio {hit.ratio:.0f})",
            )
    if hit := seen.match(full_text):
        reason = "exact_duplicate" if hit.exact else "near_duplicate"
        return "dedup", reason, f"duplicate of {hit.key} (ratio {hit.ratio:.0f})"
    return None
