"""The Assistant facade: parse the turn, update the dialogue state, ask or act, tell stories.

One turn: the parser labels it; `DialogueState.advance` folds it into the state; the ambiguity
policy asks ONE question instead of guessing when the parser is unsure or the request cannot be met;
otherwise the planner (offline) or the LLM agent runs the tools and the storyteller explains the top
tracks. `respond_batch` moves many conversations one turn at once, so LLM components see one
gateway batch per step. `build_assistant` assembles a candidate's components.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from pydantic import BaseModel, ConfigDict, Field

from models.assistant.llm_agent import AgentTask, LLMAgent
from models.assistant.llm_parser import LLMParser
from models.assistant.offline_parser import OfflineParser
from models.assistant.parsing import ParseResult, TurnParser
from models.assistant.planner import Answer, Planner
from models.assistant.retrieval import CatalogIndex
from models.assistant.state import DialogueState
from models.assistant.stories import (
    LLMStoryteller,
    StoryItem,
    StoryResult,
    TemplateStoryteller,
    describe_constraint,
)
from models.assistant.tools import ConstraintMatcher, Toolbox, ToolCallRecord, track_card
from models.candidates import Candidate
from models.labels import NON_RETRIEVAL_INTENTS, Intent, TurnLabels
from models.llm import LLMGateway, LLMUnavailable
from models.prompts import PromptSpec
from models.taxonomy import Taxonomy

CHITCHAT_REPLY = (
    "Hi! Tell me a mood, an activity or a few artists and I'll find tracks and tell you why each fits."
)
OUT_OF_SCOPE_REPLY = "I can only help you discover music. What would you like to hear?"


class AssistantConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    clarify_below: float = Field(0.5, ge=0, le=1)  # ask when the parser's confidence is lower
    stories: int = Field(3, ge=0)  # tracks per answer that get a story
    max_steps: int = Field(4, ge=1)  # LLM agent steps per turn


class TurnResult(BaseModel):
    """Everything one turn did, for the chat, the assistant_runs table and evaluation."""

    text: str
    labels: TurnLabels
    confidence: float
    parser: str
    parse_failure: str | None = None
    state: dict[str, Any]  # DialogueState.dump() after the turn
    asked_clarification: bool
    clarification_reason: str | None = None
    tracks: list[dict[str, Any]]  # track cards, best first
    stories: list[str]
    story_facts: list[list[str]]
    response: str
    tool_calls: list[ToolCallRecord]
    latency_ms: float
    cost_usd: float
    orchestrator: str
    storyteller: str
    guard_flags: int = 0  # answers the output guard replaced
    answer_failure: str | None = None

    @property
    def track_ids(self) -> list[str]:
        return [t["track_id"] for t in self.tracks]


@dataclass
class Session:
    state: DialogueState = field(default_factory=DialogueState)
    history: list[str] = field(default_factory=list)  # listener and assistant turns, alternating


@dataclass
class _Turn:
    session: Session
    text: str
    parse: ParseResult
    after: DialogueState
    toolbox: Toolbox
    question: tuple[str, str] | None  # (reason, question) when the policy asks
    answer: Answer | None = None


class Assistant:
    def __init__(
        self,
        parser: TurnParser,
        index: CatalogIndex,
        taxonomy: Taxonomy,
        storyteller: TemplateStoryteller | LLMStoryteller | None = None,
        agent: LLMAgent | None = None,
        config: AssistantConfig = AssistantConfig(),
    ) -> None:
        self.parser, self.index, self.taxonomy, self.agent, self.config = (
            parser,
            index,
            taxonomy,
            agent,
            config,
        )
        self.storyteller = storyteller or TemplateStoryteller(taxonomy)
        self.planner = Planner(taxonomy, index.config)

    @property
    def orchestrator(self) -> str:
        return self.agent.version if self.agent else self.planner.version

    def respond(self, session: Session, text: str) -> TurnResult:
        return self.respond_batch([session], [text])[0]

    def respond_batch(self, sessions: Sequence[Session], texts: Sequence[str]) -> list[TurnResult]:
        """One turn of each conversation; sessions are updated in place."""
        started = time.perf_counter()
        parses = self.parser.parse_batch(texts, [s.history for s in sessions])
        turns = [self._prepare(s, t, p) for s, t, p in zip(sessions, texts, parses, strict=True)]
        acting = [t for t in turns if t.question is None and _acts(t.parse.labels.intent)]
        if self.agent is not None:
            tasks = [AgentTask(t.text, t.session.history, t.after, t.toolbox, t.parse.labels) for t in acting]
            for turn, answer in zip(acting, self.agent.answer_batch(tasks), strict=True):
                turn.answer = answer
        else:
            for turn in acting:
                turn.answer = self.planner.answer(turn.after, turn.parse.labels, turn.toolbox)
        items = [
            StoryItem(track_card(self.index.get_track(tid)), t.text, t.after.constraint)
            for t in acting
            for tid in t.answer.track_ids[: self.config.stories]
        ]
        stories = iter(self.storyteller.tell_batch(items))
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return [self._finish(t, stories, latency_ms) for t in turns]

    def _prepare(self, session: Session, text: str, parse: ParseResult) -> _Turn:
        after = session.state.advance(text, parse.labels, self._artist_of)
        toolbox = Toolbox(self.index, self.taxonomy, after.constraint, after.excluded_artist_ids)
        return _Turn(session, text, parse, after, toolbox, self._question(parse, session.state, after))

    def _question(
        self, parse: ParseResult, before: DialogueState, after: DialogueState
    ) -> tuple[str, str] | None:
        """The ambiguity policy: at most one question, and only when acting would be a guess."""
        labels = parse.labels
        if labels.intent is Intent.NEEDS_CLARIFICATION:
            return "vague", "What are you in the mood for? A genre, a mood or an activity would help."
        if labels.intent in (Intent.CHITCHAT, Intent.OUT_OF_SCOPE):
            return None
        if parse.confidence < self.config.clarify_below:
            return (
                "low_confidence",
                "Just to be sure: should I start something new, or adjust the current picks?",
            )
        asked = {n for nodes in labels.slots.nodes().values() for n in nodes}
        if both := sorted(asked & set(labels.slots.excluded)):
            names = ", ".join(self.taxonomy.nodes[n].name if n in self.taxonomy.nodes else n for n in both)
            return "conflict", f"You asked both for and against {names} — which should it be?"
        if labels.slots.track_refs and not (before.referenced(labels) or before.focus):
            return "unresolved_reference", "Which track do you mean? I haven't shown any yet."
        if labels.intent not in NON_RETRIEVAL_INTENTS:
            matcher = ConstraintMatcher(
                self.index, self.taxonomy, after.constraint, after.excluded_artist_ids
            )
            if matcher.count == 0:
                asked_for = describe_constraint(after.constraint, self.taxonomy)
                return "no_match", f"Nothing in the catalog is {asked_for}. Which part should I relax?"
        return None

    def _finish(self, turn: _Turn, stories, latency_ms: float) -> TurnResult:
        session, labels, answer = turn.session, turn.parse.labels, turn.answer
        if turn.question is not None:
            response = turn.question[1]
        elif answer is not None:
            response = answer.response
        else:
            response = OUT_OF_SCOPE_REPLY if labels.intent is Intent.OUT_OF_SCOPE else CHITCHAT_REPLY
        track_ids = answer.track_ids if answer else []
        told: list[StoryResult] = [next(stories) for _ in track_ids[: self.config.stories]]
        if turn.question is None:  # a question leaves the state as it was: nothing was decided
            session.state = turn.after.answered(track_ids)
        session.history += [turn.text, response]
        return TurnResult(
            text=turn.text,
            labels=labels,
            confidence=turn.parse.confidence,
            parser=turn.parse.parser,
            parse_failure=getattr(turn.parse, "failure", None),
            state=session.state.dump(),
            asked_clarification=turn.question is not None,
            clarification_reason=turn.question[0] if turn.question else None,
            tracks=[track_card(self.index.get_track(t)) for t in track_ids],
            stories=[s.text for s in told],
            story_facts=[s.cited_facts for s in told],
            response=response,
            tool_calls=turn.toolbox.calls,
            latency_ms=latency_ms,
            cost_usd=getattr(turn.parse, "cost_usd", 0.0)
            + (answer.cost_usd if answer else 0.0)
            + sum(s.cost_usd for s in told),
            orchestrator=self.orchestrator,
            storyteller=self.storyteller.version,
            guard_flags=int(bool(answer and answer.flagged)) + sum(s.flagged for s in told),
            answer_failure=answer.failure if answer else None,
        )

    def _artist_of(self, track_id: str) -> str | None:
        row = self.index.get_track(track_id)
        return row["artist_id"] if row else None


def _acts(intent: Intent) -> bool:
    return intent is Intent.ASK_ABOUT_TRACK or intent not in NON_RETRIEVAL_INTENTS


def build_assistant(
    candidate: Candidate,
    index: CatalogIndex,
    taxonomy: Taxonomy,
    gateway: LLMGateway | None = None,
    mlflow_client: MlflowClient | None = None,
    config: AssistantConfig = AssistantConfig(),
    parser_prompt: PromptSpec | None = None,
    story_prompt: PromptSpec | None = None,
) -> Assistant:
    """A candidate's assistant over a built index (whose config should be the candidate's preset).

    Offline candidates load `models:/setlist-intent/<version>` through `mlflow_client`; LLM components
    need an online gateway: without one this raises LLMUnavailable naming the candidate.
    """
    if candidate.uses_llm and (gateway is None or not gateway.available):
        raise LLMUnavailable(
            f"candidate {candidate.key} uses the LLM but the gateway is offline; set SETLIST_LLM__BASE_URL "
            "or evaluate an offline candidate (intent-v<N>.<retriever>.template)"
        )
    llm = candidate.parser_kind == "llm"
    if llm:
        parser: TurnParser = LLMParser(gateway, taxonomy, prompt=parser_prompt)
    elif mlflow_client is None:
        raise ValueError(f"candidate {candidate.key} loads its intent model from MLflow: pass mlflow_client")
    else:
        parser = OfflineParser.from_registry(mlflow_client, taxonomy, version=candidate.parser_version)
    storyteller = (
        TemplateStoryteller(taxonomy)
        if candidate.story_version is None
        else LLMStoryteller(gateway, taxonomy, prompt=story_prompt)
    )
    agent = LLMAgent(gateway, taxonomy, max_steps=config.max_steps) if llm else None
    return Assistant(parser, index, taxonomy, storyteller, agent, config)
