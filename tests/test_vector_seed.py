"""The bundled vector seed (data/mtg_jamendo_sample.vectors.parquet): it covers every track text of the bundled
sample as the code builds it today, and its vectors are the shipped model's."""

import numpy as np
import polars as pl

from models.assistant.embedding import MINILM_NAME, load_embedder, text_keys
from orchestration.vector_seed import catalog_track_texts

REGENERATE = "regenerate it with `python -m orchestration.vector_seed`"


def test_the_seed_covers_the_bundled_sample(settings) -> None:
    seed = pl.read_parquet(settings.vector_seed)
    texts = set(catalog_track_texts(settings))
    missing = texts - set(seed["text"])
    assert not missing, f"{len(missing)} bundled track texts have no seed vector: {REGENERATE}"
    assert seed["text_key"].to_list() == text_keys(seed["text"].to_list(), MINILM_NAME), REGENERATE


def test_the_seed_vectors_are_the_models(settings) -> None:
    seed = pl.read_parquet(settings.vector_seed).sample(24, seed=3)
    model = load_embedder(MINILM_NAME).embed(seed["text"].to_list())
    # int8 kernels differ by CPU; the reference test allows cosine 0.999 against fp32.
    np.testing.assert_allclose(seed["embedding"].to_numpy(), model, atol=1e-3)
