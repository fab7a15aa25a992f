"""Vector index benchmark: which embedded index serves the dense component, at 55k and 1M tracks.

Candidates, each against brute-force numpy (the baseline, exact): faiss-cpu exact (`IndexFlatIP`) and HNSW
(`IndexHNSWFlat`), usearch HNSW (f32 and i8 storage), LanceDB (embedded, no index and IVF-HNSW-SQ). Per case:
build time, query latency p50/p95 for the top 10 and for the top 200 (what `CatalogIndex` asks each
component for), recall@10 against brute force (ties counted: a hit scoring at least the exact 10th score is
right), and memory (RSS growth while building; peak RSS of the process). Every case runs in a fresh
subprocess so memory figures do not mix.

Vectors: 55k are the real all-MiniLM-L6-v2 vectors of the MTG-Jamendo track texts (from a `track_embeddings`
Parquet file given with --vectors, else embedded now: minutes). 1M are those vectors repeated with Gaussian
noise (sigma chosen so a copy keeps cosine ~0.9 to its original) and re-normalised: the real neighbourhood
structure, without the exact duplicates a plain repeat would give. Queries: 16 listener requests embedded by
the model plus 184 catalog vectors perturbed the same way (the "more like this" case).

    python -m benchmarks.vector_index --sizes 55k,1m [--vectors .setlist/assets/track_embeddings.parquet]
    pip install -e '.[bench]'   # faiss-cpu, usearch and lancedb are only needed here
"""

import argparse
import atexit
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.retrieval import MTG, QUERIES, _table
from models.assistant.vector_index import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M

REPO = Path(__file__).resolve().parents[1]
SIZES = {"55k": 55_525, "1m": 1_000_000}
CASES = ("numpy", "faiss-flat", "faiss-hnsw", "usearch-f32", "usearch-i8", "lancedb-flat", "lancedb-hnsw")
N_QUERIES = 200
NOISE_COSINE = 0.9
THREADS = 2
CACHE = Path(tempfile.gettempdir()) / "setlist-vector-bench"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _noisy(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies at cosine ~NOISE_COSINE to the originals (isotropic noise of the matching norm)."""
    sigma = np.sqrt((1 / NOISE_COSINE**2 - 1) / vectors.shape[1])
    out = vectors + rng.normal(0, sigma, vectors.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def real_vectors(path: str | None) -> np.ndarray:
    """The 55k catalog's vectors, one row per track (tracks sharing a text share a vector)."""
    import polars as pl

    if path:
        return pl.read_parquet(path)["embedding"].to_numpy().astype(np.float32)
    from models.assistant.embedding import MINILM_NAME, embed_texts, load_embedder
    from models.assistant.track_text import catalog_texts
    from models.catalog.sources import CatalogSourceSpec, read_catalog
    from models.taxonomy import load_curated

    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(MTG))).kept
    texts = catalog_texts(catalog, load_curated(REPO / "data" / "taxonomy.yaml")).to_list()
    result = embed_texts(load_embedder(MINILM_NAME), texts, on_progress=lambda p: print(p, file=sys.stderr))
    return result.vectors


def prepare(sizes: list[str], vectors_path: str | None) -> None:
    """Write the base vectors, each size's vectors and the queries as .npy files the cases memory-map."""
    from models.assistant.embedding import MINILM_NAME, load_embedder

    CACHE.mkdir(exist_ok=True)
    base = real_vectors(vectors_path)
    rng = np.random.default_rng(0)
    for label in sizes:
        n = SIZES[label]
        if n <= base.shape[0]:
            data = base[:n]
        else:
            data = np.vstack([base, *(_noisy(base, rng) for _ in range(-(-n // base.shape[0]) - 1))])[:n]
        np.save(CACHE / f"vectors_{label}.npy", np.ascontiguousarray(data, dtype=np.float32))
    listener = load_embedder(MINILM_NAME).embed(list(QUERIES))
    similar = _noisy(base[rng.choice(base.shape[0], N_QUERIES - len(QUERIES), replace=False)], rng)
    np.save(CACHE / "queries.npy", np.vstack([listener, similar]).astype(np.float32))


# --- the cases: build(vectors) -> search(query, k) -> row ids ----------------------------------------------

Search = Callable[[np.ndarray, int], np.ndarray]


def build_numpy(vectors: np.ndarray) -> Search:
    data = np.array(vectors)  # in memory, as CatalogIndex holds it

    def search(q: np.ndarray, k: int) -> np.ndarray:
        scores = data @ q
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top])]

    return search


def build_faiss(vectors: np.ndarray, hnsw: bool) -> Search:
    import faiss

    faiss.omp_set_num_threads(THREADS)
    d = vectors.shape[1]
    if hnsw:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(vectors))

    def search(q: np.ndarray, k: int) -> np.ndarray:
        return index.search(q[None, :], k)[1][0]

    return search


def build_usearch(vectors: np.ndarray, dtype: str) -> Search:
    from usearch.index import Index

    index = Index(
        ndim=vectors.shape[1],
        metric="ip",
        dtype=dtype,
        connectivity=HNSW_M,
        expansion_add=HNSW_EF_CONSTRUCTION,
        expansion_search=HNSW_EF_SEARCH,
    )
    index.add(np.arange(vectors.shape[0]), np.ascontiguousarray(vectors), threads=THREADS)

    def search(q: np.ndarray, k: int) -> np.ndarray:
        return index.search(q, k, threads=1).keys

    return search


def build_lancedb(vectors: np.ndarray, indexed: bool) -> Search:
    import lancedb
    import pyarrow as pa

    folder = tempfile.mkdtemp(prefix="lancedb-", dir=CACHE)
    atexit.register(shutil.rmtree, folder, True)
    db = lancedb.connect(folder)
    d = vectors.shape[1]
    table = db.create_table(
        "tracks",
        pa.table(
            {
                "row": pa.array(np.arange(vectors.shape[0])),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(vectors).ravel()), d
                ),
            }
        ),
    )
    if indexed:
        table.create_index(
            metric="dot", index_type="IVF_HNSW_SQ", m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION
        )

    def search(q: np.ndarray, k: int) -> np.ndarray:
        query = table.search(q, vector_column_name="vector").distance_type("dot").select(["row"]).limit(k)
        if indexed:
            query = query.ef(HNSW_EF_SEARCH)
        return query.to_arrow()["row"].to_numpy()

    return search


