"""The `setlist` command: run the whole graph in-process, or open the Dagster and MLflow UIs."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
import warnings
from dataclasses import dataclass, field

import dagster as dg
import psutil
import typer
from dagster._core.events import RunFailureReason
from dagster_shared.error import SerializableErrorInfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestration.cli_llm import app as llm_app
from orchestration.local_state import ensure_mlflow_store, prepare_home
from orchestration.settings import REPO_ROOT, SettingsError, SettingsWarning, load_settings

app = typer.Typer(
    help="Setlist: build and evaluate LLM-powered music discovery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one line each; `run --verbose` prints tracebacks
)
# Summary tables are wide; when output is piped rich would assume 80 columns.
console = Console(width=max(120, shutil.get_terminal_size((140, 40)).columns))
app.add_typer(llm_app, name="llm")


def _settings():
    """The settings, after one warning line per unknown `SETLIST_*` variable; invalid ones: one line, exit 2."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SettingsWarning)
        try:
            return load_settings()
        except SettingsError as err:
            failure = err
        finally:
            for warning in caught:
                if issubclass(warning.category, SettingsWarning):
                    console.print(f"[yellow]warning: {escape(str(warning.message))}[/yellow]")
    console.print(f"[red]{escape(str(failure))}[/red]")
    raise typer.Exit(2)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_reason(error: SerializableErrorInfo) -> str:
    """The error a person can act on: the first one under Dagster's wrappers ("Error occurred while
    executing op ..."), as `Class: message` without its module path."""
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    message = error.message.strip()
    head, _, rest = message.partition(": ")
    if head.rsplit(".", 1)[-1] == error.cls_name:
        message = f"{error.cls_name}: {rest}"
    return _one_line(message)


def exception_reason(error: BaseException) -> str:
    """`error_reason` for an exception raised outside Dagster's event stream."""
    while type(error).__name__.startswith("Dagster") and error.__cause__ is not None:
        error = error.__cause__
    return _one_line(f"{type(error).__name__}: {error}")


def _observed(metadata: dict) -> str:
    """A check's observed values: its scalar metadata (tables and markdown stay in the UI)."""
    values = []
    for name, entry in metadata.items():
        value = getattr(entry, "value", entry)
        if isinstance(value, bool | int | float | str) and len(str(value)) <= 120:
            values.append(f"{name}={round(value, 4) if isinstance(value, float) else value}")
    return ", ".join(values[:8])


@dataclass
class RunReport:
    """What the terminal says about a run: a line per failed step and check, and the counts behind the
    final line."""

    check_specs: dict[dg.AssetCheckKey, dg.AssetCheckSpec] = field(default_factory=dict)
    verbose: bool = False
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    blocking_failed: list[str] = field(default_factory=list)

    def step_failed(self, label: str, error: SerializableErrorInfo | None) -> None:
        self.failed_steps.append(label)
        reason = error_reason(error) if error else "no error recorded"
        console.print(f"  [red]failed[/red] {escape(label)}: {escape(reason)}", soft_wrap=True)
        if self.verbose and error:
            console.print(escape(error.to_string()), soft_wrap=True)

    def check_evaluated(self, evaluation) -> None:
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if evaluation.passed:
            console.print(f"  check {escape(name)} [green]passed[/green]")
            return
        spec = self.check_specs.get(dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name))
        blocking = bool(evaluation.blocking or (spec and spec.blocking))
        warn_only = evaluation.severity == dg.AssetCheckSeverity.WARN
        self.failed_checks.append(name)
        if blocking and not warn_only:
            self.blocking_failed.append(name)
        description = evaluation.description or (spec.description if spec else None) or "no description"
        observed = _observed(dict(evaluation.metadata or {}))
        kind = "blocking, " if blocking else ""
        console.print(
            f"  check {escape(name)} [red]FAILED[/red] ({kind}{evaluation.severity.value.lower()}): "
            f"{escape(_one_line(description, 200))}"
            + (f" — observed {escape(observed)}" if observed else ""),
            soft_wrap=True,
        )


class _Progress(logging.Handler):
    """Print one line per step start, materialization, failure and check, from Dagster's structured log
    records, and a step's own messages (progress of long work); failures carry their reason."""

    def __init__(self, report: RunReport) -> None:
        super().__init__()
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {})
        event = meta.get("dagster_event")
        if event is None:  # a step's own message, e.g. an LLM batch's or embedding's progress
            if record.levelno >= logging.INFO and meta.get("step_key"):
                message = _one_line(meta.get("orig_message", ""), 200)
                console.print(f"  [dim]{escape(meta['step_key'])}: {escape(message)}[/dim]", soft_wrap=True)
            return
        kind = event.event_type
        label = event.asset_key.to_user_string() if event.asset_key else event.step_key
        if kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            self.report.check_evaluated(event.event_specific_data)
        elif kind == dg.DagsterEventType.STEP_START:
            console.print(f"  [dim]started[/dim] {escape(label)}")
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            console.print(f"  [green]materialized[/green] {escape(label)}")
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            self.report.step_failed(event.step_key, event.event_specific_data.error)
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            data = event.event_specific_data
            if data is not None and data.error is not None and data.first_step_failure_event is None:
                self.report.step_failed(
                    f"run {event.job_name}", data.error
                )  # e.g. a resource failed to start


