"""Who made each track, and which artists or titles a listener names, matched fuzzily against the catalog.

A listener types "back street boys", "beyonce" or "megan the stallion"; the catalog says "Backstreet Boys",
"Beyoncé" and "Megan Thee Stallion". Names and turns are compared as casefolded, accent-free strings with
spaces and punctuation removed. Every run of 1-5 words of a turn is looked up exactly; runs of 6+ characters
that match nothing exactly are compared with every name by rapidfuzz's ratio (>= 90: an edit or two in a
long name). A run of common words only ("yes", "the end") never matches, so chatter is not read as an
artist, and one-word runs must be 3+ characters. Overlapping matches keep the best, then the longest.
Titles match exactly, and only when 2+ words long: one-word titles ("Home", "Love") are everyday words.

A track's artists are its `artists` names; a catalog without names (MTG-Jamendo) falls back to its
`artist_id`, so "the artists you liked" means the same thing on both.
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

FUZZY_CUTOFF = 90  # rapidfuzz ratio, 0-100
FUZZY_MIN_CHARS = 6  # shorter runs only match exactly: one edit in "drake" is "drama"
MAX_WORDS = 5
# Words of requests, not names: a run made only of these is never an artist or a title.
COMMON_WORDS = frozenset(ENGLISH_STOP_WORDS) | {
    "add",
    "also",
    "artist",
    "artists",
    "band",
    "bands",
    "best",
    "classic",
    "classics",
    "good",
    "great",
    "hello",
    "hey",
    "hi",
    "hits",
    "like",
    "love",
    "loved",
    "maybe",
    "music",
    "nice",
    "ok",
    "okay",
    "play",
    "playlist",
    "please",
    "really",
    "some",
    "song",
    "songs",
    "sure",
    "thank",
    "thanks",
    "track",
    "tracks",
    "want",
    "yeah",
    "yes",
}
_NON_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Lowercased, accents removed ("Beyoncé" -> "beyoncé" -> "beyonce"), spacing kept."""
    text = text.lower()
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def fold_expr(column: pl.Expr) -> pl.Expr:
    """`fold` over a string column, in polars."""
    return column.str.to_lowercase().str.normalize("NFKD").str.replace_all(r"\p{M}", "")


def name_key(text: str) -> str:
    """The form names are compared in: folded, every space and punctuation mark removed."""
    return _NON_WORD.sub("", fold(text))


def _words(text: str) -> list[str]:
    return _NON_WORD.sub(" ", fold(text)).split()


@dataclass(frozen=True)
class Mentions:
    artists: tuple[str, ...] = ()  # artist keys, in the order named
    tracks: tuple[str, ...] = ()  # track ids whose title was named

    def __bool__(self) -> bool:
        return bool(self.artists or self.tracks)


