"""The Setlist home folder: where Dagster, MLflow, asset files and the LLM cache keep their state."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from orchestration.settings import Settings

DAGSTER_YAML = """\
# Written by Setlist for the embedded default: SQLite storage in this folder, no telemetry.
telemetry:
  enabled: false
"""


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
    when several runs start at once (SQLite schema creation is not)."""
    for folder in (settings.dagster_home, settings.assets_dir, settings.mlflow_artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    # MLflow draws download progress bars on every model load; they drown the run's own progress lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with file_lock(settings.dagster_home / ".init.lock"):
        dagster_yaml = settings.dagster_home / "dagster.yaml"
        if not dagster_yaml.exists():
            dagster_yaml.write_text(DAGSTER_YAML)
        dg.DagsterInstance.get().dispose()  # creates the run, event and schedule storage once
