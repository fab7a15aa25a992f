"""The curation workflow: flags from judges, proposals, the review file, acceptance with reviewer agreement.

Reviews in these tests are test fixtures written here, not human reviews."""

import shutil
from datetime import date

import pytest
import yaml

from models.eval.judges import Judgements, ResponseItem, Verdict
from models.feedback.curation import (
    Flag,
    ReviewError,
    accept_review,
    flag_turns,
    propose,
    review_file,
    reviewer_agreement,
    write_review_file,
)
from models.feedback.preferences import JudgedTurn
from models.golden.curated import CURATED_DIR, GoldenSetError, load_curated_set


class ScriptedJudge:
    """Rates each response by a table keyed by its text."""

    def __init__(self, name: str, ratings: dict[str, int]) -> None:
        self.version, self.ratings = f"{name}@test", ratings

    def judge(self, items):
        return Judgements([Verdict(self.ratings[i.response], "scripted") for i in items])


def _turn(cid: str, index: int, responses: dict[str, str]) -> JudgedTurn:
    items = {v: ResponseItem(f"{cid}:{index}:{v}", "", "q", text) for v, text in responses.items()}
    return JudgedTurn(cid, index, "recommend", "q", "user: q", items)


def test_flags_near_misses_and_judge_disagreements():
    turns = [
        _turn("c1", 0, {"a": "good", "b": "good"}),  # both fine: nothing to review
        _turn("c2", 0, {"a": "good", "b": "bad"}),  # variants on both sides of acceptable
        _turn("c3", 0, {"a": "half", "b": "good"}),  # a borderline 3
    ]
    grader = ScriptedJudge("rules", {"good": 5, "bad": 1, "half": 3})
    flags = flag_turns(turns, grader)
    assert [(f.conversation_id, f.source) for f in flags] == [("c2", "near_miss"), ("c3", "near_miss")]
    second = ScriptedJudge("llm", {"good": 2, "bad": 1, "half": 3})  # disagrees on every "good"
    flags = flag_turns(turns, grader, second)
    disagreements = [f for f in flags if f.source == "judge_disagreement"]
    assert {(f.conversation_id, f.detail.split(":")[0]) for f in disagreements} == {
        ("c1", "a"),
        ("c1", "b"),
        ("c2", "a"),
        ("c3", "b"),
    }
    assert "llm@test rates it 2" in disagreements[0].detail
    # An LLM judge on a CPU rates only the first responses: whole turns, in order, up to the limit.
    flags = flag_turns(turns, grader, second, second_items=5)
    assert {f.conversation_id for f in flags if f.source == "judge_disagreement"} == {"c1", "c2"}
    assert [f.conversation_id for f in flags if f.source == "near_miss"] == ["c2", "c3"]


CONVERSATIONS = {
    "syn-1": [{"text": "calm piano please", "intent": "recommend", "slots": '{"mood": ["mood/calm"]}'}],
    "syn-2": [
        {
            "text": "something for running",
            "intent": "recommend",
            "slots": '{"activity": ["activity/running"]}',
        },
        {"text": "faster", "intent": "refine", "slots": "{}"},
    ],
    "syn-3": [{"text": "hi there", "intent": "chitchat", "slots": "{}"}],
}


def _proposals():
    flags = [
        Flag("syn-1", 0, "near_miss", "x"),
        Flag("syn-2", 1, "near_miss", "y"),
        Flag("syn-2", 0, "near_miss", "z"),
        Flag("syn-3", 0, "judge_disagreement", "w"),
    ]
    return propose(CONVERSATIONS, flags, existing_ids=set(), max_proposals=10)


def test_proposals_rank_disagreements_first_and_skip_what_the_set_has():
    proposals = _proposals()
    assert [p.id for p in proposals] == ["curation-syn-3", "curation-syn-2", "curation-syn-1"]
    assert proposals[1].reason == "turn 1: y; turn 0: z" and len(proposals[1].turns) == 2
    flags = [Flag("syn-1", 0, "near_miss", "x"), Flag("syn-3", 0, "near_miss", "w")]
    kept = propose(CONVERSATIONS, flags, existing_ids={"curation-syn-3"}, max_proposals=1)
    assert [p.id for p in kept] == ["curation-syn-1"]


