"""The production stack on this machine, for tests and benchmarks: Dagster on PostgreSQL with its daemon,
webserver and a code server, Celery workers on the RabbitMQ broker, and an MLflow tracking server on
PostgreSQL. Every process is started here and stopped by its PID (its process group, so a server's own
children go with it).

The Dagster instance is `orchestration/deploy/dagster.yaml` as shipped, with four values lowered for a
2-core machine and a short test: at most 2 runs at once, an `llm` pool of 1, the queue checked every second
and the monitoring daemon every 5 seconds.
"""

import contextlib
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg2
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient
from mlflow import MlflowClient

from orchestration.settings import BUNDLED_DATA, REPO_ROOT, Settings

BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
LOCATION = "setlist"
REPOSITORY = "__repository__"
MAX_CONCURRENT_RUNS = 2
LLM_POOL_LIMIT = 1
# The listener simulations are the comparison stage's heaviest steps; their sizes are run config.
SMALL_COMPARISON = {
    "ops": {
        "interaction_logs_assets": {"config": {"listeners": 40, "sessions_per_listener": 2}},
        "online_experiment": {"config": {"listeners": 60}},
    }
}
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_inputs(folder: Path, tracks: int = 300, dialogs: int = 40) -> dict[str, str]:
    """A slice of the bundled catalog and CPCD file and a copy of the prompts: settings for a run that shows
    every stage in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (BUNDLED_DATA / "mtg_jamendo_sample.tsv").read_text().splitlines(keepends=True)
    (folder / "catalog.tsv").write_text("".join(lines[: tracks + 1]))
    with gzip.open(BUNDLED_DATA / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz", "rt") as source:
        head = [line for _, line in zip(range(dialogs), source, strict=False)]
    with gzip.open(folder / "cpcd.jsonl.gz", "wt") as target:
        target.writelines(head)
    shutil.copytree(
        REPO_ROOT / "models" / "prompts", folder / "prompts", ignore=shutil.ignore_patterns("*.py")
    )
    return {
        "SETLIST_CATALOG__LOCATION": str(folder / "catalog.tsv"),
        "SETLIST_GOLDEN_CPCD_PATH": str(folder / "cpcd.jsonl.gz"),
        "SETLIST_PROMPTS_DIR": str(folder / "prompts"),
        "SETLIST_SYNTHETIC_CONVERSATIONS": "300",
    }


def clean_environ() -> dict[str, str]:
    """This process's environment without Setlist settings or a Dagster home of its own."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("SETLIST_") and k not in ("DAGSTER_HOME",)
    }


