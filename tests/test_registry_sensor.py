"""The registry sensor sees versions registered by a plain MLflow client, as from a notebook."""

import dagster as dg
import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient

from assets.assistant import CANDIDATES
from models.candidates import INTENT_MODEL, PARSER_PROMPT
from models.registry import CHAMPION, set_model_alias
from orchestration.registry_sensor import registry_sensor
from orchestration.resources import MLflowTracking


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


def _register_model_version(tracking_uri: str) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=_Constant(), registered_model_name=INTENT_MODEL
        )
    return int(info.registered_model_version)


def test_new_versions_become_candidates_once(settings):
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    version = _register_model_version(uri)
    set_model_alias(client, INTENT_MODEL, CHAMPION, version)
    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "{{text}}"}])

    instance = dg.DagsterInstance.get()
    resources = {
        "mlflow": MLflowTracking(tracking_uri=uri, artifact_root=settings.mlflow_artifacts_dir.as_uri())
    }
    context = dg.build_sensor_context(instance=instance, resources=resources)
    result = registry_sensor(context)

    keys = sorted(r.partition_key for r in result.run_requests)
    assert keys == ["intent-v1.hybrid.template", "parse-v1.hybrid.template"]
    (add_request,) = result.dynamic_partitions_requests
    assert sorted(add_request.partition_keys) == keys

    instance.add_dynamic_partitions(CANDIDATES.name, keys)
    second = registry_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert isinstance(second, dg.SkipReason)

    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "v2 {{text}}"}])
    third = registry_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert [r.partition_key for r in third.run_requests] == ["parse-v2.hybrid.template"]
