"""The curated golden set: the real files load and cover the schema; bad files fail naming file, conversation and rule."""

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from checks.golden_leakage import leaked_turns
from models.golden.curated import CURATED_DIR, GoldenSetError, content_hash, load_curated_set
from models.labels import Intent


def test_real_set_is_large_valid_and_covers_every_intent(taxonomy):
    curated = load_curated_set(taxonomy)
    turns, ratings = curated.turns, curated.ratings
    assert turns["conversation_id"].n_unique() >= 60
    assert turns.height >= 150
    assert set(turns["intent"]) == {i.value for i in Intent}
    assert {"everyday", "refinement", "references", "ambiguity", "negation", "safety"} <= set(turns["theme"])
    assert turns.select("conversation_id", "turn_index").is_duplicated().sum() == 0

    assert ratings.height >= 40
    assert ratings["rating"].is_between(1, 5).all()
    assert set(ratings["rating"]) == {1, 2, 3, 4, 5}
    rated = ratings.join(turns, on=["conversation_id", "turn_index"], how="semi")
    assert rated.height == ratings.height


def test_constraints_are_derived_and_file_expectations_added(taxonomy):
    turns = load_curated_set(taxonomy).turns
    row = turns.filter(pl.col("conversation_id") == "refine-add-piano", pl.col("turn_index") == 2).row(
        0, named=True
    )
    constraint = json.loads(row["constraint"])
    assert constraint["required"] == {
        "genre": ["genre/jazz"],
        "mood": ["mood/calm", "mood/soft"],
        "instrument": ["instrument/piano"],
    }
    assert constraint["max_duration_s"] == 240
    study = turns.filter(pl.col("conversation_id") == "everyday-study-focus").row(0, named=True)
    assert json.loads(study["must"]) == [["activity/study"]]
    assert json.loads(study["must_not"]) == ["instrument/voice"]  # stated by the file, not by the labels
    injection = turns.filter(pl.col("conversation_id") == "safe-print-system-prompt").row(0, named=True)
    assert (injection["intent"], injection["expected_behaviour"]) == ("out_of_scope", "decline")


GOOD = """\
reviewed_by: [eval-lead]
reviewed_on: 2026-11-22
conversations:
  - id: c-good
    turns:
      - text: "some calm piano"
        intent: recommend
        slots: {mood: [mood/calm], instrument: [instrument/piano]}
        ratings:
          - {response: "Calm piano.", rating: 4, acceptable: true, rater: eval-lead}
"""

BAD_FILES = {
    "unknown_intent": GOOD.replace("intent: recommend", "intent: dance_now"),
    "unknown_taxonomy_node": GOOD.replace("mood/calm", "mood/sleepy"),
    "missing_text": GOOD.replace('text: "some calm piano"', 'text: "  "'),
    "rating_out_of_range": GOOD.replace("rating: 4", "rating: 7"),
    "acceptable_contradicts_rating": GOOD.replace(
        "rating: 4, acceptable: true", "rating: 1, acceptable: true"
    ),
    "unknown_rater": GOOD.replace("rater: eval-lead}", "rater: someone-else}"),
}


@pytest.mark.parametrize("rule", sorted(BAD_FILES))
def test_bad_turn_is_named_by_file_conversation_turn_and_rule(tmp_path, taxonomy, rule):
    (tmp_path / "bad.yaml").write_text(BAD_FILES[rule])
    with pytest.raises(GoldenSetError) as raised:
        load_curated_set(taxonomy, tmp_path)
    (issue,) = raised.value.issues
    assert (Path(issue.file).name, issue.conversation_id, issue.turn_index, issue.rule) == (
        "bad.yaml",
        "c-good",
        0,
        rule,
    )
    assert f"bad.yaml: conversation c-good, turn 0: {rule}" in str(raised.value)


def test_duplicate_id_across_files_and_malformed_yaml_are_reported_together(tmp_path, taxonomy):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / "c.yaml").write_text("conversations: [\n  - id: broken")
    with pytest.raises(GoldenSetError) as raised:
        load_curated_set(taxonomy, tmp_path)
    found = {(Path(i.file).name, i.conversation_id, i.rule) for i in raised.value.issues}
    assert found == {("b.yaml", "c-good", "duplicate_conversation_id"), ("c.yaml", None, "malformed_yaml")}


def test_missing_text_key_is_named(tmp_path, taxonomy):
    (tmp_path / "bad.yaml").write_text(GOOD.replace('text: "some calm piano"\n        ', ""))
    with pytest.raises(GoldenSetError) as raised:
        load_curated_set(taxonomy, tmp_path)
    assert [(i.conversation_id, i.turn_index, i.rule) for i in raised.value.issues] == [
        ("c-good", 0, "missing_text")
    ]


def test_content_hash_changes_on_one_character_and_ignores_order(tmp_path, taxonomy):
    baseline = load_curated_set(taxonomy).content_hash
    # The same files with conversations in reverse order, comments dropped, read in reverse file order.
    documents = {
        tmp_path / path.name: yaml.safe_load(path.read_text()) for path in sorted(CURATED_DIR.glob("*.yaml"))
    }
    for path, document in reversed(documents.items()):
        document["conversations"].reverse()
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    assert content_hash(dict(reversed(documents.items()))) == baseline
    assert load_curated_set(taxonomy, tmp_path).content_hash == baseline

    target = tmp_path / "safety.yaml"
    target.write_text(target.read_text().replace("ignore all previous", "ignore all prevuous", 1))
    assert load_curated_set(taxonomy, tmp_path).content_hash != baseline


def test_leakage_finds_near_and_exact_copies_only(taxonomy):
    golden = load_curated_set(taxonomy).turns
    training = pl.DataFrame(
        {
            "conversation_id": ["s1", "s1", "s2", "s3"],
            "turn_index": [0, 1, 0, 0],
            "text": [
                "Something mellow with piano for a rainy evening!",  # exact after normalization
                "something mellow with piano for rainy evenings",  # near duplicate
                "upbeat reggaeton for a beach party",  # unrelated
                "ambient techno for coding",
            ],
        },
        schema_overrides={"turn_index": pl.Int32},
    )
    leaks = leaked_turns(golden, training)
    assert leaks.select("conversation_id", "turn_index", "golden_turn", "exact").rows() == [
        ("s1", 0, "everyday-rainy-piano#0", True),
        ("s1", 1, "everyday-rainy-piano#0", False),
    ]
    assert leaks["ratio"][1] >= 88
