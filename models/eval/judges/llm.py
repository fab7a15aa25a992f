"""LLM judges: a versioned prompt file, a structured answer, one gateway batch per call of `judge`.

Catalog and user text reach the model only as JSON inside delimited data fields, with `<` and `>`
escaped, so a title or a message cannot close its field and pose as an instruction. A failed item (HTTP
error, refusal, off-schema answer) is a verdict with its failure reason; the batch never raises for it.
"""

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from models.eval.judges.base import Judgements, Label, PairItem, RelevanceItem, ResponseItem, Verdict
from models.eval.stats import PairwiseResult, resolve_position_swap
from models.llm import BatchResult, LLMGateway, LLMRequest
from models.prompts import PromptSpec, load_prompt


def data_field(value: Any) -> str:
    """JSON with angle brackets escaped: still readable JSON, never a closing `</field>` tag."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _response_fields(item: ResponseItem) -> dict[str, str]:
    expected = {
        "behaviour": item.expected_behaviour,
        "every_track_must_have_one_of_each": [list(g) for g in item.must],
        "no_track_may_have": list(item.must_not),
        "min_duration_s": item.min_duration_s,
        "max_duration_s": item.max_duration_s,
    }
    return {
        "conversation": data_field(item.conversation),
        "request": data_field(item.request),
        "expected": data_field(expected),
    }


def _answer(item: ResponseItem) -> str:
    shown = [t.model_dump(exclude_none=True) for t in item.shown]
    return data_field({"response": item.response, "shown_tracks": shown})


def label_probabilities(
    logprobs: Sequence[dict[str, Any]] | None, labels: Sequence[str]
) -> dict[str, float] | None:
    """At the first answer token that is one of `labels`, the model's probability of each label,
    renormalised over the labels among that position's top logprobs; None without logprobs."""
    for position in logprobs or ():
        if position["token"].strip() not in labels:
            continue
        mass: dict[str, float] = {}
        for option in [position, *position.get("top_logprobs", [])]:
            token = option["token"].strip()
            if token in labels and token not in mass:
                mass[token] = math.exp(option["logprob"])
        total = sum(mass.values())
        return {label: mass.get(label, 0.0) / total for label in labels}
    return None


class PromptedJudge:
    """What the LLM judges share: the prompt file, its schema and turning gateway results into verdicts."""

    base_name: str
    prompt_name: str

    def __init__(self, gateway: LLMGateway, prompt: PromptSpec | None = None) -> None:
        self.gateway = gateway
        self.prompt = prompt or load_prompt(self.prompt_name)
        self.schema: type[BaseModel] = self.prompt.schema()

    @property
    def name(self) -> str:
        """`llm_relevance`, or `llm_relevance.v2` for the prompt file `judge_relevance.v2.yaml`."""
        return self.base_name + (f".{self.prompt.variant}" if self.prompt.variant else "")

    @property
    def version(self) -> str:
        """The prompt's content hash and the model: either changing makes it another judge."""
        return f"{self.prompt.version}/{self.gateway.config.model}"

    def _ask(self, fields: Sequence[dict[str, str]], ids: Sequence[str]) -> BatchResult:
        requests = [
            LLMRequest(
                messages=self.prompt.render(**values),
                output_schema=self.schema,
                params=self.prompt.model_parameters,
                prompt_version=self.prompt.version,
                id=item_id,
            )
            for values, item_id in zip(fields, ids, strict=True)
        ]
        return self.gateway.map(requests)

    @staticmethod
    def _verdicts(
        batch: BatchResult,
        value: Callable[[Any], Label],
        score: Callable[[Sequence[dict[str, Any]] | None], float | None] = lambda _: None,
    ) -> Judgements:
        verdicts = [
            Verdict(value(r.output), getattr(r.output, "reason", ""), score=score(r.logprobs))
            if r.ok and r.output is not None
            else Verdict(None, r.detail or r.failure or "no answer", failure=r.failure or "no_output")
            for r in batch
        ]
        return Judgements(verdicts, batch.stats)


def _p_relevant(logprobs: Sequence[dict[str, Any]] | None) -> float | None:
    probabilities = label_probabilities(logprobs, ("true", "false"))
    return probabilities["true"] if probabilities else None


def _expected_rating(logprobs: Sequence[dict[str, Any]] | None) -> float | None:
    probabilities = label_probabilities(logprobs, ("1", "2", "3", "4", "5"))
    return sum(int(label) * p for label, p in probabilities.items()) if probabilities else None


class LLMRelevanceJudge(PromptedJudge):
    base_name = "llm_relevance"
    prompt_name = "judge_relevance"

    def judge(self, items: Sequence[RelevanceItem]) -> Judgements:
        fields = [
            {
                "conversation": data_field(item.conversation),
                "track": data_field(
                    {
                        "title": item.title,
                        "artists": list(item.artists),
                        "album": item.album,
                        "tags": list(item.tags),
                    }
                ),
            }
            for item in items
        ]
        return self._verdicts(
            self._ask(fields, [item.item_id for item in items]), lambda out: bool(out.relevant), _p_relevant
        )


class LLMResponseJudge(PromptedJudge):
    base_name = "llm_response"
    prompt_name = "judge_response"

    def judge(self, items: Sequence[ResponseItem]) -> Judgements:
        fields = [{**_response_fields(item), "answer": _answer(item)} for item in items]
        return self._verdicts(
            self._ask(fields, [item.item_id for item in items]), lambda out: int(out.rating), _expected_rating
        )


@dataclass(frozen=True)
class PairwiseJudgements(Judgements):
    """Verdicts name systems ("A", "B", "tie"); `swap` covers the items judged in both orders."""

    swap: PairwiseResult | None = None


class LLMPairwiseJudge(PromptedJudge):
    """A vs B, asked in both orders in one batch; a win needs both orders to agree, else it is a tie."""

    base_name = "llm_pairwise"
    prompt_name = "judge_pairwise"

    def judge(self, items: Sequence[PairItem]) -> PairwiseJudgements:
        fields, ids = [], []
        for item in items:
            base = _response_fields(item.a)  # both responses answer the same turn
            fields += [
                {**base, "first": _answer(item.a), "second": _answer(item.b)},
                {**base, "first": _answer(item.b), "second": _answer(item.a)},
            ]
            ids += [f"{item.item_id}:a-first", f"{item.item_id}:b-first"]
        batch = self._ask(fields, ids)
        a_first, b_first = batch.results[0::2], batch.results[1::2]
        both = [i for i, (x, y) in enumerate(zip(a_first, b_first, strict=True)) if x.ok and y.ok]
        swap = (
            resolve_position_swap(
                [a_first[i].output.winner for i in both], [b_first[i].output.winner for i in both]
            )
            if both
            else None
        )
        system_of = dict(zip(both, swap.verdicts, strict=True)) if swap else {}
        verdicts = []
        for i, (x, y) in enumerate(zip(a_first, b_first, strict=True)):
            if i in system_of:
                reason = f"A first: {x.output.winner} ({x.output.reason}) | B first: {y.output.winner} ({y.output.reason})"
                verdicts.append(Verdict(system_of[i], reason))
            else:
                failed = x if not x.ok else y
                order = "A first" if failed is x else "B first"
                verdicts.append(
                    Verdict(None, f"{order}: {failed.detail or failed.failure}", failure=failed.failure)
                )
        return PairwiseJudgements(verdicts, batch.stats, swap)
