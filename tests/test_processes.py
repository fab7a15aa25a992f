"""The commands a user runs: `setlist run`, `setlist ui`, `dagster definitions validate`, the webserver.

Each server binds 127.0.0.1 on a free port and is stopped by the PID the test started.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_security_secrets import listening_addresses

from orchestration.settings import REPO_ROOT

BIN = Path(sys.executable).parent


def _env(settings) -> dict[str, str]:
    return {**os.environ, "SETLIST_HOME": str(settings.home_dir), "DAGSTER_HOME": str(settings.dagster_home)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_setlist_run_prints_summary_and_state_locations(settings, tmp_path):
    # What the terminal says, not what is compared: the champion alone (the comparison set is
    # test_evaluation_e2e's) on 300 synthetic conversations, to keep the run short.
    single = {
        "SETLIST_COMPARISON__RETRIEVERS": '["hybrid"]',
        "SETLIST_COMPARISON__KEYWORD_BASELINE": "false",
        "SETLIST_SYNTHETIC_CONVERSATIONS": "300",
    }
    done = subprocess.run(
        [BIN / "setlist", "run"],
        cwd=tmp_path,
        env=_env(settings) | single,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "materialized catalog" in done.stdout
    assert "check taxonomy:taxonomy_expectations passed" in done.stdout
    assert "Summary" in done.stdout
    # The verdict is the last line; the offline judge's kappa below its floor is a failed (warn) check.
    assert re.fullmatch(r"run succeeded( with \d+ failed checks?)?", done.stdout.strip().splitlines()[-1])
    assert "check judge_calibration:judge_kappa_floor FAILED (warn): " in done.stdout
    assert str(settings.dagster_home) in done.stdout.replace("\n", "")
    assert (settings.assets_dir / "taxonomy.parquet").exists()


def test_definitions_validate(settings):
    done = subprocess.run(
        [BIN / "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_webserver_serves_assets_and_checks_over_graphql(settings):
    port = _free_port()
    server = subprocess.Popen(
        [BIN / "dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/server_info", server)
        query = "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            nodes = json.load(response)["data"]["assetNodes"]
        assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
        checks = {c["name"] for n in nodes for c in n["assetChecksOrError"].get("checks", [])}
        assert {"catalog", "catalog_quarantine", "taxonomy"} <= assets
        assert {"catalog_expectations", "catalog_counts_reconcile", "taxonomy_expectations"} <= checks
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert not _port_open(port)


def test_setlist_ui_starts_both_uis_and_stops_on_ctrl_c(settings):
    ui = subprocess.Popen(
        [BIN / "setlist", "ui", "--dagster-port", "0", "--mlflow-port", "0"],
        cwd=REPO_ROOT,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    urls: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 240
        while len(urls) < 2 and time.monotonic() < deadline:
            line = ui.stdout.readline()
            if not line:
                pytest.fail(f"setlist ui exited early with {ui.poll()}")
            if match := re.match(r"(Dagster|MLflow) UI:\s+(\S+)", line):
                urls[match[1]] = match[2]
        assert set(urls) == {"Dagster", "MLflow"}
        for url in urls.values():
            assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(urls["Dagster"] + "/server_info", timeout=10) as response:
            assert response.status == 200
        # Every socket the UIs and their children (webserver, daemon, code server, MLflow workers) listen on.
        addresses = listening_addresses(ui.pid)
        assert addresses and addresses <= {"127.0.0.1", "::1"}, addresses
        with urllib.request.urlopen(urls["MLflow"] + "/health", timeout=10) as response:
            assert response.status == 200
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(90)
    assert ui.returncode == 0
    for url in urls.values():
        assert not _port_open(int(url.rsplit(":", 1)[1]))
