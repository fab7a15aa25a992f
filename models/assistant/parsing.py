"""The parser interface: one listener turn in, labels with a confidence out.

Two implementations stand behind it: the offline parser (the registered intent model plus the
taxonomy slot extractor) and the LLM parser (a versioned prompt through the gateway).
"""

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from models.labels import TurnLabels


class ParseResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    labels: TurnLabels
    confidence: float  # probability of the predicted intent, in [0, 1]
    intent_probabilities: dict[str, float] = {}
    parser: str  # the parser's version, e.g. "intent-v3" or "parse_request@<hash>"


class TurnParser(Protocol):
    @property
    def version(self) -> str: ...

    def parse_batch(self, texts: Sequence[str], histories: Sequence[Sequence[str]]) -> list[ParseResult]:
        """Parse many turns at once (the LLM parser sends them as one gateway batch).

        `histories[i]` holds the earlier turns of text i's conversation, user and assistant alternating.
        """
        ...
