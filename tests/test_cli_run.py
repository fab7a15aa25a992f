"""What `setlist run` and `setlist ui` say on the terminal when something is wrong: one line with the reason.

Failed steps and checks are reported from Dagster's own events of a small in-process job; the command's
early failures (settings, endpoint, a malformed prompt file) through typer's runner, in-process.
"""

import io
import logging
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from checks.quarantine_rules import CatalogSourceError
from models.llm.config import GatewayConfig
from models.llm.preflight import endpoint_problem
from models.llm.test_server import LLMTestServer
from models.progress import Progress
from orchestration import cli
from orchestration.local_state import DAGSTER_YAML, DAGSTER_YAML_HEADER, prepare_home


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200, color_system=None))
    return out


@dg.asset
def raw_tracks() -> None:
    raise CatalogSourceError("/data/tracks.tsv", "file_missing", "no such file", line_no=None)


@dg.asset
def tracks() -> int:
    return 10


@dg.asset_check(asset=tracks, description="Rows read equal rows kept plus quarantined.")
def tracks_reconcile() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"rows_read": 10, "kept": 8, "quarantined": 1})


@dg.asset_check(asset=tracks, blocking=True, description="No empty catalog.")
def tracks_not_empty() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"rows": 0})


@dg.asset
def embedded_tracks() -> int:
    log = logging.getLogger("models.assistant.embedding")  # logs as the embedding code does
    log.info("%s", Progress(256, 1000, 2.0, "embedded", "texts"))
    log.debug("a detail nobody asked for")
    return 1


@dg.asset
def interrupted() -> int:
    raise KeyboardInterrupt  # what Ctrl-C raises inside a step


def _execute(
    report: cli.RunReport, assets: list, checks: list, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[dg.define_asset_job("toy", selection=dg.AssetSelection.all())],
        loggers={"progress": cli._progress_logger(report)},
    )
    graph = defs.resolve_asset_graph()
    report.check_specs = {key: graph.get_check_spec(key) for key in graph.asset_check_keys}
    return defs.resolve_job_def("toy").execute_in_process(
        raise_on_error=False,
        run_config={"loggers": {"progress": {}}},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )


def test_a_failed_step_prints_its_reason_in_one_line(terminal):
    report = cli.RunReport()
    result = _execute(report, [raw_tracks], [])
    lines = terminal.getvalue().splitlines()
    assert "  failed raw_tracks: CatalogSourceError: /data/tracks.tsv: file_missing: no such file" in lines
    assert "Traceback" not in terminal.getvalue()
    assert cli._verdict([result], report) == "[red]run failed[/red] (1 failed step)"


def test_ctrl_c_inside_a_run_is_told_apart_from_a_failed_step(terminal):
    """`setlist run` stops at an interrupted run instead of starting the next partition."""
    failed = _execute(cli.RunReport(), [raw_tracks], [])
    stopped = _execute(cli.RunReport(), [interrupted], [])
    assert not failed.success and not cli._interrupted(failed)
    assert not stopped.success and cli._interrupted(stopped)


def test_a_failed_check_prints_its_description_and_observed_values(terminal):
    report = cli.RunReport()
    result = _execute(report, [tracks], [tracks_reconcile])
    line = next(line for line in terminal.getvalue().splitlines() if "FAILED" in line)
    assert line == (
        "  check tracks:tracks_reconcile FAILED (error): Rows read equal rows kept plus quarantined. "
        "— observed rows_read=10, kept=8, quarantined=1"
    )
    assert result.success and not report.blocking_failed
    assert cli._verdict([result], report) == "[yellow]run succeeded with 1 failed check[/yellow]"


def test_a_blocking_check_fails_the_run(terminal):
    report = cli.RunReport()
    result = _execute(report, [tracks], [tracks_not_empty])
    assert "check tracks:tracks_not_empty FAILED (blocking, error): No empty catalog. — observed rows=0" in (
        terminal.getvalue()
    )
    assert report.blocking_failed == ["tracks:tracks_not_empty"]
    assert cli._verdict([result], report).startswith("[red]run failed[/red]")


def test_long_work_shows_its_progress_under_the_instance_setlist_writes(terminal, settings):
    """The home's dagster.yaml manages the `models` loggers, so an LLM batch's or embedding's progress lines
    reach the terminal (and the run's log in the UI); debug lines do not."""
    with dg.DagsterInstance.get() as instance:
        for _ in range(2):  # `setlist run` runs its stages in one process: no line twice
            _execute(cli.RunReport(), [embedded_tracks], [], instance)
    lines = terminal.getvalue().splitlines()
    assert lines.count("  embedded_tracks: embedded 256/1,000 texts (26%), 128 texts/s, ETA 6 s") == 2
    assert "a detail nobody asked for" not in terminal.getvalue()


