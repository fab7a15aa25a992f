"""How a retriever is built and queried, and the named presets candidates choose from; candidates in the
platform differ by this config, so it is hashed."""

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.assistant.embedding import MINILM_NAME

Component = Literal["bm25", "tags", "dense"]


class RetrieverConfig(BaseModel):
    """Frozen, hashable and JSON-serialisable; `config_hash` names a retriever candidate in MLflow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    components: tuple[Component, ...] = ("bm25", "tags")
    bm25_k1: float = Field(1.5, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    tag_idf: bool = True  # rare tags weigh more in tag-vector similarity
    rrf_k: int = Field(60, ge=1)
    max_per_artist: int | None = Field(2, ge=1)  # None: no artist cap
    slate_size: int = Field(10, ge=1)
    candidates: int = Field(200, ge=1)  # per component, before fusion and the artist cap
    embedder: str | None = None  # name of the Embedder the dense component was built with

    @field_validator("components")
    @classmethod
    def _canonical_components(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one retrieval component must be on")
        return tuple(sorted(set(value)))  # order is irrelevant to fusion; keep the hash order-free

    @model_validator(mode="after")
    def _dense_needs_embedder(self) -> "RetrieverConfig":
        if ("dense" in self.components) != (self.embedder is not None):
            raise ValueError("set `embedder` exactly when the dense component is on")
        return self

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()[:16]


RETRIEVER_PRESETS: dict[str, RetrieverConfig] = {
    "hybrid": RetrieverConfig(),
    "bm25": RetrieverConfig(components=("bm25",)),
    "tags": RetrieverConfig(components=("tags",)),
    # hybrid plus all-MiniLM-L6-v2 vectors (the track_embeddings asset), fused by RRF
    "dense": RetrieverConfig(components=("bm25", "tags", "dense"), embedder=MINILM_NAME),
}
