"""Secrets and exposure: the LLM API key never lands in logs, MLflow, the event log or any file; every server the
project starts listens on loopback only.

The run is the resilience tests' materialization (catalog to judge calibration, LLM judges online) against a test
server that answers only with the key, so every successful call proves the key was sent.
"""

import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import psutil
import pytest
from test_resilience_runs import registry_state, run_env

from models.llm.test_server import LLMTestServer, _parse_args, start_subprocess
from orchestration.settings import REPO_ROOT

RUN_SCRIPT = Path(__file__).with_name("test_resilience_runs.py")


def listening_addresses(pid: int) -> set[str]:
    """Addresses the process and its descendants listen on (TCP)."""
    process = psutil.Process(pid)
    return {
        c.laddr.ip
        for p in (process, *process.children(recursive=True))
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    """(key, home, captured stdout+stderr) of a run with a fake key and an online gateway."""
    key = f"sk-test-{uuid.uuid4().hex}"
    server, url = start_subprocess("--api-key", key)
    home = tmp_path_factory.mktemp("secrets") / "home"
    try:
        assert listening_addresses(server.pid) == {"127.0.0.1"}
        env = run_env(
            home, SETLIST_LLM__BASE_URL=url, SETLIST_LLM_API_KEY=key, SETLIST_LLM__MAX_CONCURRENCY="16"
        )
        done = subprocess.run(
            [sys.executable, str(RUN_SCRIPT)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return key, home, done.stdout + done.stderr


def test_the_run_really_used_the_key(online_run) -> None:
    _key, home, _output = online_run
    calibration = pl.read_parquet(home / "assets" / "judge_calibration.parquet")
    assert calibration.filter(pl.col("judge").str.starts_with("llm"))["n"].sum() > 0
    assert calibration["failures"].sum() == 0  # no call was refused: the server accepts only the key
    assert registry_state(home)["runs"]  # MLflow runs were logged, so there was something to scan


def test_api_key_appears_nowhere(online_run) -> None:
    """Logs, then every file of the home folder byte for byte (SQLite keeps text uncompressed: MLflow params, tags,
    prompt and model version tags, Dagster's event log with asset metadata, the LLM cache), then every string
    cell of every Parquet file (compressed on disk)."""
    key, home, output = online_run
    assert key not in output
    needle = key.encode()
    leaks = [str(p) for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]
    for path in home.rglob("*.parquet"):
        frame = pl.read_parquet(path)
        text = frame.select(pl.col(pl.String)).write_csv() if frame.width else ""
        if key in text:
            leaks.append(str(path))
    assert leaks == []


def test_test_server_binds_loopback_by_default() -> None:
    assert LLMTestServer().host == "127.0.0.1"
    assert _parse_args([]).host == "127.0.0.1"
    process, url = start_subprocess()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert listening_addresses(process.pid) == {"127.0.0.1"}
    finally:
        process.terminate()
        process.wait(10)
