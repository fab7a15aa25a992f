"""The production engines for real, on this machine's PostgreSQL and RabbitMQ (tests/production_stack.py):
queued runs under the daemon, Celery workers running the main job's stages, an MLflow tracking server on
PostgreSQL, and what happens when the broker, a worker or the database goes away.

One stack serves the module: it starts once (about 30 s) and the main job runs on it once; each test adds
only the runs it needs. The catalog, CPCD file and simulations are cut down so that every stage runs in
seconds (tests/production_stack.py `small_inputs`, `SMALL_COMPARISON`).
"""

import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import dagster as dg
import polars as pl
import psutil
import pytest
from polars.testing import assert_frame_equal
from production_stack import (
    LLM_POOL_LIMIT,
    LOCATION,
    MAX_CONCURRENT_RUNS,
    REPOSITORY,
    SMALL_COMPARISON,
    Stack,
    asset_tables,
    free_port,
    lock_waiters,
    max_overlap,
    mlflow_runs,
    production_stack,
    registry_versions,
    run_stages_in_process,
    run_stages_on_stack,
    small_inputs,
    step_intervals,
    terminate_backends,
)

from orchestration.definitions import build_resources
from orchestration.registry_lock import RegistryLockLost
from orchestration.settings import Settings, load_settings

RUN_CONFIGS = {"comparison": SMALL_COMPARISON}
# Measured, not computed: wall-clock latencies differ between any two runs (README, "Reruns are reproducible"),
# and the gate's evidence quotes them; an MLflow run id differs between any two stores. The gate's latency
# guardrail reads each store's own measurement, so between the two stores it can move a challenger from
# "inconclusive" to "keep": decisions and failed guardrails are compared by `_assert_same_gate` (equal, or
# differing only through latency), `promoted` with the rest of the table.
UNCOMPARABLE_COLUMNS = {"latency_ms", "tool_calls", "run_id", "evidence", "decision", "guardrails_failed"}
LATENCY_GUARDRAIL = "latency_ms"


def _in_background(target, *args) -> Future:
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(target(*args))
        except BaseException as err:  # handed to the test that reads the result
            future.set_exception(err)

    threading.Thread(target=run, name="in-process-reference", daemon=True).start()
    return future


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Settings, Future]:
    """The main job in-process with the embedded default's SQLite MLflow, started first so that it runs
    while the stack boots."""
    root = tmp_path_factory.mktemp("in_process")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in small_inputs(root / "inputs").items():
            patch.setenv(name, value)
        settings = load_settings(home=root / "home", executor="in_process")
    return settings, _in_background(run_stages_in_process, settings, RUN_CONFIGS)


@pytest.fixture(scope="module")
def stack(reference, tmp_path_factory) -> Stack:
    root = tmp_path_factory.mktemp("stack")
    with production_stack(root, small_inputs(root / "inputs")) as running:
        yield running


@pytest.fixture(scope="module")
def main_job(stack) -> list[dg.DagsterRun]:
    """The main job's five stages, queued through GraphQL and run by the Celery workers."""
    runs = run_stages_on_stack(stack, load_settings(), RUN_CONFIGS)
    failed = [
        f"{r.job_name} {r.tags.get('dagster/partition', '')}" for r in runs if r.status.value != "SUCCESS"
    ]
    assert not failed, f"failed on Celery: {failed}\n{stack.logs_tail()}"
    return runs


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in frame.columns if c in UNCOMPARABLE_COLUMNS])


