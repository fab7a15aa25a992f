"""The gcp profile loads without network, and production storage works against the real PostgreSQL here."""

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg2
import pytest
from mlflow import MlflowClient

from orchestration.settings import REPO_ROOT, SettingsError, load_settings

BIN = Path(sys.executable).parent
GCP_ENV = {
    "SETLIST_PROFILE": "gcp",
    "SETLIST_GCP__PROJECT": "setlist-test-project",
    "SETLIST_GCP__BUCKET": "gs://setlist-test-bucket/prod",
    "SETLIST_MLFLOW_URI": "http://127.0.0.1:9/",  # nothing listens: loading must not call it
    "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/credentials.json",
}
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def test_gcp_definitions_load_and_validate_without_network(settings, monkeypatch):
    for name, value in GCP_ENV.items():
        monkeypatch.setenv(name, value)
    from orchestration.bigquery_io_manager import PolarsBigQueryIOManager
    from orchestration.definitions import build_definitions

    defs = build_definitions(load_settings())
    assert isinstance(defs.resources["io_manager"], PolarsBigQueryIOManager)
    assert defs.resources["mlflow"].artifact_root == "gs://setlist-test-bucket/prod/mlflow"
    synthetic = defs.get_assets_def("synthetic_conversations")
    assert synthetic.specs_by_key[dg.AssetKey("synthetic_conversations")].metadata["partition_expr"] == (
        "dagster_partition"
    )
    done = subprocess.run(
        [BIN / "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env={**os.environ, **GCP_ENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SETLIST_GCP__PROJECT", "SETLIST_GCP__PROJECT: required by the gcp profile"),
        ("SETLIST_MLFLOW_URI", "SETLIST_MLFLOW_URI: required by the gcp profile"),
    ],
)
def test_gcp_profile_names_a_missing_setting(settings, monkeypatch, missing, message):
    for name, value in GCP_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_gcp_bucket_must_be_a_gcs_url(settings, monkeypatch):
    for name, value in {**GCP_ENV, "SETLIST_GCP__BUCKET": "/tmp/bucket"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="SETLIST_GCP__BUCKET: must be a gs:// URL"):
        load_settings()


class _FakeBigQuery:
    """Records load jobs and answers queries with what was loaded: the bridge's logic without a network."""

    def __init__(self) -> None:
        self.loaded: dict[str, pl.DataFrame] = {}

    def load_table_from_file(self, buffer, destination, job_config):
        assert job_config.source_format == "PARQUET"
        self.loaded[destination] = pl.read_parquet(io.BytesIO(buffer.read()))
        return self

    def result(self):
        return None

    def query(self, sql):
        (table,) = self.loaded.values()
        return type("Job", (), {"to_arrow": lambda _self: table.to_arrow()})()


def test_polars_bigquery_bridge_round_trips_lists_and_partitions():
    from dagster._core.storage.db_io_manager import TableSlice

    from orchestration.bigquery_io_manager import PolarsBigQueryTypeHandler

    frame = pl.DataFrame({"track_id": ["t1", "t2"], "genres": [["rock"], []]})
    handler, client = PolarsBigQueryTypeHandler(), _FakeBigQuery()
    table_slice = TableSlice(table="synthetic", schema="setlist", database="project")
    output = dg.build_output_context(asset_key="synthetic", partition_key="grammar-v1")
    handler.handle_output(output, table_slice, frame, client)
    stored = client.loaded["project.setlist.synthetic"]
    assert stored["dagster_partition"].to_list() == ["grammar-v1", "grammar-v1"]
    loaded = handler.load_input(
        dg.build_input_context(asset_key=dg.AssetKey("synthetic")), table_slice, client
    )
    assert loaded.equals(frame)


@pytest.fixture
def postgres_dbs():
    """Fresh databases for Dagster and MLflow (both own a table called `runs`), dropped afterwards."""
    names = {service: f"setlist_{service}_{uuid.uuid4().hex[:8]}" for service in ("dagster", "mlflow")}
    admin = psycopg2.connect(dbname="test", **PG)
    admin.autocommit = True
    with admin.cursor() as cursor:
        for name in names.values():
            cursor.execute(f"CREATE DATABASE {name}")
    yield names
    with admin.cursor() as cursor:
        for name in names.values():
            cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_dagster_storage_and_mlflow_backend_on_postgres(settings, postgres_dbs, monkeypatch, tmp_path):
    dagster_home = tmp_path / "dagster_pg"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "orchestration/deploy/dagster.yaml").read_text())
    for name, value in {
        "SETLIST_PG_HOST": PG["host"],
        "SETLIST_PG_PORT": str(PG["port"]),
        "SETLIST_PG_DB": postgres_dbs["dagster"],
        "SETLIST_PG_USER": PG["user"],
        "SETLIST_PG_PASSWORD": "",
    }.items():
        monkeypatch.setenv(name, value)
    # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; name the driver dagster-postgres already brings.
    mlflow_uri = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{postgres_dbs['mlflow']}"
    monkeypatch.setenv("SETLIST_MLFLOW_URI", mlflow_uri)
    from orchestration.definitions import build_definitions

    defs = build_definitions(load_settings())
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("setlist_foundation").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("taxonomy")) is not None
        assert len(instance.get_runs()) == 1

    client = MlflowClient(mlflow_uri)
    assert {p.name for p in client.search_prompts()} >= {"synthetic_conversation"}
    with psycopg2.connect(dbname=postgres_dbs["dagster"], **PG) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 1
    with psycopg2.connect(dbname=postgres_dbs["mlflow"], **PG) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM registered_models")  # prompts and models
        assert cursor.fetchone()[0] >= 1
