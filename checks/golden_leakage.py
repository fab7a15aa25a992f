"""Leakage of golden texts into training data: a training turn that (near-)duplicates a golden turn.

Uses the synthetic pipeline's own near-duplicate index, so this check and the filter that drops leaked
synthetic conversations agree on what a duplicate is.
"""

import polars as pl

from models.synthetic.postprocess import NearDuplicateIndex, PostprocessConfig

LEAKAGE_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.String,  # of the training conversation
        "turn_index": pl.Int32,
        "text": pl.String,
        "golden_turn": pl.String,  # "<conversation_id>#<turn_index>" of the golden turn it matches
        "ratio": pl.Float64,  # rapidfuzz ratio 0-100 of the normalized texts
        "exact": pl.Boolean,
    }
)


def leaked_turns(
    golden: pl.DataFrame, training: pl.DataFrame, config: PostprocessConfig = PostprocessConfig()
) -> pl.DataFrame:
    """Training turns whose text matches a golden turn; both frames need conversation_id, turn_index, text."""
    index = NearDuplicateIndex(config)
    for conversation_id, turn_index, text in golden.select(
        "conversation_id", "turn_index", "text"
    ).iter_rows():
        index.add(f"{conversation_id}#{turn_index}", text)
    rows = [
        {
            "conversation_id": conversation_id,
            "turn_index": turn_index,
            "text": text,
            "golden_turn": match.key,
            "ratio": match.ratio,
            "exact": match.exact,
        }
        for conversation_id, turn_index, text in training.select(
            "conversation_id", "turn_index", "text"
        ).iter_rows()
        if (match := index.match(text)) is not None
    ]
    return pl.DataFrame(rows, schema=LEAKAGE_SCHEMA)
