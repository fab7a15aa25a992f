"""Hybrid retrieval over the catalog: BM25 on track text, tag-vector cosine, optional dense embeddings, RRF.

`CatalogIndex.build` indexes any catalog in CATALOG_SCHEMA: MTG-Jamendo (tags only) is found through tag
phrases, CPCD (titles, artists, albums, no tags) through its text, accents folded on both sides ("beyonce"
finds "Beyoncé"). Filters are numpy boolean masks (one precomputed row per tag, n_tags x n_tracks bytes:
~190 MB at 1M MTG-Jamendo tracks) combined per query, so no per-track Python runs at query time.

A query is a text or weighted texts (the assistant weighs the latest turn over older ones): each component
scores them as one weighted sum. `similar` ranks "more like these": tag-vector and embedding centroids, and,
where the catalog has artist names, BM25 over the seeds' artist names. The dense component
embeds the same track text with a sentence model (models/assistant/embedding.py) and searches it through
models/assistant/vector_index.py.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

import bm25s
import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from models.assistant.embedding import Embedder, embed_texts, load_embedder
from models.assistant.filters import Filters
from models.assistant.fusion import Hit, diversify, fuse
from models.assistant.names import CatalogNames, fold
from models.assistant.query_tags import PhraseMatcher
from models.assistant.retrieval_config import RetrieverConfig
from models.assistant.track_text import tag_phrases, track_tags, track_texts
from models.assistant.vector_index import VectorIndex
from models.taxonomy import Taxonomy

__all__ = ["CatalogIndex", "Embedder", "Filters", "Hit", "Query", "RetrieverConfig", "diversify", "fuse"]

STOPWORDS = "en"
# What a stored index (the retrieval_index asset) holds: bump it when the fields of CatalogIndex change.
INDEX_FORMAT = "catalog-index-v1"
log = logging.getLogger(__name__)
Query = str | Sequence[tuple[str, float]]  # a text, or texts with weights


class IndexFormatError(ValueError):
    """A stored index written by other code than the one reading it."""


def _tokens(text: str) -> list[str]:
    return bm25s.tokenize([fold(text)], stopwords=STOPWORDS, return_ids=False, show_progress=False)[0]


def _parts(query: Query) -> list[tuple[str, float]]:
    parts = [(query, 1.0)] if isinstance(query, str) else list(query)
    return [(text, weight) for text, weight in parts if text.strip() and weight > 0]


@dataclass(eq=False)
class CatalogIndex:
    config: RetrieverConfig
    catalog: pl.DataFrame
    bm25: bm25s.BM25
    tag_names: list[str]
    tag_rows: sp.csr_matrix  # tracks x tags, L2-normalised rows (IDF-weighted if config.tag_idf)
    tag_cols: sp.csc_matrix  # the same matrix, column-sliceable for queries touching few tags
    tag_idf: np.ndarray
    tag_masks: np.ndarray  # (n_tags, n_tracks) bool
    phrases: PhraseMatcher
    track_ids: list[str]
    artist_ids: list[str | None]
    artist_codes: np.ndarray  # int32 per track, -1 without artist
    durations: np.ndarray  # float64 per track, NaN when unknown
    names: CatalogNames  # who made each track; artist and title mentions
    embedder: Embedder | None = None
    vector_index: VectorIndex | None = None  # the tracks' embeddings (L2-normalised) and their search

    @classmethod
    def build(
        cls,
        catalog: pl.DataFrame,
        taxonomy: Taxonomy | None = None,
        config: RetrieverConfig | None = None,
        embedder: Embedder | None = None,
        embeddings: pl.DataFrame | None = None,
    ) -> "CatalogIndex":
        """`embeddings`: vectors already computed (`text_key`, `embedding`, e.g. the track_embeddings asset);
        with a dense config only the tracks whose text they lack are embedded now."""
        config = config or RetrieverConfig()
        if embedder is None and config.embedder is not None:
            embedder = load_embedder(config.embedder)
        if config.embedder != (embedder.name if embedder else None):
            raise ValueError(f"config names embedder {config.embedder!r}, got {embedder and embedder.name!r}")
        n = catalog.height
        tags = track_tags(catalog)
        tag_names = tags.explode().drop_nulls().unique().sort().to_list()
        phrases = tag_phrases(tag_names, taxonomy)
        texts = track_texts(catalog, tags, phrases).to_list()

        bm25 = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b)
        bm25.index(bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False), show_progress=False)

        tag_rows, tag_idf = _tag_matrix(tags, tag_names, config.tag_idf)
        tag_cols = tag_rows.tocsc()
        tag_masks = np.zeros((len(tag_names), n), dtype=bool)
        tag_masks[np.repeat(np.arange(len(tag_names)), np.diff(tag_cols.indptr)), tag_cols.indices] = True

        artist_ids = catalog["artist_id"].to_list()
        artist_codes = catalog["artist_id"].rank("dense").fill_null(0).cast(pl.Int32).to_numpy() - 1
        embedded = None
        if embedder is not None:
            embedded = embed_texts(embedder, texts, reuse=embeddings, on_progress=lambda p: log.info("%s", p))
        return cls(
            config=config,
            catalog=catalog,
            bm25=bm25,
            tag_names=tag_names,
            tag_rows=tag_rows,
            tag_cols=tag_cols,
            tag_idf=tag_idf,
            tag_masks=tag_masks,
            phrases=PhraseMatcher(phrases),
            track_ids=catalog["track_id"].to_list(),
            artist_ids=artist_ids,
            artist_codes=artist_codes,
            durations=catalog["duration_s"].fill_null(float("nan")).to_numpy(),
            names=CatalogNames(catalog),
            embedder=embedder,
            vector_index=VectorIndex(embedded.vectors, embedded.keys) if embedded else None,
        )

    def reconfigured(self, config: RetrieverConfig) -> "CatalogIndex":
        """This index queried under another configuration, without a rebuild, when only query-time settings
        differ (components, fusion, artist cap, slate size): the presets share one build. An index built
        with an embedder also serves configurations without the dense component."""
        baked = ("bm25_k1", "bm25_b", "tag_idf")
        if any(getattr(config, f) != getattr(self.config, f) for f in baked):
            raise ValueError(
                f"{config} changes what the index was built with ({', '.join(baked)}): build anew"
            )
        if config.embedder not in (None, self.config.embedder):
            raise ValueError(
                f"the index has no {config.embedder} vectors (built with {self.config.embedder})"
            )
        return replace(self, config=config)

    def __getstate__(self) -> dict[str, Any]:
        """What the retrieval_index asset stores: the built parts; the caches are rebuilt on load, and the
        embedder (an ONNX session) is loaded again by name."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return state | {"embedder": self.embedder.name if self.embedder else None, "format": INDEX_FORMAT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if (built := state.pop("format", None)) != INDEX_FORMAT:
            raise IndexFormatError(
                f"this retrieval index was stored as {built}, the code reads {INDEX_FORMAT}: materialize it again"
            )
        embedder = state.pop("embedder")
        self.__init__(**state, embedder=load_embedder(embedder) if embedder else None)

    def __post_init__(self) -> None:
        # Rows are read a few dozen times a turn (cards, stories, feedback): polars row access costs ~50 us.
        self._row = lru_cache(maxsize=4096)(lambda position: self.catalog.row(position, named=True))
        # A conversation's older turns are queried again every turn: embed each text once.
        self._embedded = lru_cache(maxsize=1024)(lambda text: self.embedder.embed([text])[0])
        self._position = {tid: i for i, tid in enumerate(self.track_ids)}
        self._tag_column = {tag: j for j, tag in enumerate(self.tag_names)}
        self._artist_code = {a: int(c) for a, c in zip(self.artist_ids, self.artist_codes, strict=True) if a}

    def __len__(self) -> int:
        return len(self.track_ids)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._position

    def get_track(self, track_id: str) -> dict[str, Any] | None:
        position = self._position.get(track_id)
        return None if position is None else dict(self._row(position))

    def search(
        self, query: Query, filters: Filters | None = None, k: int | None = None, diverse: bool = True
    ) -> list[Hit]:
        """Every enabled component ranks the filtered catalog; RRF fuses them; the artist cap shapes the slate
        (`diverse=False`: no cap, for callers that shape slates themselves)."""
        parts, mask = _parts(query), self.mask(filters)
        rankings: dict[str, list[Hit]] = {}
        if parts and "bm25" in self.config.components:
            scores = sum(w * self._bm25_scores(text) for text, w in parts)
            rankings["bm25"] = self._top("bm25", scores, mask)
        if parts and "tags" in self.config.components:
            vector = sum(w * self._query_tag_vector(text) for text, w in parts)
            rankings["tags"] = self._top("tags", self._tag_scores(vector), mask)
        if parts and "dense" in self.config.components and self.embedder is not None:
            vectors = np.stack([self._embedded(text) for text, _ in parts])
            query_vector = np.asarray([w for _, w in parts], dtype=np.float32) @ vectors
            rankings["dense"] = self._nearest(query_vector, mask)
        return self._slate(rankings, k, diverse)

    def similar(
        self,
        track_ids: Sequence[str],
        k: int | None = None,
        filters: Filters | None = None,
        diverse: bool = True,
    ) -> list[Hit]:
        """More like these, seeds left out: cosine to the centroid of the seeds' tag vectors (and embeddings,
        with the dense component on), and BM25 over the seeds' artist names when the catalog has names and
        BM25 is on."""
        seeds = self.positions(track_ids)
        mask = self.mask(filters)
        mask = np.ones(len(self), dtype=bool) if mask is None else mask
        mask[seeds] = False
        centroid = np.asarray(self.tag_rows[seeds].mean(axis=0)).ravel()
        rankings = {"tags": self._top("tags", self._tag_scores(centroid), mask)}
        if "dense" in self.config.components and self.vector_index is not None:
            rankings["dense"] = self._nearest(self.vector_index.vectors(seeds).mean(axis=0), mask)
        if "bm25" in self.config.components and self.names.has_names:
            artists = dict.fromkeys(a for i in seeds for a in self.names.artists_of(int(i)))
            names = " ".join(self.names.names([a for a in artists if not a.startswith("id:")]))
            rankings["bm25"] = self._top("bm25", self._bm25_scores(names), mask)
        return self._slate(rankings, k, diverse)

    def positions(self, track_ids: Iterable[str]) -> np.ndarray:
        ids = list(track_ids)
        if unknown := [t for t in ids if t not in self._position]:
            raise KeyError(f"track ids not in the index: {unknown[:5]}")
        return np.fromiter((self._position[t] for t in ids), dtype=np.int64, count=len(ids))

    def mask(self, filters: Filters | None) -> np.ndarray | None:
        """Boolean keep-mask over the catalog, or None when nothing is filtered."""
        if filters is None or filters == Filters():
            return None
        keep = np.ones(len(self), dtype=bool)
        for tags in filters.require.values():
            keep &= self._any_tag(tags)
        for tags in filters.exclude.values():
            keep &= ~self._any_tag(tags)
        if filters.exclude_artist_ids:
            codes = [self._artist_code[a] for a in filters.exclude_artist_ids if a in self._artist_code]
            keep &= ~np.isin(self.artist_codes, codes)
        if filters.exclude_track_ids:
            keep[[self._position[t] for t in filters.exclude_track_ids if t in self._position]] = False
        with np.errstate(invalid="ignore"):
            if filters.min_duration_s is not None:
                keep &= self.durations >= filters.min_duration_s
            if filters.max_duration_s is not None:
                keep &= self.durations <= filters.max_duration_s
        return keep

    @property
    def has_durations(self) -> bool:
        return bool((~np.isnan(self.durations)).any())

    def mask_any(self, tags: Iterable[str]) -> np.ndarray:
        """Tracks carrying any of these catalog tags."""
        return self._any_tag(tags)

    def _any_tag(self, tags: Iterable[str]) -> np.ndarray:
        rows = [self._tag_column[t] for t in tags if t in self._tag_column]
        return self.tag_masks[rows].any(axis=0) if rows else np.zeros(len(self), dtype=bool)

    def _bm25_scores(self, query: str) -> np.ndarray:
        token_ids = self.bm25.get_tokens_ids(_tokens(query))
        if not token_ids:
            return np.zeros(len(self), dtype=np.float32)
        return self.bm25.get_scores_from_ids(token_ids)

    def _query_tag_vector(self, query: str) -> np.ndarray:
        vector = np.zeros(len(self.tag_names), dtype=np.float32)
        columns = [self._tag_column[t] for t in self.phrases.tags(query)]
        vector[columns] = self.tag_idf[columns]
        return vector

    def _tag_scores(self, vector: np.ndarray) -> np.ndarray:
        columns = np.flatnonzero(vector)
        if columns.size == 0:
            return np.zeros(len(self), dtype=np.float32)
        return self.tag_cols[:, columns] @ vector[columns]

    def _nearest(self, vector: np.ndarray, mask: np.ndarray | None) -> list[Hit]:
        assert self.vector_index is not None
        rows, scores = self.vector_index.top(vector, self.config.candidates, mask)
        return [
            Hit(self.track_ids[i], float(s), self.artist_ids[i], {"dense": rank})
            for rank, (i, s) in enumerate(zip(rows, scores, strict=True), start=1)
        ]

    def _top(self, component: str, scores: np.ndarray, mask: np.ndarray | None) -> list[Hit]:
        """The best `config.candidates` kept tracks; ties go to catalog order so rankings are reproducible."""
        keep = scores > 0
        if mask is not None:
            keep &= mask
        candidates = np.flatnonzero(keep)
        depth = self.config.candidates
        if candidates.size > depth:
            candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        return [
            Hit(self.track_ids[i], float(scores[i]), self.artist_ids[i], {component: rank})
            for rank, i in enumerate(order, start=1)
        ]

    def _slate(self, rankings: dict[str, list[Hit]], k: int | None, diverse: bool = True) -> list[Hit]:
        non_empty = {name: hits for name, hits in rankings.items() if hits}
        # One list needs no fusion, and keeps its own scores (BM25 or cosine) for display.
        hits = next(iter(non_empty.values())) if len(non_empty) == 1 else fuse(non_empty, self.config.rrf_k)
        if diverse and self.config.max_per_artist is not None:
            hits = diversify(hits, self.config.max_per_artist)
        return hits[: k or self.config.slate_size]


def _tag_matrix(tags: pl.Series, tag_names: list[str], idf: bool) -> tuple[sp.csr_matrix, np.ndarray]:
    """Tracks x tags, L2-normalised rows (sklearn's TF-IDF on binary tags), and the per-tag weights used."""
    n = tags.len()
    if not tag_names:
        return sp.csr_matrix((n, 0), dtype=np.float32), np.zeros(0, dtype=np.float32)
    pairs = tags.rename("tag").to_frame().with_row_index("row").explode("tag").drop_nulls("tag")
    columns = pairs["tag"].replace_strict({t: j for j, t in enumerate(tag_names)}, return_dtype=pl.Int32)
    binary = sp.csr_matrix(
        (np.ones(pairs.height, dtype=np.float32), (pairs["row"].to_numpy(), columns.to_numpy())),
        shape=(n, len(tag_names)),
    )
    transformer = TfidfTransformer(use_idf=idf)
    weighted = transformer.fit_transform(binary).astype(np.float32).tocsr()
    weights = transformer.idf_.astype(np.float32) if idf else np.ones(len(tag_names), dtype=np.float32)
    return weighted, weights
