"""Scale benchmark: the whole graph at 1M tracks with Dagster (as `setlist run`) beside the same calls in plain
Python, and catalog sourcing + checks alone at 10M.

Each (mode, scope) runs in a fresh subprocess with its own temp SETLIST_HOME. Time per step comes from Dagster's
event log (STEP_START -> STEP_SUCCESS/FAILURE timestamps) and from perf_counter around each plain call. Memory: a
psutil thread samples the process RSS every 20 ms and attributes each sample to the step running then (steps run
one at a time in the in-process executor; a progress logger marks each STEP_START); "peak" is the highest RSS seen
during the step, "Δ" that peak minus RSS when the step started (what the step itself added: the allocator keeps
earlier steps' pages, so peaks only grow). Overhead = Dagster / plain seconds over the steps both ran.

    python -m benchmarks.scale --rows 1m --sourcing-rows 10m      # from the repo root
"""

import argparse
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks.catalog import SHARED, SIZES, scaled_copy

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
SCOPES = ("full", "sourcing")


class StepMemory:
    """Peak RSS per step from a sampling thread; `enter(step)` switches the step samples are charged to."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self._process = psutil.Process()
        self._interval_s = interval_s
        self._step: str | None = None
        self.start_mb: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / MB

    def _record(self) -> None:
        if (step := self._step) is not None:
            self.peak_mb[step] = max(self.peak_mb.get(step, 0.0), self._rss_mb())

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._record()

    def enter(self, step: str | None) -> None:
        self._record()  # the step that is ending gets its last sample
        self._step = step
        if step is not None:
            self.start_mb[step] = self._rss_mb()
            self._record()

    def __enter__(self) -> "StepMemory":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.enter(None)
        self._stop.set()
        self._thread.join()


# --- Dagster: the stages as `setlist run` executes them ---------------------------------------------------------


def run_dagster(scope: str, memory: StepMemory) -> dict[str, float]:
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.local_state import prepare_home
    from orchestration.settings import load_settings
    from orchestration.stages import plan_stages, stage_partition_keys

    class MarkSteps(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "dagster_meta", {}).get("dagster_event")
            if event is not None and event.event_type == dg.DagsterEventType.STEP_START:
                memory.enter(event.step_key)

    @dg.logger
    def mark_steps(_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.getLogger("setlist.bench")
        log.handlers, log.propagate = [MarkSteps()], False
        log.setLevel(logging.DEBUG)
        return log

    settings = load_settings()
    prepare_home(settings)
    defs = build_definitions(settings, loggers={"mark": mark_steps})
    instance = dg.DagsterInstance.get()
    stages = plan_stages(list(defs.assets))
    if scope == "sourcing":
        stages = stages[:1]
    seconds: dict[str, float] = {}
    for stage in stages:
        job = defs.resolve_job_def(f"setlist_{stage.name}")
        if scope == "sourcing":
            job = job.get_subset(asset_selection={dg.AssetKey("catalog"), dg.AssetKey("catalog_quarantine")})
        for key in stage_partition_keys(stage, settings, instance):
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                raise_on_error=False,
                run_config={"loggers": {"mark": {}}},
            )
            memory.enter(None)
            if not result.success:
                raise SystemExit(f"stage {stage.name} [{key}] failed")
            seconds.update(_step_seconds(instance, result.run_id))
    return seconds


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    import dagster as dg

    ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for record in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, *ends}):
        if record.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            started[record.step_key] = record.timestamp
        else:
            seconds[record.step_key] = record.timestamp - started[record.step_key]
    return seconds


# --- Plain Python: the same models/ and checks/ calls in the same order, named by Dagster's step keys ------------


def plain_steps(scope: str) -> Iterator[tuple[str, Callable[[dict[str, Any]], object]]]:
    """(step key, call) pairs; each call reads and extends `state` the way the asset reads its inputs."""
    import mlflow
    from mlflow import MlflowClient

    from checks.catalog_suite import validate_catalog
    from checks.golden_suite import validate_cpcd_turns, validate_curated_turns, validate_ratings
    from checks.quarantine_suite import validate_quarantine
    from checks.synthetic_suite import validate_synthetic
    from checks.taxonomy_suite import validate_taxonomy
    from models.assistant.replay import replay
    from models.assistant.retrieval import CatalogIndex
    from models.catalog.sources import CatalogSourceSpec, read_catalog
    from models.eval.calibration import EXPERIMENT, calibrate_judges, golden_tasks, log_calibration
    from models.golden.cpcd import cpcd_evaluation_turns, import_cpcd
    from models.golden.curated import load_curated_set
    from models.intent import tracking, training
    from models.intent.classifier import IntentHyperparameters
    from models.labels import conversations_to_frame
    from models.lifecycle.build import build_assistant, resolve
    from models.lifecycle.candidates import Candidate
    from models.lifecycle.registry import sync_prompt
    from models.prompts import load_prompt, prompt_names
    from models.synthetic.grammar import GrammarGenerator
    from models.synthetic.postprocess import postprocess
    from models.taxonomy import Taxonomy, assess_taxonomy, design_taxonomy, load_curated
    from orchestration.settings import load_settings  # plain pydantic settings; no Dagster in this path

    settings = load_settings()
    seed = settings.seed
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)  # fluent runs and model loads use the global URI
    mlflow_client = functools.cache(
        lambda: MlflowClient(settings.mlflow_tracking_uri)
    )  # first use creates the DB

    def experiment(name: str) -> str:
        found = mlflow_client().get_experiment_by_name(name)
        if found:
            return found.experiment_id
        return mlflow_client().create_experiment(
            name, artifact_location=f"{settings.mlflow_artifact_root}/{name}"
        )

    def catalog(s: dict[str, Any]) -> None:
        s["read"] = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=settings.catalog.location))

    yield "catalog_assets", catalog
    yield "catalog_catalog_expectations", lambda s: validate_catalog(s["read"].kept)
    yield "catalog_catalog_counts_reconcile", lambda s: s["read"].reconciles
    yield "catalog_quarantine_quarantine_expectations", lambda s: validate_quarantine(s["read"].quarantined)
    if scope == "sourcing":
        return

    def taxonomy(s: dict[str, Any]) -> None:
        s["curated"] = load_curated(settings.taxonomy_file)
        s["taxonomy"] = design_taxonomy(s["curated"], s["read"].kept)
        assess_taxonomy(s["curated"], s["read"].kept)
        s["tree"] = Taxonomy.from_table(s["taxonomy"])

    def taxonomy_check(s: dict[str, Any]) -> object:
        return validate_taxonomy(s["taxonomy"], assess_taxonomy(s["tree"], s["read"].kept))

    def golden_curated(s: dict[str, Any]) -> None:
        s["golden"] = load_curated_set(load_curated(settings.taxonomy_file))

    def golden_cpcd(s: dict[str, Any]) -> None:
        s["cpcd"] = import_cpcd(settings.golden_cpcd_path)

    def prompts(_s: dict[str, Any]) -> None:
        for name in prompt_names(settings.prompts_dir):
            spec = load_prompt(name, settings.prompts_dir)
            sync_prompt(mlflow_client(), spec, spec.schema())

    def judges(s: dict[str, Any]) -> None:
        g, c = s["golden"], s["cpcd"]
        tasks = golden_tasks(c.turns, c.corpus, g.ratings, g.turns, 600, seed)
        for calibration in calibrate_judges(tasks, s["tree"], c.corpus, None):
            log_calibration(mlflow_client(), experiment(EXPERIMENT), calibration, contextlib.nullcontext())

    def synthetic(s: dict[str, Any]) -> None:
        generation = GrammarGenerator(s["tree"], s["read"].kept).generate(
            settings.synthetic_conversations, seed=seed
        )
        s["eval_texts"] = [*s["golden"].turns["text"], *cpcd_evaluation_turns(s["cpcd"].turns)["user_query"]]
        kept = postprocess(generation.conversations, s["tree"], eval_texts=s["eval_texts"]).kept
        s["synthetic"] = conversations_to_frame(kept)
        # Checked in the same step, as the Dagster partition step checks its own rows.
        validate_synthetic(s["synthetic"], list(node_ids(s)), eval_texts=s["eval_texts"])

    def intent_model(s: dict[str, Any]) -> None:
        hp, table, tree = IntentHyperparameters(), s["training_set"], s["tree"]
        digest = training.fingerprint(training.content_hash(table), training.taxonomy_hash(tree), hp, seed)
        s["model"] = tracking.find_registered(mlflow_client(), digest)
        if s["model"] is None:
            trained = training.train(table, tree, hp, seed)
            params = {**hp.as_params(), "seed": str(seed)}
            s["model"] = tracking.log_and_register(
                mlflow_client(), experiment(tracking.EXPERIMENT), trained, digest, params
            )

    def assistant(s: dict[str, Any]) -> None:
        candidate = Candidate(parser_kind="offline", parser_version=s["model"].version)
        index = CatalogIndex.build(s["read"].kept, s["tree"], candidate.retriever_config)
        bot = build_assistant(resolve(mlflow_client(), candidate), index, s["tree"])
        replay(bot, s["golden"].turns, candidate.key, lockstep=False)

    node_ids = lambda s: set(s["taxonomy"]["node_id"])  # noqa: E731
    yield "golden_cpcd_assets", golden_cpcd
    yield "golden_curated_assets", golden_curated
    yield "prompt_versions", prompts
    yield "cpcd_corpus_cpcd_corpus_expectations", lambda s: validate_catalog(s["cpcd"].corpus)
    yield "taxonomy", taxonomy
    yield (
        "golden_cpcd_golden_cpcd_expectations",
        lambda s: validate_cpcd_turns(s["cpcd"].turns, set(s["cpcd"].corpus["track_id"])),
    )
    yield "taxonomy_taxonomy_expectations", taxonomy_check
    yield (
        "golden_curated_golden_curated_expectations",
        lambda s: validate_curated_turns(s["golden"].turns, node_ids(s)),
    )
    yield (
        "golden_ratings_golden_ratings_expectations",
        lambda s: validate_ratings(s["golden"].ratings, s["golden"].turns, node_ids(s)),
    )
    yield "judge_calibration", judges
    yield "synthetic_assets", synthetic
    yield (
        "intent_training_set",
        lambda s: s.update(training_set=training.split_by_conversation(s["synthetic"], seed)),
    )
    yield "intent_model", intent_model
    yield "assistant_runs", assistant


def run_plain(
    steps: list[tuple[str, Callable[[dict[str, Any]], object]]], memory: StepMemory
) -> dict[str, float]:
    state: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for step, call in steps:
        memory.enter(step)
        started = time.perf_counter()
        call(state)
        seconds[step] = time.perf_counter() - started
    memory.enter(None)
    return seconds


# --- driver -------------------------------------------------------------------------------------------------------


def _child(mode: str, scope: str) -> None:
    if mode == "dagster":
        import orchestration.definitions  # noqa: F401  (import cost is not pipeline cost)

        run = functools.partial(run_dagster, scope)
    else:
        run = functools.partial(run_plain, list(plain_steps(scope)))  # imports happen here, off the clock
    with StepMemory() as memory:
        started = time.perf_counter()
        seconds = run(memory)
        wall = time.perf_counter() - started
    steps = {
        k: {"s": v, "peak_mb": memory.peak_mb.get(k, 0.0), "start_mb": memory.start_mb.get(k, 0.0)}
        for k, v in seconds.items()
    }
    print(json.dumps({"wall_s": wall, "peak_mb": psutil.Process().memory_info().rss / MB, "steps": steps}))


def _measure(mode: str, scope: str, catalog: Path, home: Path) -> dict[str, Any]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SETLIST_") or k == "SETLIST_SHARED_DATA"},
        "SETLIST_HOME": str(home),
        "SETLIST_CATALOG__LOCATION": str(catalog),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--child", mode, scope],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode}/{scope} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: int, scope: str, dagster: dict[str, Any], plain: dict[str, Any]) -> None:
    print(f"\n### {rows:,} tracks, {scope}: per step (Dagster vs plain Python)\n")
    print("| step | Dagster s | plain s | ratio | Dagster peak MB | Δ MB | plain peak MB | Δ MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    both = 0.0, 0.0
    for step, d in dagster["steps"].items():
        p = plain["steps"].get(step)
        cells = [f"{p['s']:.2f}", f"{d['s'] / p['s']:.2f}" if p["s"] > 0.005 else "-"] if p else ["-", "-"]
        mem = [f"{p['peak_mb']:,.0f}", f"{p['peak_mb'] - p['start_mb']:+,.0f}"] if p else ["-", "-"]
        if p:
            both = both[0] + d["s"], both[1] + p["s"]
        print(
            f"| {step} | {d['s']:.2f} | {' | '.join(cells)} | {d['peak_mb']:,.0f} "
            f"| {d['peak_mb'] - d['start_mb']:+,.0f} | {' | '.join(mem)} |"
        )
    print(
        f"| **steps in both** | **{both[0]:.1f}** | **{both[1]:.1f}** | **{both[0] / both[1]:.2f}** | | | | |\n"
        f"| **whole run (wall)** | **{dagster['wall_s']:.1f}** | **{plain['wall_s']:.1f}** "
        f"| **{dagster['wall_s'] / plain['wall_s']:.2f}** | | | | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default="1m", help=f"whole graph at this size, one of {','.join(SIZES)} ('' skips)"
    )
    parser.add_argument(
        "--sourcing-rows", default="10m", help="sourcing + checks alone at this size ('' skips)"
    )
    parser.add_argument("--src", default=str(SHARED / "mtg_jamendo" / "autotagging.tsv"))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SCOPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    plan = [(size, scope) for size, scope in ((args.rows, "full"), (args.sourcing_rows, "sourcing")) if size]
    with tempfile.TemporaryDirectory(prefix="setlist-scale-") as tmp:
        for size, scope in plan:
            catalog = scaled_copy(Path(args.src), SIZES[size], Path(tmp) / f"autotagging_{size}.tsv")
            results = {
                mode: _measure(mode, scope, catalog, Path(tmp) / f"{mode}-{size}")
                for mode in ("dagster", "plain")
            }
            print_table(SIZES[size], scope, results["dagster"], results["plain"])
            catalog.unlink()


if __name__ == "__main__":
    main()
