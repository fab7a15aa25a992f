"""The LLM generator: label plans sampled locally (as for the grammar), text written by an LLM.

One gateway request per conversation, structured output in the label schema. An answer is kept only
when it carries exactly the labels that were asked for; anything else is rejected with its reason.
"""

import hashlib
import json
import random

import polars as pl
from pydantic import BaseModel, ConfigDict

from models.labels import Conversation, Intent, Slots, Turn, TurnLabels, constraints_over
from models.llm import LLMGateway, LLMRequest, LLMResult
from models.prompts import PromptSpec, load_prompt
from models.synthetic import Generation
from models.synthetic.postprocess import phrases_by_node
from models.synthetic.rejects import Rejected
from models.synthetic.sampler import LabelSampler
from models.taxonomy import Taxonomy

PROMPT_NAME = "synthetic_conversation"
PERSONAS = (
    "a teenager on a phone: lowercase, slang, emoji, impatient",
    "a jazz-loving retiree who writes full, polite sentences",
    "a busy parent typing quickly between errands, occasional typos",
    "a music producer who knows genre names precisely",
    "a student who wants background music to focus and writes tersely",
    "a DJ planning a set, energetic and specific",
    "a non-native English speaker with simple, slightly unusual phrasing",
    "someone casual and chatty who thanks the assistant a lot",
)


class SyntheticTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    intent: Intent
    slots: Slots


class SyntheticConversation(BaseModel):
    """The LLM's answer: one written turn per requested turn, labels echoed back."""

    model_config = ConfigDict(extra="forbid")

    turns: list[SyntheticTurn]


def generator_version(prompt: PromptSpec | None = None) -> str:
    """The prompt's content hash, with the personas (which live here, not in the prompt file)."""
    payload = json.dumps([(prompt or load_prompt(PROMPT_NAME)).content_hash, PERSONAS]).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


class LLMGenerator:
    """Label-conditioned conversations written by an LLM through the project gateway."""

    name = "llm"

    def __init__(
        self, taxonomy: Taxonomy, catalog: pl.DataFrame, gateway: LLMGateway, prompt: PromptSpec | None = None
    ) -> None:
        self.taxonomy = taxonomy
        self.sampler = LabelSampler(taxonomy, catalog)
        self.gateway = gateway
        self.prompt = prompt or load_prompt(PROMPT_NAME)
        self._phrases = phrases_by_node(taxonomy)

    @property
    def version(self) -> str:
        return generator_version(self.prompt)

    def generate(self, n_conversations: int, seed: int) -> Generation:
        rng = random.Random(seed)
        plans = self.sampler.plans(n_conversations, rng)
        ids = [f"{self.name}-{self.version}-s{seed}-{i:06d}" for i in range(n_conversations)]
        requests = [
            self._request(cid, plan, rng.choice(PERSONAS)) for cid, plan in zip(ids, plans, strict=True)
        ]
        batch = self.gateway.map(requests)
        kept, rejected = [], []
        for cid, plan, result in zip(ids, plans, batch, strict=True):
            conversation, problem = self._conversation(cid, plan, result, seed)
            if problem is None:
                kept.append(conversation)
            else:
                rejected.append(Rejected(conversation, "generation", *problem))
        return Generation(kept, rejected, batch.stats)

    def _request(self, conversation_id: str, plan: list[TurnLabels], persona: str) -> LLMRequest:
        nodes = sorted({n for labels in plan for n in labels.slots.all_nodes()})
        glossary = (
            "\n".join(f"- {n}: {', '.join(self._phrases.get(n, ()))}" for n in nodes) or "(no slot values)"
        )
        labels = json.dumps(
            [labels.model_dump(mode="json", exclude_defaults=True) for labels in plan], indent=1
        )
        return LLMRequest(
            messages=self.prompt.render(persona=persona, glossary=glossary, labels=labels),
            output_schema=self.prompt.schema(),
            params=self.prompt.model_parameters,
            prompt_version=self.prompt.version,
            id=conversation_id,
        )

    def _conversation(
        self, conversation_id: str, plan: list[TurnLabels], result: LLMResult, seed: int
    ) -> tuple[Conversation, tuple[str, str] | None]:
        """The conversation with the requested labels, and why it is rejected (reason, detail), if it is."""
        answer = result.output if isinstance(result.output, SyntheticConversation) else None
        texts = [t.text for t in answer.turns] if answer else []
        problem: tuple[str, str] | None = None
        if not result.ok:
            problem = (result.failure or "failed", result.detail or "")
        elif answer is None or len(answer.turns) != len(plan):
            got = len(answer.turns) if answer else 0
            problem = ("label_mismatch", f"asked for {len(plan)} turns, got {got}")
        else:
            for index, (asked, written) in enumerate(zip(plan, answer.turns, strict=True)):
                if mismatch := _label_mismatch(asked, TurnLabels(intent=written.intent, slots=written.slots)):
                    problem = ("label_mismatch", f"turn {index}: {mismatch}")
                    break
        texts = (texts + [""] * len(plan))[: len(plan)] if problem else texts
        turns = [
            Turn(text=text, labels=labels, constraint=constraint)
            for text, labels, constraint in zip(texts, plan, constraints_over(plan), strict=True)
        ]
        conversation = Conversation(
            conversation_id=conversation_id, turns=turns, generator=self.name, version=self.version, seed=seed
        )
        return conversation, problem


def _label_mismatch(asked: TurnLabels, written: TurnLabels) -> str | None:
    """Labels must come back unchanged; list order within a slot does not matter."""
    if asked.intent != written.intent:
        return f"intent {written.intent.value} != requested {asked.intent.value}"
    a, w = _canonical(asked.slots), _canonical(written.slots)
    differing = sorted(k for k in a.keys() | w.keys() if a.get(k) != w.get(k))
    return f"slots differ in {differing}: {w} != requested {a}" if differing else None


def _canonical(slots: Slots) -> dict[str, object]:
    dumped = slots.model_dump(mode="json", exclude_defaults=True)
    return {k: sorted(v, key=json.dumps) if isinstance(v, list) else v for k, v in dumped.items()}
