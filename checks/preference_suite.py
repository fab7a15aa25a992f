"""Checks of DPO preference pairs: well-formed, no evaluation item inside, no length or intent skew.

- Overlap: a pair from an evaluation conversation, or whose request (near-)duplicates an evaluation turn,
  would train on the test set. Curated conversations and the CPCD evaluation part are evaluation items;
  near-duplicates use the synthetic pipeline's index (`checks.golden_leakage`), so both agree.
- Length bias (blocking): DPO readily learns "longer is better" when chosen answers are systematically
  longer (Park et al. 2024, "Disentangling Length from Quality in DPO"). The pairs are length-balanced
  per source before export (`models.feedback.preferences.length_balanced`), so the share of pairs with a
  longer chosen side must lie within 0.5 +- 0.05 per source and overall; outside it, the set teaches
  length and is not exported for training.
- Intent balance (warning): above 60% of the judge and feedback pairs in one intent, the model mostly learns that
  behaviour; 60% leaves room for "recommend" leading, as it does in real traffic.
"""

import great_expectations as gx
import polars as pl

from checks.golden_leakage import leaked_turns
from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from models.feedback.preferences import PAIR_SCHEMA, SOURCES
from models.golden.cpcd import cpcd_evaluation_turns

LENGTH_BIAS_BOUNDS = (0.45, 0.55)
MAX_INTENT_SHARE = 0.6
MIN_PAIRS_FOR_SHARES = 30
INTENT_SOURCES = ("judge_pairwise", "user_feedback")

OVERLAP_SCHEMA = pl.Schema(
    {
        "pair_id": pl.String,
        "source": pl.String,
        "conversation_id": pl.String,
        "request": pl.String,
        "rule": pl.String,  # cpcd_evaluation_conversation, curated_conversation, evaluation_text
        "evaluation_item": pl.String,  # "<set>:<conversation_id>#<turn_index>"
    }
)


def evaluation_overlap(
    pairs: pl.DataFrame, curated_turns: pl.DataFrame, cpcd_turns: pl.DataFrame
) -> pl.DataFrame:
    """Pairs that touch an evaluation item, one row per (pair, item) with the rule that matched."""
    cpcd_eval = cpcd_evaluation_turns(cpcd_turns)
    by_id = [
        pairs.join(items.select("conversation_id").unique(), on="conversation_id", how="semi").with_columns(
            rule=pl.lit(rule), evaluation_item=pl.lit(prefix) + pl.col("conversation_id")
        )
        for items, rule, prefix in (
            (cpcd_eval, "cpcd_evaluation_conversation", "cpcd:"),
            (curated_turns, "curated_conversation", "curated:"),
        )
    ]
    evaluation_texts = pl.concat(
        [
            curated_turns.select(
                (pl.lit("curated:") + pl.col("conversation_id")).alias("conversation_id"),
                pl.col("turn_index").cast(pl.Int32),
                "text",
            ),
            cpcd_eval.select(
                (pl.lit("cpcd:") + pl.col("conversation_id")).alias("conversation_id"),
                pl.col("turn_index").cast(pl.Int32),
                text="user_query",
            ),
        ]
    )
    requests = (
        pairs.select("pair_id", "request").unique("request").filter(pl.col("request").str.len_chars() > 0)
    )
    leaked = leaked_turns(
        evaluation_texts,
        requests.select(conversation_id="pair_id", turn_index=pl.lit(0, pl.Int32), text="request"),
    )
    by_text = pairs.join(
        leaked.select("text", evaluation_item="golden_turn").unique("text"),
        left_on="request",
        right_on="text",
    ).with_columns(rule=pl.lit("evaluation_text"))
    columns = list(OVERLAP_SCHEMA)
    return pl.concat([frame.select(columns) for frame in [*by_id, by_text]]).cast(dict(OVERLAP_SCHEMA))