def test_the_review_file_is_named_by_its_content(tmp_path):
    first = write_review_file(review_file(_proposals(), date(2026, 11, 26)), tmp_path)
    again = write_review_file(review_file(_proposals(), date(2026, 11, 27)), tmp_path)
    assert first == again and first.name.startswith("review-")
    document = yaml.safe_load(first.read_text())
    assert [p["reviews"] for p in document["proposals"]] == [[], [], []]
    assert "intents" in document["instructions"]


def _reviewed(tmp_path, reviews: dict[str, list[dict]]):
    path = write_review_file(review_file(_proposals(), date(2026, 11, 26)), tmp_path / "queue")
    document = yaml.safe_load(path.read_text())
    for proposal in document["proposals"]:
        proposal["reviews"] = reviews[proposal["id"]]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    curated = tmp_path / "curated"
    shutil.copytree(CURATED_DIR, curated)
    return path, curated


def _review(who: str, decision: str, intents: list[str]) -> dict:
    return {"reviewer": who, "reviewed_on": "2026-11-26", "decision": decision, "intents": intents}


def test_two_reviewers_agreement_is_recorded_and_accepted_conversations_enter_the_set(tmp_path, taxonomy):
    path, curated = _reviewed(
        tmp_path,
        {
            "curation-syn-3": [_review("r1", "reject", ["chitchat"]), _review("r2", "reject", ["chitchat"])],
            "curation-syn-2": [
                _review("r1", "accept", ["recommend", "refine"]),
                _review("r2", "accept", ["recommend", "refine"]),
            ],
            "curation-syn-1": [_review("r1", "accept", ["recommend"]), _review("r2", "reject", ["refine"])],
        },
    )
    before = load_curated_set(taxonomy, curated).content_hash
    result = accept_review(path, taxonomy, curated)
    assert result.accepted == ["curation-syn-2"] and result.rejected == ["curation-syn-3"]
    assert result.needs_adjudication == {"curation-syn-1": "reviewers disagree whether to accept"}
    assert result.agreement["decisions_n"] == 3 and result.agreement["intents_n"] == 4
    # decisions: r1 reject/accept/accept, r2 reject/accept/reject -> kappa 0.4; intents 3 of 4 agree
    assert result.agreement["decision_kappa"] == pytest.approx(0.4)
    assert -1 <= result.agreement["intent_kappa"] < 1
    written = yaml.safe_load(result.curated_file.read_text())
    assert written["reviewed_by"] == ["r1", "r2"] and written["reviews"][0]["agreement"] == result.agreement
    loaded = load_curated_set(taxonomy, curated)
    assert loaded.content_hash == result.golden_version != before
    assert loaded.turns.filter(loaded.turns["conversation_id"] == "curation-syn-2").height == 2


def test_one_reviewer_records_no_agreement_and_accepting_twice_appends(tmp_path, taxonomy):
    only_r1 = {f"curation-syn-{i}": [_review("r1", "accept", None)] for i in (1, 2, 3)}
    path, curated = _reviewed(tmp_path, only_r1)
    result = accept_review(path, taxonomy, curated, theme="reviewed")
    assert result.agreement is None and len(result.accepted) == 3
    with pytest.raises(GoldenSetError, match="duplicate_conversation_id"):
        accept_review(path, taxonomy, curated, theme="reviewed_again")
    assert not (curated / "reviewed_again.yaml").exists()  # an invalid result is not kept
    assert reviewer_agreement(review_file(_proposals(), date(2026, 11, 26))) is None


def test_unreviewed_or_mislabelled_review_files_are_refused(tmp_path, taxonomy):
    reviews = {f"curation-syn-{i}": [_review("r1", "accept", None)] for i in (1, 2)} | {"curation-syn-3": []}
    path, curated = _reviewed(tmp_path, reviews)
    with pytest.raises(ReviewError, match="curation-syn-3.*every_proposal_reviewed"):
        accept_review(path, taxonomy, curated)
    reviews["curation-syn-3"] = [_review("r1", "accept", ["chitchat", "refine"])]
    path, curated = _reviewed(tmp_path / "again", reviews)
    with pytest.raises(ReviewError, match="one_intent_per_turn"):
        accept_review(path, taxonomy, curated)
