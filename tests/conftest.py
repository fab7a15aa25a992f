"""Shared fixtures: an isolated Setlist home per test, and the real data sets in ../shared/data."""

import os
from pathlib import Path

import polars as pl
import pytest

from models.assistant.keyword_parser import KeywordParser
from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.labels import NON_RETRIEVAL_INTENTS, Intent, Slots, TrackRef, TurnLabels
from models.taxonomy import Taxonomy, load_curated
from orchestration.settings import BUNDLED_DATA, REPO_ROOT, Settings, load_settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_data_dir() -> Path:
    return Path(os.environ.get("SETLIST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str) -> Path:
    """A file of ../shared/data: fail in CI when it is missing (CI has it), skip elsewhere."""
    path = shared_data_dir() / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing; CI must have ../shared/data")
        pytest.skip(f"{path} not present")
    return path


def prompt_versions() -> dict[str, int]:
    """What syncing models/prompts registers: one version per prompt file (the default and each variant)."""
    from models.prompts import prompt_names, prompt_specs

    return {name: len(prompt_specs(name)) for name in prompt_names()}


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    """The curated taxonomy as shipped (data/taxonomy.yaml)."""
    return load_curated(BUNDLED_DATA / "taxonomy.yaml")


@pytest.fixture(scope="session")
def catalog() -> pl.DataFrame:
    """The bundled 5,000-track MTG-Jamendo sample through its adapter."""
    return read_catalog(CatalogSourceSpec()).kept


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a fresh home folder, and DAGSTER_HOME pointing into it."""
    from orchestration.local_state import prepare_home

    for key in [k for k in os.environ if k.startswith("SETLIST_")]:
        if key != "SETLIST_SHARED_DATA":
            monkeypatch.delenv(key)
    monkeypatch.setenv("SETLIST_HOME", str(tmp_path / "home"))
    loaded = load_settings()
    monkeypatch.setenv("DAGSTER_HOME", str(loaded.dagster_home))
    prepare_home(loaded)
    return loaded


def store_retrieval_index(settings: Settings, index) -> None:
    """Store `index` as the retrieval_index asset, through the IO manager the code location gives it (what
    `setlist chat` loads), without materializing the embeddings upstream of the real asset."""
    import dagster as dg

    from orchestration.definitions import build_resources
    from orchestration.resources import INDEX_IO_MANAGER

    factory = build_resources(settings)[INDEX_IO_MANAGER]
    manager = factory.create_io_manager(dg.build_init_resource_context())
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("retrieval_index")), index)


class Misreads(KeywordParser):
    """The keyword parser, except for turns starting with given words, which get the intent (and confidence)
    the trained intent model gave them in chat trials or on CPCD. As that model's slots do, a turn read as about
    a track keeps only its reference (the track in focus when it names none), and one read as chatter, vague or
    out of scope keeps none."""

    def __init__(self, taxonomy, readings: dict[str, tuple[Intent, float | None]]) -> None:
        super().__init__(taxonomy)
        self.readings = readings

    def parse(self, text, history=()):
        parsed = super().parse(text, history)
        for start, (intent, confidence) in self.readings.items():
            if text.startswith(start):
                slots = parsed.labels.slots
                if intent in (Intent.ASK_ABOUT_TRACK, Intent.LESS_LIKE):
                    slots = Slots(track_refs=slots.track_refs or [TrackRef(index=None)])
                elif intent in NON_RETRIEVAL_INTENTS:
                    slots = Slots()
                update = {"labels": TurnLabels(intent=intent, slots=slots)}
                return parsed.model_copy(update=update | ({"confidence": confidence} if confidence else {}))
        return parsed
