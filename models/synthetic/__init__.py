"""Synthetic listener conversations: label plans sampled first, then text written for them.

Two generators share `ConversationGenerator`: the offline template grammar and the LLM. Both take
their label plans from `LabelSampler`, so taxonomy coverage is controlled the same way.
"""

from typing import Protocol

from models.labels import Conversation


class ConversationGenerator(Protocol):
    name: str  # "grammar", "llm"

    @property
    def version(self) -> str: ...

    def generate(self, n_conversations: int, seed: int) -> list[Conversation]: ...