@contextmanager
def postgres_databases(prefix: str, services: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Fresh databases (Dagster and MLflow both own a table called `runs`), dropped afterwards."""
    names = {service: f"{prefix}_{service}" for service in services}
    admin = psycopg2.connect(dbname="test", **PG)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f"CREATE DATABASE {name}")
        yield names
    finally:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def terminate_backends(database: str) -> int:
    """End every session on `database` (what a PostgreSQL restart does to its clients); the count ended.
    Sessions waiting for a lock end first, each before the next is signalled (PostgreSQL 14+: the timeout makes
    pg_terminate_backend wait for the exit): otherwise ending the lock's holder can hand the lock to a waiter
    whose own end has not landed yet, and which then fails as a holder instead."""
    ended = 0
    with closing(psycopg2.connect(dbname="test", **PG)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            for waiting in (True, False):
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND coalesce(wait_event_type = 'Lock', false) = %s",
                    (database, waiting),
                )
                for (pid,) in cursor.fetchall():
                    cursor.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
                    ended += cursor.fetchone()[0]
    return ended


def lock_waiters(database: str) -> int:
    """Sessions on `database` waiting for the registry lock (orchestration/registry_lock.py)."""
    with closing(psycopg2.connect(dbname="test", **PG)) as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
            "AND application_name = 'setlist-registry-lock'",
            (database,),
        )
        return cursor.fetchone()[0]


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path

    def signal(self, sig: signal.Signals) -> None:
        """Signal the process group this service leads (the service and the children it started)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def tail(self, lines: int = 30) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    databases: dict[str, str]
    webserver_port: int
    mlflow_uri: str
    queue: str
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def assets_dir(self) -> Path:
        return Path(self.env["SETLIST_HOME"]) / "assets"

    def start(self, name: str, *args: str | Path, env: Mapping[str, str] | None = None) -> Service:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(a) for a in args],
                cwd=REPO_ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with its children
            )
        self.services[name] = Service(name, process, log)
        return self.services[name]

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to every service at once, SIGKILL to those still running after `timeout`."""
        for service in self.services.values():
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services.values():
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.signal(signal.SIGKILL)
                service.process.wait(5)

    def check_alive(self) -> None:
        for service in self.services.values():
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with {service.process.returncode}:\n{service.tail()}"
                )

    def wait_for(self, what: str, ready, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if ready():
                    return
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready after {timeout:.0f}s")

    # --- the webserver's GraphQL API ---------------------------------------------------------------

    @property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.webserver_port, timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"http://127.0.0.1:{self.webserver_port}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            kind = (entry["locationOrLoadError"] or {}).get("__typename")
            if kind == "PythonError":
                message = entry["locationOrLoadError"]["message"]
                if "DagsterUserCodeUnreachableError" not in message:
                    raise RuntimeError(f"code location failed to load: {message}")
                self.client.reload_repository_location(LOCATION)  # the code server was still importing
                return False
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and kind == "RepositoryLocation":
                return True
        return False

    def stop_sensor(self, name: str) -> None:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
        sensor = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename "
            "... on Sensor { jobOriginId sensorState { selectorId } } } }",
            {"s": selector},
        )["sensorOrError"]
        stopped = self.graphql(
            "mutation($o: String, $i: String) { stopSensor(jobOriginId: $o, jobSelectorId: $i) { __typename "
            "... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }",
            {"o": sensor["jobOriginId"], "i": sensor["sensorState"]["selectorId"]},
        )["stopSensor"]
        if stopped.get("instigationState", {}).get("status") != "STOPPED":
            raise RuntimeError(f"could not stop sensor {name}: {stopped}")

    def submit(
        self,
        job: str,
        partition: str | None = None,
        run_config: dict | None = None,
        assets: list[str] | None = None,
    ) -> str:
        return self.client.submit_job_execution(
            job,
            repository_location_name=LOCATION,
            repository_name=REPOSITORY,
            run_config=run_config or {},
            tags={"dagster/partition": partition} if partition else None,
            asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
        )

    # --- the instance, read directly ---------------------------------------------------------------

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            yield instance

    def wait_runs(self, run_ids: list[str], timeout: float = 300) -> dict[str, dg.DagsterRun]:
        deadline = time.monotonic() + timeout
        with self.instance() as instance:
            while True:
                runs = {run_id: instance.get_run_by_id(run_id) for run_id in run_ids}
                if all(run.status in DONE for run in runs.values()):
                    return runs
                if time.monotonic() > deadline:
                    pending = {k: r.status.value for k, r in runs.items() if r.status not in DONE}
                    raise TimeoutError(f"runs not done after {timeout:.0f}s: {pending}\n{self.logs_tail()}")
                self.check_alive()
                time.sleep(0.5)

    def logs_tail(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.tail(15)}" for s in self.services.values())


def instance_yaml() -> str:
    config = yaml.safe_load((REPO_ROOT / "orchestration" / "deploy" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = MAX_CONCURRENT_RUNS
    config["concurrency"]["pools"]["default_limit"] = LLM_POOL_LIMIT
    # The coordinator does not dequeue a run whose next steps wait for a full pool, unless this buffer lets it:
    # without it, whether a second candidate run starts depends on where the first one is (the run limit was
    # reached in some runs of the test and not in others); with one run of buffer the run limit is what holds
    # the third run in the queue, and the pool makes the steps of the two in flight take turns.
    config["concurrency"]["pools"]["op_granularity_run_buffer"] = MAX_CONCURRENT_RUNS - LLM_POOL_LIMIT
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    config["run_monitoring"]["poll_interval_seconds"] = 5
    return yaml.safe_dump(config)


def once_cron(at: datetime) -> str:
    """A daily cron that fires at `at`'s minute (UTC): one schedule tick while the stack runs."""
    return f"{at.minute} {at.hour} * * *"