class CatalogNames:
    """The artists of every track (by name, else by id) and the names a turn can be matched against.

    Built column-wise with polars; track -> artists and artist -> tracks are CSR arrays, so a 1M-track
    catalog holds no per-track Python objects.
    """

    def __init__(self, catalog: pl.DataFrame) -> None:
        self.track_ids: list[str] = catalog["track_id"].to_list()
        rows = catalog.select("artist_id", "artists").with_row_index("position")
        named = (
            rows.explode("artists")
            .drop_nulls("artists")
            .with_columns(key=fold_expr(pl.col("artists")).str.replace_all(r"[\W_]+", ""))
            .filter(pl.col("key") != "")
            .select("position", "key", display=pl.col("artists"))
        )
        by_id = rows.join(named, on="position", how="anti").drop_nulls("artist_id")
        pairs = pl.concat(
            [named, by_id.select("position", key="id:" + pl.col("artist_id"), display=pl.col("artist_id"))]
        ).unique(["position", "key"], keep="first", maintain_order=True)
        keys = pairs.group_by("key", maintain_order=True).agg(pl.col("display").first())
        self.keys: list[str] = keys["key"].to_list()
        self.display: dict[str, str] = dict(keys.iter_rows())
        self._code = {key: code for code, key in enumerate(self.keys)}
        pairs = pairs.with_columns(code=pl.col("key").replace_strict(self._code, return_dtype=pl.Int64))
        n = catalog.height
        by_track = pairs.sort("position", maintain_order=True)
        self._track_ptr = np.concatenate(
            [[0], np.cumsum(np.bincount(by_track["position"].to_numpy(), minlength=n))]
        )
        self._track_codes = by_track["code"].to_numpy()
        by_artist = pairs.sort("code", maintain_order=True)
        self._artist_ptr = np.concatenate(
            [[0], np.cumsum(np.bincount(by_artist["code"].to_numpy(), minlength=len(self.keys)))]
        )
        self._artist_positions = by_artist["position"].cast(pl.Int64).to_numpy()
        counts = np.diff(self._track_ptr)
        first = self._track_codes[np.minimum(self._track_ptr[:-1], max(len(self._track_codes) - 1, 0))]
        self.primary = np.where(counts > 0, first, -1)  # each track's first artist code, -1 without
        self._names = [k for k in self.keys if not k.startswith("id:") and len(k) >= 3]
        self._name_set = frozenset(self._names)
        common = pl.Series(sorted(COMMON_WORDS), dtype=pl.String)
        titles = (
            catalog.select(
                position=pl.int_range(pl.len(), dtype=pl.Int64),
                words=fold_expr(pl.col("title"))
                .str.replace_all(r"[\W_]+", " ")
                .str.strip_chars()
                .str.split(" "),
            )
            .filter(
                (pl.col("words").list.len() >= 2)
                & ~pl.col("words").list.eval(pl.element().is_in(common)).list.all()
            )
            .group_by(key=pl.col("words").list.join(""))
            .agg("position")
        )
        self._titles: dict[str, list[int]] = dict(
            zip(titles["key"], titles["position"].to_list(), strict=True)
        )

    @property
    def has_names(self) -> bool:
        return bool(self._names)

    def artists_of(self, position: int) -> list[str]:
        start, end = self._track_ptr[position], self._track_ptr[position + 1]
        return [self.keys[c] for c in self._track_codes[start:end]]

    def codes(self, artist_keys: Iterable[str]) -> set[int]:
        return {self._code[k] for k in artist_keys if k in self._code}

    def weights(self, artist_weights: Mapping[str, float]) -> np.ndarray:
        """Per catalog track, the heaviest weight among its artists (0 for none)."""
        out = np.zeros(len(self.track_ids))
        for key, weight in artist_weights.items():
            positions = self.positions_of([key])
            out[positions] = np.maximum(out[positions], weight)
        return out

    def positions_of(self, artist_keys: Iterable[str]) -> np.ndarray:
        codes = [self._code[k] for k in artist_keys if k in self._code]
        parts = [self._artist_positions[self._artist_ptr[c] : self._artist_ptr[c + 1]] for c in codes]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def find(self, text: str) -> Mentions:
        """Artists and titles named in a turn, best and longest matches first where runs overlap."""
        if not (self._names or self._titles):
            return Mentions()
        words = _words(text)
        runs = [
            ("".join(words[start : start + size]), start, size)
            for size in range(min(MAX_WORDS, len(words)), 0, -1)
            for start in range(len(words) - size + 1)
            if not set(words[start : start + size]) <= COMMON_WORDS and (size > 1 or len(words[start]) >= 3)
        ]
        found: list[tuple[float, int, int, str, str]] = []  # (score, size, start, kind, key)
        fuzzy = []
        for key, start, size in runs:
            if key in self._name_set:
                found.append((100.0, size, start, "artist", key))
            elif len(key) >= FUZZY_MIN_CHARS:
                fuzzy.append((key, start, size))
            if size >= 2 and key in self._titles:
                found.append((100.0, size, start, "title", key))
        if fuzzy and self._names:
            scores = process.cdist(
                [key for key, _, _ in fuzzy],
                self._names,
                scorer=fuzz.ratio,
                score_cutoff=FUZZY_CUTOFF,
                dtype=np.uint8,
                workers=1,
            )
            best = scores.argmax(axis=1)
            for (_, start, size), j, row in zip(fuzzy, best, scores, strict=True):
                if row[j]:
                    found.append((float(row[j]), size, start, "artist", self._names[j]))
        kept, taken = [], set()
        for match in sorted(found, key=lambda m: (-m[0], -m[1], m[2])):
            span = set(range(match[2], match[2] + match[1]))
            if not span & taken:
                taken |= span
                kept.append(match)
        kept.sort(key=lambda m: m[2])  # in the order the listener named them
        artists = [key for *_, kind, key in kept if kind == "artist"]
        tracks = [self.track_ids[i] for *_, kind, key in kept if kind == "title" for i in self._titles[key]]
        return Mentions(tuple(dict.fromkeys(artists)), tuple(dict.fromkeys(tracks)))

    def names(self, artist_keys: Sequence[str]) -> list[str]:
        return [self.display.get(k, k) for k in artist_keys]
