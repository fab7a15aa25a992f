"""Great Expectations suite for synthetic conversations: schema, taxonomy-valid slots, intent balance, no leakage."""

from collections.abc import Iterable

import great_expectations as gx
import polars as pl

from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from models.labels import TURN_SCHEMA, Intent
from models.synthetic.postprocess import NearDuplicateIndex, PostprocessConfig
from models.synthetic.stats import intent_shares, slot_nodes

# Each intent between 2% and 40% of turns: at 2,000 conversations (~4,600 turns) 2% is ~90 turns, enough
# for a per-class F1 with a usable confidence interval; 40% keeps a majority-class guess from looking good
# and the rare intents from being drowned out in training.
MIN_INTENT_SHARE = 0.02
MAX_INTENT_SHARE = 0.40


def validate_synthetic(
    turns: pl.DataFrame,
    node_ids: list[str],
    eval_texts: Iterable[str] = (),
    min_share: float = MIN_INTENT_SHARE,
    max_share: float = MAX_INTENT_SHARE,
) -> SuiteOutcome:
    outcome = run_suite(
        "synthetic_turns",
        turns.select("conversation_id", "turn_index", "text", "intent"),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text"),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["conversation_id", "turn_index"]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="intent", value_set=[i.value for i in Intent]),
        ],
    )
    nodes = pl.DataFrame({"node": slot_nodes(turns)}, schema={"node": pl.String})
    nodes_outcome = run_suite(
        "synthetic_slot_nodes",
        nodes,
        [gx.expectations.ExpectColumnValuesToBeInSet(column="node", value_set=node_ids)],
    )
    shares = pl.DataFrame(list(intent_shares(turns).items()), schema=["intent", "share"], orient="row")
    balance = run_suite(
        "synthetic_intent_balance",
        shares,
        [
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="share", min_value=min_share, max_value=max_share
            )
        ],
    )
    schema_ok = turns.schema == TURN_SCHEMA
    structural = [
        ExpectationOutcome(
            "schema_equals(TURN_SCHEMA)", schema_ok, "matches" if schema_ok else str(turns.schema)
        ),
        _leakage(turns, eval_texts),
    ]
    return SuiteOutcome(
        "synthetic", [*structural, *outcome.outcomes, *nodes_outcome.outcomes, *balance.outcomes]
    )


def _leakage(turns: pl.DataFrame, eval_texts: Iterable[str]) -> ExpectationOutcome:
    index = NearDuplicateIndex(PostprocessConfig())
    n_eval = 0
    for i, text in enumerate(eval_texts):
        index.add(f"eval[{i}]", text)
        n_eval += 1
    leaks = [text for text in turns["text"] if index.match(text)]
    return ExpectationOutcome(
        f"no_turn_near_duplicates_an_eval_item({n_eval} eval texts)",
        not leaks,
        f"{len(leaks)} leaks, e.g. {leaks[:3]}",
    )
