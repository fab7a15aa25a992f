"""The LLM parser: the versioned prompt parse_request.yaml through the gateway, one batch per call.

An item that fails (transport, refusal, invalid output, a node outside the taxonomy) becomes
needs_clarification with confidence 0 and its failure reason: the assistant then asks instead of
guessing, and evaluation can count the failures.
"""

from collections.abc import Sequence
from enum import StrEnum
from typing import Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from models.assistant.parsing import ParseResult
from models.labels import FACETS, Intent, Slots, TurnLabels
from models.llm import LLMGateway, LLMRequest
from models.prompts import PromptSpec, data_json, load_prompt
from models.taxonomy import Taxonomy

PARSER_PROMPT = "parse_request"


class ParsedTurn(BaseModel):
    """The parser prompt's structured output."""

    model_config = ConfigDict(extra="forbid")

    labels: TurnLabels
    confidence: float = Field(ge=0, le=1)


def taxonomy_output_schema(taxonomy: Taxonomy) -> type[ParsedTurn]:
    """`ParsedTurn` with each facet's node ids as an enum of this taxonomy's ids.

    A server that constrains decoding to the schema (llama.cpp's JSON mode with a schema, OpenAI's strict
    json_schema) can then only write known ids: the 1.5B local model otherwise answers "calm" for
    "mood/calm" and every parse fails validation.
    """

    # One named enum per facet: the schema lists each id once (excluded refers to them), which keeps
    # the prompt of a JSON-mode server (the schema is written into it) about 2,000 tokens longer, not 4,000.
    nodes = {
        facet: StrEnum(
            f"{facet.title()}Node", {n: n for n in sorted(taxonomy.nodes) if n.startswith(f"{facet}/")}
        )
        for facet in FACETS
    }
    slots = create_model(
        "Slots",
        __base__=Slots,
        **{facet: (list[node], []) for facet, node in nodes.items()},
        excluded=(list[Union[tuple(nodes.values())]], []),  # noqa: UP007 - a union built at run time
    )
    labels = create_model("TurnLabels", __base__=TurnLabels, slots=(slots, slots()))
    return create_model("ParsedTurn", __base__=ParsedTurn, labels=(labels, ...))


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
        self._schema = taxonomy_output_schema(taxonomy)

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
                output_schema=self._schema,
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
                    labels=TurnLabels.model_validate(result.output.labels.model_dump(mode="json")),
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
