"""Top-k cosine search over track embeddings: exact numpy up to EXACT_MAX_VECTORS distinct vectors, a faiss HNSW
graph above.

Chosen by `python -m benchmarks.vector_index` (README, *Dense retrieval*): at catalog sizes like
MTG-Jamendo's 55k an exact matrix-vector product is a few milliseconds, needs no build and no memory beyond
the vectors, and is exact under any filter; at 1M distinct vectors one exact pass is 59 ms on an idle thread,
and faiss's HNSW answers in 0.7 ms (recall@10 0.86 at 1M, 0.90 at 55k). faiss rather than usearch or LanceDB:
it searches the graph under a filter mask (`IDSelectorBitmap`), which is how every retrieval component applies
the listener's constraints.
"""

from collections.abc import Sequence

import numpy as np

EXACT_MAX_VECTORS = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 256  # >= the 200 candidates a component is asked for


class VectorIndex:
    def __init__(self, vectors: np.ndarray, keys: Sequence[str] | None = None) -> None:
        """`keys` (text keys): rows sharing one share a vector, which is stored, scored and indexed once.
        MTG-Jamendo tracks have no titles, so 55k tracks have 21k distinct texts (a query reads 2.6x fewer
        bytes), and the catalog cycled to 1M rows still has 21k: memory and the HNSW graph follow the distinct
        vectors, not the rows."""
        vectors = np.asarray(vectors, dtype=np.float32)  # L2-normalised rows
        self.rows = len(vectors)
        if keys is None:
            self._distinct, self._row_group = np.ascontiguousarray(vectors), None
        else:
            _, first, self._row_group = np.unique(np.asarray(keys), return_index=True, return_inverse=True)
            self._distinct = np.ascontiguousarray(vectors[first])
        self._hnsw = _hnsw(self._distinct) if len(self._distinct) > EXACT_MAX_VECTORS else None
        self._groups: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        # faiss indexes do not pickle; their serialized bytes do (the retrieval_index asset stores this).
        import faiss

        state = dict(self.__dict__)
        state["_hnsw"] = faiss.serialize_index(self._hnsw) if self._hnsw is not None else None
        return state | {"_groups": None}

    def __setstate__(self, state: dict) -> None:
        import faiss

        if state["_hnsw"] is not None:
            state["_hnsw"] = faiss.deserialize_index(state["_hnsw"])
        self.__dict__.update(state)

    @property
    def distinct(self) -> int:
        return len(self._distinct)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of these rows, (len(rows), dim)."""
        rows = np.asarray(rows)
        return self._distinct[rows if self._row_group is None else self._row_group[rows]]

    def top(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosines of the best `k` rows the mask keeps, best first (ties: lower row first)."""
        query = np.asarray(query, dtype=np.float32)
        if self._hnsw is not None:
            allowed = self._allowed(mask)
            if allowed is None or allowed.sum() > EXACT_MAX_VECTORS:
                return self._approximate(query, k, mask, allowed)
        scores = self._distinct @ query
        if self._row_group is not None:
            scores = scores[self._row_group]
        rows = np.arange(self.rows) if mask is None else np.flatnonzero(mask)
        if mask is not None:
            scores = scores[rows]
        if rows.size > k:
            keep = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def _allowed(self, mask: np.ndarray | None) -> np.ndarray | None:
        """The distinct vectors at least one kept row has (None: every one)."""
        if mask is None or self._row_group is None:
            return mask
        allowed = np.zeros(len(self._distinct), dtype=bool)
        allowed[self._row_group[mask]] = True
        return allowed

    def _approximate(
        self, query: np.ndarray, k: int, mask: np.ndarray | None, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The graph's best `k` distinct vectors, each standing for its kept rows in row order: `k` distinct
        vectors cover at least `k` rows."""
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k))
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(bits)  # `bits` must outlive the search below
        scores, found = self._hnsw.search(query[None, :], k, params=params)
        keep = found[0] >= 0
        distinct, scores = found[0][keep], scores[0][keep]
        if self._row_group is None:
            return distinct, scores
        order, bounds = self._members()
        rows = [order[bounds[d] : bounds[d + 1]] for d in distinct]
        if mask is not None:
            rows = [group[mask[group]] for group in rows]
        row_scores = [
            np.full(group.size, score, dtype=np.float32) for group, score in zip(rows, scores, strict=True)
        ]
        return np.concatenate(rows)[:k], np.concatenate(row_scores)[:k]

    def _members(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows grouped by distinct vector, ascending within a group: group d is order[bounds[d]:bounds[d + 1]]."""
        if self._groups is None:
            order = np.argsort(self._row_group, kind="stable")
            self._groups = order, np.searchsorted(self._row_group[order], np.arange(len(self._distinct) + 1))
        return self._groups


def _hnsw(vectors: np.ndarray):
    import faiss  # only catalogs past EXACT_MAX_VECTORS need it

    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    return index