def test_main_job_on_celery_equals_in_process(stack, main_job, reference):
    settings, done = reference
    in_process = done.result(timeout=600)
    assert all(r.success for r in in_process), [r.job_def.name for r in in_process if not r.success]
    assert [r.job_name for r in main_job] == [r.job_def.name for r in in_process]

    # Every step ran in a Celery worker (_worker_of fails for one that did not), and both workers took steps.
    with stack.instance() as instance:
        workers = [
            _worker_of(instance, run.run_id, stat.step_key)
            for run in main_job
            for stat in instance.get_run_step_stats(run.run_id)
        ]
    assert len(workers) > 30 and set(workers) == {"setlist-worker1", "setlist-worker2"}

    celery_tables, reference_tables = asset_tables(stack.assets_dir), asset_tables(settings.assets_dir)
    assert celery_tables.keys() == reference_tables.keys()
    for name, frame in celery_tables.items():
        assert_frame_equal(
            _comparable(frame), _comparable(reference_tables[name]), check_exact=False, rel_tol=1e-6
        )

    assert mlflow_runs(stack.mlflow_uri) == mlflow_runs(settings.mlflow_tracking_uri)
    same_decisions = _assert_same_gate(
        celery_tables["champion_gate.parquet"], reference_tables["champion_gate.parquet"]
    )
    # The decision is tagged on each version and names the runner-up `@challenger`: both follow the gate.
    assert registry_versions(stack.mlflow_uri, decisions=same_decisions) == registry_versions(
        settings.mlflow_tracking_uri, decisions=same_decisions
    )


def _assert_same_gate(celery: pl.DataFrame, reference: pl.DataFrame) -> bool:
    """The two gates decided alike, or differ only where the latency guardrail (measured in each store)
    was breached or not shown in one of them; every other failed guardrail is the same. Returns whether every
    decision is equal."""
    assert celery["challenger"].to_list() == reference["challenger"].to_list()
    same = True
    for ours, theirs in zip(celery.iter_rows(named=True), reference.iter_rows(named=True), strict=True):
        failed = [set(filter(None, r["guardrails_failed"].split(", "))) for r in (ours, theirs)]
        assert failed[0] - {LATENCY_GUARDRAIL} == failed[1] - {LATENCY_GUARDRAIL}, (ours, theirs)
        if ours["decision"] != theirs["decision"]:
            assert LATENCY_GUARDRAIL in failed[0] | failed[1], (ours, theirs)
            same = False
    return same


def _run_spans(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, tuple[float, float]]:
    """From launch (the coordinator counts a run from RUN_STARTING) to its end, or to now if still in flight."""
    spans = {}
    for record in instance.get_run_records(dg.RunsFilter(run_ids=run_ids)):
        starting = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_STARTING
        ).records
        if starting:
            spans[record.dagster_run.run_id] = (starting[0].timestamp, record.end_time or time.time())
    return spans


def _queued(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, float]:
    """When each run entered the queue."""
    return {
        run_id: instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
        .records[0]
        .timestamp
        for run_id in run_ids
    }


def _waited_at_the_limit(
    spans: dict[str, tuple[float, float]], queued: dict[str, float], limit: int
) -> list[str]:
    """Runs that sat in the queue at an instant when `limit` runs were in flight."""

    def in_flight(at: float) -> int:
        return sum(start <= at < end for start, end in spans.values())

    instants = [start for start, _ in spans.values()]
    return [
        run_id
        for run_id, entered in queued.items()
        if any(entered <= at < spans[run_id][0] and in_flight(at) == limit for at in [entered, *instants])
    ]


def _add_candidates(stack: Stack, keys: list[str]) -> None:
    with stack.instance() as instance:
        instance.add_dynamic_partitions("candidates", keys)


def test_queued_runs_hold_the_run_limit_and_the_llm_pool(stack, main_job):
    keys = [
        "intent-v1.bm25.template",
        "intent-v1.tags.template",
        "intent-v1.hybrid.template",
    ]  # hybrid: a rerun
    _add_candidates(stack, keys)
    before = mlflow_runs(stack.mlflow_uri)
    run_ids = [stack.submit("setlist_candidates", partition=key) for key in keys]
    runs = stack.wait_runs(run_ids)
    assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.SUCCESS}, stack.logs_tail()

    with stack.instance() as instance:
        every_run = [r.dagster_run.run_id for r in instance.get_run_records()]
        spans = _run_spans(instance, every_run)
        queued = _queued(instance, run_ids)
        pool_steps = step_intervals(instance, every_run, {"assistant_runs", "candidate_evaluation"})
    # Never more than the limit in flight, over every run the stack ran (the registry sensor's and the
    # schedule's runs share the queue with these three); three runs against a limit of two: one of them waited
    # while the limit was reached.
    assert max_overlap(list(spans.values())) <= MAX_CONCURRENT_RUNS
    assert _waited_at_the_limit(spans, queued, MAX_CONCURRENT_RUNS), (spans, queued)
    # The llm pool: LLM-calling steps of concurrent runs took turns.
    assert max_overlap([(start, end) for *_, start, end in pool_steps]) == LLM_POOL_LIMIT
    assert {step for _, step, *_ in pool_steps} == {"assistant_runs", "candidate_evaluation"}

    versions = registry_versions(stack.mlflow_uri)["models:/setlist-assistant"]
    candidates = [dict(tags)["candidate"] for _, tags, _ in versions]
    assert sorted(candidates) == sorted(set(candidates)) and set(keys) <= set(candidates)
    after = mlflow_runs(stack.mlflow_uri)
    hybrid = "intent-v1.hybrid.template"
    for experiment, runs_before in before.items():  # the rerun found its evaluations: no new runs
        assert [r for r in after[experiment] if r["params"].get("candidate") == hybrid] == [
            r for r in runs_before if r["params"].get("candidate") == hybrid
        ]


