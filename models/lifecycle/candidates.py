"""A candidate: one combination of parser, retriever configuration and storyteller under evaluation.

Candidates are what the platform compares in MLflow and promotes with the gate. Their keys are
Dagster partition keys, so they stay short and readable:

    intent-v3.hybrid.template        offline parser (intent model version 3), hybrid retrieval, template stories
    intent-v3.dense.template         the same with the dense (sentence-embedding) component fused in
    parse-v2.bm25.story-v1           LLM parser (prompt version 2), BM25 only, LLM stories (prompt version 1)
"""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.assistant.embedding import MINILM_NAME
from models.assistant.retrieval_config import RetrieverConfig

INTENT_MODEL = "setlist-intent"  # registered model name of the offline parser
PARSER_PROMPT = "parse_request"  # prompt names of the LLM parser and storyteller
STORY_PROMPT = "track_story"

RETRIEVER_PRESETS: dict[str, RetrieverConfig] = {
    "hybrid": RetrieverConfig(),
    "bm25": RetrieverConfig(components=("bm25",)),
    "tags": RetrieverConfig(components=("tags",)),
    # hybrid plus all-MiniLM-L6-v2 vectors (the track_embeddings asset), fused by RRF
    "dense": RetrieverConfig(components=("bm25", "tags", "dense"), embedder=MINILM_NAME),
}
_KEY = re.compile(r"^(intent|parse)-v(\d+)\.([a-z0-9]+)\.(template|story-v(\d+))$")


class CandidateKeyError(ValueError):
    """A partition key that does not name a candidate."""


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    parser_kind: Literal["offline", "llm"]
    parser_version: int  # intent model version, or parse_request prompt version
    retriever: str = "hybrid"
    story_version: int | None = None  # track_story prompt version; None is the template storyteller

    @property
    def key(self) -> str:
        parser = f"{'intent' if self.parser_kind == 'offline' else 'parse'}-v{self.parser_version}"
        story = "template" if self.story_version is None else f"story-v{self.story_version}"
        return f"{parser}.{self.retriever}.{story}"

    @property
    def retriever_config(self) -> RetrieverConfig:
        return RETRIEVER_PRESETS[self.retriever]

    @property
    def uses_llm(self) -> bool:
        return self.parser_kind == "llm" or self.story_version is not None

    def params(self) -> dict[str, str]:
        """What MLflow logs as the candidate's components and versions."""
        return {
            "candidate": self.key,
            "parser": f"models:/{INTENT_MODEL}/{self.parser_version}"
            if self.parser_kind == "offline"
            else f"prompts:/{PARSER_PROMPT}/{self.parser_version}",
            "retriever": self.retriever,
            "retriever_config_hash": self.retriever_config.config_hash,
            "storyteller": "template"
            if self.story_version is None
            else f"prompts:/{STORY_PROMPT}/{self.story_version}",
        }

    def skip_reason(self, online: bool) -> str | None:
        """Why this candidate cannot run in the current LLM mode, or None when it can."""
        if self.uses_llm and not online:
            return "needs the LLM gateway, which is offline (set SETLIST_LLM__BASE_URL, e.g. with `setlist llm serve`)"
        return None

    @classmethod
    def from_key(cls, key: str) -> "Candidate":
        match = _KEY.match(key)
        if match is None or match[3] not in RETRIEVER_PRESETS:
            raise CandidateKeyError(
                f"{key!r} is not a candidate key like 'intent-v3.hybrid.template' "
                f"(retrievers: {sorted(RETRIEVER_PRESETS)})"
            )
        return cls(
            parser_kind="offline" if match[1] == "intent" else "llm",
            parser_version=int(match[2]),
            retriever=match[3],
            story_version=int(match[5]) if match[5] else None,
        )