@contextmanager
def production_stack(
    root: Path, settings_env: Mapping[str, str], workers: int = 2, launches_of_its_own: bool = True
):
    """Start the stack under `root` with `settings_env` (e.g. `small_inputs`) beside its own settings; yields a
    Stack whose daemon, webserver, workers and MLflow server answer. Meanwhile this process's environment holds
    the stack's settings and Dagster home.

    With `launches_of_its_own` (the tests) the catalog refresh schedule fires once, two minutes in, and the
    registry sensor launches candidate runs; without (benchmarks) only the caller's runs use the workers."""
    tag = f"setlist_prodstack_{uuid.uuid4().hex[:8]}"
    with postgres_databases(tag, ("dagster", "mlflow")) as databases:
        home = root / "home"
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text(instance_yaml())
        code_port, webserver_port, mlflow_port = free_port(), free_port(), free_port()
        (root / "workspace.yaml").write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {"grpc_server": {"host": "127.0.0.1", "port": code_port, "location_name": LOCATION}}
                    ]
                }
            )
        )
        mlflow_db = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{databases['mlflow']}"
        queue = f"setlist-test-{uuid.uuid4().hex[:8]}"
        env = {
            **clean_environ(),
            **settings_env,
            "SETLIST_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "SETLIST_PG_HOST": PG["host"],
            "SETLIST_PG_PORT": str(PG["port"]),
            "SETLIST_PG_DB": databases["dagster"],
            "SETLIST_PG_USER": PG["user"],
            "SETLIST_PG_PASSWORD": "",
            "SETLIST_EXECUTOR": "celery",
            "SETLIST_CELERY__BROKER_URL": BROKER,
            "SETLIST_CELERY__QUEUE": queue,
            "SETLIST_MLFLOW_URI": f"http://127.0.0.1:{mlflow_port}",
            "SETLIST_MLFLOW_LOCK_URL": mlflow_db,
            "SETLIST_SCHEDULES__SENSOR_INTERVAL_S": "5",
            **(
                {"SETLIST_SCHEDULES__CATALOG_REFRESH": once_cron(datetime.now(UTC) + timedelta(minutes=2))}
                if launches_of_its_own
                else {}
            ),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONUNBUFFERED": "1",
        }
        stack = Stack(root, env, databases, webserver_port, env["SETLIST_MLFLOW_URI"], queue)
        saved_environ = dict(os.environ)
        # This process reads the same instance and settings (the instance's yaml reads SETLIST_PG_*).
        os.environ.update({k: v for k, v in env.items() if k.startswith("SETLIST_") or k == "DAGSTER_HOME"})
        try:
            stack.start(
                "mlflow",
                BIN / "mlflow",
                "server",
                "--backend-store-uri",
                mlflow_db.replace("postgresql://", "postgresql+psycopg2://"),
                "--default-artifact-root",
                (root / "mlflow-artifacts").as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
            stack.start(
                "code-server",
                BIN / "dagster",
                "api",
                "grpc",
                "-m",
                "orchestration.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
                "--location-name",
                LOCATION,
            )
            for n in range(1, workers + 1):
                stack.start(
                    f"worker{n}",
                    BIN / "celery",
                    "-A",
                    "orchestration.celery_app",
                    "worker",
                    "-Q",
                    queue,
                    "-n",
                    f"setlist-worker{n}@%h",
                    "--concurrency",
                    "1",
                    "--prefetch-multiplier",
                    "1",
                    "--loglevel",
                    "INFO",
                )
            stack.start(
                "webserver",
                BIN / "dagster-webserver",
                "-w",
                root / "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(webserver_port),
                # Its pooled connections are recycled when older than a second: after a database restart it
                # reconnects instead of failing a request per storage on a dead connection (default: an hour).
                "--db-pool-recycle",
                "1",
            )
            stack.wait_for("the code location", stack.location_loaded)
            # Automation would launch runs of its own whenever an asset changes; the tests launch theirs.
            stack.stop_sensor("setlist_automation")
            if not launches_of_its_own:
                stack.stop_sensor("new_registry_versions")
            stack.start("daemon", BIN / "dagster-daemon", "run", "-w", root / "workspace.yaml")
            stack.wait_for(
                "the MLflow server",
                lambda: requests.get(f"{stack.mlflow_uri}/health", timeout=5).ok,
            )
            for n in range(1, workers + 1):
                log = stack.services[f"worker{n}"].log
                stack.wait_for(f"worker{n}", lambda log=log: " ready." in log.read_text(errors="replace"))
            with stack.instance() as instance:
                stack.wait_for(
                    "the daemon",
                    lambda: (
                        {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"}
                        <= set(instance.get_daemon_heartbeats())
                    ),
                )
            yield stack
        finally:
            stack.stop()
            _delete_queue(queue)
            os.environ.clear()
            os.environ.update(saved_environ)


def _delete_queue(queue: str) -> None:
    """The broker keeps a durable queue after its workers stop: remove this stack's."""
    from kombu import Connection

    with Connection(BROKER, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


# --- what a run leaves behind, for comparing two runs -----------------------------------------------


def asset_tables(assets_dir: Path) -> dict[str, pl.DataFrame]:
    return {str(p.relative_to(assets_dir)): pl.read_parquet(p) for p in sorted(assets_dir.rglob("*.parquet"))}


# Run ids differ between two stores, and so do the tags that name another run and the fingerprints over them.
STORE_SPECIFIC_TAGS = ("setlist.offline_run.",)
# The report's fingerprint hashes the gate's decisions, whose latency guardrail reads latency measured in each
# store's own evaluation runs: two stores may decide "keep" and "inconclusive" on the same results.
MEASURED_FINGERPRINTS = ("eval-report",)


def mlflow_runs(uri: str) -> dict[str, list[dict]]:
    """Every run per experiment: status, params, metrics (9 significant digits) and Setlist tags. Measured
    latencies, MLflow's generated run names and tags naming other runs are left out (they differ between any
    two runs, or any two stores)."""
    client = MlflowClient(uri)
    snapshot = {}
    for experiment in client.search_experiments():
        runs = []
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            tags = {k: v for k, v in run.data.tags.items() if k.startswith("setlist.")}
            if experiment.name in MEASURED_FINGERPRINTS or any(
                k.startswith(STORE_SPECIFIC_TAGS) for k in tags
            ):
                tags = {k: v for k, v in tags.items() if not k.startswith(STORE_SPECIFIC_TAGS)}
                tags.pop("setlist.fingerprint", None)
            runs.append(
                {
                    "status": run.info.status,
                    "params": run.data.params,
                    "metrics": {
                        k: float(f"{v:.9g}")
                        for k, v in run.data.metrics.items()
                        if not k.startswith("latency")
                    },
                    "tags": tags,
                }
            )
        snapshot[experiment.name] = sorted(runs, key=repr)
    return snapshot


def registry_versions(uri: str, decisions: bool = True) -> dict[str, list[tuple]]:
    """Every model and prompt version: number, tags (without MLflow's own) and aliases; without `decisions`,
    leaves out what follows the gate's decisions (their tag and the `challenger` alias)."""
    from models.lifecycle.registry import (
        CHALLENGER,
        CHAMPION,
        GATE_TAG,
        model_alias_version,
        prompt_alias_version,
    )

    client = MlflowClient(uri)
    versions = {
        f"models:/{m.name}": (client.search_model_versions(f"name = '{m.name}'"), m.name, model_alias_version)
        for m in client.search_registered_models()
    } | {
        f"prompts:/{p.name}": (client.search_prompt_versions(p.name), p.name, prompt_alias_version)
        for p in client.search_prompts()
    }
    snapshot = {}
    for uri_name, (found, name, alias_version) in versions.items():
        aliases = {
            a: alias_version(client, name, a) for a in (CHAMPION, CHALLENGER) if decisions or a == CHAMPION
        }
        left_out = ("mlflow.",) if decisions else ("mlflow.", GATE_TAG)
        snapshot[uri_name] = sorted(
            (
                int(v.version),
                tuple(sorted((k, t) for k, t in v.tags.items() if not k.startswith(left_out))),
                tuple(sorted(a for a, n in aliases.items() if n == int(v.version))),
            )
            for v in found
        )
    return snapshot


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold at one instant (an end before a start at the same time)."""
    edges = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def step_intervals(instance: dg.DagsterInstance, run_ids: list[str], steps: set[str]) -> list[tuple]:
    """(run id, step, start, end) of every execution of `steps` in the runs, from the event log."""
    found = []
    for run_id in run_ids:
        for stat in instance.get_run_step_stats(run_id):
            if stat.step_key in steps and stat.start_time and stat.end_time:
                found.append((run_id, stat.step_key, stat.start_time, stat.end_time))
    return found


# --- the main job, as `setlist run` plans it ---------------------------------------------------------


def run_stages_in_process(
    settings: Settings, run_configs: Mapping[str, dict]
) -> list[dg.ExecuteInProcessResult]:
    """Every stage and partition `setlist run` would run, in this process with the in-process executor and
    an ephemeral instance (no Dagster home needed)."""
    from orchestration.definitions import build_definitions
    from orchestration.stages import plan_stages, stage_partition_keys

    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    results = []
    for stage in plan_stages(list(defs.assets)):
        job = defs.resolve_job_def(f"setlist_{stage.name}")
        for key in stage_partition_keys(stage, settings, instance):
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                run_config=run_configs.get(stage.name, {}),
                raise_on_error=False,
            )
            results.append(result)
            if not result.success:
                return results
    return results


def run_stages_on_stack(
    stack: Stack, settings: Settings, run_configs: Mapping[str, dict], timeout: float = 300
) -> list[dg.DagsterRun]:
    """The same stages and partitions submitted through the webserver's GraphQL API, one stage after the
    other (a stage reads what the one before wrote); the daemon dequeues them and Celery runs their steps."""
    from orchestration.definitions import build_definitions
    from orchestration.stages import plan_stages, stage_partition_keys

    defs = build_definitions(settings)
    done = []
    with stack.instance() as instance:
        for stage in plan_stages(list(defs.assets)):
            keys = stage_partition_keys(stage, settings, instance)
            run_ids = [
                stack.submit(f"setlist_{stage.name}", partition=key, run_config=run_configs.get(stage.name))
                for key in keys
            ]
            runs = stack.wait_runs(run_ids, timeout)
            done.extend(runs.values())
            if any(run.status != dg.DagsterRunStatus.SUCCESS for run in runs.values()):
                return done
    return done
