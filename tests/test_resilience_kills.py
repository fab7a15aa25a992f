"""A run SIGKILLed at five points, then rerun: the rerun succeeds and leaves a home as a clean run would.

The points: during the first MLflow setup of a new home (the store's schema takes seconds to build), between
registering a prompt version and setting its alias, inside a Dagster step (the run is left STARTED), inside the
intent model's MLflow run, and between registering the intent model and setting `setlist-intent@champion`.

Each run is a child process (a new process, as `setlist run` is) that materializes only what the point needs,
in-process. Children come from a fork server that imported the heavy modules once, so none pays for the
imports again, and none inherits the test process's threads and locks (a child forked from a suite that had
started MLflow and Dagster threads could block on a lock copied in its held state). A point inside the code
is reached by replacing one function in the child with one that SIGKILLs the child; the first MLflow setup is
killed from outside, once the store being built beside its final name has grown.
"""

import multiprocessing
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pytest
from conftest import prompt_versions

from models.synthetic.grammar import VERSION as GRAMMAR_VERSION
from orchestration.partitions import synthetic_partition_key

FOUNDATION = (
    "catalog",
    "catalog_quarantine",
    "taxonomy",
    "golden_curated",
    "golden_ratings",
    "golden_cpcd",
    "cpcd_corpus",
)
SYNTHETIC_KEY = synthetic_partition_key("grammar", GRAMMAR_VERSION)
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["orchestration.definitions", "mlflow", __name__])


def _die(*_args, **_kwargs) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at(point: str | None) -> None:
    """Make the child die at `point` (None: run to the end)."""
    if point == "prompt_alias":
        from mlflow import MlflowClient

        MlflowClient.set_prompt_alias = _die
    elif point == "dagster_step":
        import assets.catalog

        assets.catalog.read_catalog = _die  # inside the catalog step
    elif point == "intent_run":
        import mlflow.pyfunc

        mlflow.pyfunc.log_model = _die  # inside `with mlflow.start_run()`
    elif point == "intent_alias":
        import models.lifecycle.registry

        models.lifecycle.registry.set_model_alias = _die  # the version is registered, its alias not yet set


def _materialize(home: Path, stage: str, kill_at: str | None) -> None:
    """The child: one stage's selection in-process over `home`; exit code 0 when it succeeded."""
    from orchestration.definitions import build_definitions
    from orchestration.local_state import prepare_home
    from orchestration.settings import load_settings

    for key in [k for k in os.environ if k.startswith("SETLIST_") and k != "SETLIST_SHARED_DATA"]:
        del os.environ[key]
    os.environ.update(SETLIST_HOME=str(home), SETLIST_SYNTHETIC_CONVERSATIONS="150")
    _kill_at(kill_at)
    settings = load_settings()
    prepare_home(settings)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()

    def run(job: str, selection: tuple[str, ...] | None = None, partition: str | None = None) -> bool:
        definition = defs.resolve_job_def(job)
        if selection:
            definition = definition.get_subset(asset_selection={dg.AssetKey(k) for k in selection})
        return definition.execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False
        ).success

    if stage == "store":  # only an empty MLflow store, for the tests that kill later to start from
        from orchestration.local_state import ensure_mlflow_store

        ensure_mlflow_store(settings.mlflow_tracking_uri)
        ok = True
    elif stage == "prompts":
        ok = run("setlist_foundation", ("prompt_versions",))
    elif stage == "catalog":
        ok = run("setlist_foundation", ("catalog", "catalog_quarantine"))
    elif stage == "before_intent":  # what the intent model reads, without MLflow
        instance.add_dynamic_partitions("synthetic_generator", [SYNTHETIC_KEY])
        ok = (
            run("setlist_foundation", FOUNDATION)
            and run("setlist_synthetic", partition=SYNTHETIC_KEY)
            and run("setlist_training", ("intent_training_set",))
        )
    else:
        ok = run("setlist_training", ("intent_model",))
    os._exit(0 if ok else 1)


def start(home: Path, stage: str, kill_at: str | None = None):
    child = FORKSERVER.Process(target=_materialize, args=(home, stage, kill_at))
    child.start()
    return child


def finish(child, timeout: float = 300) -> int:
    child.join(timeout)
    if child.exitcode is None:
        child.kill()  # a child left running would hold the test session open at exit
        child.join()
        pytest.fail(f"the run did not finish within {timeout:.0f} s")
    return child.exitcode


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def dagster_statuses(home: Path) -> list[str]:
    return [
        status for (status,) in query(home / "dagster" / "history" / "runs.db", "SELECT status FROM runs")
    ]


