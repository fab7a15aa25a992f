"""Figures that say whether a synthetic set is varied and balanced: intent shares, coverage, distinct-n."""

import json

import polars as pl

from models.labels import Intent, Slots
from models.synthetic.postprocess import normalize_text
from models.taxonomy import Taxonomy


def intent_shares(turns: pl.DataFrame) -> dict[str, float]:
    """Share of turns per intent, every intent listed (0.0 when absent)."""
    counts = dict(turns.group_by("intent").len().iter_rows())
    total = max(turns.height, 1)
    return {intent.value: counts.get(intent.value, 0) / total for intent in Intent}


def slot_nodes(turns: pl.DataFrame) -> list[str]:
    """Every node id named in the turns' slots (with repeats)."""
    return [node for raw in turns["slots"] for node in Slots.model_validate(json.loads(raw)).all_nodes()]


def taxonomy_coverage(turns: pl.DataFrame, taxonomy: Taxonomy) -> float:
    """Share of taxonomy nodes named by at least one turn."""
    return len(set(slot_nodes(turns)) & taxonomy.nodes.keys()) / max(len(taxonomy.nodes), 1)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the normalized texts (Li et al., 2016): 1.0 is no repetition."""
    grams = [
        tuple(words[i : i + n])
        for text in texts
        for words in [normalize_text(text).split()]
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0