BUILDERS: dict[str, Callable[[np.ndarray], Search]] = {
    "numpy": build_numpy,
    "faiss-flat": lambda v: build_faiss(v, hnsw=False),
    "faiss-hnsw": lambda v: build_faiss(v, hnsw=True),
    "usearch-f32": lambda v: build_usearch(v, "f32"),
    "usearch-i8": lambda v: build_usearch(v, "i8"),
    "lancedb-flat": lambda v: build_lancedb(v, indexed=False),
    "lancedb-hnsw": lambda v: build_lancedb(v, indexed=True),
}


LIBRARY = {"faiss": "faiss", "usearch": "usearch.index", "lancedb": "lancedb"}


def run_case(case: str, label: str) -> dict[str, float]:
    vectors = np.load(CACHE / f"vectors_{label}.npy", mmap_mode="r")
    queries = np.load(CACHE / "queries.npy")
    if library := LIBRARY.get(case.split("-")[0]):
        importlib.import_module(library)  # imported before the clock starts: build time is the index's own
    before = _rss_mb()
    start = time.perf_counter()
    search = BUILDERS[case](vectors)
    build_s = time.perf_counter() - start
    grown = _rss_mb() - before
    for q in queries[:5]:
        search(q, 10)  # warm caches and lazy initialisation
    out: dict[str, object] = {"build_s": build_s, "rss_growth_mb": grown}
    for k in (10, 200):
        latencies, answers = [], []
        for q in queries:
            t = time.perf_counter()
            answers.append(np.asarray(search(q, k)).tolist())
            latencies.append(time.perf_counter() - t)
        p50, p95 = np.percentile(np.asarray(latencies) * 1000, [50, 95])
        out[f"p50_ms_{k}"], out[f"p95_ms_{k}"] = float(p50), float(p95)
        if k == 10:
            out["top10"] = answers
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def recall_at_10(label: str, answers: list[list[int]]) -> float:
    """Share of returned ids scoring at least the exact 10th-best score (so ties in the catalog count)."""
    vectors = np.load(CACHE / f"vectors_{label}.npy", mmap_mode="r")
    queries = np.load(CACHE / "queries.npy")
    hits = 0
    for q, ids in zip(queries, answers, strict=True):
        scores = np.asarray(vectors @ q)
        tenth = np.partition(scores, -10)[-10]
        hits += int((scores[np.asarray(ids[:10], dtype=np.int64)] >= tenth - 1e-6).sum())
    return hits / (10 * len(answers))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="55k,1m")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--vectors", help="a track_embeddings Parquet file of the 55k catalog (skips embedding)"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: "<case>:<size>" in this process
    args = parser.parse_args()
    if args.case:
        case, label = args.case.split(":")
        print(json.dumps(run_case(case, label)))
        return

    sizes = args.sizes.split(",")
    prepare(sizes, args.vectors)
    rows = []
    for label in sizes:
        for case in args.cases.split(","):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.vector_index", "--case", f"{case}:{label}"],
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                rows.append({"vectors": label, "index": case, "build s": f"failed: {done.stderr[-200:]}"})
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "vectors": f"{SIZES[label]:,}",
                    "index": case,
                    "build s": r["build_s"],
                    "top-10 p50/p95 ms": f"{r['p50_ms_10']:.2f} / {r['p95_ms_10']:.2f}",
                    "top-200 p50/p95 ms": f"{r['p50_ms_200']:.2f} / {r['p95_ms_200']:.2f}",
                    "recall@10": recall_at_10(label, r["top10"]),
                    "RSS growth MB": f"{r['rss_growth_mb']:,.0f}",
                    "peak RSS MB": f"{r['peak_rss_mb']:,.0f}",
                }
            )
            print(f"done {case} at {label}", file=sys.stderr, flush=True)
    print(
        f"## Vector index: {N_QUERIES} queries, 384-dim all-MiniLM-L6-v2 vectors, {THREADS} threads to build, "
        f"1 to query (HNSW M={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION}, ef_search={HNSW_EF_SEARCH})\n"
    )
    print(_table(rows))


if __name__ == "__main__":
    main()