def _bump_max_tokens(stack: Stack, prompt: str) -> None:
    """A reviewed edit of a prompt file: a new content hash, so the next sync registers a new version."""
    path = Path(stack.env["SETLIST_PROMPTS_DIR"]) / f"{prompt}.yaml"
    text = path.read_text()
    tokens = int(text.split("max_tokens:")[1].split()[0])
    path.write_text(text.replace(f"max_tokens: {tokens}", f"max_tokens: {tokens + 1}"))


def _new_versions(before: dict, after: dict) -> dict[str, list]:
    """Versions registered since `before`, per model or prompt."""
    known = {name: {v[0] for v in versions} for name, versions in before.items()}
    found = {
        name: [v for v in versions if v[0] not in known.get(name, set())] for name, versions in after.items()
    }
    return {name: versions for name, versions in found.items() if versions}


def _wait_for_steps(stack: Stack, run_ids: list[str], step: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with stack.instance() as instance:
        while len({run_id for run_id, *_ in _started(instance, run_ids, step)}) < len(run_ids):
            assert time.monotonic() < deadline, f"{step} did not start in every run\n{stack.logs_tail()}"
            stack.check_alive()
            time.sleep(0.5)


def _started(instance: dg.DagsterInstance, run_ids: list[str], step: str) -> list[tuple[str, float]]:
    return [
        (run_id, record.timestamp)
        for run_id in run_ids
        for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
        if record.event_log_entry.step_key == step
    ]


def test_two_concurrent_prompt_syncs_register_one_version(stack, main_job):
    before = registry_versions(stack.mlflow_uri)
    edited_at = time.time()
    _bump_max_tokens(stack, "judge_pairwise")
    # This test holds the registry lock until both syncs are inside their step, so they certainly race.
    with build_resources(load_settings())["mlflow"].registry_lock():
        run_ids = [stack.submit("setlist_foundation", assets=["prompt_versions"]) for _ in range(2)]
        _wait_for_steps(stack, run_ids, "prompt_versions")
        assert registry_versions(stack.mlflow_uri) == before  # both wait for the lock
    runs = stack.wait_runs(run_ids)
    assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.SUCCESS}, stack.logs_tail()

    new = _new_versions(before, registry_versions(stack.mlflow_uri))
    assert list(new) == ["prompts:/judge_pairwise"] and len(new["prompts:/judge_pairwise"]) == 1
    version, _, aliases = new["prompts:/judge_pairwise"][0]
    assert version == len(before["prompts:/judge_pairwise"]) + 1 and aliases == ("challenger",)
    # Meanwhile the source sensor (every 5 s here) saw the edited file and recorded its new version.
    with stack.instance() as instance:
        observed = instance.get_latest_data_version_record(dg.AssetKey("prompt_files"), is_source=True)
    assert observed is not None and observed.timestamp > edited_at


def _ticks(stack: Stack, kind: str, name: str) -> list[dict]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, f"{kind}Name": name}
    kind_type = kind[0].upper() + kind[1:]
    data = stack.graphql(
        f"query($s: {kind_type}Selector!) {{ {kind}OrError({kind}Selector: $s) {{ ... on {kind_type} {{ "
        f"{kind}State {{ ticks(limit: 50) {{ status runIds skipReason timestamp }} }} }} }} }}",
        {"s": selector},
    )
    return data[f"{kind}OrError"][f"{kind}State"]["ticks"]


