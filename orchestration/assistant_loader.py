"""Which assistant `setlist chat` talks to, over the catalog materialized in the Setlist home.

`--candidate <key>` builds that candidate. Otherwise the champion: the candidate tagged on
`models:/setlist-assistant@champion` (what the champion gate promotes); before any evaluation, the intent
model version holding `setlist-intent@champion` with hybrid retrieval and template stories. Without
either (a fresh home) it falls back to the keyword parser, and says so.
"""

from dataclasses import dataclass

import polars as pl
from mlflow import MlflowClient

from models.assistant.assistant import Assistant
from models.assistant.keyword_parser import KeywordParser
from models.assistant.retrieval import CatalogIndex
from models.eval.tracking import ASSISTANT_MODEL, champion_key
from models.lifecycle.build import build_assistant
from models.lifecycle.candidates import INTENT_MODEL, Candidate, CandidateKeyError
from models.lifecycle.registry import CHAMPION, model_alias_version
from models.llm import LLMGateway, LLMUnavailable
from models.taxonomy import load_curated
from orchestration.settings import Settings


class ChatSetupError(RuntimeError):
    """No assistant can be built; the message says what to run or set."""


@dataclass(frozen=True)
class LoadedAssistant:
    assistant: Assistant
    description: str  # what the listener is talking to, shown when the chat starts


def load_chat_assistant(settings: Settings, candidate_key: str | None = None) -> LoadedAssistant:
    catalog_file = settings.assets_dir / "catalog.parquet"
    if not catalog_file.exists():
        raise ChatSetupError(f"no materialized catalog at {catalog_file}; run `setlist run` first")
    catalog = pl.read_parquet(catalog_file)
    taxonomy = load_curated(settings.taxonomy_file)
    # Asking MLflow creates its database; a home without one has no champion to ask about.
    has_mlflow = (settings.mlflow_dir / "mlflow.db").exists()
    client = MlflowClient(settings.mlflow_tracking_uri) if has_mlflow or candidate_key else None

    if candidate_key is None and client is not None:
        version = model_alias_version(client, INTENT_MODEL, CHAMPION)
        candidate_key = champion_key(client) or (
            f"intent-v{version}.hybrid.template" if version is not None else None
        )
    if candidate_key is None:
        index = CatalogIndex.build(catalog, taxonomy)
        return LoadedAssistant(
            Assistant(KeywordParser(taxonomy), index, taxonomy),
            f"No champion in MLflow ({ASSISTANT_MODEL} or {INTENT_MODEL}@{CHAMPION}): falling back to the offline assistant "
            f"(keyword parser, hybrid retrieval, template stories) over {catalog.height} catalog tracks.",
        )
    try:
        candidate = Candidate.from_key(candidate_key)
        gateway = LLMGateway(settings.llm.model_copy(update={"cache_path": settings.llm_cache_path}))
        vectors = settings.assets_dir / "track_embeddings.parquet"  # a dense candidate's precomputed vectors
        dense = candidate.retriever_config.embedder is not None and vectors.exists()
        embeddings = pl.read_parquet(vectors) if dense else None
        index = CatalogIndex.build(catalog, taxonomy, candidate.retriever_config, embeddings=embeddings)
        assistant = build_assistant(candidate, index, taxonomy, gateway, mlflow_client=client)
    except (CandidateKeyError, LLMUnavailable, LookupError) as err:
        raise ChatSetupError(str(err)) from err
    return LoadedAssistant(assistant, f"Candidate {candidate.key} over {catalog.height} catalog tracks.")
