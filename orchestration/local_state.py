"""The Setlist home folder: where Dagster, MLflow, asset files and the LLM cache keep their state."""

import os

from orchestration.settings import Settings

DAGSTER_YAML = """\
# Written by Setlist for the embedded default: SQLite storage in this folder, no telemetry.
telemetry:
  enabled: false
"""


def prepare_home(settings: Settings) -> None:
    """Create the folders and point Dagster at its instance; idempotent."""
    for folder in (settings.dagster_home, settings.assets_dir, settings.mlflow_artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    dagster_yaml = settings.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    # MLflow draws download progress bars on every model load; they drown the run's own progress lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
