"""Dense retrieval benchmark: embedding throughput, and the assistant's turn latency with dense retrieval on
against hybrid (55k MTG-Jamendo tracks). What dense adds on CPCD, under the public protocol and on the product
path, is `benchmarks/cpcd_protocol.py --presets hybrid,dense`.

- Throughput of the shipped all-MiniLM-L6-v2 (int8 ONNX) on three kinds of text: listener requests, CPCD
  track texts (title, artists, album) and MTG-Jamendo track texts (tag words and their taxonomy phrases: the
  longest). Wall rate and CPU time per text (the machine is shared: CPU time is the steadier figure; it
  counts every thread, so on idle cores the wall time is lower than the CPU time).
- Assistant turns: the scripted conversations of benchmarks/assistant.py, keyword parser, hybrid preset
  against the dense preset (the dense index built from precomputed vectors, as assistant_runs does).

    python -m benchmarks.embeddings [--vectors .setlist/assets/track_embeddings.parquet] [--sections ...]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.assistant import CONVERSATIONS
from benchmarks.retrieval import MTG, QUERIES, _table
from models.assistant.embedding import MINILM_NAME, embed_texts, load_embedder
from models.assistant.track_text import catalog_texts

REPO = Path(__file__).resolve().parents[1]
CPCD_FILE = REPO / "data" / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz"  # its track texts
THROUGHPUT_TEXTS = 500
REPEATS = 10


def _sample(texts: list[str], n: int) -> list[str]:
    rng = np.random.default_rng(0)
    distinct = sorted(set(texts))
    return [distinct[i] for i in rng.choice(len(distinct), min(n, len(distinct)), replace=False)]


def throughput(mtg_texts: list[str], cpcd_texts: list[str]) -> list[dict[str, object]]:
    model = load_embedder(MINILM_NAME)
    tokenizer = model._tokenizer
    model.embed(list(QUERIES))  # warm up
    rows = []
    requests = [f"{q} {w}" for q in QUERIES for w in ("please", "tonight", "for work", "like before")]
    for name, texts in (
        ("listener requests", requests * 10),
        ("CPCD track texts", _sample(cpcd_texts, THROUGHPUT_TEXTS)),
        ("MTG-Jamendo track texts", _sample(mtg_texts, THROUGHPUT_TEXTS)),
    ):
        tokens = np.mean([sum(e.attention_mask) for e in tokenizer.encode_batch(texts)])  # unpadded
        wall, cpu = time.perf_counter(), time.process_time()
        embed_texts(model, texts)  # distinct texts once, length-sorted batches: what the asset does
        distinct = len(set(texts))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(
            {
                "texts": name,
                "distinct": distinct,
                "mean tokens": f"{tokens:.1f}",
                "texts/s (wall)": f"{distinct / wall:,.0f}",
                "CPU ms per text": f"{1000 * cpu / distinct:.2f}",
            }
        )
    latencies = []
    for query in QUERIES * REPEATS:
        start = time.perf_counter()
        model.embed([query])
        latencies.append(time.perf_counter() - start)
    p50, p95 = np.percentile(np.asarray(latencies) * 1000, [50, 95])
    rows.append(
        {
            "texts": "one query at a time",
            "distinct": len(QUERIES),
            "mean tokens": "",
            "texts/s (wall)": f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
            "CPU ms per text": "",
        }
    )
    return rows


def assistant_latency(catalog: pl.DataFrame, taxonomy, vectors: pl.DataFrame) -> list[dict[str, object]]:
    from models.assistant.assistant import Assistant, Session
    from models.assistant.keyword_parser import KeywordParser
    from models.assistant.retrieval import CatalogIndex
    from models.assistant.retrieval_config import RETRIEVER_PRESETS

    rows = []
    for preset in ("hybrid", "dense"):
        start = time.perf_counter()
        index = CatalogIndex.build(catalog, taxonomy, RETRIEVER_PRESETS[preset], embeddings=vectors)
        build_s = time.perf_counter() - start
        assistant = Assistant(KeywordParser(taxonomy), index, taxonomy)
        turns, cpu, search = [], [], []
        for _ in range(REPEATS):
            for texts in CONVERSATIONS:
                session = Session()
                for text in texts:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    assistant.respond(session, text)
                    turns.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - start_cpu)
        for query in QUERIES * REPEATS:
            start = time.perf_counter()
            index.search(query)
            search.append(time.perf_counter() - start)
        t50, t95 = np.percentile(np.asarray(turns) * 1000, [50, 95])
        c50, c95 = np.percentile(np.asarray(cpu) * 1000, [50, 95])
        s50, s95 = np.percentile(np.asarray(search) * 1000, [50, 95])
        rows.append(
            {
                "preset": preset,
                "tracks": f"{catalog.height:,}",
                "index build s (vectors given)": build_s,
                "turns": len(turns),
                "turn p50/p95 ms": f"{t50:.1f} / {t95:.1f}",
                "turn CPU p50/p95 ms": f"{c50:.1f} / {c95:.1f}",
                "search p50/p95 ms": f"{s50:.1f} / {s95:.1f}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", help="track_embeddings Parquet of the 55k catalog (else embedded now)")
    parser.add_argument("--sections", default="throughput,assistant")
    args = parser.parse_args()
    sections = args.sections.split(",")

    from models.catalog.sources import CatalogSourceSpec, read_catalog
    from models.golden.cpcd import import_cpcd
    from models.taxonomy import load_curated

    taxonomy = load_curated(REPO / "data" / "taxonomy.yaml")
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(MTG))).kept
    mtg_texts = catalog_texts(catalog, taxonomy).to_list()
    if "throughput" in sections:
        cpcd_texts = catalog_texts(import_cpcd(CPCD_FILE).corpus, None).to_list()
        print("## Embedding throughput, all-MiniLM-L6-v2 int8 ONNX\n")
        print(_table(throughput(mtg_texts, cpcd_texts)))
    if "assistant" in sections:
        if args.vectors:
            vectors = pl.read_parquet(args.vectors)
        else:
            done = embed_texts(load_embedder(MINILM_NAME), mtg_texts, on_progress=print)
            vectors = pl.DataFrame({"text_key": done.keys, "embedding": done.vectors})
        print("\n## Offline assistant turns and search at 55k tracks: hybrid against dense\n")
        print(_table(assistant_latency(catalog, taxonomy, vectors)))


if __name__ == "__main__":
    main()
