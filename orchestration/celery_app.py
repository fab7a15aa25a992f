"""The Celery app of Setlist's workers: `celery -A orchestration.celery_app worker -Q <SETLIST_CELERY__QUEUE>`.

It is dagster-celery's step task on an app built from the same settings as the executor (broker, result
backend, queue), so a worker and the runs that feed it cannot disagree. The definitions are imported here,
before the worker forks its pool, so each step starts without paying for the imports again.
"""

from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

import orchestration.definitions  # noqa: F401  (preloaded for the pool's processes, see above)
from orchestration.executors import celery_app_args
from orchestration.settings import load_settings

_args = celery_app_args(load_settings().celery)
app = make_app({**_args, "config_source": dict_wrapper({**DEFAULT_CONFIG, **_args["config_source"]})})
execute_plan = create_task(app)
