"""The offline generator on the bundled sample, and the post-processing filters."""

import collections
import json

import pytest

from models.labels import (
    Conversation,
    Intent,
    Slots,
    TurnLabels,
    conversations_from_frame,
    conversations_to_frame,
    satisfying_tracks,
)
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.postprocess import NearDuplicateIndex, PostprocessConfig, postprocess

N = 300


@pytest.fixture(scope="module")
def generated(taxonomy, catalog) -> list[Conversation]:
    return GrammarGenerator(taxonomy, catalog).generate(N, seed=11).conversations


def test_labels_are_valid_and_recommendations_computable(generated, taxonomy, catalog) -> None:
    turns = [t for c in generated for t in c.turns]
    assert len(generated) == N and all(1 <= len(c.turns) <= 4 for c in generated)
    for t in turns:
        Slots.model_validate(t.labels.slots.model_dump(), context={"taxonomy": taxonomy})
    assert {t.labels.intent for t in turns} == set(Intent)
    recommends = [t for t in turns if t.labels.intent is Intent.RECOMMEND]
    non_empty = sum(len(satisfying_tracks(t.constraint, catalog, taxonomy)) > 0 for t in recommends)
    assert non_empty / len(recommends) >= 0.95
    used = {n for t in turns for n in t.labels.slots.all_nodes()}
    assert (
        len(used) / len(taxonomy.nodes) > 0.6
    )  # round-robin over nodes: 300 conversations already spread wide


def test_negation_and_adversarial_turns_are_there(generated) -> None:
    turns = [t for c in generated for t in c.turns]
    assert any("instrument/voice" in t.labels.slots.excluded for t in turns)
    injections = [t.text for t in turns if t.labels.intent is Intent.OUT_OF_SCOPE]
    assert any("instructions" in text.lower() or "user" in text.lower() for text in injections)


def test_same_seed_same_data_other_seed_other_data(taxonomy, catalog, generated) -> None:
    generator = GrammarGenerator(taxonomy, catalog)
    again = generator.generate(N, seed=11).conversations
    other = generator.generate(N, seed=12).conversations
    assert conversations_to_frame(again).equals(conversations_to_frame(generated))
    assert [t.text for c in other for t in c.turns] != [t.text for c in generated for t in c.turns]


def test_flat_table_round_trips(generated) -> None:
    frame = conversations_to_frame(generated)
    assert frame.height == sum(len(c.turns) for c in generated)
    assert conversations_from_frame(frame) == generated


def test_grammar_text_passes_its_own_filters(generated, taxonomy) -> None:
    result = postprocess(generated, taxonomy)
    reasons = collections.Counter(r.reason for r in result.rejected)
    assert set(reasons) <= {"exact_duplicate", "near_duplicate", "not_english"}
    assert len(result.kept) + len(result.rejected) == N


def _conversation(
    cid: str, *texts: str, intent: Intent = Intent.CHITCHAT, slots: Slots = Slots()
) -> Conversation:
    from models.labels import Constraint, Turn

    turns = [
        Turn(text=t, labels=TurnLabels(intent=intent, slots=slots), constraint=Constraint()) for t in texts
    ]
    return Conversation(conversation_id=cid, turns=turns, generator="test", version="v0", seed=0)


def test_near_duplicates_and_leakage_are_rejected_with_reasons(taxonomy) -> None:
    jazz = Slots(genre=["genre/jazz"], instrument=["instrument/piano"])
    base = "could you play some mellow jazz with piano for a rainy evening"
    conversations = [
        _conversation("a", base, intent=Intent.RECOMMEND, slots=jazz),
        _conversation(
            "b", base.upper() + "!!", intent=Intent.RECOMMEND, slots=jazz
        ),  # exact after normalization
        _conversation(
            "c", base.replace("could you", "can you") + " 🎶", intent=Intent.RECOMMEND, slots=jazz
        ),  # near
        _conversation(
            "d",
            "play jazz with piano, something completely different for my morning run",
            intent=Intent.RECOMMEND,
            slots=jazz,
        ),
        _conversation(
            "e", "please play jazz with piano for a sunday brunch", intent=Intent.RECOMMEND, slots=jazz
        ),  # leak
        _conversation("f", "play some techno", intent=Intent.RECOMMEND, slots=jazz),  # labels not in the text
        _conversation("g", "quiero escuchar música tranquila para dormir esta noche con mi perro en la casa"),
    ]
    eval_texts = ["Please play jazz with piano for a Sunday brunch!"]
    result = postprocess(conversations, taxonomy, eval_texts=eval_texts)

    assert [c.conversation_id for c in result.kept] == ["a", "d"]
    reasons = {r.conversation.conversation_id: (r.stage, r.reason) for r in result.rejected}
    assert reasons == {
        "b": ("dedup", "exact_duplicate"),
        "c": ("dedup", "near_duplicate"),
        "e": ("leakage", "eval_leakage"),
        "f": ("consistency", "label_mismatch"),
        "g": ("language", "not_english"),
    }
    assert all(r.detail for r in result.rejected)


def test_near_duplicate_index_confirms_lsh_candidates() -> None:
    index = NearDuplicateIndex(PostprocessConfig())
    index.add("x", "something mellow with piano for a rainy evening")
    assert index.match("something mellow with piano for a rainy evenin").key == "x"
    assert index.match("loud techno for the gym, no vocals at all please") is None
    assert index.match("thanks") is None  # short texts match exactly only


def test_rejects_table_keeps_every_turn_and_reason(taxonomy) -> None:
    from models.synthetic.rejects import REJECT_SCHEMA, rejects_to_frame

    result = postprocess(
        [_conversation("a", "hi there", "thanks"), _conversation("b", "hi there", "thanks")], taxonomy
    )
    frame = rejects_to_frame(result.rejected)
    assert frame.schema == REJECT_SCHEMA and frame.height == 2
    assert frame["reason"].to_list() == ["exact_duplicate"] * 2
    assert json.loads(frame["slots"][0]) == {}
