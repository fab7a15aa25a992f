"""The LLM orchestrator: OpenAI tool calling through the gateway, with a step limit.

Conversations advance in lockstep: each step is one gateway batch holding the next request of every
conversation still working. A tool call's result goes back as a `tool` message; the loop ends for a
conversation when the model answers (an `AgentAnswer`) or at the step limit (the last step forbids
tools). Track ids the model answers with count only if a tool returned them.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from models.assistant.output_guard import OutputGuard
from models.assistant.planner import Answer
from models.assistant.state import DialogueState
from models.assistant.stories import describe_constraint
from models.assistant.tools import Toolbox, tool_definitions
from models.llm import LLMGateway, LLMRequest
from models.prompts import PLACEHOLDER, data_json, load_prompt
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


class LLMAgent:
    def __init__(
        self, gateway: LLMGateway, taxonomy: Taxonomy, max_steps: int = 4, prompt_name: str = AGENT_PROMPT
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.gateway, self.taxonomy, self.max_steps = gateway, taxonomy, max_steps
        self.prompt = load_prompt(prompt_name)
        self.tools = tool_definitions()
        self.guard = OutputGuard(
            [PLACEHOLDER.sub(" ", m["content"]) for m in self.prompt.messages if m["role"] == "system"]
        )

    @property
    def version(self) -> str:
        return self.prompt.version

    def answer_batch(self, tasks: Sequence[AgentTask]) -> list[Answer]:
        messages = [self._messages(task) for task in tasks]
        seen: list[list[str]] = [[] for _ in tasks]  # track ids tool results returned, in order
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
                        seen[i][: tasks[i].toolbox.k],
                        UNFINISHED_REPLY,
                        failure=result.failure,
                        cost_usd=costs[i],
                    )
                elif result.tool_calls:
                    if last:
                        answers[i] = Answer(
                            seen[i][: tasks[i].toolbox.k],
                            UNFINISHED_REPLY,
                            failure="step_limit",
                            cost_usd=costs[i],
                        )
                        continue
                    messages[i].append(
                        {"role": "assistant", "content": result.content, "tool_calls": result.tool_calls}
                    )
                    for call in result.tool_calls:
                        output = tasks[i].toolbox.run(call["function"]["name"], call["function"]["arguments"])
                        seen[i] += [
                            c["track_id"] for c in output.get("tracks", []) if c["track_id"] not in seen[i]
                        ]
                        messages[i].append(
                            {
                                "role": "tool",
                                "tool_call_id": call["id"],
                                "content": json.dumps(output, ensure_ascii=False),
                            }
                        )
                elif isinstance(result.output, AgentAnswer):
                    chosen = [t for t in dict.fromkeys(result.output.track_ids) if t in seen[i]]
                    guarded = self.guard.check(result.output.response, SAFE_REPLY)
                    answers[i] = Answer(chosen, guarded.text, flagged=guarded.flagged, cost_usd=costs[i])
                else:
                    answers[i] = Answer(
                        seen[i][: tasks[i].toolbox.k],
                        UNFINISHED_REPLY,
                        failure="no_output",
                        cost_usd=costs[i],
                    )
        return [a for a in answers if a is not None]

    def _messages(self, task: AgentTask) -> list[dict]:
        data = {
            "conversation": list(task.history),
            "turn": task.text,
            "constraints_in_force": describe_constraint(task.state.constraint, self.taxonomy),
            "shown_track_ids": task.state.shown,
        }
        return self.prompt.render(data=data_json(data))
