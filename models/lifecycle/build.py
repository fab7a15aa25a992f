"""A candidate's assistant: components resolved through MLflow, assembled over a retrieval index.

Resolving reads every registered component from MLflow: the intent model from `models:/setlist-intent/<v>`,
the prompts' messages and model parameters from `prompts:/<name>/<v>` in the prompt registry (never the
files). Serving resolves an alias first: `models:/setlist-assistant@champion` names the candidate the gate
(or a person, in the MLflow UI) promoted. Before any assistant version exists, the champion intent model
(`models:/setlist-intent@champion`) with hybrid retrieval serves; before any intent model, the keyword
baseline. Evaluation (`assistant_runs`, `candidate_evaluation`), the feedback assets and `setlist chat`
all build through `build_assistant`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.assistant.assistant import Assistant, AssistantConfig
from models.assistant.co_likes import CoLikes
from models.assistant.keyword_parser import KeywordParser
from models.assistant.llm_agent import LLMAgent
from models.assistant.llm_parser import LLMParser
from models.assistant.offline_parser import OfflineParser
from models.assistant.parsing import TurnParser
from models.assistant.retrieval import CatalogIndex
from models.assistant.stories import LLMStoryteller, TemplateStoryteller
from models.lifecycle.candidates import (
    AGENT_PROMPT,
    PARSER_PROMPT,
    STORY_PROMPT,
    Candidate,
    baseline_candidate,
)
from models.lifecycle.registry import (
    ASSISTANT_MODEL,
    CHAMPION,
    INTENT_MODEL,
    assistant_by_alias,
    model_alias_version,
    registered_prompt,
)
from models.llm import LLMGateway, LLMUnavailable
from models.prompts import PromptSpec
from models.taxonomy import Taxonomy


@dataclass(frozen=True, eq=False)
class Resolved:
    """A candidate with its registered components loaded, and how it was reached."""

    candidate: Candidate
    intent_model: Any = None  # the offline parser's pyfunc model (mlflow.pyfunc.PyFuncModel)
    prompts: Mapping[str, PromptSpec] = field(default_factory=dict)  # by prompt name
    requested: str | None = None  # the alias URI asked for, e.g. "models:/setlist-assistant@champion"
    assistant_version: int | None = None  # the setlist-assistant version the alias pointed at
    note: str | None = None  # why what serves is not what was asked for

    def describe(self) -> dict[str, Any]:
        """What serves, for `setlist chat --json` and asset metadata: URIs with versions, content hashes."""
        return {
            "candidate": self.candidate.key,
            "requested": self.requested,
            "assistant": f"models:/{ASSISTANT_MODEL}/{self.assistant_version}"
            if self.assistant_version
            else None,
            "components": self.candidate.components(),
            "prompt_hashes": {name: spec.content_hash for name, spec in self.prompts.items()},
            "note": self.note,
        }


def resolve(client: MlflowClient, candidate: Candidate, **how: Any) -> Resolved:
    """Load the candidate's registered components from MLflow (`how`: the Resolved fields saying how the
    candidate was reached). A version MLflow does not hold raises LookupError naming its URI."""
    prompt_versions = {
        PARSER_PROMPT: candidate.parser_version if candidate.parser_kind == "llm" else None,
        AGENT_PROMPT: candidate.agent_version,
        STORY_PROMPT: candidate.story_version,
    }
    prompts = {
        name: registered_prompt(client, name, version)
        for name, version in prompt_versions.items()
        if version is not None
    }
    intent_model = None
    if candidate.parser_kind == "offline":
        intent_model = _intent_model(client, candidate.parser_version)
    return Resolved(candidate, intent_model, prompts, **how)


def _intent_model(client: MlflowClient, version: int):
    uri = f"models:/{INTENT_MODEL}/{version}"
    # load_model resolves models:/ URIs against the global tracking URI, so point it at this client's store.
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as err:
        raise LookupError(f"{uri} cannot be loaded from MLflow: {err.message}") from None


def resolve_alias(client: MlflowClient, alias: str = CHAMPION, online: bool = False) -> Resolved:
    """What serves under `alias`: `models:/setlist-assistant@<alias>`'s candidate, resolved through MLflow.

    The one fallback, said in `note`: without that version (or with one needing the LLM while it is
    offline), the champion intent model with hybrid retrieval; without one, the keyword baseline."""
    requested = f"models:/{ASSISTANT_MODEL}@{alias}"
    held = assistant_by_alias(client, alias)
    reason = f"{requested} is not set"
    if held is not None:
        candidate = Candidate.from_key(held.candidate_key)
        if not (why := candidate.skip_reason(online)):
            return resolve(client, candidate, requested=requested, assistant_version=held.version)
        reason = f"{requested} is {candidate.key}, which {why}"
    intent = model_alias_version(client, INTENT_MODEL, CHAMPION)
    if intent is not None:
        fallback = Candidate(parser_kind="offline", parser_version=intent)
        note = f"{reason}: serving models:/{INTENT_MODEL}@{CHAMPION} (version {intent}) with hybrid retrieval"
        return resolve(client, fallback, requested=requested, note=note)
    note = f"{reason} and models:/{INTENT_MODEL}@{CHAMPION} neither: serving the keyword baseline"
    return Resolved(baseline_candidate(), requested=requested, note=note)


def build_assistant(
    resolved: Resolved,
    index: CatalogIndex,
    taxonomy: Taxonomy,
    gateway: LLMGateway | None = None,
    config: AssistantConfig = AssistantConfig(),
    co_likes: CoLikes | None = None,
) -> Assistant:
    """The candidate's assistant over `index`, queried with the candidate's retriever preset.

    LLM components need an online gateway: without one this raises LLMUnavailable naming the candidate."""
    candidate = resolved.candidate
    if candidate.uses_llm and (gateway is None or not gateway.available):
        raise LLMUnavailable(
            f"candidate {candidate.key} uses the LLM but the gateway is offline; set SETLIST_LLM__BASE_URL "
            "or evaluate an offline candidate (intent-v<N>.<retriever>.template)"
        )
    if index.config != candidate.retriever_config:
        index = index.reconfigured(candidate.retriever_config)
    parser: TurnParser
    if candidate.parser_kind == "llm":
        parser = LLMParser(gateway, taxonomy, prompt=resolved.prompts[PARSER_PROMPT])
    elif candidate.parser_kind == "keyword":
        parser = KeywordParser(taxonomy)
    else:
        parser = OfflineParser(resolved.intent_model, candidate.parser_version, taxonomy)
    storyteller = (
        TemplateStoryteller(taxonomy)
        if candidate.story_version is None
        else LLMStoryteller(gateway, taxonomy, prompt=resolved.prompts[STORY_PROMPT])
    )
    agent = (
        LLMAgent(gateway, taxonomy, max_steps=config.max_steps, prompt=resolved.prompts[AGENT_PROMPT])
        if candidate.parser_kind == "llm"
        else None
    )
    return Assistant(parser, index, taxonomy, storyteller, agent, config, co_likes)
