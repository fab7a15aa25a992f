"""Resilience of materializations: a run killed mid-way and rerun, and two runs at once over one home folder.

The runs execute the foundation stage from the catalog to judge calibration (which calls the LLM judges when the
gateway is configured) in a subprocess, as `setlist run` executes a stage; this file is that subprocess's script.
The rest of the graph is left out to keep the suite fast: what is tested here (LLM cache, MLflow registry and runs,
Dagster storage, asset files) is shared by every stage.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import polars as pl
import pytest
from conftest import prompt_versions
from polars.testing import assert_frame_equal

from models.llm.test_server import start_subprocess
from orchestration.settings import REPO_ROOT

SELECTION = (
    "catalog",
    "catalog_quarantine",
    "taxonomy",
    "golden_curated",
    "golden_ratings",
    "golden_cpcd",
    "cpcd_corpus",
    "prompt_versions",
    "judge_calibration",
)
SCRIPT = Path(__file__)


def materialize_selection() -> bool:
    """What the subprocess runs: the selection of the foundation job, in-process, in this environment's home."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.local_state import prepare_home
    from orchestration.settings import load_settings

    settings = load_settings()
    prepare_home(settings)
    job = build_definitions(settings).resolve_job_def("setlist_foundation")
    subset = job.get_subset(asset_selection={dg.AssetKey(key) for key in SELECTION})
    return subset.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False).success


def run_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETLIST_") or k == "SETLIST_SHARED_DATA"}
    return {**env, "SETLIST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **settings}


def start_run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]
    return output


def server_requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=5) as response:
        return int(json.load(response)["requests"])


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def cached_answers(cache: Path) -> int:
    """Answers in the gateway's cache; 0 until the file and its table exist (the gateway creates the file
    first: polling in between once read a file without the table, under load)."""
    if not cache.exists():
        return 0
    if not query(cache, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses'"):
        return 0
    return query(cache, "SELECT COUNT(*) FROM responses")[0][0]


def registry_state(home: Path) -> dict[str, object]:
    """Versions per registered name (prompts and models alike), runs per experiment and by status."""
    db = home / "mlflow" / "mlflow.db"
    return {
        "versions": dict(query(db, "SELECT name, COUNT(*) FROM model_versions GROUP BY name")),
        "runs": dict(
            query(
                db,
                "SELECT e.name, COUNT(*) FROM runs r JOIN experiments e USING (experiment_id) GROUP BY e.name",
            )
        ),
        "statuses": dict(query(db, "SELECT status, COUNT(*) FROM runs GROUP BY status")),
    }


@pytest.fixture(scope="module")
def llm_server():
    """A test server on loopback with latency, so the judges' ~700 calls take several seconds."""
    key = f"sk-test-{uuid.uuid4().hex}"
    process, url = start_subprocess("--latency-ms", "40", "--api-key", key)
    yield url, key
    process.terminate()
    process.wait(10)


def online(url: str, key: str) -> dict[str, str]:
    return {"SETLIST_LLM__BASE_URL": url, "SETLIST_LLM_API_KEY": key, "SETLIST_LLM__MAX_CONCURRENCY": "4"}


def test_killed_run_resumes_from_cache_without_duplicates(llm_server, tmp_path):
    url, key = llm_server
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    before = server_requests(url)
    finish(start_run(run_env(clean, **online(url, key))))
    clean_requests = server_requests(url) - before
    assert clean_requests > 300

    # Kill once the gateway has flushed answers to the cache (it writes every 256), mid-way through the judges.
    cache = resumed / "llm_cache.sqlite"
    killed = start_run(run_env(resumed, **online(url, key)))
    deadline = time.monotonic() + 180
    while not cached_answers(cache):
        assert killed.poll() is None, killed.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no cached answer within 180 s"
        time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    cached = cached_answers(cache)
    assert 0 < cached < clean_requests

    before = server_requests(url)
    finish(start_run(run_env(resumed, **online(url, key))))
    assert server_requests(url) - before <= clean_requests - cached  # completed work is not paid for again

    # Judge calibration logs its MLflow runs after the LLM work, so the kill left none half-made.
    assert registry_state(resumed) == registry_state(clean)
    assert set(registry_state(resumed)["statuses"]) == {"FINISHED"}
    for name in ("catalog", "taxonomy", "golden_curated", "golden_cpcd", "judge_calibration"):
        assert_frame_equal(
            pl.read_parquet(resumed / "assets" / f"{name}.parquet"),
            pl.read_parquet(clean / "assets" / f"{name}.parquet"),
        )
    # The killed run registered the prompts; the rerun found them by content hash instead of adding versions.
    prompts = pl.read_parquet(resumed / "assets" / "prompt_versions.parquet")
    assert prompts.equals(pl.read_parquet(clean / "assets" / "prompt_versions.parquet"))


def test_two_runs_at_once_over_one_home(tmp_path):
    home = tmp_path / "home"
    runs = [start_run(run_env(home)) for _ in range(2)]
    for run in runs:
        finish(run)

    for path in (home / "assets").rglob("*.parquet"):
        pl.read_parquet(path)  # complete files only: writes are atomic renames
    assert not list((home / "assets").rglob("*.tmp"))
    for db in (home / "mlflow" / "mlflow.db", *(home / "dagster").rglob("*.db")):
        assert query(db, "PRAGMA integrity_check") == [("ok",)], db
    state = registry_state(home)
    assert state["versions"] == prompt_versions()  # each prompt file registered once
    assert set(state["statuses"]) == {"FINISHED"}
    # Two offline judges, each logged once: the other run finds the fingerprinted run and reuses it.
    assert state["runs"]["judge-calibration"] == 2


if __name__ == "__main__":
    sys.exit(0 if materialize_selection() else 1)