def assert_healthy(home: Path, versions: dict[str, int]) -> None:
    """What a clean run leaves: an intact store, the expected versions and a champion per name, nothing
    half-done."""
    db = home / "mlflow" / "mlflow.db"
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert dict(query(db, "SELECT name, COUNT(*) FROM model_versions GROUP BY name")) == versions
    champions = {
        name for (name,) in query(db, "SELECT name FROM registered_model_aliases WHERE alias = 'champion'")
    }
    assert champions == set(versions)
    assert query(db, "SELECT COUNT(*) FROM model_version_tags WHERE key = 'setlist.pending_alias'") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'") == [(0,)]
    assert not list(home.glob("mlflow/.mlflow.db.*"))  # no half-built store left beside


def test_kill_during_the_first_mlflow_setup(tmp_path):
    home = tmp_path / "home"
    child = start(home, "prompts")
    deadline = time.monotonic() + 240
    building: list[Path] = []
    while not (building and building[0].exists() and building[0].stat().st_size > 100_000):
        assert child.exitcode is None, "the run ended before its MLflow store was built"
        assert time.monotonic() < deadline, "no MLflow store was built within 240 s"
        building = list((home / "mlflow").glob(".mlflow.db.*.tmp"))
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert finish(child) == -signal.SIGKILL
    assert not (home / "mlflow" / "mlflow.db").exists()  # the half-built store never took the real name

    assert finish(start(home, "prompts")) == 0
    assert_healthy(home, prompt_versions())
    assert dagster_statuses(home).count("FAILURE") == 1  # the killed run, marked at the rerun's start
    assert "STARTED" not in dagster_statuses(home)


def _build_store_in_place(db: Path) -> None:
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{db}").search_experiments()
    os._exit(0)


def test_a_store_half_built_in_place_is_rebuilt(tmp_path):
    """What an older Setlist left: MLflow building its schema in place, killed half-way."""
    home = tmp_path / "home"
    db = home / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)

    child = FORKSERVER.Process(target=_build_store_in_place, args=(db,))
    child.start()
    while not (db.exists() and db.stat().st_size > 100_000):
        assert child.exitcode is None, "MLflow finished building before it could be killed"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.join()

    assert finish(start(home, "prompts")) == 0
    assert_healthy(home, prompt_versions())
    assert list((home / "mlflow").glob("mlflow.db.broken-*"))  # kept aside for a look, not deleted


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """A freshly built MLflow store: the tests that kill later copy it instead of each paying for the build."""
    home = tmp_path_factory.mktemp("store") / "home"
    assert finish(start(home, "store")) == 0
    return home / "mlflow" / "mlflow.db"


def with_store(home: Path, store: Path) -> Path:
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copy(store, home / "mlflow" / "mlflow.db")
    return home


def test_kill_between_a_prompt_version_and_its_alias(tmp_path, empty_store):
    home = with_store(tmp_path / "home", empty_store)
    assert finish(start(home, "prompts", kill_at="prompt_alias")) == -signal.SIGKILL
    db = home / "mlflow" / "mlflow.db"
    assert query(db, "SELECT COUNT(*) FROM model_versions") == [(1,)]  # registered, alias never set

    assert finish(start(home, "prompts")) == 0
    assert_healthy(home, prompt_versions())
    assert "STARTED" not in dagster_statuses(home)


def test_kill_inside_a_dagster_step(tmp_path):
    home = tmp_path / "home"
    assert finish(start(home, "catalog", kill_at="dagster_step")) == -signal.SIGKILL
    assert dagster_statuses(home) == ["STARTED"]  # what a kill leaves: nobody reports the end

    assert finish(start(home, "catalog")) == 0
    assert sorted(dagster_statuses(home)) == ["FAILURE", "SUCCESS"]
    assert (home / "assets" / "catalog.parquet").exists()


@pytest.fixture(scope="module")
def before_intent(tmp_path_factory, empty_store) -> Path:
    """A home holding what the intent model reads (catalog, taxonomy, golden sets, synthetic data, training
    set) and an empty MLflow store; each test copies it."""
    home = tmp_path_factory.mktemp("before_intent") / "home"
    assert finish(start(home, "before_intent")) == 0
    return with_store(home, empty_store)


@pytest.mark.parametrize("point", ["intent_run", "intent_alias"])
def test_kill_while_registering_the_intent_model(before_intent, tmp_path, point):
    home = tmp_path / "home"
    shutil.copytree(before_intent, home)
    assert finish(start(home, "intent", kill_at=point)) == -signal.SIGKILL
    db = home / "mlflow" / "mlflow.db"
    if point == "intent_run":
        assert query(db, "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'") == [(1,)]
    else:
        assert query(db, "SELECT COUNT(*) FROM registered_model_aliases") == [(0,)]

    assert finish(start(home, "intent")) == 0
    assert_healthy(home, {"setlist-intent": 1})
    assert "STARTED" not in dagster_statuses(home)
    if point == "intent_run":  # the killed attempt's MLflow run is closed, not left RUNNING for ever
        assert query(db, "SELECT status FROM runs ORDER BY start_time") == [("KILLED",), ("FINISHED",)]
