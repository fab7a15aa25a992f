"""The slot extractor over the bundled taxonomy: phrases, typos, negation scope, durations, references."""

import pytest

from models.intent.slots import Gazetteer, assemble_slots
from models.labels import DurationRange, Intent, TrackRef
from models.taxonomy import load_curated
from orchestration.settings import BUNDLED_DATA


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return Gazetteer.from_taxonomy(load_curated(BUNDLED_DATA / "taxonomy.yaml"), artists=["Quiet Harbour"])


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("some tekno please", {"genre/techno"}),  # alias
        ("play some hip-hop", {"genre/hiphop"}),  # hyphenated alias
        (
            "deep house for running",
            {"genre/deephouse", "activity/running"},
        ),  # longest phrase wins over "deep"
        ("feel good tunes", {"mood/happy"}),  # synonym; positive and upbeat are below happy
        ("moody stuff", {"mood/dark", "mood/melancholic"}),  # synonym standing for two nodes
        ("electornic music with saxophne", {"genre/electronic", "instrument/saxophone"}),  # one-edit typos
        ("deep hous", {"genre/deephouse"}),  # typo inside a multi-word phrase
    ],
)
def test_phrases_aliases_synonyms_and_typos(gazetteer: Gazetteer, text: str, nodes: set[str]) -> None:
    assert set(gazetteer.extract(text).nodes) == nodes


@pytest.mark.parametrize(
    "text",
    [
        "play the last one",  # "last" is one edit from "fast", but short words never match fuzzily
        "what's it called",  # "call" / "calm"
        "hello there",  # "hello" / "cello": the first letter must agree
        "some music",  # "some music" / "soul music": short words of a phrase must match exactly
        "jaz",  # too short for typo matching
        "i'd love something",  # the verb, not mood/love
        "love these!",  # praise for the slate, not mood/love
        "love it",
        "heavy on the guitars",  # lots of guitar, not a heavy mood
        "that would be nice",  # "would" is an English word, not a typo of "world"
    ],
)
def test_no_false_hits_on_short_or_common_words(gazetteer: Gazetteer, text: str) -> None:
    extraction = gazetteer.extract(text)
    assert not [n for n in extraction.nodes if not n.startswith("instrument/guitar")]
    assert not extraction.negated


def test_known_words_are_never_typos() -> None:
    taxonomy = load_curated(BUNDLED_DATA / "taxonomy.yaml")
    assert Gazetteer.from_taxonomy(taxonomy).extract("make it short").nodes == ("mood/sport",)
    assert Gazetteer.from_taxonomy(taxonomy, known_words={"short"}).extract("make it short").nodes == ()


@pytest.mark.parametrize(
    ("text", "nodes", "negated"),
    [
        ("jazz with piano but no vocals", {"genre/jazz", "instrument/piano"}, {"instrument/voice"}),
        ("not rock", set(), {"genre/rock"}),
        (
            "without piano, guitar instead",
            {"instrument/guitar"},
            {"instrument/piano"},
        ),  # the clause ends the scope
        ("no vocals piano", {"instrument/piano"}, {"instrument/voice"}),  # a cue reaches one phrase only
        ("nothing sad", set(), {"mood/sad"}),
        ("less sad", set(), {"mood/sad"}),
        ("not that much sad", set(), {"mood/sad"}),  # within the window
        ("not a fan of these at all, more jazz", {"genre/jazz"}, set()),  # beyond the window
        ("WITOHUT ACTION", set(), {"mood/action"}),  # a typo in the cue
    ],
)
def test_negation_scope(gazetteer: Gazetteer, text: str, nodes: set[str], negated: set[str]) -> None:
    extraction = gazetteer.extract(text)
    assert (set(extraction.nodes), set(extraction.negated)) == (nodes, negated)


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("under 3 minutes", DurationRange(max_s=180)),
        ("longer than 5 min", DurationRange(min_s=300)),
        ("no longer than four mins", DurationRange(max_s=240)),  # not a negation
        ("between 2 and 4 minutes", DurationRange(min_s=120, max_s=240)),
        ("at least 90 seconds", DurationRange(min_s=90)),
    ],
)
def test_durations(gazetteer: Gazetteer, text: str, duration: DurationRange) -> None:
    extraction = gazetteer.extract(text)
    assert extraction.duration == duration
    assert not extraction.negated


@pytest.mark.parametrize(
    ("text", "refs"),
    [
        ("more like the second one", [TrackRef(index=1)]),
        ("the last one is great", [TrackRef(index=-1)]),
        ("who made that one?", [TrackRef(index=None)]),
        ("tell me about track 3", [TrackRef(index=2)]),
        ("i like the 2nd one, more like it", [TrackRef(index=1)]),  # "it" only when nothing else is named
        ("more like it", [TrackRef(index=None)]),
        ("can it be less cosmic", []),  # "it" is the request here
    ],
)
def test_track_references(gazetteer: Gazetteer, text: str, refs: list[TrackRef]) -> None:
    assert list(gazetteer.extract(text).track_refs) == refs


def test_artists_are_masked_before_phrases(gazetteer: Gazetteer) -> None:
    extraction = gazetteer.extract("something like quiet harbour")
    assert extraction.artists == ("Quiet Harbour",) and extraction.nodes == ()


def test_intent_decides_which_slots_a_turn_carries(gazetteer: Gazetteer) -> None:
    less = assemble_slots(Intent.LESS_LIKE, gazetteer.extract("less sad"))
    assert less.mood == ["mood/sad"] and not less.excluded  # as the labels write it
    refine = assemble_slots(Intent.REFINE, gazetteer.extract("but no vocals under 3 minutes"))
    assert refine.pairs() == {("excluded", "instrument/voice"), ("duration.max_s", "180")}
    ask = assemble_slots(Intent.ASK_ABOUT_TRACK, gazetteer.extract("is the second one instrumental?"))
    assert ask.track_refs == [TrackRef(index=1)] and not ask.all_nodes()
    assert assemble_slots(Intent.CHITCHAT, gazetteer.extract("jazz is cool, thanks")) == assemble_slots(
        Intent.CHITCHAT, gazetteer.extract("")
    )
