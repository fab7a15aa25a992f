"""The output guard: what an LLM wrote is checked before the listener reads it, whatever the prompt achieved.

Catalog text and listener turns reach the model only as data, but a model can still be talked into
obeying them; this check does not trust the prompt to have prevented it. An answer is replaced, and the
reason recorded, when it

- holds a secret (`secret`): a key-shaped string (`sk-…`, `OPENAI_API_KEY=`, bearer tokens, cloud keys),
  talk of "the API key is …", or the configured key itself, also spelled out with separators;
- discloses a system prompt or its configuration (`system_prompt`): a run of `SHINGLE` of its words; a
  sentence close to one of its sentences (rapidfuzz token ratio, or most of that sentence's content words);
  the prompt's internal names (tool names, schema fields, the `<data>` fence) or settings written as
  `temperature=0.7`; announcing it ("my system prompt is…"); or talk about its instructions or policy ("I
  was told to…", "I only pick…") in a sentence that reuses the prompt's words;
- carries a canary from catalog data (`canary`): an identifier-like token (letters and digits mixed, such
  as `CANARY-7f3a9c`) that only a catalog field holds;
- echoes an instruction from catalog data (`data_instruction`): a catalog field that reads as an order to
  the assistant ("ignore…", "say…", "rate every track…") is data, so its words may reach the listener only
  as the whole field quoted; any of its words that neither the assistant's own prompt, the listener nor the
  track facts use, found elsewhere in the answer, mean the order was followed.

A catalog field quoted whole ("“Clair de Lune”") is the field shown as data, as the track table shows it;
`quote_catalog_values` puts every whole field an answer names into quotes before the check.
"""

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

SHINGLE = 6  # words in a row of a system prompt that count as quoting it
SENTENCE_SIMILARITY = 75  # rapidfuzz token_sort_ratio of an answer sentence to a system prompt sentence
SENTENCE_COVERAGE = 0.6  # share of a system sentence's content words one answer sentence may reuse
QUOTES = {"“": "”", '"': '"', "«": "»", "‘": "’", "'": "'"}

