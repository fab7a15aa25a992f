"""An evaluation in MLflow: one run per candidate per golden set (the `setlist-assistant` registry is
`models.lifecycle.registry`'s).

Every run Setlist logs carries a fingerprint tag (what was evaluated and what came out); `log_run_once`
reuses a finished run with the same fingerprint, so an unchanged rerun adds nothing. The lookup and the
run's creation happen under the caller's lock (`MLflowTracking.registry_lock`), so two concurrent runs of
one evaluation log it once.

Why not `mlflow.genai.evaluate` with code scorers: it writes one trace per item, and against the SQLite
backend it measured 0.5-9 items/s and lost scores to connection-pool timeouts. The per-item results are
already computed by plain functions (`models.eval.evaluate`), so a run logs aggregated metrics in one batch
and the per-item table with `log_table` (the MLflow UI shows it and compares it across runs), plus the same
table as Parquet for code that reads it back.
"""

import hashlib
import io
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import polars as pl
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

EXPERIMENTS = {"golden_curated": "eval-golden_curated", "golden_cpcd": "eval-golden_cpcd"}
FINGERPRINT_TAG = "setlist.fingerprint"
PER_ITEM_TABLE = (
    "per_item.json"  # the `log_table` artifact the MLflow UI shows (Artifacts and Evaluation tabs)
)
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


# Fingerprints see floats at this many significant digits: a sum taken in another order (a hash
# aggregation's group order) moves the last bits, which must not make a rerun look like new results.
FINGERPRINT_DIGITS = 10


def table_hash(frame: pl.DataFrame, exclude: Sequence[str] = ()) -> str:
    """A content hash of a table (row order included, floats at FINGERPRINT_DIGITS), for fingerprints."""
    data = (
        frame.drop(*exclude, strict=False)
        .with_columns(pl.col(pl.Float32, pl.Float64).round_sig_figs(FINGERPRINT_DIGITS))
        .write_ndjson()
    )
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def rounded(value: object) -> object:
    """`value` (JSON-like) with every float at FINGERPRINT_DIGITS significant digits, for fingerprints."""
    if isinstance(value, float):
        return float(f"{value:.{FINGERPRINT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def fingerprint(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class EvalRun:
    run_id: str
    experiment_id: str
    created: bool  # False when a finished run with the same fingerprint was reused


def find_run(client: MlflowClient, experiment_id: str, fingerprint: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_run_once(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str,
    fingerprint: str,
    lock: AbstractContextManager,
    log: Callable[[str], None],
    tags: dict[str, str] | None = None,
) -> EvalRun:
    """The finished run with this fingerprint, or a new one filled by `log(run_id)`.

    Lookup, creation and logging all happen under `lock`: a concurrent caller waits and then finds the
    finished run. A run whose logging fails is marked FAILED and is never reused.
    """
    with lock:
        if existing := find_run(client, experiment_id, fingerprint):
            return EvalRun(existing, experiment_id, created=False)
        run_id = client.create_run(
            experiment_id, run_name=run_name, tags={FINGERPRINT_TAG: fingerprint, **(tags or {})}
        ).info.run_id
        try:
            log(run_id)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id)
    return EvalRun(run_id, experiment_id, created=True)


Evaluated = TypeVar("Evaluated")  # a dataclass with `results` and `metrics` (models.eval.evaluate.Evaluation)


def of_record(client: MlflowClient, run: EvalRun, evaluation: Evaluated) -> Evaluated:
    """The evaluation the run of record holds: `evaluation` itself when it was just logged; when an unchanged
    rerun reused a finished run, that run's per-item results and metrics. Timings measured anew (latency, tool
    calls) are outside the fingerprint, so without this a rerun would gate on different latencies than the
    run MLflow shows, and could decide differently."""
    if run.created:
        return evaluation
    with tempfile.TemporaryDirectory() as folder:
        results = pl.read_parquet(client.download_artifacts(run.run_id, "results.parquet", folder))
    return replace(evaluation, results=results, metrics=dict(client.get_run(run.run_id).data.metrics))


def log_per_item_table(client: MlflowClient, run_id: str, table: pl.DataFrame, artifact_file: str) -> None:
    """A per-item table the MLflow UI can show (`log_table` writes it as JSON and registers it)."""
    client.log_table(run_id, data=table.to_pandas(), artifact_file=artifact_file)


def log_evaluation(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str,
    fingerprint: str,
    lock: AbstractContextManager,
    params: dict[str, str],
    metrics: dict[str, float],
    results: pl.DataFrame,
    artifacts: dict[str, bytes | str] | None = None,
    tags: dict[str, str] | None = None,
) -> EvalRun:
    """Params, metrics, the per-item table (`per_item.json` and `results.parquet`) and any other artifacts
    (name -> content) in one run, logged once per fingerprint."""

    def log(run_id: str) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        entries = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        for start in range(0, len(entries), _BATCH):
            client.log_batch(run_id, metrics=entries[start : start + _BATCH])
        log_per_item_table(client, run_id, results, PER_ITEM_TABLE)
        parquet = io.BytesIO()
        results.write_parquet(parquet)
        with tempfile.TemporaryDirectory() as folder:
            for name, content in {"results.parquet": parquet.getvalue(), **(artifacts or {})}.items():
                path = Path(folder) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
            client.log_artifacts(run_id, folder)

    return log_run_once(
        client, experiment_id, run_name=run_name, fingerprint=fingerprint, lock=lock, log=log, tags=tags
    )


def run_url(tracking_uri: str, run: EvalRun) -> str:
    """Where the run opens in the MLflow UI (`setlist ui` serves a local SQLite store on port 5000)."""
    base = tracking_uri if tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
