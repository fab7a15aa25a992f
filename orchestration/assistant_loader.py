"""Which assistant `setlist chat` talks to: what MLflow serves under an alias, built by the lifecycle.

`--candidate <key>` builds that candidate; otherwise `models:/setlist-assistant@<alias>` (champion by default)
is resolved through MLflow at start (`models.lifecycle.build.resolve_alias`, with its one fallback), so moving
the alias, by the gate or by hand in the MLflow UI, changes what the next chat serves. The catalog comes as
the `retrieval_index` asset through its IO manager, as every asset reads it, so chat works in any profile.
"""

import logging
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from models.assistant.assistant import Assistant
from models.assistant.retrieval import CatalogIndex, IndexFormatError
from models.lifecycle.build import build_assistant, resolve, resolve_alias
from models.lifecycle.candidates import Candidate, CandidateKeyError
from models.llm import LLMGateway, LLMUnavailable
from models.taxonomy import load_curated
from orchestration.local_state import ensure_mlflow_store
from orchestration.settings import Settings

RETRIEVAL_INDEX = "retrieval_index"


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
    index = load_retrieval_index(settings)
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
        assistant = build_assistant(resolved, index, taxonomy, gateway if candidate.uses_llm else None)
    except (CandidateKeyError, LLMUnavailable, LookupError, ValueError) as err:
        raise ChatSetupError(str(err)) from err
    served = resolved.describe()
    components = ", ".join(f"{role} {uri}" for role, uri in served["components"].items())
    via = f"{served['requested']} = {served['assistant']}: " if served["assistant"] else ""
    lines = [f"Serving {via}{candidate.key} ({components}) over {len(index)} catalog tracks."]
    if resolved.note:
        lines.insert(0, f"{resolved.note}.")
    return LoadedAssistant(assistant, served, " ".join(lines))


def load_retrieval_index(settings: Settings) -> CatalogIndex:
    """The retrieval_index asset, read through the IO manager that stored it (a bucket in the gcp profile)."""
    # Imported here: the code location loads every asset module, which chat needs only at this point.
    from orchestration.definitions import build_definitions

    # Dagster loads it with a console logger of its own at DEBUG ("Loading file from: ..."), whatever the
    # "dagster" logger's level: debug records are off for the load, so the chat shows none.
    disabled = logging.root.manager.disable
    logging.disable(logging.DEBUG)
    try:
        index = build_definitions(settings).load_asset_value(RETRIEVAL_INDEX)
    except (OSError, IndexFormatError) as err:  # never materialized, or by other code
        raise ChatSetupError(f"{RETRIEVAL_INDEX} cannot be loaded ({err}); run `setlist run` first") from err
    finally:
        logging.disable(disabled)
    return index
