"""Retrieval indexes, built once per version of what they index and stored through their IO manager.

Every candidate, the feedback assets and `setlist chat` load these instead of building their own: each
candidate's retriever preset is a view of one build (`CatalogIndex.reconfigured`).
"""

import time

import dagster as dg
import polars as pl

from models.assistant.retrieval import INDEX_FORMAT, CatalogIndex
from models.assistant.retrieval_config import RETRIEVER_PRESETS
from models.taxonomy import Taxonomy
from orchestration.resources import INDEX_IO_MANAGER


def _built(index: CatalogIndex, seconds: float) -> dict[str, object]:
    return {
        "tracks": len(index),
        "tags": len(index.tag_names),
        "dense_vectors": "none"
        if index.vector_index is None
        else f"{index.vector_index.rows} rows, {index.vector_index.distinct} distinct ({index.config.embedder})",
        "build_seconds": round(seconds, 2),
        "format": INDEX_FORMAT,
    }


@dg.asset(
    group_name="catalog",
    kinds={"numpy"},
    io_manager_key=INDEX_IO_MANAGER,
    code_version=INDEX_FORMAT,
    description=(
        "The catalog's retrieval index: BM25 over the track text, tag vectors and filters, artist and title names, "
        "and the track_embeddings vectors for the dense component. Built once per catalog, taxonomy and "
        "embeddings version; every retriever preset queries it (`CatalogIndex.reconfigured`). assistant_runs, "
        "the feedback assets and `setlist chat` load it through its IO manager (a bucket in the gcp profile)."
    ),
)
def retrieval_index(
    catalog: pl.DataFrame, taxonomy: pl.DataFrame, track_embeddings: pl.DataFrame
) -> dg.Output[CatalogIndex]:
    started = time.perf_counter()
    # Built with the widest preset: the dense one's embedder; the vectors come from track_embeddings.
    index = CatalogIndex.build(
        catalog, Taxonomy.from_table(taxonomy), RETRIEVER_PRESETS["dense"], embeddings=track_embeddings
    )
    return dg.Output(index, metadata=_built(index, time.perf_counter() - started))


@dg.asset(
    group_name="golden",
    kinds={"numpy"},
    io_manager_key=INDEX_IO_MANAGER,
    code_version=INDEX_FORMAT,
    description=(
        "The CPCD corpus's retrieval index, lexical (BM25 over titles, artists and albums, names): the BM25 baseline "
        "and every candidate's CPCD replay query it. CPCD has no tags, so no taxonomy phrase has anything to name "
        "and a catalog or taxonomy change leaves it be. A dense candidate embeds the corpus when it is evaluated "
        "instead: embedding 7,527 texts in every foundation run would cost more than the candidate it serves."
    ),
)
def cpcd_index(cpcd_corpus: pl.DataFrame) -> dg.Output[CatalogIndex]:
    started = time.perf_counter()
    index = CatalogIndex.build(cpcd_corpus, config=RETRIEVER_PRESETS["hybrid"])
    return dg.Output(index, metadata=_built(index, time.perf_counter() - started))
