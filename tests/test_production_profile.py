"""The gcp profile loads without network and names what it lacks; the executor follows SETLIST_EXECUTOR.
(The production engines themselves run in tests/test_production_stack.py; storage contracts in
tests/test_production_bigquery.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.settings import REPO_ROOT, SettingsError, load_settings

BIN = Path(sys.executable).parent
GCP_ENV = {
    "SETLIST_PROFILE": "gcp",
    "SETLIST_GCP__PROJECT": "setlist-test-project",
    "SETLIST_GCP__BUCKET": "gs://setlist-test-bucket/prod",
    "SETLIST_MLFLOW_URI": "http://127.0.0.1:9/",  # nothing listens: loading must not call it
    "SETLIST_MLFLOW_LOCK_URL": "postgresql://postgres@127.0.0.1:9/mlflow",  # nor take the lock
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
        ("SETLIST_MLFLOW_LOCK_URL", "SETLIST_MLFLOW_LOCK_URL: required by the gcp profile"),
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


def test_the_lock_url_must_be_postgresql(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_MLFLOW_LOCK_URL", "sqlite:///lock.db")
    with pytest.raises(SettingsError, match="SETLIST_MLFLOW_LOCK_URL: Value error, not a postgresql:// URL"):
        load_settings()


@pytest.mark.parametrize(
    ("profile", "executor", "expected"),
    [
        ("local", None, "in_process"),
        ("gcp", None, "multiprocess"),
        ("local", "multiprocess", "multiprocess"),
        ("gcp", "celery", "celery"),
    ],
)
def test_the_executor_follows_the_setting(settings, monkeypatch, profile, executor, expected):
    if profile == "gcp":
        for name, value in GCP_ENV.items():
            monkeypatch.setenv(name, value)
    if executor:
        monkeypatch.setenv("SETLIST_EXECUTOR", executor)
    monkeypatch.setenv("SETLIST_CELERY__QUEUE", "setlist-steps")
    from orchestration.executors import executor_for

    assert executor_for(load_settings()).name == expected


def test_workers_and_runs_read_one_celery_configuration(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_CELERY__BROKER_URL", "pyamqp://guest:guest@rabbit.internal:5672//")
    monkeypatch.setenv("SETLIST_CELERY__QUEUE", "setlist-steps")
    from orchestration.executors import celery_app_args

    args = celery_app_args(load_settings().celery)
    assert args["broker"] == "pyamqp://guest:guest@rabbit.internal:5672//" and args["backend"] == "rpc://"
    assert args["config_source"] == {
        "task_default_queue": "setlist-steps",
        "task_acks_late": True,
        "worker_max_memory_per_child": 2048 * 1024,
    }
    monkeypatch.setenv("SETLIST_CELERY__MAX_MEMORY_PER_CHILD_MB", "0")
    assert "worker_max_memory_per_child" not in celery_app_args(load_settings().celery)["config_source"]


def test_the_workers_app_replaces_a_pool_process_left_above_the_memory_bound(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_CELERY__MAX_MEMORY_PER_CHILD_MB", "512")
    import importlib

    import orchestration.celery_app

    app = importlib.reload(orchestration.celery_app).app
    assert app.conf.worker_max_memory_per_child == 512 * 1024 and app.conf.task_acks_late
