"""A candidate: one combination of parser, retriever preset and storyteller under evaluation, and which
candidates are proposed.

Candidates are what the platform compares in MLflow and promotes with the gate. Their keys are Dagster
partition keys, so they stay short and readable; every version in a key is a registry version:

    intent-v3.hybrid.template          trained parser (models:/setlist-intent/3), hybrid retrieval, template stories
    intent-v3.dense.template           the same with the dense (sentence-embedding) component fused in
    keyword-v1.hybrid.template         the keyword parser (taxonomy gazetteer, no model: versioned by its code)
    parse-v2.agent-v1.bm25.story-v1    LLM parser (prompts:/parse_request/2) with the LLM agent
                                       (prompts:/assistant_agent/1), BM25 only, LLM stories (prompts:/track_story/1)
"""

import json
import re
from collections.abc import Sequence
from typing import Literal

from mlflow import MlflowClient
from pydantic import BaseModel, ConfigDict, model_validator

from models.assistant.keyword_parser import KeywordParser
from models.assistant.llm_agent import AGENT_PROMPT
from models.assistant.llm_parser import PARSER_PROMPT
from models.assistant.retrieval_config import RETRIEVER_PRESETS, RetrieverConfig
from models.assistant.stories import STORY_PROMPT
from models.lifecycle.registry import (
    CHAMPION,
    INTENT_MODEL,
    RegistryVersion,
    model_alias_version,
    prompt_alias_version,
    registry_versions,
)

KEYWORD_VERSION = int(KeywordParser.version.removeprefix("keyword-v"))
_KEY = re.compile(
    r"^(?:(intent|keyword)-v(\d+)|parse-v(\d+)\.agent-v(\d+))\.([a-z0-9]+)\.(template|story-v(\d+))$"
)


class CandidateKeyError(ValueError):
    """A partition key that does not name a candidate."""


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    parser_kind: Literal["offline", "keyword", "llm"]
    parser_version: int  # intent model version, keyword parser code version, or parse_request prompt version
    agent_version: int | None = None  # assistant_agent prompt version: LLM parsers only
    retriever: str = "hybrid"
    story_version: int | None = None  # track_story prompt version; None is the template storyteller

    @model_validator(mode="after")
    def _consistent(self) -> "Candidate":
        if (self.parser_kind == "llm") != (self.agent_version is not None):
            raise ValueError(
                "an LLM parser runs with the LLM agent: set agent_version exactly for parser_kind llm"
            )
        if self.parser_kind == "keyword" and self.parser_version != KEYWORD_VERSION:
            raise ValueError(
                f"the keyword parser's code is at version {KEYWORD_VERSION}, not {self.parser_version}"
            )
        if self.retriever not in RETRIEVER_PRESETS:
            raise ValueError(
                f"unknown retriever preset {self.retriever!r} (presets: {sorted(RETRIEVER_PRESETS)})"
            )
        return self

    @property
    def key(self) -> str:
        parser = {
            "offline": f"intent-v{self.parser_version}",
            "keyword": f"keyword-v{self.parser_version}",
            "llm": f"parse-v{self.parser_version}.agent-v{self.agent_version}",
        }[self.parser_kind]
        story = "template" if self.story_version is None else f"story-v{self.story_version}"
        return f"{parser}.{self.retriever}.{story}"

    @property
    def retriever_config(self) -> RetrieverConfig:
        return RETRIEVER_PRESETS[self.retriever]

    @property
    def uses_llm(self) -> bool:
        return self.parser_kind == "llm" or self.story_version is not None

    def components(self) -> dict[str, str]:
        """Each component by what names it: a registry URI with its version, or what the code calls it."""
        parser = {
            "offline": f"models:/{INTENT_MODEL}/{self.parser_version}",
            "keyword": KeywordParser.version,
            "llm": f"prompts:/{PARSER_PROMPT}/{self.parser_version}",
        }[self.parser_kind]
        return {
            "parser": parser,
            **({"agent": f"prompts:/{AGENT_PROMPT}/{self.agent_version}"} if self.agent_version else {}),
            "retriever": self.retriever,
            "storyteller": "template"
            if self.story_version is None
            else f"prompts:/{STORY_PROMPT}/{self.story_version}",
        }

    def params(self) -> dict[str, str]:
        """What MLflow logs as the candidate's components and versions."""
        return {
            "candidate": self.key,
            **self.components(),
            "retriever_config_hash": self.retriever_config.config_hash,
        }

    def artifact(self) -> str:
        """The candidate as its setlist-assistant version's source (`candidate.json` of its evaluation run)."""
        return json.dumps({"key": self.key, **self.model_dump(), **self.params()}, indent=2)

    def skip_reason(self, online: bool) -> str | None:
        """Why this candidate cannot run in the current LLM mode, or None when it can."""
        if self.uses_llm and not online:
            return "needs the LLM gateway, which is offline (set SETLIST_LLM__BASE_URL, e.g. with `setlist llm serve`)"
        return None

    @classmethod
    def from_key(cls, key: str) -> "Candidate":
        match = _KEY.match(key)
        if match is None or match[5] not in RETRIEVER_PRESETS:
            raise CandidateKeyError(
                f"{key!r} is not a candidate key like 'intent-v3.hybrid.template', 'keyword-v1.bm25.template' "
                f"or 'parse-v2.agent-v1.hybrid.story-v1' (retrievers: {sorted(RETRIEVER_PRESETS)})"
            )
        kind = {"intent": "offline", "keyword": "keyword", None: "llm"}[match[1]]
        try:
            return cls(
                parser_kind=kind,
                parser_version=int(match[2] or match[3]),
                agent_version=int(match[4]) if match[4] else None,
                retriever=match[5],
                story_version=int(match[7]) if match[7] else None,
            )
        except ValueError as err:
            raise CandidateKeyError(f"{key!r}: {err}") from None


