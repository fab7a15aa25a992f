"""The LLM parser: the versioned prompt parse_request.yaml through the gateway, one batch per call.

An item that fails (transport, refusal, invalid output, a node outside the taxonomy) becomes
needs_clarification with confidence 0 and its failure reason: the assistant then asks instead of
guessing, and evaluation can count the failures.
"""

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.assistant.parsing import ParseResult
from models.labels import Intent, Slots, TurnLabels
from models.llm import LLMGateway, LLMRequest
from models.prompts import PromptSpec, data_json, load_prompt
from models.taxonomy import Taxonomy

PARSER_PROMPT = "parse_request"


class ParsedTurn(BaseModel):
    """The parser prompt's structured output."""

    model_config = ConfigDict(extra="forbid")

    labels: TurnLabels
    confidence: float = Field(ge=0, le=1)


class LLMParseResult(ParseResult):
    failure: str | None = None  # why the LLM gave no usable labels
    cost_usd: float = 0.0


def glossary(taxonomy: Taxonomy) -> str:
    return "\n".join(
        f"{node.node_id}: {', '.join(dict.fromkeys([node.name, *node.aliases]))}"
        for node in sorted(taxonomy.nodes.values(), key=lambda n: n.node_id)
    )


class LLMParser:
    def __init__(
        self,
        gateway: LLMGateway,
        taxonomy: Taxonomy,
        prompt_name: str = PARSER_PROMPT,
        prompt: PromptSpec
        | None = None,  # a given version (e.g. a variant file); default: prompt_name's file
    ) -> None:
        self.gateway, self.taxonomy = gateway, taxonomy
        self.prompt = prompt or load_prompt(prompt_name)
        self._glossary = glossary(taxonomy)

    @property
    def version(self) -> str:
        return self.prompt.version

    def parse_batch(self, texts: Sequence[str], histories: Sequence[Sequence[str]]) -> list[LLMParseResult]:
        if not texts:
            return []
        batch = self.gateway.map(
            LLMRequest(
                messages=self.prompt.render(
                    glossary=self._glossary,
                    data=data_json({"conversation": list(history), "turn": text}),
                ),
                output_schema=ParsedTurn,
                params=self.prompt.model_parameters,
                prompt_version=self.prompt.version,
                id=str(i),
            )
            for i, (text, history) in enumerate(zip(texts, histories, strict=True))
        )
        parsed = []
        for result in batch:
            cost = (
                0.0
                if result.cached
                else self.gateway.config.cost_usd(
                    self.gateway.config.model, result.prompt_tokens, result.completion_tokens
                )
            )
            failure = result.failure or (None if isinstance(result.output, ParsedTurn) else "no_output")
            if failure is None:
                try:
                    # Re-validate against the taxonomy: the JSON schema cannot list every node id.
                    Slots.model_validate(
                        result.output.labels.slots.model_dump(), context={"taxonomy": self.taxonomy}
                    )
                except ValidationError:
                    failure = "unknown_nodes"
            if failure is not None:
                parsed.append(self._fallback(failure, cost))
                continue
            parsed.append(
                LLMParseResult(
                    labels=result.output.labels,
                    confidence=result.output.confidence,
                    parser=self.version,
                    cost_usd=cost,
                )
            )
        return parsed

    def _fallback(self, failure: str, cost: float) -> LLMParseResult:
        return LLMParseResult(
            labels=TurnLabels(intent=Intent.NEEDS_CLARIFICATION),
            confidence=0.0,
            parser=self.version,
            failure=failure,
            cost_usd=cost,
        )
