"""The LLM gateway: every LLM call in Setlist goes through `LLMGateway`."""

from models.llm.config import GatewayConfig, ModelPrice
from models.llm.gateway import BatchResult, LLMGateway
from models.llm.request import LLMRequest, LLMResult, LLMUnavailable
from models.llm.stats import BatchStats

__all__ = [
    "BatchResult",
    "BatchStats",
    "GatewayConfig",
    "LLMGateway",
    "LLMRequest",
    "LLMResult",
    "LLMUnavailable",
    "ModelPrice",
]
