"""Engines benchmark: the main job's stages in-process, on the multiprocess executor and on Celery with two
workers (the production stack of tests/production_stack.py: daemon, queued runs, PostgreSQL, MLflow server),
beside the same steps called in plain Python (benchmarks/scale.py's plain path).

Every engine runs the stages and partitions `setlist run` plans, with the same settings and run config, on a
slice of the bundled catalog and CPCD file; each in a fresh home. Step times come from Dagster's event log;
"overhead" is an engine's seconds over plain Python's for the steps both run. Memory: a sampler reads the RSS
of every process an engine uses every 100 ms (in-process: the one process; multiprocess: each step's
process; Celery: each worker, its pool process included), and the table gives the highest.

    python -m benchmarks.engines --tracks 300 --dialogs 40      # from the repo root; needs PostgreSQL, RabbitMQ

Beyond the bundled sample's 5,000 tracks (`--tracks 1000000`) the catalog is the shared MTG-Jamendo file cycled
to that many rows with fresh track ids (benchmarks/catalog.py's `scaled_copy`, as benchmarks/scale.py uses),
written once and read by every engine.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.catalog import SHARED, scaled_copy
from benchmarks.memory import PeakMemory
from benchmarks.scale import _step_seconds, plain_steps, run_plain
from tests.production_stack import (
    SMALL_COMPARISON,
    clean_environ,
    production_stack,
    run_stages_on_stack,
    small_inputs,
)

REPO = Path(__file__).resolve().parents[1]
RUN_CONFIGS = {"comparison": SMALL_COMPARISON}
BUNDLED_TRACKS = 5_000
# Plain Python builds the lexical index inside assistant_runs (benchmarks/scale.py); the graph builds it, with
# the dense vectors, in the retrieval_index step and assistant_runs loads it: not the same work to compare.
NOT_THE_SAME_WORK = {"assistant_runs"}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


# --- in-process and multiprocess: one child process that is the run worker of every stage ---------------------


def run_local_engine() -> dict[str, Any]:
    """In a child process: every stage through `execute_job` with the executor SETLIST_EXECUTOR names."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from orchestration.definitions import build_definitions
    from orchestration.local_state import prepare_home
    from orchestration.settings import load_settings
    from orchestration.stages import plan_stages, stage_partition_keys

    settings = load_settings()
    prepare_home(settings)
    repository = ReconstructableRepository.for_module("orchestration.definitions", "defs", str(REPO))
    this = psutil.Process()
    steps: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance, PeakMemory(lambda: _tree(this)) as memory:
        started = time.perf_counter()
        for stage in plan_stages(list(build_definitions(settings).assets)):
            job = repository.get_reconstructable_job(f"setlist_{stage.name}")
            for key in stage_partition_keys(stage, settings, instance):
                tags = {"dagster/partition": key} if key else None
                with dg.execute_job(
                    job, instance, run_config=RUN_CONFIGS.get(stage.name), tags=tags, raise_on_error=False
                ) as result:
                    if not result.success:
                        raise SystemExit(f"stage {stage.name} [{key}] failed")
                    steps.update(_step_seconds(instance, result.run_id))
        wall = time.perf_counter() - started
    this_mb = memory.peak_mb.pop(this.pid, 0.0)
    return {
        "wall_s": wall,
        "steps": steps,
        "process_mb": this_mb,
        "step_process_mb": list(memory.peak_mb.values()),
    }


def run_plain_steps() -> dict[str, Any]:
    this = psutil.Process()
    steps = list(plain_steps("full"))  # imports happen here, off the clock
    memory = type("NoSteps", (), {"enter": lambda self, step: None})()
    with PeakMemory(lambda: [this]) as peak:
        started = time.perf_counter()
        seconds = run_plain(steps, memory)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "steps": seconds, "process_mb": peak.peak_mb.get(this.pid, 0.0)}