# --- proposed: which candidates a run, a schedule or the registry sensor evaluates -----------------------


def baseline_candidate(retriever: str = "hybrid") -> Candidate:
    """The keyword parser (no trained model, no LLM): what serves before any intent model exists."""
    return Candidate(parser_kind="keyword", parser_version=KEYWORD_VERSION, retriever=retriever)


def candidate_for(version: RegistryVersion, client: MlflowClient) -> Candidate | None:
    """The candidate that tests one registry version: a new intent model with hybrid retrieval; a new
    parser or agent prompt with the other's champion (its latest without one); a new story prompt with the
    champion intent model."""
    if version.kind == "model":
        return Candidate(parser_kind="offline", parser_version=version.version)
    if version.name in (PARSER_PROMPT, AGENT_PROMPT):
        parser = version.version if version.name == PARSER_PROMPT else _partner(client, PARSER_PROMPT)
        agent = version.version if version.name == AGENT_PROMPT else _partner(client, AGENT_PROMPT)
        if parser is None or agent is None:
            return None  # retried once the other prompt is registered
        return Candidate(parser_kind="llm", parser_version=parser, agent_version=agent)
    champion_model = model_alias_version(client, INTENT_MODEL, CHAMPION)
    if version.name == STORY_PROMPT and champion_model is not None:
        return Candidate(parser_kind="offline", parser_version=champion_model, story_version=version.version)
    return None


def _partner(client: MlflowClient, prompt: str) -> int | None:
    """The version a new prompt version is paired with: the other prompt's champion, else its latest."""
    champion = prompt_alias_version(client, prompt, CHAMPION)
    if champion is not None:
        return champion
    return max((v.version for v in registry_versions(client, [prompt], [])), default=None)


def proposed_candidates(
    client: MlflowClient,
    online: bool,
    retrievers: Sequence[str] = ("hybrid",),
    keyword_baseline: bool = False,
) -> list[Candidate]:
    """What a run evaluates: once an intent model is champion, it with each of `retrievers` and the keyword
    baseline; then a candidate for every registry version (LLM ones only online). The champion intent model with the first
    retriever comes first: on a fresh registry the first candidate evaluated becomes the champion."""
    champion_model = model_alias_version(client, INTENT_MODEL, CHAMPION)
    compared: list[Candidate] = []
    if champion_model is not None:  # before a trained model there is nothing to compare (nor run on)
        compared = [
            Candidate(parser_kind="offline", parser_version=champion_model, retriever=r) for r in retrievers
        ]
        compared += [baseline_candidate()] if keyword_baseline else []
    versions = registry_versions(client, [PARSER_PROMPT, AGENT_PROMPT, STORY_PROMPT], [INTENT_MODEL])
    proposed = [*compared, *(candidate_for(v, client) for v in versions)]
    usable = [c for c in proposed if c is not None and not c.skip_reason(online)]
    return list({c.key: c for c in usable}.values())
