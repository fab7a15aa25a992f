"""The registry sensor sees versions registered by a plain MLflow client, as from a notebook."""

import dagster as dg
import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient

from models.lifecycle.candidates import AGENT_PROMPT, PARSER_PROMPT
from models.lifecycle.registry import CHAMPION, INTENT_MODEL, set_model_alias
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import CANDIDATES
from orchestration.registry_sensor import current_candidates, registry_sensor
from orchestration.resources import MLflowTracking
from orchestration.settings import load_settings


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


def _tick(instance, resources, cursor=None):
    # The gateway resource tears down (it closes its cache), so the context must be entered.
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return registry_sensor(context)


def test_new_versions_become_candidates_once(settings):
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    version = _register_model_version(uri)
    set_model_alias(client, INTENT_MODEL, CHAMPION, version)
    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "{{text}}"}])
    client.register_prompt(AGENT_PROMPT, template=[{"role": "user", "content": "{{data}}"}])

    instance = dg.DagsterInstance.get()
    resources = {
        "mlflow": MLflowTracking(tracking_uri=uri, artifact_root=settings.mlflow_artifacts_dir.as_uri()),
        "llm": LLMGatewayResource(base_url="http://127.0.0.1:9/v1"),  # online: LLM candidates can run
    }
    result = _tick(instance, resources)

    keys = sorted(r.partition_key for r in result.run_requests)
    assert keys == ["intent-v1.hybrid.template", "parse-v1.agent-v1.hybrid.template"]
    (add_request,) = result.dynamic_partitions_requests
    assert sorted(add_request.partition_keys) == keys

    instance.add_dynamic_partitions(CANDIDATES.name, keys)
    second = _tick(instance, resources, result.cursor)
    assert isinstance(second, dg.SkipReason)

    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "v2 {{text}}"}])
    third = _tick(instance, resources, result.cursor)
    assert [r.partition_key for r in third.run_requests] == ["parse-v2.agent-v1.hybrid.template"]
    client.register_prompt(AGENT_PROMPT, template=[{"role": "user", "content": "v2 {{data}}"}])
    fourth = _tick(instance, resources, third.cursor)
    # Without a champion alias (registered by hand), a new version pairs with the other prompt's latest.
    assert [r.partition_key for r in fourth.run_requests] == ["parse-v2.agent-v2.hybrid.template"]


def test_offline_llm_candidates_are_skipped_with_a_reason_until_the_gateway_is_online(settings):
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    set_model_alias(client, INTENT_MODEL, CHAMPION, _register_model_version(uri))
    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "{{text}}"}])
    client.register_prompt(AGENT_PROMPT, template=[{"role": "user", "content": "{{data}}"}])
    instance = dg.DagsterInstance.get()
    mlflow_resource = MLflowTracking(tracking_uri=uri, artifact_root=settings.mlflow_artifacts_dir.as_uri())

    offline = {"mlflow": mlflow_resource, "llm": LLMGatewayResource()}
    first = _tick(instance, offline)
    assert [r.partition_key for r in first.run_requests] == ["intent-v1.hybrid.template"]
    (add_request,) = first.dynamic_partitions_requests
    assert add_request.partition_keys == ["intent-v1.hybrid.template"]  # no partition that can only fail

    instance.add_dynamic_partitions(CANDIDATES.name, add_request.partition_keys)
    still_offline = _tick(instance, offline, first.cursor)
    assert isinstance(still_offline, dg.SkipReason)
    assert "skipped parse-v1.agent-v1.hybrid.template (needs the LLM gateway" in still_offline.skip_message

    online = {"mlflow": mlflow_resource, "llm": LLMGatewayResource(base_url="http://127.0.0.1:9/v1")}
    later = _tick(instance, online, first.cursor)
    assert [r.partition_key for r in later.run_requests] == ["parse-v1.agent-v1.hybrid.template"]


def test_a_run_proposes_the_comparison_set_champion_first(settings, monkeypatch):
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    first, second = _register_model_version(uri), _register_model_version(uri)
    set_model_alias(client, INTENT_MODEL, CHAMPION, second)
    client.register_prompt(PARSER_PROMPT, template=[{"role": "user", "content": "{{text}}"}])

    keys = [c.key for c in current_candidates(settings)]  # offline: the LLM candidate waits

    # The champion intent model with each compared preset, the keyword baseline, then every other version.
    assert keys == [
        f"intent-v{second}.hybrid.template",
        f"intent-v{second}.bm25.template",
        "keyword-v1.hybrid.template",
        f"intent-v{first}.hybrid.template",
    ]
    monkeypatch.setenv("SETLIST_COMPARISON__RETRIEVERS", '["hybrid"]')
    monkeypatch.setenv("SETLIST_COMPARISON__KEYWORD_BASELINE", "false")
    alone = [c.key for c in current_candidates(load_settings())]
    assert alone == [f"intent-v{second}.hybrid.template", f"intent-v{first}.hybrid.template"]
