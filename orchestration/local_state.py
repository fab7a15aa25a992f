"""The Setlist home folder: where Dagster, MLflow, asset files and the LLM cache keep their state.

A kill at any moment must leave a home that the next start can use: the MLflow store is created beside
its final name and renamed into place (its schema takes seconds to build), and Dagster runs that a killed
process left STARTED are marked failed when the next command starts.
"""

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import dagster as dg
import psutil
from mlflow import MlflowClient

from orchestration.settings import Settings

DAGSTER_YAML_HEADER = "# Written by Setlist for the embedded default"
DAGSTER_YAML = f"""\
{DAGSTER_YAML_HEADER}: SQLite storage in this folder, no telemetry.
telemetry:
  enabled: false
# Progress of long steps (LLM batches, embedding: done/total, rate, ETA) is logged by `models` through
# Python's logging; managed, it reaches the run's log in the UI and `setlist run`'s terminal.
python_logs:
  managed_python_loggers: [models]
  python_log_level: INFO
"""
SQLITE_PREFIX = "sqlite:///"
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
_ready_stores: set[str] = set()  # checked once per process


class MlflowStoreError(RuntimeError):
    """The local MLflow store cannot be used as it is; the message says why and what to do."""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes sharing the home folder; released when the file closes,
    also if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def prepare_home(settings: Settings) -> None:
    """Create the folders, point Dagster at its instance and create its storage; idempotent and safe
    when several runs start at once (SQLite schema creation is not). Runs a kill left STARTED are failed."""
    for folder in (settings.dagster_home, settings.assets_dir, settings.mlflow_artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    # MLflow draws download progress bars on every model load; they drown the run's own progress lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with file_lock(settings.dagster_home / ".init.lock"):
        dagster_yaml = settings.dagster_home / "dagster.yaml"
        # Setlist's own file follows the code; a file someone wrote in its place is theirs.
        current = dagster_yaml.read_text() if dagster_yaml.exists() else DAGSTER_YAML_HEADER
        if current.startswith(DAGSTER_YAML_HEADER) and current != DAGSTER_YAML:
            dagster_yaml.write_text(DAGSTER_YAML)
        instance = dg.DagsterInstance.get()  # creates the run, event and schedule storage once
        if settings.profile == "local":  # process ids mean something only on this machine
            fail_abandoned_runs(instance)
        instance.dispose()


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed each STARTING/STARTED run whose process is gone (killed): nothing else ever will, since
    in-process runs have no run monitor. Returns their ids."""
    abandoned = []
    in_flight = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    for record in instance.get_run_records(filters=in_flight):
        pid = _run_pid(instance, record.dagster_run.run_id)
        started = record.start_time or record.create_timestamp.timestamp()
        if pid is not None and _alive_since(pid, started):
            continue  # another process (a concurrent `setlist run`, the UI's run worker) is running it
        instance.report_run_failed(
            record.dagster_run,
            f"marked failed at the next start: its process ({pid or 'unknown'}) ended without finishing it "
            "(killed or crashed)",
        )
        abandoned.append(record.dagster_run.run_id)
    return abandoned


def _run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process that executes the run: every Dagster event records the pid that wrote it."""
    for record in instance.get_records_for_run(run_id, ascending=False, limit=20).records:
        if (event := record.event_log_entry.dagster_event) is not None and event.pid:
            return event.pid
    return None


def _alive_since(pid: int, timestamp: float) -> bool:
    """Whether `pid` is a live process that existed at `timestamp` (not a later process reusing the id)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= timestamp + 1
    except psutil.Error:
        return False


def ensure_mlflow_store(tracking_uri: str) -> None:
    """Make a local SQLite MLflow store usable before anything touches it.

    MLflow builds its schema in place through some forty migrations (seconds); a kill half-way leaves a
    store that fails for good ("table ... already exists"). So a new store is built aside and renamed into
    place, and a half-built one left by an older Setlist (schema not at MLflow's head revision) is moved
    aside and rebuilt when it holds no runs or models; with data in it, this refuses with what to do.
    """
    if tracking_uri in _ready_stores or not tracking_uri.startswith(SQLITE_PREFIX):
        _ready_stores.add(tracking_uri)
        return
    db = Path(tracking_uri.removeprefix(SQLITE_PREFIX))
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_suffix(".lock")):  # the registry lock: no other process is building the store
        for stale in db.parent.glob(f".{db.name}.*.tmp*"):
            stale.unlink()  # a build a kill interrupted, with its journal
        if db.exists() and (problem := _schema_problem(db)):
            if _holds_data(db):
                raise MlflowStoreError(
                    f"{db}: {problem}, and it holds runs or models: back it up, then run "
                    f"`mlflow db upgrade {tracking_uri}`"
                )
            aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", *SQLITE_SIDE_FILES):  # a journal left beside must not roll into the new store
                if (part := Path(f"{db}{suffix}")).exists():
                    part.rename(f"{aside}{suffix}")
            logging.getLogger(__name__).warning("%s: %s; moved to %s and rebuilt", db, problem, aside.name)
        if not db.exists():
            building = db.with_name(f".{db.name}.{os.getpid()}.tmp")
            migrations = logging.getLogger("mlflow.store.db.utils")  # its INFO lines would cut into progress
            level = migrations.level
            migrations.setLevel(logging.WARNING)
            try:
                client = MlflowClient(SQLITE_PREFIX + str(building))
                client.search_experiments(max_results=1)  # creates the tracking and registry schema
                client.search_registered_models(max_results=1)
            finally:
                migrations.setLevel(level)
            os.replace(building, db)
    _ready_stores.add(tracking_uri)


def _schema_problem(db: Path) -> str | None:
    from mlflow.store.db.utils import _get_latest_schema_revision  # MLflow's own notion of "current"

    # Read-write: a kill mid-migration leaves a hot journal, which SQLite rolls back on this first open.
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return "its schema was never completed (no alembic_version)"
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    head = _get_latest_schema_revision()
    if not found or found[0] != head:
        return f"its schema stopped at revision {found[0] if found else None}, not MLflow's {head}"
    return None


def _holds_data(db: Path) -> bool:
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return any(
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
            for table in ("runs", "registered_models", "model_versions")
            if table in tables
        )
