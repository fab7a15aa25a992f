"""Fingerprinted MLflow runs: an unchanged rerun and concurrent writers add one run, a failed one is not reused."""

import threading

import polars as pl
import pytest
from mlflow import MlflowClient

from models.eval.tracking import (
    FINGERPRINT_TAG,
    PER_ITEM_TABLE,
    log_evaluation,
    log_run_once,
    rounded,
    table_hash,
)
from orchestration.resources import MLflowTracking


@pytest.fixture
def tracking(settings) -> MLflowTracking:
    return MLflowTracking(
        tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifact_root
    )


def _log(tracking: MLflowTracking, experiment_id: str, fingerprint: str):
    return log_evaluation(
        tracking.client(),
        experiment_id,
        run_name="probe",
        fingerprint=fingerprint,
        lock=tracking.registry_lock(),
        params={"candidate": "probe"},
        metrics={"turn_success.mean": 0.5},
        results=pl.DataFrame({"item": ["a", "b"], "turn_success": [1.0, 0.0], "tracks": [["t1"], []]}),
    )


def test_rerun_reuses_the_run_and_logs_the_per_item_table(tracking):
    experiment_id = tracking.experiment_id("probe")
    first, again = _log(tracking, experiment_id, "f1"), _log(tracking, experiment_id, "f1")
    assert first.created and not again.created and again.run_id == first.run_id
    client = MlflowClient(tracking.tracking_uri)
    assert {a.path for a in client.list_artifacts(first.run_id)} == {PER_ITEM_TABLE, "results.parquet"}
    table = client.load_table(experiment_id, artifact_file=PER_ITEM_TABLE, run_ids=[first.run_id])
    assert table["turn_success"].tolist() == [1.0, 0.0]
    assert _log(tracking, experiment_id, "f2").created  # another fingerprint is another run


def test_concurrent_writers_of_one_fingerprint_add_one_run(tracking):
    experiment_id = tracking.experiment_id("probe")
    start, results = threading.Barrier(4), []

    def write() -> None:
        start.wait()
        results.append(_log(tracking, experiment_id, "same"))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.run_id for r in results}) == 1 and sum(r.created for r in results) == 1
    runs = MlflowClient(tracking.tracking_uri).search_runs([experiment_id])
    assert [r.data.tags[FINGERPRINT_TAG] for r in runs] == ["same"]


def test_a_run_whose_logging_failed_is_marked_failed_and_not_reused(tracking):
    experiment_id, client = tracking.experiment_id("probe"), tracking.client()

    def broken(run_id: str) -> None:
        raise RuntimeError("artifact store unreachable")

    with pytest.raises(RuntimeError):
        log_run_once(
            client,
            experiment_id,
            run_name="probe",
            fingerprint="f",
            lock=tracking.registry_lock(),
            log=broken,
        )
    (failed,) = client.search_runs([experiment_id])
    assert failed.info.status == "FAILED"
    assert _log(tracking, experiment_id, "f").created


def test_summation_order_noise_does_not_change_a_fingerprint_and_a_real_change_does():
    # Seen on a rerun: one bound of a sequential look, summed in another group order.
    first = pl.DataFrame({"metric": ["skip_rate"], "low": [-0.05765283332436588]})
    again = pl.DataFrame({"metric": ["skip_rate"], "low": [-0.057652833324365875]})
    assert table_hash(first) == table_hash(again)
    assert table_hash(first) != table_hash(first.with_columns(pl.col("low") + 1e-6))
    assert rounded({"p": [0.1 + 0.2], "n": 3, "name": "x"}) == {"p": [0.3], "n": 3, "name": "x"}
