"""The shared label schema: validation against the taxonomy, state across turns, retrieval ground truth."""

import polars as pl
import pytest
from pydantic import ValidationError

from models.labels import (
    Constraint,
    DurationRange,
    Intent,
    Slots,
    TrackRef,
    TurnLabels,
    apply_turn,
    constraints_over,
    satisfying_tracks,
)


def turn(intent: str, **slots: object) -> TurnLabels:
    return TurnLabels(intent=Intent(intent), slots=Slots(**slots))


def test_slots_are_checked_against_the_taxonomy(taxonomy) -> None:
    ok = Slots.model_validate(
        {"genre": ["genre/techno"], "excluded": ["instrument/voice"]}, context={"taxonomy": taxonomy}
    )
    assert ok.all_nodes() == ["genre/techno", "instrument/voice"]
    with pytest.raises(ValidationError, match="unknown taxonomy node"):
        Slots.model_validate({"genre": ["genre/nope"]}, context={"taxonomy": taxonomy})
    with pytest.raises(ValidationError, match="not a mood node id"):
        Slots(mood=["genre/techno"])
    with pytest.raises(ValidationError, match="min_s"):
        DurationRange(min_s=300, max_s=100)


def test_refine_adds_negation_excludes_new_recommend_resets() -> None:
    jazz = apply_turn(Constraint(), turn("recommend", genre=["genre/jazz"]))
    assert jazz.required == {"genre": ["genre/jazz"]}

    with_piano = apply_turn(jazz, turn("refine", instrument=["instrument/piano"]))
    assert with_piano.required == {"genre": ["genre/jazz"], "instrument": ["instrument/piano"]}

    no_vocals_short = apply_turn(
        with_piano, turn("refine", excluded=["instrument/voice"], duration=DurationRange(max_s=180))
    )
    assert no_vocals_short.excluded == ["instrument/voice"] and no_vocals_short.max_duration_s == 180
    assert no_vocals_short.required == with_piano.required

    less_sad = apply_turn(no_vocals_short, turn("less_like", mood=["mood/sad"]))
    assert less_sad.excluded == ["instrument/voice", "mood/sad"]

    unchanged = apply_turn(less_sad, turn("chitchat"))
    assert unchanged == less_sad

    fresh = apply_turn(less_sad, turn("recommend", genre=["genre/rock"]))
    assert fresh == Constraint(required={"genre": ["genre/rock"]})


def test_same_facet_refinement_replaces_and_asking_again_lifts_an_exclusion() -> None:
    state = constraints_over(
        [
            turn("recommend", genre=["genre/rock"], excluded=["mood/sad"]),
            turn("refine", genre=["genre/punkrock"]),
            turn("more_like", mood=["mood/sad"]),
        ]
    )[-1]
    assert state.required == {"genre": ["genre/punkrock"], "mood": ["mood/sad"]}
    assert state.excluded == []


def test_references_resolve_against_the_shown_tracks() -> None:
    shown = ["t1", "t2", "t3"]
    start = Constraint(required={"genre": ["genre/jazz"]})
    more = apply_turn(start, turn("more_like", track_refs=[TrackRef(index=1)]), shown=shown)
    assert more.seed_track_ids == ["t2"]
    less = apply_turn(more, turn("less_like", track_refs=[TrackRef(index=-1)]), shown=shown)
    assert less.exclude_track_ids == ["t3"] and less.seed_track_ids == ["t2"]
    # "that one" is only unambiguous when one track was shown; without results nothing resolves.
    assert apply_turn(
        start, turn("more_like", track_refs=[TrackRef(index=None)]), shown=["solo"]
    ).seed_track_ids == ["solo"]
    assert apply_turn(start, turn("more_like", track_refs=[TrackRef(index=0)])).seed_track_ids == []


def test_satisfying_tracks_follow_the_taxonomy(taxonomy, catalog) -> None:
    rock = satisfying_tracks(Constraint(required={"genre": ["genre/rock"]}), catalog, taxonomy)
    punk = satisfying_tracks(Constraint(required={"genre": ["genre/punkrock"]}), catalog, taxonomy)
    assert 0 < len(punk) < len(rock) and set(punk) <= set(rock)  # a child's tracks satisfy its parent

    no_voice = Constraint(
        required={"genre": ["genre/rock"]}, excluded=["instrument/voice"], max_duration_s=180
    )
    kept = catalog.filter(pl.col("track_id").is_in(satisfying_tracks(no_voice, catalog, taxonomy).implode()))
    assert kept.height > 0
    assert not kept["instruments"].list.contains("voice").any()
    assert (kept["duration_s"] <= 180).all()

    # Activities select through what they imply (study -> calm, ambient, classical, ...).
    study = satisfying_tracks(Constraint(required={"activity": ["activity/study"]}), catalog, taxonomy)
    calm = satisfying_tracks(Constraint(required={"mood": ["mood/calm"]}), catalog, taxonomy)
    assert set(calm) <= set(study)

    excluded_seed = Constraint(
        required={"genre": ["genre/rock"]}, seed_track_ids=[rock[0]], exclude_track_ids=[rock[1]]
    )
    assert len(satisfying_tracks(excluded_seed, catalog, taxonomy)) == len(rock) - 2