def _wait_for_tick(stack: Stack, kind: str, name: str, timeout: float) -> dict:
    """The first tick of `name` that launched runs, waiting for it up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (launched := [t for t in _ticks(stack, kind, name) if t["runIds"]]):
        assert time.monotonic() < deadline, f"{name} launched nothing: {_ticks(stack, kind, name)[:5]}"
        time.sleep(2)
    return launched[-1]


def test_schedules_and_sensors_tick_on_the_daemon(stack, main_job):
    # The catalog refresh is set to fire once, two minutes after the stack started (production_stack).
    refresh = _wait_for_tick(stack, "schedule", "daily_catalog_refresh", timeout=240)
    # The registry sensor turned the intent model the training stage registered into a candidate run.
    candidate = _wait_for_tick(stack, "sensor", "new_registry_versions", timeout=120)
    runs = stack.wait_runs([*refresh["runIds"], *candidate["runIds"]])
    assert {(r.job_name, r.status) for r in runs.values()} == {
        ("catalog_refresh", dg.DagsterRunStatus.SUCCESS),
        ("setlist_candidates", dg.DagsterRunStatus.SUCCESS),
    }
    assert [r.tags["dagster/partition"] for r in runs.values() if r.job_name == "setlist_candidates"] == [
        "intent-v1.hybrid.template"
    ]
    # The source sensor ticks every 5 s; with nothing changed it records nothing and says so.
    source = _ticks(stack, "sensor", "source_files_changed")
    assert len(source) >= 3
    assert any(t["status"] == "SKIPPED" and "no source file changed" in t["skipReason"] for t in source)


def _failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """What the event log says went wrong: the run failure's message and the errors of engine events."""
    messages = []
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        error = getattr(event.event_specific_data, "error", None)
        if event.event_type == dg.DagsterEventType.RUN_FAILURE or error:
            messages.append(record.event_log_entry.message)
        if error:
            messages.append(error.to_string())
    return "\n".join(messages)


def test_a_broker_that_is_down_fails_the_run_with_the_reason_and_a_rerun_completes(
    stack, main_job, monkeypatch
):
    catalog = pl.read_parquet(stack.assets_dir / "catalog.parquet")
    monkeypatch.setenv("SETLIST_CELERY__BROKER_URL", f"pyamqp://guest:guest@127.0.0.1:{free_port()}//")
    # This process is the run worker here: it loads the definitions with the broken broker setting.
    job = dg.reconstructable(_catalog_refresh_job)
    with stack.instance() as instance:
        result = dg.execute_job(job, instance=instance, raise_on_error=False)
        reason = _failure_reason(instance, result.run_id)
    assert not result.success
    assert "Connection refused" in reason and "celery task submission" in reason, reason
    monkeypatch.undo()

    rerun = stack.submit("catalog_refresh")
    assert stack.wait_runs([rerun])[rerun].status == dg.DagsterRunStatus.SUCCESS
    assert_frame_equal(pl.read_parquet(stack.assets_dir / "catalog.parquet"), catalog)


def _catalog_refresh_job() -> dg.JobDefinition:
    """The job as the code location defines it, built from this process's settings (for `reconstructable`)."""
    from orchestration.definitions import build_definitions

    return build_definitions(load_settings()).resolve_job_def("catalog_refresh")


