"""The shipped sentence-embedding model: the reference model's vectors to int8 tolerance, offline, verified on load."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from models.assistant.embedding import (
    MINILM_DIM,
    MINILM_NAME,
    EmbeddingModelError,
    MiniLMEmbedder,
    embed_all,
    embed_texts,
    load_embedder,
    text_keys,
    vector_table,
)
from models.progress import Progress

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub, no network: any outbound connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    return load_embedder(MINILM_NAME)


def test_vectors_match_the_fp32_reference_model(model) -> None:
    reference = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    vectors = model.embed(REFERENCE["sentences"])
    assert vectors.shape == (len(REFERENCE["sentences"]), MINILM_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() > 0.99, dict(zip(REFERENCE["sentences"], cosine.round(4), strict=True))
    assert np.median(cosine) > 0.999  # int8 weights: close to, not equal to, fp32


def test_published_similarities_to_int8_tolerance(model) -> None:
    """sentence-transformers' README prints these for all-MiniLM-L6-v2 (fp32)."""
    v = model.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    similarities = v @ v.T
    np.testing.assert_allclose(
        [similarities[0, 1], similarities[0, 2], similarities[1, 2]], [0.6660, 0.1046, 0.1411], atol=0.01
    )


def test_paraphrases_are_closer_than_unrelated_texts(model) -> None:
    pairs = [
        (
            "chill piano for a rainy evening",
            "relaxing piano music for a wet night",
            "heavy metal with screaming guitars",
        ),
        (
            "A man is playing a guitar.",
            "Someone plays an acoustic guitar.",
            "The stock market fell sharply on Monday.",
        ),
        ("songs to run to", "energetic music for jogging", "a quiet lullaby for a baby"),
    ]
    for anchor, paraphrase, unrelated in pairs:
        a, p, u = model.embed([anchor, paraphrase, unrelated])
        assert a @ p > a @ u + 0.2, (anchor, float(a @ p), float(a @ u))


def test_batching_and_padding_do_not_change_vectors(model) -> None:
    texts = REFERENCE["sentences"]
    alone = np.vstack([model.embed([t]) for t in texts])
    np.testing.assert_allclose(model.embed(texts), alone, atol=1e-4)
    np.testing.assert_allclose(embed_all(model, texts, batch_size=3), alone, atol=1e-4)
    assert model.embed([]).shape == (0, MINILM_DIM)


def test_altered_or_missing_model_file_fails_with_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(EmbeddingModelError, match=r"model\.onnx has sha256 [0-9a-f]{64}, expected 8199be6f"):
        MiniLMEmbedder(model_path=fake)
    with pytest.raises(EmbeddingModelError, match="does not exist"):
        MiniLMEmbedder(model_path=tmp_path / "missing.onnx")
    with pytest.raises(EmbeddingModelError, match="unknown embedder 'no-such-model'"):
        load_embedder("no-such-model")


class CountingEmbedder:
    """Wraps a model and records what it was asked to embed."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner, self.name, self.seen = inner, inner.name, []

    def embed(self, texts):
        self.seen.extend(texts)
        return self.inner.embed(texts)


def test_embed_texts_embeds_only_new_texts_and_reuses_the_rest(model) -> None:
    counting = CountingEmbedder(model)
    texts = ["rock", "jazz piano", "rock", "ambient drone"]
    first = embed_texts(counting, texts)
    assert sorted(counting.seen) == ["ambient drone", "jazz piano", "rock"]  # each distinct text once
    assert (first.unique, first.reused, first.embedded) == (3, 0, 3)
    np.testing.assert_array_equal(first.vectors[0], first.vectors[2])

    previous = vector_table(first.keys, first.vectors)
    counting.seen.clear()
    changed = ["rock", "jazz piano with brushes", "ambient drone"]
    second = embed_texts(counting, changed, reuse=previous)
    assert counting.seen == ["jazz piano with brushes"]
    assert (second.unique, second.reused, second.embedded) == (3, 2, 1)
    np.testing.assert_array_equal(second.vectors[[0, 2]], first.vectors[[0, 3]])
    np.testing.assert_allclose(second.vectors[1], model.embed(["jazz piano with brushes"])[0], atol=1e-5)


def test_text_keys_depend_on_text_and_model() -> None:
    a, b = text_keys(["rock", "rock"], MINILM_NAME), text_keys(["rock"], "another-model@0123")
    assert a[0] == a[1] and a[0] != b[0] and a[0] != text_keys(["Rock"], MINILM_NAME)[0]


def test_progress_reports_done_total_rate_and_eta(model) -> None:
    heard: list[Progress] = []
    embed_all(model, ["a", "b", "c", "d", "e"], batch_size=2, on_progress=heard.append)
    last = heard[-1]
    assert (last.done, last.total) == (5, 5) and last.rate > 0 and last.eta_s == 0
    assert (
        str(Progress(50, 200, 2.0, "embedded", "texts")) == "embedded 50/200 texts (25%), 25 texts/s, ETA 6 s"
    )
    assert (
        str(Progress(3, 40, 60.0, "answered", "requests"))
        == "answered 3/40 requests (8%), 0.05 requests/s, ETA 740 s"
    )
    # Half the texts but a fifth of the characters in 2 s: the rest takes 8 s, not 2.
    assert Progress(50, 100, 2.0, "embedded", "texts", work_done=200, work_total=1000).eta_s == 8


def test_embedding_progress_counts_characters_for_the_eta(model, monkeypatch) -> None:
    monkeypatch.setattr("models.assistant.embedding.PROGRESS_EVERY_S", 0)  # hear every batch
    heard: list[Progress] = []
    texts = ["a", "bb", "ccc " * 20, "dd"]
    embed_all(model, texts, batch_size=2, on_progress=heard.append)
    # The short texts come first: after half of the texts, 3 of 85 characters are done.
    assert [(p.done, p.work_done, p.work_total) for p in heard] == [(2, 3, 85), (4, 85, 85)]
