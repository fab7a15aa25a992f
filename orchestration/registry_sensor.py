"""New prompt or model versions in MLflow become candidates: a Dagster partition and an evaluation run.

It sees every version, including those registered outside Dagster (a notebook, a CI job): the
cursor is the set of registry versions already turned into candidates. A candidate that needs the LLM
while the gateway is offline is skipped with that reason and stays out of the cursor: it becomes a
partition once an endpoint is configured, and never sits as a partition that can only fail.
"""

import json

import dagster as dg
from mlflow import MlflowClient

from models.lifecycle.candidates import INTENT_MODEL, PARSER_PROMPT, STORY_PROMPT, Candidate
from models.lifecycle.registry import CHAMPION, RegistryVersion, model_alias_version, registry_versions
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import CANDIDATES
from orchestration.resources import MLflowTracking
from orchestration.settings import Settings

EVALUATION_JOB = "setlist_candidates"  # the candidates stage job (orchestration/stages.py)


def candidate_for(version: RegistryVersion, champion_model: int | None) -> Candidate | None:
    """The candidate that tests one new version; a story prompt pairs with the champion parser."""
    if version.kind == "model":
        return Candidate(parser_kind="offline", parser_version=version.version)
    if version.name == PARSER_PROMPT:
        return Candidate(parser_kind="llm", parser_version=version.version)
    if version.name == STORY_PROMPT and champion_model is not None:
        return Candidate(parser_kind="offline", parser_version=champion_model, story_version=version.version)
    return None


@dg.sensor(
    name="new_registry_versions",
    job_name=EVALUATION_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new intent-model, parser-prompt or story-prompt version in MLflow becomes a candidate to evaluate.",
)
def registry_sensor(
    context: dg.SensorEvaluationContext, mlflow: MLflowTracking, llm: LLMGatewayResource
) -> dg.SensorResult | dg.SkipReason:
    client = mlflow.client()
    seen = set(json.loads(context.cursor or "[]"))
    champion_model = model_alias_version(client, INTENT_MODEL, CHAMPION)
    new, candidates, waiting = [], [], []
    for version in registry_versions(client, [PARSER_PROMPT, STORY_PROMPT], [INTENT_MODEL]):
        if version.ref in seen:
            continue
        candidate = candidate_for(version, champion_model)
        if candidate is None:
            continue  # e.g. a story prompt before any parser model exists: retried on a later tick
        if reason := candidate.skip_reason(online=llm.base_url is not None):
            waiting.append(
                f"{candidate.key} ({reason})"
            )  # not in the cursor: picked up once the gateway is online
            continue
        new.append(version.ref)
        candidates.append(candidate)
    skipped = f"skipped {'; '.join(waiting)}" if waiting else ""
    if not candidates:
        return dg.SkipReason("; ".join(filter(None, ["no new prompt or model versions", skipped])))
    if skipped:
        context.log.info(skipped)
    keys = list(dict.fromkeys(c.key for c in candidates))
    known = set(context.instance.get_dynamic_partitions(CANDIDATES.name))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in keys],
        dynamic_partitions_requests=[CANDIDATES.build_add_request([k for k in keys if k not in known])],
        cursor=json.dumps(sorted(seen | set(new))),
    )


def current_candidates(settings: Settings) -> list[Candidate]:
    """Every candidate the registry holds now that can run in the current mode (LLM ones only online)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    champion_model = model_alias_version(client, INTENT_MODEL, CHAMPION)
    candidates = [
        candidate_for(version, champion_model)
        for version in registry_versions(client, [PARSER_PROMPT, STORY_PROMPT], [INTENT_MODEL])
    ]
    online = settings.llm.base_url is not None
    usable = [c for c in candidates if c is not None and not c.skip_reason(online)]
    return list({c.key: c for c in usable}.values())
