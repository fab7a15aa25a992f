"""Dagster resources: how assets reach configuration, MLflow and the report folder.

A leaf of the code location, like `partitions.py`: asset modules import it, it imports no asset module.
The catalog source is the settings' `CatalogSourceSpec` itself, given to assets as `catalog_source`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
from mlflow.tracking import MlflowClient

from orchestration.local_state import ensure_mlflow_store, file_lock
from orchestration.registry_lock import advisory_lock

INDEX_IO_MANAGER = "index_io_manager"  # the retrieval indexes: pickled objects, not tables


class PlatformConfig(dg.ConfigurableResource):
    """Knobs shared by several assets."""

    seed: int = 7
    taxonomy_file: str
    golden_cpcd_path: str = ""  # a local path or URL; see Settings.golden_cpcd_path
    synthetic_conversations: int = 2000
    intent_training_partition: str | None = None  # None: the grammar's current partition
    # Below "moderate" agreement (Landis & Koch: kappa 0.41) a judge's scores say more about the judge.
    judge_kappa_floor: float = 0.4
    exports_dir: str = (
        ".setlist/exports"  # files for consumers outside Dagster (e.g. DPO pairs for a trainer)
    )
    interaction_logs_path: str = ""  # real interaction logs (JSONL or Parquet); empty: simulate listeners
    vector_seed: str = ""  # track-text vectors shipped beside the catalog, reused by key; empty: none


class MLflowTracking(dg.ConfigurableResource):
    """The MLflow tracking server (a SQLite file under the Setlist home by default)."""

    tracking_uri: str
    artifact_root: str  # a URI: file:///..., gs://...
    lock_url: str | None = (
        None  # PostgreSQL for the registry lock of a shared server (SETLIST_MLFLOW_LOCK_URL)
    )

    def client(self) -> MlflowClient:
        ensure_mlflow_store(self.tracking_uri)  # built aside and renamed: a kill never leaves half a schema
        mlflow.set_tracking_uri(self.tracking_uri)
        return MlflowClient(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """Get or create an experiment whose artifacts live under `artifact_root/name`."""
        client = self.client()
        with self.registry_lock():
            existing = client.get_experiment_by_name(name)
            if existing is not None:
                return existing.experiment_id
            artifacts = f"{self.artifact_root.rstrip('/')}/{name}"
            return client.create_experiment(name, artifact_location=artifacts)

    @contextmanager
    def registry_lock(self) -> Iterator[None]:
        """Serialise get-or-create writes (experiments, prompt and model versions) between processes: two
        concurrent runs would otherwise both register the same version. A shared server: a PostgreSQL advisory
        lock; the local SQLite store: a file lock beside it."""
        if self.lock_url:
            with advisory_lock(self.lock_url, f"setlist.mlflow.registry {self.tracking_uri}"):
                yield
            return
        if not self.tracking_uri.startswith("sqlite:///"):
            yield  # a server without SETLIST_MLFLOW_LOCK_URL (the gcp profile requires it): unserialised
            return
        with file_lock(Path(self.tracking_uri.removeprefix("sqlite:///")).with_suffix(".lock")):
            yield


class EvalReports(dg.ConfigurableResource):
    """Where the HTML evaluation report is written (`<SETLIST_HOME>/reports` by default)."""

    directory: str
