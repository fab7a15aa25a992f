"""The `setlist` command: run the whole graph in-process, or open the Dagster and MLflow UIs."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import dagster as dg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestration.local_state import prepare_home
from orchestration.settings import REPO_ROOT, SettingsError, load_settings

app = typer.Typer(help="Setlist: build and evaluate LLM-powered music discovery.", no_args_is_help=True)
# Summary tables are wide; when output is piped rich would assume 80 columns.
console = Console(width=max(120, shutil.get_terminal_size((140, 40)).columns))


def _settings():
    try:
        return load_settings()
    except SettingsError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None


class _Progress(logging.Handler):
    """Print one line per step start, materialization and check, from Dagster's structured log records."""

    SHOWN = {
        dg.DagsterEventType.STEP_START: "[dim]started[/dim]",
        dg.DagsterEventType.ASSET_MATERIALIZATION: "[green]materialized[/green]",
        dg.DagsterEventType.STEP_FAILURE: "[red]failed[/red]",
    }

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
            return
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            verdict = "[green]passed[/green]" if data.passed else "[red]FAILED[/red]"
            console.print(f"  check {data.asset_key.to_user_string()}:{data.check_name} {verdict}")
        elif event.event_type in self.SHOWN:
            label = event.asset_key.to_user_string() if event.asset_key else event.step_key
            console.print(f"  {self.SHOWN[event.event_type]} {label}")


@dg.logger(description="One line per step, materialization and check, instead of Dagster's debug stream.")
def progress_logger(_init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger("setlist.progress")
    log.handlers = [_Progress()]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log


@app.command()
def run() -> None:
    """Materialize the whole asset graph in-process, stage by stage (see orchestration/stages.py)."""
    from orchestration.definitions import build_definitions
    from orchestration.stages import plan_stages, stage_partition_keys

    settings = _settings()
    prepare_home(settings)
    defs = build_definitions(settings, loggers={"progress": progress_logger})
    instance = dg.DagsterInstance.get()
    console.print(f"[bold]Setlist run[/bold] — profile {settings.profile}, catalog {settings.catalog.kind}")
    console.print(_llm_mode(settings))

    results: list[dg.ExecuteInProcessResult] = []
    for stage in plan_stages(list(defs.assets)):
        job = defs.resolve_job_def(f"setlist_{stage.name}")
        for key in stage_partition_keys(stage, settings, instance):
            console.print(f"[bold]{stage.name}[/bold]" + (escape(f" [{key}]") if key else ""))
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                raise_on_error=False,
                run_config={"loggers": {"progress": {}}},
            )
            results.append(result)
        if not all(r.success for r in results):
            break  # later stages read what this one should have written
    _print_summary(results)
    console.print(
        f"Dagster state: {settings.dagster_home}   (setlist ui, or DAGSTER_HOME={settings.dagster_home} dagster dev)"
    )
    console.print(f"MLflow state:  {settings.mlflow_tracking_uri}")
    console.print(f"Asset files:   {settings.assets_dir}")
    if not all(r.success for r in results):
        raise typer.Exit(1)


def _llm_mode(settings) -> str:
    if settings.llm.base_url:
        return f"LLM mode: online — {settings.llm.model} at {settings.llm.base_url}"
    return (
        "LLM mode: offline — no endpoint configured (SETLIST_LLM__BASE_URL); "
        "LLM-backed implementations are skipped and the offline baselines run"
    )


def _print_summary(results: list[dg.ExecuteInProcessResult]) -> None:
    checks: dict[str, list[bool]] = {}
    for evaluation in (e for r in results for e in r.get_asset_check_evaluations()):
        checks.setdefault(evaluation.asset_key.to_user_string(), []).append(evaluation.passed)
    table = Table(title="Summary")
    for column in ("asset", "rows", "checks passed", "checks failed", "key figures"):
        table.add_column(column)
    for event in (e for r in results for e in r.get_asset_materialization_events()):
        materialization = event.step_materialization_data.materialization
        key = materialization.asset_key.to_user_string()
        if materialization.partition:
            key += escape(f" [{materialization.partition}]")
        metadata = materialization.metadata
        rows = metadata.get("dagster/row_count")
        figures = [
            f"{name}={entry.value}"
            for name, entry in metadata.items()
            if name != "dagster/row_count" and isinstance(entry, dg.FloatMetadataValue | dg.IntMetadataValue)
        ][:4]
        outcomes = checks.get(materialization.asset_key.to_user_string(), [])
        table.add_row(
            key,
            str(rows.value) if rows else "-",
            str(sum(outcomes)),
            str(len(outcomes) - sum(outcomes)),
            ", ".join(figures),
        )
    console.print(table)
    succeeded = all(r.success for r in results)
    console.print("[green]run succeeded[/green]" if succeeded else "[red]run failed[/red]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with code {process.returncode} before serving {url}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing answered at {url} within {seconds:.0f}s")


