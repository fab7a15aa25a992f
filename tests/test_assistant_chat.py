"""`setlist chat --json` as a script would drive it, and the assistant_runs asset's wiring."""

import json
import os
import subprocess
import sys

import dagster as dg
from conftest import store_retrieval_index

from models.assistant.retrieval import CatalogIndex
from orchestration.settings import REPO_ROOT


def test_chat_json_session(settings, catalog, taxonomy) -> None:
    store_retrieval_index(settings, CatalogIndex.build(catalog, taxonomy))
    env = {**os.environ, "SETLIST_HOME": str(settings.home_dir)}

    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "chat", "--json"],
        input='something calm\nwith piano\n{"like": [1], "dislike": [12]}\nplay something good\n',
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert (
        "models:/setlist-assistant@champion is not set" in done.stderr
    )  # a fresh home: the keyword baseline
    calm, piano, feedback, vague = map(json.loads, done.stdout.splitlines())
    # Every answer says what served it: the candidate and its components as the registry names them.
    assert (
        calm["assistant"] == feedback["assistant"]
        and calm["assistant"]["candidate"] == "keyword-v1.hybrid.template"
    )
    assert calm["assistant"]["requested"] == "models:/setlist-assistant@champion"
    assert calm["tracks"] and calm["stories"] and calm["tool_calls"][0]["name"] == "search_catalog"
    assert piano["state"]["constraint"]["required"] == {
        "mood": ["mood/calm"],
        "instrument": ["instrument/piano"],
    }
    liked = piano["tracks"][0]["track_id"]
    assert feedback["feedback"] == {"liked": [liked], "disliked": []}
    assert feedback["feedback_errors"][0].startswith("there is no track 12")
    # A vague follow-up keeps the request and the like instead of asking; the sample has 4 calm piano tracks,
    # so after one is liked the answer repeats the other three and says why.
    assert not vague["asked_clarification"] and vague["tracks"]
    assert vague["state"]["constraint"] == piano["state"]["constraint"] and liked in vague["state"]["liked"]
    assert liked not in {t["track_id"] for t in vague["tracks"]} and "shown before" in vague["response"]


def test_assistant_runs_is_partitioned_by_candidate(settings) -> None:
    from assets.assistant import assistant_runs
    from orchestration.definitions import build_definitions
    from orchestration.partitions import CANDIDATES

    assert CANDIDATES.name == "candidates"
    assert assistant_runs.partitions_def == CANDIDATES
    defs = build_definitions(settings)
    spec = defs.resolve_assets_def("assistant_runs").specs_by_key[dg.AssetKey("assistant_runs")]
    assert {dep.asset_key.path[-1] for dep in spec.deps} >= {"golden_curated", "retrieval_index", "taxonomy"}
    assert spec.group_name == "evaluation"