def _progress_logger(report: RunReport) -> dg.LoggerDefinition:
    @dg.logger(description="One line per step, materialization and check, instead of Dagster's debug stream.")
    def progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.getLogger("setlist.progress")
        log.handlers = [_Progress(report)]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        return log

    return progress


def _fail(message: str, error: BaseException | None, verbose: bool, code: int = 1) -> typer.Exit:
    """One line on the terminal (the traceback only with --verbose), and the exit to raise."""
    if verbose and error is not None:
        console.print(escape("".join(traceback.format_exception(error))), soft_wrap=True)
    console.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def run(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Print tracebacks beside the one-line reasons."
    ),
) -> None:
    """Materialize the whole asset graph in-process, stage by stage (see orchestration/stages.py).

    The last line says `run succeeded`, `run succeeded with N failed checks` or `run failed`; the exit code
    is 1 when a step or a blocking check failed, 2 when settings or the LLM endpoint are wrong."""
    from models.llm.preflight import endpoint_problem
    from models.prompts import PromptFileError, prompt_names, prompt_specs

    settings = _settings()
    console.print(f"[bold]Setlist run[/bold] — profile {settings.profile}, catalog {settings.catalog.kind}")
    console.print(_llm_mode(settings))
    if problem := endpoint_problem(settings.llm):
        raise _fail(f"run failed before any stage: {problem}", None, verbose, code=2)
    try:  # a malformed prompt file fails the run in a second, not in the stage that reads it
        for name in prompt_names(settings.prompts_dir):
            prompt_specs(name, settings.prompts_dir)
    except PromptFileError as err:
        raise _fail(f"run failed: {exception_reason(err)}", err, verbose) from None
    report = RunReport(verbose=verbose)
    try:
        results, not_run = _run_stages(settings, report)
    except KeyboardInterrupt:
        raise _fail("run interrupted", None, verbose, code=130) from None
    except Exception as err:  # setup outside any step: a malformed prompt file, an unusable store, ...
        raise _fail(f"run failed: {exception_reason(err)}", err, verbose) from None
    _print_summary(results)
    console.print(
        f"Dagster state: {settings.dagster_home}   (setlist ui, or DAGSTER_HOME={settings.dagster_home} dagster dev)"
    )
    console.print(f"MLflow state:  {settings.mlflow_tracking_uri}")
    console.print(f"Asset files:   {settings.assets_dir}")
    if not_run:
        console.print(f"not run: {', '.join(not_run)} (they read what a failed stage should have written)")
    console.print(_verdict(results, report))
    if report.blocking_failed or not all(r.success for r in results):
        raise typer.Exit(1)


def _run_stages(settings, report: RunReport) -> tuple[list[dg.ExecuteInProcessResult], list[str]]:
    from orchestration.definitions import build_definitions
    from orchestration.stages import plan_stages, stage_partition_keys

    prepare_home(settings)
    defs = build_definitions(settings, loggers={"progress": _progress_logger(report)})
    graph = defs.resolve_asset_graph()
    report.check_specs = {key: graph.get_check_spec(key) for key in graph.asset_check_keys}
    instance = dg.DagsterInstance.get()
    results: list[dg.ExecuteInProcessResult] = []
    stages = plan_stages(list(defs.assets))
    for done, stage in enumerate(stages):
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
            if _interrupted(result):
                raise KeyboardInterrupt  # Dagster caught Ctrl-C and ended this run; stop, don't start the next
        if not all(r.success for r in results):
            return results, [s.name for s in stages[done + 1 :]]  # later stages read what this one wrote
    return results, []