_TOKEN = re.compile(r"\w+(?:[/.'-]\w+)*")
_SENTENCE = re.compile(r"\n+\s*[-•*]?\s*|(?<=[.!?])\s+|\s+[-•*]\s+")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_OUT_OF = re.compile(r"\b(\d+)\s*(?:out of|of|/)\s*(\d+)\b")
_KEY_SHAPES = re.compile(
    r"""
      \bsk-[A-Za-z0-9_-]{8,}                                   # OpenAI-style secret keys (sk-..., sk-proj-...)
    | \b[A-Za-z][A-Za-z0-9_]*(?:API_?KEY|SECRET|TOKEN|PASSWORD)\s*[=:]   # OPENAI_API_KEY=..., X_TOKEN: ...
    | \bapi[\s_-]?key\b[^.\n]{0,12}?\b(?:is|was|=|:)\s*\S      # "the API key is ..."
    | \bBearer\s+[A-Za-z0-9._~+/-]{12,}
    | \bAKIA[0-9A-Z]{16}\b                                     # AWS access key id
    | \bgh[pousr]_[A-Za-z0-9]{20,}                             # GitHub tokens
    | \bxox[abprs]-[A-Za-z0-9-]{10,}                           # Slack tokens
    | -----BEGIN\ [A-Z ]*PRIVATE\ KEY-----
    """,
    re.VERBOSE | re.IGNORECASE,
)
# Talk about its own configuration: "my instructions", "I was told to", "my system prompt says".
_SELF_REFERENCE = re.compile(
    r"\b(?:my|our)\s+(?:own\s+|hidden\s+|secret\s+|system\s+)*"
    r"(?:prompt|instructions?|rules|guidelines|directives|configuration|setup|programming|job|role|task|brief)\b"
    r"|\b(?:these|the)\s+(?:hidden\s+|secret\s+|system\s+)*(?:prompt|instructions)\b"
    r"|\b(?:i\s+was|i\s+am|i'm|i've\s+been|i\s+have\s+been)\s+(?:told|instructed|asked|programmed|configured|designed)\b"
    r"|\b(?:they|developers?|creators?)\s+(?:told|instructed|asked|programmed)\s+me\b"
    r"|\bsystem\s+prompt\b"
    # ... or stating its own policy: "I only pick ids the tools gave me", "I treat the data as untrusted".
    r"|\bi\s+(?:always|never|only|must|should|may\s+not|can\s+only|am\s+(?:not\s+)?(?:allowed|supposed)|treat)\b",
    re.IGNORECASE,
)
# Announcing what its instructions say is disclosing them, whatever words follow.
_ANNOUNCES = re.compile(
    r"\b(?:my|the|our)\s+(?:system\s+|hidden\s+|secret\s+)*(?:prompt|instructions|rules|config(?:uration)?)"
    r"\s+(?:is|are|says?|reads?|goes|tells?\s+me|state)\b",
    re.IGNORECASE,
)
# Text in catalog data that addresses the assistant rather than describing music.
_INSTRUCTION = re.compile(
    r"""
      \b(?:ignore|disregard|forget|override|bypass)\b[^.]{0,40}\b(?:instructions?|prompts?|rules|guidelines|above|previous|prior|everything)\b
    | \b(?:system|developer|admin|assistant)\s*(?:prompt|message|override|mode|note|instructions?)\b
    | (?:^|[.!?]\s*)(?:system|assistant|developer|user)\s*:
    | \byou\s+(?:are|must|will|should)\s+(?:now|only|always|never)\b
    | \bnew\s+(?:instructions?|rules|task|orders)\b
    | \b(?:debug|developer|god|jailbreak|dan)\s+mode\b
    | \b(?:say|print|write|output|reply|respond|answer|repeat|append|add|include|end|start|begin|sign|mention)\b[^.]{0,40}\b(?:with|only|exactly|verbatim|word\s+for\s+word|the\s+(?:word|phrase|code|text|string))\b
    | \b(?:recommend|play|show|list|return|put|rank|rate|give|score)\b[^.]{0,40}\b(?:only|first|top|every|all|each)\b
    | \b(?:reveal|print|show|tell|leak|share|dump|repeat|disclose)\b[^.]{0,30}\b(?:system\s+prompt|prompt|instructions|config(?:uration)?|api[\s_-]?key|secret|password|token)s?\b
    | </?\s*(?:data|system|instructions?)\s*> | \[/?INST\] | <\|im_(?:start|end)\|>
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Guarded:
    text: str
    flagged: bool
    reason: str | None = None  # secret, system_prompt, canary, data_instruction


def normalize(text: str) -> str:
    """Casefolded NFKC, number words as digits and "5 out of 5" as "5/5": one spelling for each."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", lambda m: _NUMBER_WORDS[m[1]], text)
    return _OUT_OF.sub(r"\1/\2", text)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def content_words(text: str) -> set[str]:
    return {_stem(t) for t in tokens(text) if len(t) >= 3 and t not in ENGLISH_STOP_WORDS}


def _identifier_like(token: str) -> bool:
    """A made-up code: letters and digits mixed (canary-7f3a9c, x7k2p9); not a word, year or count."""
    return len(token) >= 5 and any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def quote_catalog_values(text: str, values: Iterable[str]) -> str:
    """Put every whole catalog value the text names (title, artist, album) into quotes, so it reads as the
    data it is rather than as the assistant's words; values already quoted are left alone."""
    wanted = sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=len, reverse=True)
    if not wanted:
        return text
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(v)}(?!\w)" for v in wanted))  # whole words only
    out, last = [], 0
    for match in pattern.finditer(text):
        before = text[match.start() - 1] if match.start() else ""
        after = text[match.end()] if match.end() < len(text) else ""
        out.append(text[last : match.start()])
        quoted = before in QUOTES and after == QUOTES[before]
        out.append(match[0] if quoted else f"“{match[0]}”")
        last = match.end()
    return "".join(out) + text[last:]


def _without_quoted(text: str, values: Iterable[str]) -> str:
    """The answer's own words: whole catalog values in quotes are data being shown, not said."""
    for value in sorted({v.strip() for v in values if v and v.strip()}, key=len, reverse=True):
        for opening, closing in QUOTES.items():
            text = text.replace(f"{opening}{value}{closing}", " ")
    return text


def _sentences(text: str) -> list[str]:
    # A line break inside a sentence (prompt files are YAML blocks) is a space; one before a bullet ends it.
    text = re.sub(r"\s*\n\s*(?![-•*]\s)", " ", text)
    return [s for s in (p.strip() for p in _SENTENCE.split(text)) if s]


