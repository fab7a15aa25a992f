"""Top-k cosine search over track embeddings: exact numpy up to EXACT_MAX_VECTORS, a faiss HNSW graph above.

Chosen by `python -m benchmarks.vector_index` (README, *Dense retrieval*): at catalog sizes like
MTG-Jamendo's 55k an exact matrix-vector product is a few milliseconds, needs no build and no memory beyond
the vectors, and is exact under any filter; at 1M it is too slow for a turn, and faiss's HNSW answers in about
a millisecond at recall@10 near 1. faiss rather than usearch or LanceDB: it searches the graph under a filter
mask (`IDSelectorBitmap`), which is how every retrieval component applies the listener's constraints.
"""

from collections.abc import Sequence

import numpy as np

EXACT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 256  # >= the 200 candidates a component is asked for


class VectorIndex:
    def __init__(self, vectors: np.ndarray, keys: Sequence[str] | None = None) -> None:
        """`keys` (text keys): rows sharing one share a vector, which exact search then scores once. MTG-Jamendo
        tracks have no titles, so 55k tracks have 21k distinct texts and a query reads 2.6x fewer bytes."""
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # L2-normalised rows
        if keys is None:
            self._distinct, self._row_group = self.vectors, None
        else:
            _, first, self._row_group = np.unique(np.asarray(keys), return_index=True, return_inverse=True)
            self._distinct = np.ascontiguousarray(self.vectors[first])
        self._hnsw = _hnsw(self.vectors) if len(self.vectors) > EXACT_MAX_VECTORS else None

    def __getstate__(self) -> dict:
        # faiss indexes do not pickle; their serialized bytes do (the retrieval_index asset stores this).
        import faiss

        state = dict(self.__dict__)
        state["_hnsw"] = faiss.serialize_index(self._hnsw) if self._hnsw is not None else None
        return state

    def __setstate__(self, state: dict) -> None:
        import faiss

        if state["_hnsw"] is not None:
            state["_hnsw"] = faiss.deserialize_index(state["_hnsw"])
        self.__dict__.update(state)

    def top(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosines of the best `k` rows the mask keeps, best first (ties: lower row first)."""
        query = np.asarray(query, dtype=np.float32)
        if self._hnsw is not None and (mask is None or mask.sum() > EXACT_MAX_VECTORS):
            return self._approximate(query, k, mask)
        scores = self._distinct @ query
        if self._row_group is not None:
            scores = scores[self._row_group]
        rows = np.arange(len(self.vectors)) if mask is None else np.flatnonzero(mask)
        if mask is not None:
            scores = scores[rows]
        if rows.size > k:
            keep = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def _approximate(
        self, query: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k))
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(bits)  # `bits` must outlive the search below
        scores, rows = self._hnsw.search(query[None, :], k, params=params)
        found = rows[0] >= 0
        return rows[0][found], scores[0][found]


def _hnsw(vectors: np.ndarray):
    import faiss  # only catalogs past EXACT_MAX_VECTORS need it

    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    return index