def _in_child(mode: str, inputs: dict[str, str], home: Path) -> dict[str, Any]:
    env = {**clean_environ(), **inputs, "SETLIST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    if mode != "plain":
        env["SETLIST_EXECUTOR"] = mode
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.engines", "--child", mode],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"failed": done.stderr[-4000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Celery: the production stack, two workers -------------------------------------------------------------------


def run_celery(root: Path, inputs: dict[str, str], timeout: float) -> dict[str, Any]:
    from orchestration.settings import load_settings

    with production_stack(root, inputs, workers=2, launches_of_its_own=False) as stack:
        workers = {
            name: psutil.Process(s.process.pid)
            for name, s in stack.services.items()
            if name.startswith("worker")
        }
        # One sampler per worker: its pool processes are replaced over the run (max_memory_per_child), so a
        # worker's peak is the highest sum over the processes it had at one instant, dead ones included.
        memories = {name: PeakMemory(lambda w=w: _tree(w)) for name, w in workers.items()}
        with contextlib.ExitStack() as sampling:
            for memory in memories.values():
                sampling.enter_context(memory)
            started = time.perf_counter()
            try:
                runs = run_stages_on_stack(stack, load_settings(), RUN_CONFIGS, timeout)
            except TimeoutError as err:
                return {"failed": str(err)[-4000:]}
            wall = time.perf_counter() - started
        steps: dict[str, float] = {}
        with stack.instance() as instance:
            for run in runs:
                steps.update(_step_seconds(instance, run.run_id))
        per_worker = {
            name: f"{m.peak_sum_mb:,.0f} (largest process {max(m.peak_mb.values(), default=0.0):,.0f}; "
            f"{len(m.peak_mb)} processes over the run)"
            for name, m in memories.items()
        }
        result = {"wall_s": wall, "steps": steps, "worker_mb": per_worker}
        if failed := [r.job_name for r in runs if r.status.value != "SUCCESS"]:
            result["failed"] = f"{failed} failed\n{stack.logs_tail()}"
    return result


# --- report ------------------------------------------------------------------------------------------------------


def print_table(tracks: int, dialogs: int, results: dict[str, dict[str, Any]]) -> None:
    """An engine that failed is reported with its reason; one that failed part-way keeps the steps it finished
    and its memory, but no whole-job figures, and stays out of the shared steps."""
    for mode, r in results.items():
        if "failed" in r:
            print(f"\n{mode} FAILED:\n{r['failed']}")
    results = {mode: r for mode, r in results.items() if "steps" in r}
    if "plain" not in results:
        return
    plain = results["plain"]
    complete = [r for r in results.values() if "failed" not in r]
    shared = [
        s for s in plain["steps"] if s not in NOT_THE_SAME_WORK and all(s in r["steps"] for r in complete)
    ]
    plain_s = sum(plain["steps"][s] for s in shared)
    print(f"\n### {tracks:,} tracks, {dialogs} CPCD dialogs: the main job's stages per engine\n")
    print(
        "| engine | whole job wall s | steps s (all) | shared steps s | overhead vs plain | peak memory MB |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for mode, r in results.items():
        shared_s = sum(r["steps"].get(s, 0.0) for s in shared)
        if mode == "celery":
            memory = ", ".join(f"{name} {mb}" for name, mb in sorted(r["worker_mb"].items()))
        elif mode == "multiprocess":
            memory = f"run worker {r['process_mb']:,.0f}; step processes max {max(r['step_process_mb']):,.0f}"
        else:  # one process does every step (its compute-log `tail` helpers left out)
            memory = f"{r['process_mb']:,.0f} (one process)"
        if "failed" in r:
            print(f"| {mode} (failed part-way) | - | {sum(r['steps'].values()):.1f} | - | - | {memory} |")
            continue
        print(
            f"| {mode} | {r['wall_s']:.1f} | {sum(r['steps'].values()):.1f} | {shared_s:.1f} "
            f"| {shared_s / plain_s:.2f} | {memory} |"
        )
    print(
        f"\nshared steps ({len(shared)}): {', '.join(shared)}; not compared: {', '.join(NOT_THE_SAME_WORK)}"
    )
    # The slowest steps of the engine that ran the most of them (in-process when it ran).
    widest = "in_process" if "in_process" in results else max(results, key=lambda m: len(results[m]["steps"]))
    slowest = sorted(results[widest]["steps"], key=results[widest]["steps"].get, reverse=True)[:10]
    print(f"\n| step (the 10 slowest on {widest}) | {' | '.join(results)} |")
    print(f"|---|{'---:|' * len(results)}")
    for step in slowest:
        cells = [f"{r['steps'][step]:.1f}" if step in r["steps"] else "-" for r in results.values()]
        print(f"| {step} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracks",
        type=int,
        default=300,
        help="catalog rows: from the bundled 5,000-track sample, or more cycled from the shared MTG-Jamendo file",
    )
    parser.add_argument("--dialogs", type=int, default=40, help="CPCD dialogs, from the bundled file (400)")
    parser.add_argument("--engines", default="plain,in_process,multiprocess,celery")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_plain_steps() if args.child == "plain" else run_local_engine()))
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="setlist-engines-") as tmp:
        scaled = None
        if args.tracks > BUNDLED_TRACKS:
            source = SHARED / "mtg_jamendo" / "autotagging.tsv"
            scaled = scaled_copy(source, args.tracks, Path(tmp) / f"catalog_{args.tracks}.tsv")
        for mode in args.engines.split(","):
            root = Path(tmp) / mode
            inputs = small_inputs(
                root / "inputs", tracks=min(args.tracks, BUNDLED_TRACKS), dialogs=args.dialogs
            )
            if scaled is not None:
                inputs["SETLIST_CATALOG__LOCATION"] = str(scaled)
            if mode == "celery":
                # a stage's runs may take long at scale (the tests' 300 s wait timed out at 1M)
                results[mode] = run_celery(root, inputs, timeout=300 + args.tracks / 1000)
            else:
                results[mode] = _in_child(mode, inputs, root / "home")
            took = "failed" if "failed" in results[mode] else f"{results[mode]['wall_s']:.1f} s"
            print(f"{mode}: {took}", file=sys.stderr, flush=True)
    print_table(args.tracks, args.dialogs, results)


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    main()
