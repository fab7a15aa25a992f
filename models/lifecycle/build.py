"""A candidate's assistant: its components loaded from the MLflow registry and assembled over an index."""

import mlflow.pyfunc
from mlflow import MlflowClient

from models.assistant.assistant import Assistant, AssistantConfig
from models.assistant.co_likes import CoLikes
from models.assistant.llm_agent import LLMAgent
from models.assistant.llm_parser import LLMParser
from models.assistant.offline_parser import OfflineParser
from models.assistant.parsing import TurnParser
from models.assistant.retrieval import CatalogIndex
from models.assistant.stories import LLMStoryteller, TemplateStoryteller
from models.lifecycle.candidates import INTENT_MODEL, Candidate
from models.lifecycle.registry import CHAMPION, model_alias_version
from models.llm import LLMGateway, LLMUnavailable
from models.prompts import PromptSpec
from models.taxonomy import Taxonomy


def load_offline_parser(
    client: MlflowClient, taxonomy: Taxonomy, version: int | None = None, alias: str = CHAMPION
) -> OfflineParser:
    """Load `models:/setlist-intent/<version>`, or the version the alias points at now."""
    if version is None:
        version = model_alias_version(client, INTENT_MODEL, alias)
        if version is None:
            raise LookupError(
                f"no {INTENT_MODEL} version has alias {alias!r}; materialize intent_model first"
            )
    # load_model resolves models:/ URIs against the global tracking URI, so point it at this client's store.
    mlflow.set_tracking_uri(client.tracking_uri)
    return OfflineParser(mlflow.pyfunc.load_model(f"models:/{INTENT_MODEL}/{version}"), version, taxonomy)


def build_assistant(
    candidate: Candidate,
    index: CatalogIndex,
    taxonomy: Taxonomy,
    gateway: LLMGateway | None = None,
    mlflow_client: MlflowClient | None = None,
    config: AssistantConfig = AssistantConfig(),
    parser_prompt: PromptSpec | None = None,
    story_prompt: PromptSpec | None = None,
    co_likes: CoLikes | None = None,
) -> Assistant:
    """A candidate's assistant over a built index (whose config should be the candidate's preset).

    Offline candidates load `models:/setlist-intent/<version>` through `mlflow_client`; LLM components
    need an online gateway: without one this raises LLMUnavailable naming the candidate.
    """
    if candidate.uses_llm and (gateway is None or not gateway.available):
        raise LLMUnavailable(
            f"candidate {candidate.key} uses the LLM but the gateway is offline; set SETLIST_LLM__BASE_URL "
            "or evaluate an offline candidate (intent-v<N>.<retriever>.template)"
        )
    llm = candidate.parser_kind == "llm"
    if llm:
        parser: TurnParser = LLMParser(gateway, taxonomy, prompt=parser_prompt)
    elif mlflow_client is None:
        raise ValueError(f"candidate {candidate.key} loads its intent model from MLflow: pass mlflow_client")
    else:
        parser = load_offline_parser(mlflow_client, taxonomy, version=candidate.parser_version)
    storyteller = (
        TemplateStoryteller(taxonomy)
        if candidate.story_version is None
        else LLMStoryteller(gateway, taxonomy, prompt=story_prompt)
    )
    agent = LLMAgent(gateway, taxonomy, max_steps=config.max_steps) if llm else None
    return Assistant(parser, index, taxonomy, storyteller, agent, config, co_likes)
