"""Synthetic listener conversations: label plans sampled first, then text written for them.

Two generators share `ConversationGenerator`: the offline template grammar and the LLM. Both take
their label plans from `LabelSampler`, so taxonomy coverage is controlled the same way.
"""

from dataclasses import dataclass, field
from typing import Protocol

from models.labels import Conversation
from models.llm import BatchStats
from models.synthetic.rejects import Rejected


@dataclass(frozen=True)
class Generation:
    """What a generator produced, what it had to drop on the way (LLM failures, wrong labels) and its LLM bill."""

    conversations: list[Conversation]
    rejected: list[Rejected] = field(default_factory=list)
    llm_stats: BatchStats | None = None


class ConversationGenerator(Protocol):
    name: str  # "grammar", "llm"

    @property
    def version(self) -> str: ...

    def generate(self, n_conversations: int, seed: int) -> Generation: ...
