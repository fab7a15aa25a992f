"""Track embeddings: the dense-retrieval vector of every catalog track, embedded only when its text is new."""

import dagster as dg
import polars as pl

from models.assistant.embedding import MINILM_NAME, MINILM_SHA256, embed_texts, load_embedder, vector_table
from models.assistant.track_text import catalog_texts
from models.taxonomy import Taxonomy


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
    required_resource_keys={"io_manager"},
    description=(
        "A 384-dim all-MiniLM-L6-v2 vector (int8 ONNX shipped in a wheel, sha256-pinned) per catalog track, of "
        "the same text BM25 indexes. Incremental: vectors are keyed by a hash of model and text, and only texts "
        "the previous materialization lacks are embedded. Dense retrieval candidates build their index from it."
    ),
)
def track_embeddings(
    context: dg.AssetExecutionContext, catalog: pl.DataFrame, taxonomy: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    texts = catalog_texts(catalog, Taxonomy.from_table(taxonomy)).to_list()
    result = embed_texts(
        load_embedder(MINILM_NAME),
        texts,
        reuse=_previous(context),
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
