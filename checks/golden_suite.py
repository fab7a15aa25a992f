"""Great Expectations suites for the golden sets: schema, unique ids, valid labels, intent coverage, references."""

import json
from collections.abc import Collection

import great_expectations as gx
import polars as pl

from checks.gx_runner import ExpectationOutcome, SuiteOutcome, run_suite
from models.golden.cpcd import TURNS_SCHEMA as CPCD_TURNS_SCHEMA
from models.golden.curated import GOLDEN_TURN_SCHEMA, RATING_SCALE, RATING_SCHEMA, Behaviour
from models.labels import Intent, Slots

INTENTS = [i.value for i in Intent]


def validate_curated_turns(turns: pl.DataFrame, node_ids: Collection[str]) -> SuiteOutcome:
    """Schema, (conversation_id, turn_index) unique, every intent known and present, every node a taxonomy node."""
    outcome = run_suite(
        "golden_curated",
        turns.select("conversation_id", "turn_index", "text", "intent", "expected_behaviour"),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text"),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["conversation_id", "turn_index"]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="turn_index", min_value=0),
            gx.expectations.ExpectColumnValuesToBeInSet(column="intent", value_set=INTENTS),
            gx.expectations.ExpectColumnDistinctValuesToContainSet(column="intent", value_set=INTENTS),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="expected_behaviour", value_set=[b.value for b in Behaviour]
            ),
        ],
    )
    nodes = run_suite("golden_curated_nodes", _turn_nodes(turns), [_known_nodes(node_ids)])
    return SuiteOutcome(
        "golden_curated", [_schema(turns, GOLDEN_TURN_SCHEMA), *outcome.outcomes, *nodes.outcomes]
    )


def validate_ratings(ratings: pl.DataFrame, turns: pl.DataFrame, node_ids: Collection[str]) -> SuiteOutcome:
    """Ratings in range, every rating about an existing golden turn, shown tracks described by taxonomy nodes."""
    low, high = RATING_SCALE
    outcome = run_suite(
        "golden_ratings",
        ratings.select("rating", "acceptable", "rater", "response"),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToBeBetween(column="rating", min_value=low, max_value=high),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="acceptable"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="rater"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="response"),
        ],
    )
    shown = pl.DataFrame(
        {"node": [n for s in ratings["shown_tracks"] for track in json.loads(s) for n in track["nodes"]]},
        schema={"node": pl.String},
    )
    nodes = run_suite("golden_ratings_nodes", shown, [_known_nodes(node_ids)])
    orphans = ratings.join(turns, on=["conversation_id", "turn_index"], how="anti")
    referenced = ExpectationOutcome(
        "every_rating_refers_to_a_golden_turn",
        orphans.is_empty(),
        orphans.select("conversation_id", "turn_index").rows()[:5] or "all found",
    )
    return SuiteOutcome(
        "golden_ratings", [_schema(ratings, RATING_SCHEMA), *outcome.outcomes, *nodes.outcomes, referenced]
    )


def validate_cpcd_turns(turns: pl.DataFrame, corpus_track_ids: Collection[str]) -> SuiteOutcome:
    """Schema, (conversation_id, turn_index) unique, every liked or disliked track is in the corpus."""
    outcome = run_suite(
        "golden_cpcd",
        turns.select("conversation_id", "turn_index", "user_query"),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="conversation_id"),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["conversation_id", "turn_index"]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="turn_index", min_value=0),
        ],
    )
    rated = turns.select(pl.concat_list("liked", "disliked").explode().drop_nulls().alias("track_id"))
    in_corpus = run_suite(
        "golden_cpcd_rated_tracks",
        rated,
        [gx.expectations.ExpectColumnValuesToBeInSet(column="track_id", value_set=sorted(corpus_track_ids))],
    )
    return SuiteOutcome(
        "golden_cpcd", [_schema(turns, CPCD_TURNS_SCHEMA), *outcome.outcomes, *in_corpus.outcomes]
    )


def _turn_nodes(turns: pl.DataFrame) -> pl.DataFrame:
    """Every node id a turn names (slots, must, must_not), one a row."""
    nodes = [
        *(n for s in turns["slots"] for n in Slots.model_validate_json(s).all_nodes()),
        *(n for s in turns["must"] for group in json.loads(s) for n in group),
        *(n for s in turns["must_not"] for n in json.loads(s)),
    ]
    return pl.DataFrame({"node": nodes}, schema={"node": pl.String})


def _known_nodes(node_ids: Collection[str]) -> gx.expectations.Expectation:
    return gx.expectations.ExpectColumnValuesToBeInSet(column="node", value_set=sorted(node_ids))


def _schema(frame: pl.DataFrame, expected: pl.Schema) -> ExpectationOutcome:
    ok = frame.schema == expected
    return ExpectationOutcome("schema_equals(expected)", ok, "matches" if ok else str(frame.schema))
