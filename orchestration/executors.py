"""Where a run's steps execute, chosen by SETLIST_EXECUTOR; the graph is the same on every engine.

- `in_process`: one process runs every step (the embedded default, `setlist run`);
- `multiprocess`: one process per step on the machine of the run, forked from a server that has the
  definitions imported (the gcp profile's default);
- `celery`: each step is a task on a Celery broker (SETLIST_CELERY__*), run by whichever worker takes it
  (`celery -A orchestration.celery_app worker`, on any machine that sees the same settings, storage and
  Dagster instance). On Kubernetes, dagster-celery-k8s / dagster-k8s take the same place (README).
"""

import dagster as dg

from orchestration.settings import CelerySettings, Settings


def celery_app_args(celery: CelerySettings) -> dict[str, object]:
    """The Celery executor's config, which the workers' app is built from too, so both ends agree."""
    return {
        "broker": celery.broker_url,
        "backend": celery.backend_url,
        "config_source": {
            "task_default_queue": celery.queue,
            # Acknowledged when the step ends, not when it starts: if a worker's host vanishes mid-step, the
            # broker hands the step to another worker. (A worker process that is killed while its host lives
            # still fails the step, with the signal as reason, and the run retry of dagster.yaml reruns it.)
            "task_acks_late": True,
            **(
                {"worker_max_memory_per_child": celery.max_memory_per_child_mb * 1024}  # Celery counts KiB
                if celery.max_memory_per_child_mb
                else {}
            ),
        },
    }


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    kind = settings.executor_kind
    if kind == "celery":
        # Imported here: dagster-celery comes with the `gcp` extra, not needed by the embedded default.
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_app_args(settings.celery), name="celery")
    if kind == "multiprocess":
        # Each step's process is forked from a server that has imported the definitions once; spawned, every
        # step would import them again (about 12 s each on a loaded 2-core machine: benchmarks/engines.py).
        preload = {"forkserver": {"preload_modules": ["orchestration.definitions"]}}
        return dg.multiprocess_executor.configured({"start_method": preload}, name="multiprocess")
    return dg.in_process_executor
