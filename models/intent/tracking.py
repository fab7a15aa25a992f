"""The intent model in MLflow: one run per trained model, and a registry version only for a new fingerprint.

A version is tagged with its fingerprint (training data, taxonomy, code version, hyperparameters, seed);
when a version with the fingerprint exists it is reused: no run, no version. The first version becomes
`champion`; later ones `challenger`, for the evaluation gate to promote. Finding a version also finishes
what a kill may have left: its pending alias, and the run of an earlier attempt left RUNNING.
"""

import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from models.intent.pyfunc import INPUT_EXAMPLE, IntentPyfunc, save_artifacts, signature_for
from models.intent.training import TrainedModel
from models.lifecycle.registry import (
    CHALLENGER,
    CHAMPION,
    INTENT_MODEL,
    PENDING_ALIAS_TAG,
    finish_model_registration,
)

FINGERPRINT_TAG = "setlist.fingerprint"
EXPERIMENT = "intent-model"
RUNTIME_PACKAGES = ("scikit-learn", "rapidfuzz", "pydantic", "pandas", "joblib")


@dataclass(frozen=True)
class RegisteredIntentModel:
    name: str
    version: int
    run_id: str
    fingerprint: str
    created: bool
    metrics: dict[str, float]  # the validation metrics logged with the version's run

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def find_registered(
    client: MlflowClient, fingerprint: str, name: str = INTENT_MODEL
) -> RegisteredIntentModel | None:
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get(FINGERPRINT_TAG) == fingerprint:
            finish_model_registration(client, name, int(version.version))
            metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
            return RegisteredIntentModel(
                name, int(version.version), version.run_id, fingerprint, False, dict(metrics)
            )
    return None


def log_and_register(
    client: MlflowClient,
    experiment_id: str,
    trained: TrainedModel,
    fingerprint: str,
    params: dict[str, str],
    name: str = INTENT_MODEL,
) -> RegisteredIntentModel:
    """Log params, metrics and the pyfunc model in a run; register it; set champion or challenger.

    Call it under the registry lock: an earlier attempt's run still RUNNING is then a killed one."""
    metrics = trained.evaluation.to_metrics()
    had_versions = bool(client.search_model_versions(f"name = '{name}'"))
    abandoned = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'RUNNING'",
    )
    for run in abandoned:
        client.set_terminated(run.info.run_id, "KILLED")
    with mlflow.start_run(experiment_id=experiment_id, tags={FINGERPRINT_TAG: fingerprint}) as run:
        mlflow.log_params({**params, "fingerprint": fingerprint})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=IntentPyfunc(),
                artifacts=save_artifacts(trained.predictor, Path(tmp)),
                signature=signature_for(trained.predictor),
                input_example=INPUT_EXAMPLE,
                # Pinned from this environment: inferring requirements would reload the model in a subprocess.
                pip_requirements=[f"{p}=={package_version(p)}" for p in RUNTIME_PACKAGES],
            )
    alias = CHALLENGER if had_versions else CHAMPION
    registered = mlflow.register_model(
        info.model_uri, name, tags={FINGERPRINT_TAG: fingerprint, PENDING_ALIAS_TAG: alias}
    )
    version = int(registered.version)
    finish_model_registration(client, name, version)
    return RegisteredIntentModel(name, version, run.info.run_id, fingerprint, True, metrics)
