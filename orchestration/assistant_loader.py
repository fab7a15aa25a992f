"""Which assistant `setlist chat` talks to: what MLflow serves under an alias, built by the lifecycle.

`--candidate <key>` builds that candidate; otherwise `models:/setlist-assistant@<alias>` (champion by default)
is resolved through MLflow at start (`models.lifecycle.build.resolve_alias`, with its one fallback), so moving
the alias, by the gate or by hand in the MLflow UI, changes what the next chat serves.
"""

from dataclasses import dataclass
from typing import Any

import polars as pl
from mlflow import MlflowClient

from models.assistant.assistant import Assistant
from models.assistant.retrieval import CatalogIndex
from models.lifecycle.build import build_assistant, resolve, resolve_alias
from models.lifecycle.candidates import Candidate, CandidateKeyError
from models.llm import LLMGateway, LLMUnavailable
from models.taxonomy import load_curated
from orchestration.local_state import ensure_mlflow_store
from orchestration.settings import Settings


class ChatSetupError(RuntimeError):
    """No assistant can be built; the message says what to run or set."""


@dataclass(frozen=True)
class LoadedAssistant:
    assistant: Assistant
    served: dict[str, Any]  # what serves: candidate, registry URIs and versions (Resolved.describe)
    description: str  # what the listener is talking to, shown when the chat starts


def load_chat_assistant(
    settings: Settings, candidate_key: str | None = None, alias: str = "champion"
) -> LoadedAssistant:
    catalog_file = settings.assets_dir / "catalog.parquet"
    if not catalog_file.exists():
        raise ChatSetupError(f"no materialized catalog at {catalog_file}; run `setlist run` first")
    catalog = pl.read_parquet(catalog_file)
    taxonomy = load_curated(settings.taxonomy_file)
    ensure_mlflow_store(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    online = settings.llm.base_url is not None
    try:
        if candidate_key is None:
            resolved = resolve_alias(client, alias, online)
        else:
            resolved = resolve(client, Candidate.from_key(candidate_key), requested=candidate_key)
        candidate = resolved.candidate
        gateway = LLMGateway(settings.llm.model_copy(update={"cache_path": settings.llm_cache_path}))
        vectors = settings.assets_dir / "track_embeddings.parquet"  # a dense candidate's precomputed vectors
        dense = candidate.retriever_config.embedder is not None and vectors.exists()
        embeddings = pl.read_parquet(vectors) if dense else None
        index = CatalogIndex.build(catalog, taxonomy, candidate.retriever_config, embeddings=embeddings)
        assistant = build_assistant(resolved, index, taxonomy, gateway if candidate.uses_llm else None)
    except (CandidateKeyError, LLMUnavailable, LookupError) as err:
        raise ChatSetupError(str(err)) from err
    served = resolved.describe()
    components = ", ".join(f"{role} {uri}" for role, uri in served["components"].items())
    via = f"{served['requested']} = {served['assistant']}: " if served["assistant"] else ""
    lines = [f"Serving {via}{candidate.key} ({components}) over {catalog.height} catalog tracks."]
    if resolved.note:
        lines.insert(0, f"{resolved.note}.")
    return LoadedAssistant(assistant, served, " ".join(lines))
