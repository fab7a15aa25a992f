"""Assistant runs: each candidate replays the evaluation conversations turn by turn."""

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.assistant.assistant import build_assistant
from models.assistant.replay import replay, run_summary
from models.assistant.retrieval import CatalogIndex
from models.candidates import PARSER_PROMPT, STORY_PROMPT, Candidate, CandidateKeyError
from models.llm import LLMUnavailable
from models.prompts import load_prompt
from models.registry import CONTENT_HASH_TAG
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource
from orchestration.resources import MLflowTracking

# Keys are candidate keys ("intent-v3.hybrid.template"); the registry sensor adds them.
CANDIDATES = dg.DynamicPartitionsDefinition(name="candidates")


def partition_candidate(context: dg.AssetExecutionContext) -> Candidate:
    """The candidate a `candidates` partition names; a key that names none fails the step, saying why."""
    try:
        return Candidate.from_key(context.partition_key)
    except CandidateKeyError as err:
        raise dg.Failure(str(err)) from err


@dg.asset(
    partitions_def=CANDIDATES,
    group_name="evaluation",
    kinds={"polars", "openai"},
    pool="llm",
    description=(
        "Every curated golden conversation replayed turn by turn through one candidate (partition = "
        "candidate key): parsed labels, dialogue state, whether it asked, ranked tracks, response, stories, "
        "tool calls, latency and LLM cost per turn. LLM candidates run conversations in lockstep by turn."
    ),
)
def assistant_runs(
    context: dg.AssetExecutionContext,
    golden_curated: pl.DataFrame,
    catalog: pl.DataFrame,
    taxonomy: pl.DataFrame,
    track_embeddings: pl.DataFrame,
    llm: LLMGatewayResource,
    mlflow: MLflowTracking,
) -> dg.Output[pl.DataFrame]:
    candidate = partition_candidate(context)
    tree = Taxonomy.from_table(taxonomy)
    client = mlflow.client()  # also points MLflow at the tracking server the intent model loads from
    for name, version in (
        (PARSER_PROMPT, candidate.parser_version if candidate.parser_kind == "llm" else None),
        (STORY_PROMPT, candidate.story_version),
    ):
        if version is not None:
            _require_prompt_file_version(client, name, version)
    # A dense candidate reuses the asset's vectors; only tracks whose text changed since are embedded now.
    index = CatalogIndex.build(catalog, tree, candidate.retriever_config, embeddings=track_embeddings)
    try:
        gateway = llm.get_gateway() if candidate.uses_llm else None
        assistant = build_assistant(candidate, index, tree, gateway, mlflow_client=client)
    except LLMUnavailable as err:
        raise dg.Failure(str(err)) from err
    runs = replay(assistant, golden_curated, candidate.key, lockstep=candidate.uses_llm)
    summary = run_summary(runs)
    return dg.Output(
        runs,
        metadata={
            "dagster/row_count": runs.height,
            **summary,
            **candidate.params(),
            "preview": preview(
                runs.select(
                    "conversation_id", "turn_index", "text", "intent", "asked_clarification", "response"
                )
            ),
        },
    )


def _require_prompt_file_version(client, name: str, version: int) -> None:
    """A prompt candidate runs the prompt file; it must be the registered version the key names."""
    spec = load_prompt(name)
    registered = client.get_prompt_version(name, version)
    found = (registered.tags or {}).get(CONTENT_HASH_TAG) if registered else None
    if found != spec.content_hash:
        raise dg.Failure(
            f"prompts:/{name}/{version} has content hash {found!r} but {spec.path.name} is {spec.content_hash}; "
            "evaluate the candidate of the file's current version (materialize prompt_versions)"
        )
