"""Assistant runs: each candidate replays the evaluation conversations turn by turn."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.assistant.replay import replay, run_summary, sample_conversations
from models.assistant.retrieval import CatalogIndex
from models.lifecycle.build import build_assistant, resolve
from models.llm import LLMUnavailable
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import CANDIDATES, partition_candidate
from orchestration.resources import MLflowTracking


@dg.asset(
    partitions_def=CANDIDATES,
    group_name="evaluation",
    kinds={"polars", "openai"},
    pool="llm",
    # A candidate that cannot run in the current mode (an LLM one offline) is skipped, not failed.
    output_required=False,
    description=(
        "Every curated golden conversation replayed turn by turn through one candidate (partition = "
        "candidate key): parsed labels, dialogue state, whether it asked, ranked tracks, response, stories, "
        "tool calls, latency and LLM cost per turn. LLM candidates run conversations in lockstep by turn; "
        "offline they are skipped with the reason (an observation on the partition), and so is their evaluation."
    ),
)
def assistant_runs(
    context: dg.AssetExecutionContext,
    golden_curated: pl.DataFrame,
    retrieval_index: CatalogIndex,
    taxonomy: pl.DataFrame,
    llm: LLMGatewayResource,
    mlflow: MLflowTracking,
) -> Iterator[dg.Output[pl.DataFrame]]:
    candidate = partition_candidate(context)
    if reason := candidate.skip_reason(online=llm.base_url is not None):
        context.log.warning(f"{candidate.key} skipped: {reason}")
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key, partition=context.partition_key, metadata={"skipped": reason}
            )
        )
        return
    tree = Taxonomy.from_table(taxonomy)
    try:
        resolved = resolve(mlflow.client(), candidate)  # its registered model and prompts, from MLflow
    except LookupError as err:
        raise dg.Failure(str(err)) from err
    try:
        gateway = llm.get_gateway() if candidate.uses_llm else None
        assistant = build_assistant(resolved, retrieval_index, tree, gateway)
    except LLMUnavailable as err:
        raise dg.Failure(str(err)) from err
    turns = golden_curated
    if candidate.uses_llm and llm.eval_conversations:
        # A local model answers about one request a second: LLM candidates replay a seeded sample.
        turns = sample_conversations(golden_curated, llm.eval_conversations)
    before = gateway.totals.copy() if gateway else None
    runs = replay(assistant, turns, candidate.key, lockstep=candidate.uses_llm)
    summary = run_summary(runs)
    if gateway is not None and before is not None:  # this replay's LLM usage: calls, tokens, wall time
        summary |= {f"llm_{k}": round(v, 3) for k, v in (gateway.totals - before).items()}
    yield dg.Output(
        runs,
        metadata={
            "dagster/row_count": runs.height,
            **summary,
            **candidate.params(),
            "prompt_hashes": dg.MetadataValue.json(resolved.describe()["prompt_hashes"]),
            "preview": preview(
                runs.select(
                    "conversation_id", "turn_index", "text", "intent", "asked_clarification", "response"
                )
            ),
        },
    )