def test_the_home_instance_file_follows_the_code_unless_someone_else_wrote_it(settings):
    written = settings.dagster_home / "dagster.yaml"
    assert written.read_text() == DAGSTER_YAML
    written.write_text(f"{DAGSTER_YAML_HEADER}: an older version\ntelemetry:\n  enabled: false\n")
    prepare_home(settings)
    assert written.read_text() == DAGSTER_YAML
    written.write_text("# ours\ntelemetry:\n  enabled: false\n")
    prepare_home(settings)
    assert written.read_text().startswith("# ours")


def test_verbose_adds_the_traceback(terminal):
    _execute(cli.RunReport(verbose=True), [raw_tracks], [])
    assert "Traceback" in terminal.getvalue() or 'File "' in terminal.getvalue()


def _run(*args: str):
    return CliRunner().invoke(cli.app, ["run", *args])


def test_a_malformed_prompt_file_is_one_line(settings, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "broken.yaml").write_text("description: x\nmessages: [\n")
    monkeypatch.setenv("SETLIST_PROMPTS_DIR", str(prompts))
    done = _run()
    assert done.exit_code == 1
    last = done.output.strip().splitlines()[-1]
    assert last.startswith("run failed: PromptFileError: ") and str(prompts / "broken.yaml") in last
    assert "Traceback" not in done.output and len(done.output.strip().splitlines()) <= 3
    assert "Traceback" in _run("--verbose").output


def test_a_bad_endpoint_fails_before_any_stage(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_LLM__BASE_URL", "not a url")
    done = _run()
    assert (
        done.exit_code == 2 and "SETLIST_LLM__BASE_URL: " in done.output and "must be an http" in done.output
    )
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SETLIST_LLM__BASE_URL", f"http://127.0.0.1:{port}/v1")
    done = _run()
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert (
        done.output.strip().splitlines()[-1].startswith("run failed before any stage: SETLIST_LLM__BASE_URL=")
    )
    assert "foundation" not in done.output


def test_unknown_variables_are_shown_as_warnings(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_PROFIL", "gcp")
    monkeypatch.setenv("SETLIST_LLM__BASE_URL", "ftp://x")  # stops the run right after the warnings
    done = _run()
    assert (
        "warning: SETLIST_PROFIL is not a Setlist setting and is ignored; did you mean SETLIST_PROFILE?"
        in (done.output)
    )


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "problem"),
    [(200, None), (429, None), (401, "refused the API key"), (404, "answered HTTP 404")],
)
def test_preflight_reads_the_answer_to_get_models(status, problem):
    handler = type("Handler", (_Answer,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        found = endpoint_problem(GatewayConfig(base_url=f"http://127.0.0.1:{server.server_port}/v1"))
    finally:
        server.shutdown()
    assert (found is None) if problem is None else (problem in found)


def test_preflight_passes_the_project_test_server_and_offline_mode():
    with LLMTestServer() as server:
        assert endpoint_problem(GatewayConfig(base_url=server.base_url)) is None
    assert endpoint_problem(GatewayConfig()) is None


# --- setlist ui: ports ----------------------------------------------------------------------------------


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_default_port_is_replaced_by_a_free_one(terminal, busy_port):
    port = cli._choose_port(None, busy_port, "--dagster-port")
    assert port != busy_port and not cli._port_busy(port)
    assert f"port {busy_port} is in use" in terminal.getvalue()


def test_a_busy_requested_port_fails_with_one_line(terminal, busy_port):
    with pytest.raises(typer.Exit) as exit_:
        cli._choose_port(busy_port, 3000, "--dagster-port")
    assert exit_.value.exit_code == 2
    assert terminal.getvalue().strip() == (
        f"--dagster-port {busy_port}: the port is in use (another `setlist ui`?); choose another, or 0 for a free one"
    )


def test_serves_tells_our_server_from_another_one(busy_port):
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], stdout=subprocess.PIPE
    )
    try:
        port = int(re.search(rb"port (\d+)", server.stdout.readline())[1])
        assert cli._serves(server, port)
        assert not cli._serves(server, busy_port)  # the port answers, but not from this process
    finally:
        server.terminate()
        server.wait(10)