def _restore_sigint() -> None:
    # A process started from a non-interactive shell with `&` inherits SIGINT as ignored; dagster dev
    # shuts down cleanly only on SIGINT, so give the children the default handler back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@app.command()
def ui(
    dagster_port: int = typer.Option(3000, help="Dagster webserver port (0 picks a free one)."),
    mlflow_port: int = typer.Option(5000, help="MLflow UI port (0 picks a free one)."),
) -> None:
    """Start the Dagster webserver (with the daemon) and the MLflow UI on 127.0.0.1; Ctrl-C stops both."""
    settings = _settings()
    prepare_home(settings)
    dagster_port = dagster_port or _free_port()
    mlflow_port = mlflow_port or _free_port()
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    dagster = subprocess.Popen(
        [
            f"{bin_dir}/dagster",
            "dev",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(dagster_port),
        ],
        cwd=REPO_ROOT,
        env=env,
        preexec_fn=_restore_sigint,
        start_new_session=True,
    )
    mlflow = subprocess.Popen(
        [
            f"{bin_dir}/mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--default-artifact-root",
            settings.mlflow_artifact_root,
        ],
        env=env,
        preexec_fn=_restore_sigint,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{dagster_port}/server_info", dagster, 180)
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow, 180)
        console.print(f"Dagster UI: http://127.0.0.1:{dagster_port}")
        console.print(f"MLflow UI:  http://127.0.0.1:{mlflow_port}")
        console.print("Ctrl-C stops both.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while dagster.poll() is None and mlflow.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(dagster, signal.SIGINT)
        _stop(mlflow, signal.SIGTERM)
        console.print("stopped")


@app.command()
def chat(
    candidate: str | None = typer.Option(
        None, help="A candidate key, e.g. intent-v3.hybrid.template (default: the champion)."
    ),
    json_lines: bool = typer.Option(
        False,
        "--json",
        help="Read turns from stdin, write one JSON object per line; a line may be an object with "
        '"text", "like", "dislike", "liked_track_ids", "disliked_track_ids" (see models/assistant/chat.py).',
    ),
    debug: bool = typer.Option(False, help="Print the dialogue state after each turn."),
) -> None:
    """Talk to the assistant in the terminal: tracks, why each fits; /like N and /dislike N rate the last answer."""
    import json

    from models.assistant.assistant import Session
    from models.assistant.chat import command, json_turn, track_display
    from orchestration.assistant_loader import ChatSetupError, load_chat_assistant

    settings = _settings()
    errors = Console(stderr=True)
    try:
        loaded = load_chat_assistant(settings, candidate)
    except ChatSetupError as err:
        errors.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    errors.print(f"[dim]{loaded.description}[/dim]", soft_wrap=True)
    session = Session()
    if json_lines:
        for line in sys.stdin:
            if line.strip():
                answer = json_turn(loaded.assistant, session, line)
                print(json.dumps(answer, ensure_ascii=False), flush=True)
        return
    console.print(
        "Ask for music; /like N or /dislike N rates track N of the last answer. An empty line ends."
    )
    while True:
        try:
            text = console.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        if text.startswith("/"):
            console.print(f"[dim]{escape(command(session, text))}[/dim]")
            continue
        result = loaded.assistant.respond(session, text)
        console.print(f"[bold]setlist>[/bold] {escape(result.response)}")
        if result.tracks:
            table = Table(show_header=True)
            for column in ("#", "track", "artist", "album", "length", "tags", "why it fits"):
                table.add_column(column)
            stories = result.stories + [""] * (len(result.tracks) - len(result.stories))  # top tracks only
            for i, (track, story) in enumerate(zip(result.tracks, stories, strict=True), start=1):
                shown = track_display(track)
                table.add_row(str(i), *(escape(v) for v in shown.values()), escape(story))
            console.print(table)
        if debug:
            console.print_json(json.dumps(result.state))


def _stop(process: subprocess.Popen, sig: signal.Signals, grace: float = 30) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    app()