def length_bias(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per source and overall: mean characters of chosen and rejected, and the share where chosen is longer."""
    with_len = pairs.with_columns(
        chosen_chars=pl.col("chosen").str.len_chars(), rejected_chars=pl.col("rejected").str.len_chars()
    )
    low, high = LENGTH_BIAS_BOUNDS

    def summary(frame: pl.DataFrame, name: str) -> dict[str, object]:
        differ = frame.filter(pl.col("chosen_chars") != pl.col("rejected_chars"))
        share = (differ["chosen_chars"] > differ["rejected_chars"]).mean() if differ.height else None
        judged = share is not None
        return {
            "source": name,
            "pairs": frame.height,
            "mean_chosen_chars": round(frame["chosen_chars"].mean() or 0.0, 1),
            "mean_rejected_chars": round(frame["rejected_chars"].mean() or 0.0, 1),
            "chosen_longer_share": None if share is None else round(share, 3),
            "flagged": bool(judged and not low <= share <= high),
        }

    rows = [summary(with_len.filter(pl.col("source") == s), s) for s in SOURCES]
    return pl.DataFrame([*rows, summary(with_len, "all")])


def intent_shares(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each intent's share of the judge and feedback pairs that know their intent."""
    known = pairs.filter(pl.col("source").is_in(INTENT_SOURCES) & pl.col("intent").is_not_null())
    return (
        known.group_by("intent")
        .len("pairs")
        .with_columns(share=(pl.col("pairs") / max(known.height, 1)).round(3))
        .sort("pairs", descending=True)
    )


def validate_preference_pairs(
    pairs: pl.DataFrame, curated_turns: pl.DataFrame, cpcd_turns: pl.DataFrame
) -> SuiteOutcome:
    """Blocking: schema, complete rows, known sources, unique ids, chosen != rejected, no evaluation item."""
    outcome = run_suite(
        "preference_pairs",
        pairs.select("pair_id", "source", "prompt", "chosen", "rejected").with_columns(
            chosen_differs=pl.col("chosen") != pl.col("rejected")
        ),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            *(
                gx.expectations.ExpectColumnValuesToNotBeNull(column=c)
                for c in ("prompt", "chosen", "rejected")
            ),
            gx.expectations.ExpectColumnValuesToBeUnique(column="pair_id"),
            gx.expectations.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)),
            gx.expectations.ExpectColumnValuesToBeInSet(column="chosen_differs", value_set=[True]),
        ],
    )
    unversioned = pairs.filter(
        (pl.col("source") == "judge_pairwise") & pl.col("judge_version").is_null()
    ).height
    overlap = evaluation_overlap(pairs, curated_turns, cpcd_turns)
    schema_ok = pairs.schema == PAIR_SCHEMA
    return SuiteOutcome(
        "preference_pairs",
        [
            ExpectationOutcome(
                "schema_equals(PAIR_SCHEMA)", schema_ok, "matches" if schema_ok else str(pairs.schema)
            ),
            *outcome.outcomes,
            ExpectationOutcome(
                "judge_pairs_name_their_judge_version", unversioned == 0, f"{unversioned} without"
            ),
            ExpectationOutcome(
                "no_evaluation_item_in_pairs",
                overlap.is_empty(),
                "none"
                if overlap.is_empty()
                else f"{overlap['pair_id'].n_unique()} pairs, e.g. {overlap.head(3).select('rule', 'evaluation_item').rows()}",
            ),
        ],
    )


def length_balance(pairs: pl.DataFrame) -> SuiteOutcome:
    """Blocking: the chosen-longer share within LENGTH_BIAS_BOUNDS per source and overall."""
    outcomes = [
        ExpectationOutcome(
            f"chosen_longer_share_within_{LENGTH_BIAS_BOUNDS}({row['source']})",
            not row["flagged"],
            f"{row['chosen_longer_share']} of {row['pairs']} pairs "
            f"(mean chars {row['mean_chosen_chars']} vs {row['mean_rejected_chars']})",
        )
        for row in length_bias(pairs).iter_rows(named=True)
        if row["pairs"]
    ]
    return SuiteOutcome("preference_length_balance", outcomes)


def intent_balance(pairs: pl.DataFrame) -> SuiteOutcome:
    """Warning-level: no intent above MAX_INTENT_SHARE of the judge and feedback pairs."""
    shares = intent_shares(pairs)
    top = shares.row(0, named=True) if shares.height else None
    judged = top is not None and shares["pairs"].sum() >= MIN_PAIRS_FOR_SHARES
    return SuiteOutcome(
        "preference_intent_balance",
        [
            ExpectationOutcome(
                f"no_intent_above_{MAX_INTENT_SHARE}_of_judge_and_feedback_pairs",
                not (judged and top["share"] > MAX_INTENT_SHARE),
                f"top: {top['intent']} {top['share']} of {shares['pairs'].sum()}" if top else "no intents",
            )
        ],
    )