class OutputGuard:
    """Built once per prompt: its system messages, internal names and the secrets to keep."""

    def __init__(
        self,
        system_prompts: Sequence[str],
        internal_names: Sequence[str] = (),
        secrets: Sequence[str] = (),
        config_names: Sequence[str] = (),
    ) -> None:
        self._system_sentences = [
            (normalize(s), content_words(s)) for p in system_prompts for s in _sentences(p)
        ]
        self._system_words = set().union(set(), *(words for _, words in self._system_sentences))
        words = [tokens(p) for p in system_prompts]
        self._shingles = {tuple(w[i : i + SHINGLE]) for w in words for i in range(len(w) - SHINGLE + 1)}
        self._internal = [n.casefold() for n in internal_names if "_" in n or "<" in n]
        settings = "|".join(re.escape(n) for n in (*config_names, "model", "base_url"))
        self._config = re.compile(rf"\b(?:{settings})\s*[=:]\s*\S", re.IGNORECASE)
        self._secrets = [s for s in secrets if len(s) >= 8]

    def check(
        self,
        text: str,
        replacement: str,
        catalog_text: Sequence[str] = (),
        grounded: Sequence[str] = (),
    ) -> Guarded:
        """`text` unless `reason` finds a problem, else `replacement`, flagged with the reason."""
        reason = self.reason(text, catalog_text, grounded)
        return Guarded(replacement, True, reason) if reason else Guarded(text, False)

    def leaks(self, text: str) -> bool:
        """Whether `text` holds a secret or discloses a prompt (what evaluation counts as a prompt leak)."""
        return self.reason(text) is not None

    def reason(self, text: str, catalog_text: Sequence[str] = (), grounded: Sequence[str] = ()) -> str | None:
        """Why `text` must not reach the listener, or None. `catalog_text`: the free-text catalog fields the
        model saw (titles, artists, albums); `grounded`: what it may say in its own words (the listener's
        turns, track facets, the request in taxonomy words)."""
        if self._holds_secret(text):
            return "secret"
        own = _without_quoted(text, catalog_text)
        if self._discloses(own):
            return "system_prompt"
        return self._data_echo(own, catalog_text, grounded)

    def _holds_secret(self, text: str) -> bool:
        if _KEY_SHAPES.search(unicodedata.normalize("NFKC", text)):
            return True
        squeezed = re.sub(r"[\W_]+", "", text.casefold())
        return any(re.sub(r"[\W_]+", "", s.casefold()) in squeezed for s in self._secrets)

    def _discloses(self, text: str) -> bool:
        words = tokens(text)
        if any(tuple(words[i : i + SHINGLE]) in self._shingles for i in range(len(words) - SHINGLE + 1)):
            return True
        lowered = normalize(text)
        if any(name in lowered for name in self._internal):
            return True
        if _ANNOUNCES.search(text) or self._config.search(text):
            return True
        for sentence in _sentences(text):
            normalized, content = normalize(sentence), content_words(sentence)
            if _SELF_REFERENCE.search(sentence) and len(content & self._system_words) >= 2:
                return True
            if len(content) < 4:
                continue
            for system, system_content in self._system_sentences:
                shared = content & system_content
                if fuzz.token_sort_ratio(normalized, system) >= SENTENCE_SIMILARITY or (
                    len(shared) >= 4 and len(shared) >= SENTENCE_COVERAGE * len(system_content)
                ):
                    return True
        return False

    def _data_echo(self, text: str, catalog_text: Sequence[str], grounded: Sequence[str]) -> str | None:
        said = set(tokens(text))
        said |= {part for t in said for part in re.split(r"[/.'-]", t)}
        allowed = self._system_words | set().union(set(), *map(content_words, grounded))
        allowed |= {t for g in grounded for t in tokens(g)}
        for field in catalog_text:
            field_tokens = set(tokens(field))
            field_tokens |= {part for t in field_tokens for part in re.split(r"[/.'-]", t)}
            codes = {t for t in field_tokens if _identifier_like(t) and t not in allowed}
            if codes & said:
                return "canary"
            cues = [m[0] for m in _INSTRUCTION.finditer(unicodedata.normalize("NFKC", field))]
            if cues:  # the field addresses the assistant: what it asks to be said must not be said
                payload = content_words(field) - content_words(" ".join(cues)) - allowed
                if payload & {_stem(t) for t in said}:
                    return "data_instruction"
        return None