def _worker_of(instance: dg.DagsterInstance, run_id: str, step: str) -> str:
    """The Celery worker (e.g. `setlist-worker1`) that took `step` of the run."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        metadata = record.event_log_entry.dagster_event.engine_event_data.metadata
        if record.event_log_entry.step_key == step and "Celery worker" in metadata:
            return metadata["Celery worker"].value.split("@")[0]
    raise AssertionError(f"no Celery worker took {step} of {run_id}")


def _wait_for_retry(stack: Stack, run_id: str, timeout: float = 120) -> str:
    """The run the daemon launched to retry `run_id` (run_retries in dagster.yaml)."""
    deadline = time.monotonic() + timeout
    with stack.instance() as instance:
        while not (retries := instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))):
            if time.monotonic() > deadline:
                # What decides a retry: the run's tags (dagster/will_retry, dagster/failure_reason), the
                # engine events the retry daemon writes on the run, and whether that daemon is alive.
                run = instance.get_run_by_id(run_id)
                engine = [
                    r.event_log_entry.message
                    for r in instance.get_records_for_run(
                        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
                    ).records
                ]
                daemons = {k: s.healthy for k, s in instance.get_daemon_statuses().items()}
                said = (
                    f"no retry of {run_id} in {timeout:.0f} s; tags {run.tags}; daemons healthy {daemons}; "
                    f"engine events {engine[-5:]}"
                )
                pytest.fail(f"{said}\n{stack.logs_tail()}")
            time.sleep(1)
    return retries[0].run_id


def test_a_worker_killed_mid_step_fails_the_run_with_the_reason_and_the_retry_completes(stack, main_job):
    key = "intent-v1.dense.template"
    _add_candidates(stack, [key])
    versions = registry_versions(stack.mlflow_uri)
    run_id = stack.submit("setlist_candidates", partition=key)
    _wait_for_steps(stack, [run_id], "candidate_evaluation")  # started, seconds before it can end
    with stack.instance() as instance:
        worker = stack.services[_worker_of(instance, run_id, "candidate_evaluation").removeprefix("setlist-")]
    for pool_process in psutil.Process(worker.process.pid).children():
        pool_process.send_signal(signal.SIGKILL)  # what the kernel's OOM killer does to a big step
    with stack.instance() as instance:
        assert stack.wait_runs([run_id])[run_id].status == dg.DagsterRunStatus.FAILURE
        reason = _failure_reason(instance, run_id)
    assert "WorkerLostError" in reason and "SIGKILL" in reason, reason

    retry = _wait_for_retry(stack, run_id)
    assert stack.wait_runs([retry])[retry].status == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    assert [
        dict(tags)["candidate"]
        for _, tags, _ in _new_versions(versions, registry_versions(stack.mlflow_uri))[
            "models:/setlist-assistant"
        ]
    ] == [key]
    runs_after = mlflow_runs(stack.mlflow_uri)
    for experiment in ("eval-golden_curated", "eval-golden_cpcd"):
        ours = [r for r in runs_after[experiment] if r["params"].get("candidate") == key]
        assert [r["status"] for r in ours] == ["FINISHED"], ours
    assert pl.read_parquet(stack.assets_dir / "candidate_evaluation" / f"{key}.parquet").height > 0


def test_postgres_sessions_ended_mid_run_fail_it_with_the_reason_and_a_rerun_completes(stack, main_job):
    """A PostgreSQL restart, simulated by ending every session of the stack's two databases (Dagster's and
    MLflow's) while a prompt sync waits for the registry lock this test holds: the server here is shared with
    other work, so it is not restarted."""
    before = registry_versions(stack.mlflow_uri)
    _bump_max_tokens(stack, "judge_relevance")
    with pytest.raises(RegistryLockLost), build_resources(load_settings())["mlflow"].registry_lock():
        run_id = stack.submit("setlist_foundation", assets=["prompt_versions"])
        stack.wait_for("the sync to wait for the lock", lambda: lock_waiters(stack.databases["mlflow"]) == 1)
        assert sum(terminate_backends(db) for db in stack.databases.values()) >= 2  # ours and the sync's
    run = stack.wait_runs([run_id])[run_id]
    with stack.instance() as instance:
        reason = _failure_reason(instance, run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert "RegistryLockLost: the registry lock" in reason and "while waiting" in reason, reason
    assert registry_versions(stack.mlflow_uri) == before  # it wrote nothing

    rerun = stack.submit("setlist_foundation", assets=["prompt_versions"])
    assert stack.wait_runs([rerun])[rerun].status == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    new = _new_versions(before, registry_versions(stack.mlflow_uri))
    assert list(new) == ["prompts:/judge_relevance"] and len(new["prompts:/judge_relevance"]) == 1, new
