"""Write the vector seed: every distinct track text of the configured catalog (the bundled sample by default)
with its MiniLM vector, the file `Settings.vector_seed` names. Rerun it when the sample, the taxonomy or the
track text changes; tests/test_vector_seed.py fails until then.

    python -m orchestration.vector_seed      # from the repo root, about 30 s on 2 cores
"""

import logging
from pathlib import Path

from models.assistant.embedding import MINILM_NAME, load_embedder, vector_seed
from models.assistant.track_text import catalog_texts
from models.catalog.sources import read_catalog
from models.taxonomy import Taxonomy, design_taxonomy, load_curated
from orchestration.settings import Settings, load_settings


def catalog_track_texts(settings: Settings) -> list[str]:
    """The texts the track_embeddings asset embeds for the configured catalog, in catalog order."""
    catalog = read_catalog(settings.catalog).kept
    taxonomy = design_taxonomy(load_curated(settings.taxonomy_file), catalog)
    return catalog_texts(catalog, Taxonomy.from_table(taxonomy)).to_list()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings()
    table = vector_seed(catalog_track_texts(settings), load_embedder(MINILM_NAME), on_progress=logging.info)
    path = Path(settings.vector_seed)
    table.write_parquet(path, compression="zstd", compression_level=19)
    logging.info("%s: %d texts, %.1f MB", path, table.height, path.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
