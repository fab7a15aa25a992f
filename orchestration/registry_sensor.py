"""New prompt or model versions in MLflow become candidates: a Dagster partition and an evaluation run.

It sees every version, including those registered outside Dagster (a notebook, a CI job): the
cursor is the set of registry versions already turned into candidates. A candidate that needs the LLM
while the gateway is offline is skipped with that reason and stays out of the cursor: it becomes a
partition once an endpoint is configured, and never sits as a partition that can only fail.
"""

import json

import dagster as dg
from mlflow import MlflowClient

from models.lifecycle.candidates import (
    AGENT_PROMPT,
    PARSER_PROMPT,
    STORY_PROMPT,
    Candidate,
    candidate_for,
    proposed_candidates,
)
from models.lifecycle.registry import INTENT_MODEL, registry_versions
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import CANDIDATES
from orchestration.resources import MLflowTracking
from orchestration.settings import Settings

EVALUATION_JOB = "setlist_candidates"  # the candidates stage job (orchestration/stages.py)


@dg.sensor(
    name="new_registry_versions",
    job_name=EVALUATION_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "A new intent-model, parser-, agent- or story-prompt version in MLflow becomes a candidate to evaluate."
    ),
)
def registry_sensor(
    context: dg.SensorEvaluationContext, mlflow: MLflowTracking, llm: LLMGatewayResource
) -> dg.SensorResult | dg.SkipReason:
    client = mlflow.client()
    seen = set(json.loads(context.cursor or "[]"))
    new, candidates, waiting = [], [], []
    for version in registry_versions(client, [PARSER_PROMPT, AGENT_PROMPT, STORY_PROMPT], [INTENT_MODEL]):
        if version.ref in seen:
            continue
        candidate = candidate_for(version, client)
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
    """What `setlist run` and the nightly schedule evaluate (models.lifecycle.candidates.proposed_candidates)."""
    return proposed_candidates(
        MlflowClient(settings.mlflow_tracking_uri),
        online=settings.llm.base_url is not None,
        retrievers=settings.comparison.retrievers,
        keyword_baseline=settings.comparison.keyword_baseline,
    )
