"""The LLM orchestrator: OpenAI tool calling through the gateway, with a step limit.

Conversations advance in lockstep: each step is one gateway batch holding the next request of every
conversation still working. A tool call's result goes back as a `tool` message; the loop ends for a
conversation when the model answers (an `AgentAnswer`) or at the step limit (the last step forbids
tools).

The slate is what retrieval ranks for the listener's request (the planner's plan over the dialogue state),
never the ids the model answers with: tool results carry catalog text, and a title saying "recommend only
this track" must not be able to shrink or reorder what the listener gets. The model explores with the
tools and writes the reply; the output guard checks the reply against the catalog text the model saw.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from models.assistant.output_guard import OutputGuard, quote_catalog_values
from models.assistant.planner import Answer, Planner
from models.assistant.state import DialogueState
from models.assistant.stories import card_text, describe_constraint, guard_secrets
from models.assistant.tools import TOOLS, Toolbox, tool_definitions
from models.labels import TurnLabels
from models.llm import LLMGateway, LLMRequest
from models.prompts import PLACEHOLDER, PromptSpec, data_json, load_prompt
from models.taxonomy import Taxonomy

AGENT_PROMPT = "assistant_agent"
SAFE_REPLY = "Here are tracks that fit your request."
UNFINISHED_REPLY = "Sorry, I could not finish that search; here is what I found so far."


class AgentAnswer(BaseModel):
    """The agent prompt's final structured answer."""

    model_config = ConfigDict(extra="forbid")

    track_ids: list[str]
    response: str


@dataclass
class AgentTask:
    text: str
    history: Sequence[str]
    state: DialogueState  # after the listener's turn
    toolbox: Toolbox
    labels: TurnLabels  # the parse of the listener's turn: what retrieval serves


@dataclass
class _Seen:
    """What tool results showed the model in one conversation: catalog text (data) and track facets."""

    catalog_text: list[str]
    facets: list[str]

    def add(self, output: dict) -> None:
        for card in [*output.get("tracks", []), *([output["track"]] if "track" in output else [])]:
            text, facets = card_text(card)
            self.catalog_text += text
            self.facets += facets


class LLMAgent:
    def __init__(
        self,
        gateway: LLMGateway,
        taxonomy: Taxonomy,
        max_steps: int = 4,
        prompt_name: str = AGENT_PROMPT,
        prompt: PromptSpec | None = None,  # a given version (e.g. from the registry); default: the file's
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.gateway, self.taxonomy, self.max_steps = gateway, taxonomy, max_steps
        self.prompt = prompt or load_prompt(prompt_name)
        self.tools = tool_definitions()
        self.guard = OutputGuard(
            [PLACEHOLDER.sub(" ", m["content"]) for m in self.prompt.messages if m["role"] == "system"],
            internal_names=[*TOOLS, *AgentAnswer.model_fields, "<data>"],
            secrets=guard_secrets(),
            config_names=list(self.prompt.model_parameters),
        )

    @property
    def version(self) -> str:
        return self.prompt.version

    def answer_batch(self, tasks: Sequence[AgentTask]) -> list[Answer]:
        messages = [self._messages(task) for task in tasks]
        slates = [self._retrieved(task) for task in tasks]
        seen = [_Seen([], []) for _ in tasks]
        costs = [0.0] * len(tasks)
        answers: list[Answer | None] = [None] * len(tasks)
        for step in range(self.max_steps):
            active = [i for i, answer in enumerate(answers) if answer is None]
            if not active:
                break
            last = step == self.max_steps - 1
            params = {**self.prompt.model_parameters, **({"tool_choice": "none"} if last else {})}
            batch = self.gateway.map(
                LLMRequest(
                    messages=list(messages[i]),
                    output_schema=AgentAnswer,
                    params=params,
                    tools=self.tools,
                    prompt_version=self.prompt.version,
                    id=str(i),
                )
                for i in active
            )
            for i, result in zip(active, batch, strict=True):
                if not result.cached:
                    costs[i] += self.gateway.config.cost_usd(
                        self.gateway.config.model, result.prompt_tokens, result.completion_tokens
                    )
                if not result.ok:
                    answers[i] = Answer(
                        slates[i], UNFINISHED_REPLY, failure=result.failure, cost_usd=costs[i]
                    )
                elif result.tool_calls:
                    if last:
                        answers[i] = Answer(
                            slates[i], UNFINISHED_REPLY, failure="step_limit", cost_usd=costs[i]
                        )
                        continue
                    messages[i].append(
                        {"role": "assistant", "content": result.content, "tool_calls": result.tool_calls}
                    )
                    for call in result.tool_calls:
                        output = tasks[i].toolbox.run(call["function"]["name"], call["function"]["arguments"])
                        seen[i].add(output)
                        messages[i].append(
                            {
                                "role": "tool",
                                "tool_call_id": call["id"],
                                "content": json.dumps(output, ensure_ascii=False),
                            }
                        )
                elif isinstance(result.output, AgentAnswer):
                    # The model's track_ids are not the slate (see the module docstring); its reply is guarded.
                    task = tasks[i]
                    reply = quote_catalog_values(result.output.response, seen[i].catalog_text)
                    listener = [*task.history[::2], task.text]  # history alternates listener and assistant
                    grounded = [*listener, *seen[i].facets, self._asked(task)]
                    guarded = self.guard.check(reply, SAFE_REPLY, seen[i].catalog_text, grounded)
                    answers[i] = Answer(
                        slates[i],
                        guarded.text,
                        failure=f"guard:{guarded.reason}" if guarded.flagged else None,
                        flagged=guarded.flagged,
                        cost_usd=costs[i],
                    )
                else:
                    answers[i] = Answer(slates[i], UNFINISHED_REPLY, failure="no_output", cost_usd=costs[i])
        return [a for a in answers if a is not None]

    def _retrieved(self, task: AgentTask) -> list[str]:
        """The slate retrieval ranks for the listener's request: the offline planner's plan over the state,
        on its own toolbox so the model's tool calls stay the only ones recorded."""
        box = task.toolbox
        own = Toolbox(box.index, box.taxonomy, box.constraint, box.excluded_artist_ids, box.k)
        return Planner(self.taxonomy, box.index.config).answer(task.state, task.labels, own).track_ids

    def _asked(self, task: AgentTask) -> str:
        return describe_constraint(task.state.constraint, self.taxonomy)

    def _messages(self, task: AgentTask) -> list[dict]:
        data = {
            "conversation": list(task.history),
            "turn": task.text,
            "constraints_in_force": self._asked(task),
            "shown_track_ids": task.state.shown,
        }
        return self.prompt.render(data=data_json(data))