def _interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether Ctrl-C ended this run: Dagster records the interrupt as an unexpected termination."""
    return any(
        event.event_type == dg.DagsterEventType.RUN_FAILURE
        and event.event_specific_data.failure_reason == RunFailureReason.UNEXPECTED_TERMINATION
        for event in result.all_events
    )


def _verdict(results: list[dg.ExecuteInProcessResult], report: RunReport) -> str:
    """The final line: what happened, in the words a script can match."""
    failed = len(report.failed_checks)
    counts = [
        f"{n} failed {what}{'s' if n != 1 else ''}"
        for n, what in ((len(report.failed_steps), "step"), (failed, "check"))
        if n
    ]
    if report.blocking_failed or not all(r.success for r in results):
        return "[red]run failed[/red]" + (f" ({', '.join(counts)})" if counts else "")
    return f"[yellow]run succeeded with {counts[0]}[/yellow]" if failed else "[green]run succeeded[/green]"


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


def _port_busy(port: int) -> bool:
    """Whether something listens on `port` of 127.0.0.1, or would keep a server from binding it there."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not busy
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _choose_port(requested: int | None, default: int, option: str) -> int:
    """The requested port; 0 or a busy default: a free one; a busy requested port: one clear line, exit 2."""
    if requested == 0:
        return _free_port()
    port = default if requested is None else requested
    if not _port_busy(port):
        return port
    if requested is not None:
        console.print(
            f"[red]{option} {port}: the port is in use (another `setlist ui`?); choose another, or 0 for a free one[/red]"
        )
        raise typer.Exit(2)
    free = _free_port()
    console.print(
        f"[yellow]port {port} is in use (another `setlist ui`?); using {free} ({option} sets it)[/yellow]"
    )
    return free


def _serves(process: subprocess.Popen, port: int) -> bool:
    """Whether `process` or one of its children is the one listening on `port`."""
    try:
        parent = psutil.Process(process.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return False
    for member in family:
        try:
            connections = member.net_connections(kind="inet")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            return True
    return False


@app.command()
def ui(
    dagster_port: int | None = typer.Option(
        None,
        help="Dagster webserver port [default: 3000, or a free one when 3000 is busy; 0 picks a free one].",
    ),
    mlflow_port: int | None = typer.Option(
        None, help="MLflow UI port [default: 5000, or a free one when 5000 is busy; 0 picks a free one]."
    ),
) -> None:
    """Start the Dagster webserver (with the daemon) and the MLflow UI on 127.0.0.1; Ctrl-C stops both."""
    settings = _settings()
    dagster_port = _choose_port(dagster_port, 3000, "--dagster-port")
    mlflow_port = _choose_port(mlflow_port, 5000, "--mlflow-port")
    if dagster_port == mlflow_port:
        raise _fail(
            f"--dagster-port and --mlflow-port are both {dagster_port}; choose two ports", None, False, 2
        )
    prepare_home(settings)
    ensure_mlflow_store(settings.mlflow_tracking_uri)  # `mlflow server` would build it in place, unprotected
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
    code = 0
    try:
        for name, process, url, port in (
            ("Dagster", dagster, f"http://127.0.0.1:{dagster_port}/server_info", dagster_port),
            ("MLflow", mlflow, f"http://127.0.0.1:{mlflow_port}/health", mlflow_port),
        ):
            _wait_http(url, process, 180)
            if not _serves(process, port):  # another program took the port after the check above
                raise RuntimeError(f"{name} UI: port {port} is answered by another program, not this one")
        console.print(f"Dagster UI: http://127.0.0.1:{dagster_port}")
        console.print(f"MLflow UI:  http://127.0.0.1:{mlflow_port}")
        console.print("Ctrl-C stops both.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while dagster.poll() is None and mlflow.poll() is None:
            time.sleep(0.5)
        if (dagster.poll() or 0) or (mlflow.poll() or 0):
            console.print("[red]a UI server stopped on its own; its messages are above[/red]")
            code = 1
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as err:
        console.print(f"[red]setlist ui failed: {escape(str(err))}[/red]")
        code = 1
    finally:
        _stop(dagster, signal.SIGINT)
        _stop(mlflow, signal.SIGTERM)
        console.print("stopped")
    if code:
        raise typer.Exit(code)


@app.command()
def chat(
    candidate: str | None = typer.Option(
        None, help="A candidate key, e.g. intent-v3.hybrid.template (default: what --alias names)."
    ),
    alias: str = typer.Option(
        "champion", help="Serve models:/setlist-assistant@<alias> as MLflow holds it now (e.g. challenger)."
    ),
    json_lines: bool = typer.Option(
        False,
        "--json",
        help="Read turns from stdin, write one JSON object per line; a line may be an object with "
        '"text", "like", "dislike", "liked_track_ids", "disliked_track_ids" (see models/assistant/chat.py). '
        'Each answer carries "assistant": the candidate and registry URIs and versions serving it.',
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
        loaded = load_chat_assistant(settings, candidate, alias)
    except ChatSetupError as err:
        errors.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    errors.print(f"[dim]{loaded.description}[/dim]", soft_wrap=True)
    session = Session()
    if json_lines:
        for line in sys.stdin:
            if line.strip():
                answer = json_turn(loaded.assistant, session, line) | {"assistant": loaded.served}
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
                shown = track_display(track, loaded.assistant.taxonomy)
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
