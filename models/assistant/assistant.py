"""The Assistant facade: take the listener's feedback, parse the turn, update the dialogue state, act, ask.

One turn: likes and dislikes given since the last answer (`Session.like` / `Session.dislike`) enter the
state; the parser labels the text; artist and title mentions are matched against the catalog's names
and relative follow-ups ("faster", "shorter") against the last slate; `DialogueState.advance` folds it
all into the state; the planner (offline) or the LLM agent runs the tools, steered by what the listener
liked and named; the storyteller explains the top tracks. The ambiguity policy asks ONE question when
the parser is unsure, constraints conflict, nothing matches or nothing at all was asked, and asks it
WITH a slate whenever there is anything to go on, so a servable request never gets an empty answer.
`respond_batch` moves many conversations one turn at once, so LLM components see one gateway batch per
step. A candidate's components are assembled by `models.lifecycle.build`.
"""

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.assistant.co_likes import CoLikes
from models.assistant.followups import FollowUp, follow_up
from models.assistant.keyword_parser import KeywordParser
from models.assistant.llm_agent import AgentTask, LLMAgent
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
from models.assistant.tools import Steering, Toolbox, ToolCallRecord, track_card
from models.labels import NON_RETRIEVAL_INTENTS, Intent, Slots, TurnLabels
from models.taxonomy import Taxonomy

CHITCHAT_REPLY = (
    "Hi! Tell me a mood, an activity or a few artists and I'll find tracks and tell you why each fits."
)
ONGOING_CHITCHAT_REPLY = "Anytime! Ask for more like these, or tell me what you'd like to hear next."
OUT_OF_SCOPE_REPLY = "I can only help you discover music. What would you like to hear?"
VAGUE_QUESTION = "What are you in the mood for? A genre, a mood, an activity or a few artists would help."
# "a song or two" points at nothing; "the song", "this one", "the second", "the bossa one" do ("you are on
# the right track" does not).
POINTS_AT_A_TRACK = re.compile(
    r"\b(it|its|this|that|these|those|first|second|third|last"
    r"|the (?!right track)(?:[\w-]+ )?(?:songs?|tracks?|ones?))\b",
    re.I,
)
# "what about elvis?", "how about some jazz": proposes something to hear, unless what follows points
PROPOSES = re.compile(r"\b(?:what|how) about (?!(?:it|its|this|that|these|those|them|the)\b)", re.I)
# "a song or two with guitar would be nice too": adds to the current request instead of starting another
# ("too twangy" and "as well as" do not)
ADDS = re.compile(r"\btoo\s*(?:[.!?,;]|$)|\b(?:also|in addition)\b|\bas well\b(?!\s+as\b)", re.I)
# A refinement naming this many facets, one of them in place of what is asked ("now something upbeat for a
# workout" after a chill request), is a new request; one facet replaced ("make it sadder") refines.
NEW_TOPIC_FACETS = 2
MAX_TURN_CHARS = 1000  # a longer turn is cut here (and the answer says so): parsing and search stay fast


class AssistantConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    clarify_below: float = Field(0.5, ge=0, le=1)  # ask when the parser's confidence is lower
    stories: int = Field(3, ge=0)  # tracks per answer that get a story
    max_steps: int = Field(4, ge=1)  # LLM agent steps per turn
    rank_depth: int = Field(0, ge=0)  # tracks ranked behind the slate (evaluation asks for 100+)


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
    tracks: list[dict[str, Any]]  # track cards of the slate, best first
    ranked: list[str] = []  # the ranking the slate heads (rank_depth deep when configured)
    ignored_feedback: list[str] = []  # liked/disliked track ids not in the catalog
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
    """One listener's conversation. Likes and dislikes given between turns apply before the next turn.

    `sees_slates=False` is a logged conversation replayed: its listener saw the log's recommendations, never
    this assistant's, so a track shown in an earlier replayed turn is not held back as already heard.
    """

    state: DialogueState = field(default_factory=DialogueState)
    sees_slates: bool = True
    history: list[str] = field(default_factory=list)  # listener and assistant turns, alternating
    pending_likes: list[str] = field(default_factory=list)
    pending_dislikes: list[str] = field(default_factory=list)

    def like(self, *track_ids: str) -> None:
        self.pending_likes += track_ids

    def dislike(self, *track_ids: str) -> None:
        self.pending_dislikes += track_ids

    @property
    def last_slate(self) -> list[str]:
        return self.state.shown


@dataclass
class _Turn:
    session: Session
    text: str
    parse: ParseResult
    labels: TurnLabels  # what the turn is acted on as (the parse, adjusted by mentions and follow-ups)
    after: DialogueState
    toolbox: Toolbox
    question: tuple[str, str] | None  # (reason, question) when the policy asks
    acts: bool  # whether tools run (with a question too, when there is anything to go on)
    ignored_feedback: list[str]
    notes: list[str]
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
        co_likes: CoLikes | None = None,
    ) -> None:
        self.parser, self.index, self.taxonomy, self.agent, self.config = (
            parser,
            index,
            taxonomy,
            agent,
            config,
        )
        self.co_likes = co_likes
        self.storyteller = storyteller or TemplateStoryteller(taxonomy)
        self.planner = Planner(taxonomy, index.config)
        # The keyword parser's slots: what a turn names when the parser's reading kept none
        self.keywords = KeywordParser(taxonomy)

    @property
    def orchestrator(self) -> str:
        return self.agent.version if self.agent else self.planner.version

    def respond(self, session: Session, text: str) -> TurnResult:
        return self.respond_batch([session], [text])[0]

    def respond_batch(self, sessions: Sequence[Session], texts: Sequence[str]) -> list[TurnResult]:
        """One turn of each conversation; sessions are updated in place."""
        started = time.perf_counter()
        ignored = [self._take_feedback(s) for s in sessions]
        spaced = [" ".join(t.split()) for t in texts]
        texts = [t[:MAX_TURN_CHARS] for t in spaced]
        parses = self.parser.parse_batch(texts, [s.history for s in sessions])
        turns = [
            self._prepare(s, t, len(full) > MAX_TURN_CHARS, p, i)
            for s, t, full, p, i in zip(sessions, texts, spaced, parses, ignored, strict=True)
        ]
        acting = [t for t in turns if t.acts]
        if self.agent is not None:
            tasks = [AgentTask(t.text, t.session.history, t.after, t.toolbox, t.labels) for t in acting]
            for turn, answer in zip(acting, self.agent.answer_batch(tasks), strict=True):
                turn.answer = answer
        else:
            for turn in acting:
                turn.answer = self.planner.answer(turn.after, turn.labels, turn.toolbox)
        items = [
            StoryItem(track_card(self.index.get_track(tid)), t.text, t.after.constraint)
            for t in acting
            for tid in t.answer.track_ids[: self.config.stories]
        ]
        stories = iter(self.storyteller.tell_batch(items))
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return [self._finish(t, stories, latency_ms) for t in turns]

    def _take_feedback(self, session: Session) -> list[str]:
        """Apply the likes and dislikes given since the last turn; returns the ids the catalog lacks."""
        liked, disliked = session.pending_likes, session.pending_dislikes
        session.pending_likes, session.pending_dislikes = [], []
        unknown = [t for t in dict.fromkeys([*liked, *disliked]) if t not in self.index]
        if liked or disliked:
            known = [[t for t in ids if t not in unknown] for ids in (liked, disliked)]
            session.state = session.state.with_feedback(*known)
        return unknown

    def _prepare(
        self, session: Session, text: str, cut: bool, parse: ParseResult, ignored: list[str]
    ) -> _Turn:
        before = session.state
        # Artists the parser labelled (an LLM parser may) are matched against the catalog's names with the text.
        mentions = self.index.names.find(" ".join([text, *parse.labels.slots.artists]))
        shown = [self.index.get_track(t) for t in before.shown]
        followup = follow_up(text, [row["duration_s"] for row in shown if row], self.taxonomy)
        # "what about some piano?" names what to hear; "what about the second one?" points at a shown track
        points = bool(POINTS_AT_A_TRACK.search(text)) and not PROPOSES.search(text)
        labels = self._acted_labels(text, parse, before, bool(mentions), followup, points)
        # Chatter read as a refinement ("love these!", "hmm, not sure") adds no search words.
        chatter = (
            parse.labels.intent in (Intent.CHITCHAT, Intent.NEEDS_CLARIFICATION)
            and labels.intent is Intent.REFINE
        )
        after = before.advance(
            text,
            labels,
            self._artist_of,
            artists=mentions.artists,
            named_tracks=mentions.tracks,
            boost=followup.boost,
            unboost=followup.unboost,
            words=not chatter,
        )
        steering = Steering(
            history=tuple(after.history()),
            artists={a: after.recency(turn) for a, turn in after.artists.items()},
            named_tracks=tuple(after.named_tracks),
            liked={t: after.recency(turn) for t, turn in after.liked.items()},
            disliked=tuple(after.disliked),
            seen=frozenset(after.seen),
            co_likes=self.co_likes,
            depth=self.config.rank_depth,
        )
        toolbox = Toolbox(
            self.index, self.taxonomy, after.constraint, after.excluded_artist_ids, steering=steering
        )
        # Names and cues ("shorter") say what to do whatever the intent model's confidence: no need to ask.
        question = self._question(parse, labels, before, toolbox, bool(mentions) or bool(followup))
        acts = _acts(labels.intent)
        if question is not None:  # the question comes with a slate whenever there is anything to go on
            ongoing = bool(
                after.topic or after.constraint != before.constraint or after.liked or after.artists
            )
            acts = question[0] == "vague" or (
                ongoing and labels.intent not in (Intent.CHITCHAT, Intent.OUT_OF_SCOPE)
            )
        notes = [*followup.unmet]
        if cut:
            notes.append(f"your message was long, so I read its first {MAX_TURN_CHARS} characters")
        return _Turn(session, text, parse, labels, after, toolbox, question, acts, ignored, notes)

    def _acted_labels(
        self,
        text: str,
        parse: ParseResult,
        before: DialogueState,
        mentioned: bool,
        followup: FollowUp,
        points: bool,
    ) -> TurnLabels:
        """The parse, adjusted: a turn naming artists or titles, or saying "faster"/"shorter", is never vague;
        a follow-up that names nothing new, or adds to the request ("with guitar too"), refines the current
        request instead of starting over, and one that changes several facets of it ("now something upbeat
        for a workout") starts a new one. A reading that kept no slots (a question, "not sure") and is acted
        on gets the slots the text names ("what about some piano instead?")."""
        intent, slots, confidence = parse.labels.intent, parse.labels.slots, parse.confidence
        if followup.duration is not None and slots.duration is None:
            slots = slots.model_copy(update={"duration": followup.duration})
        ongoing = bool(before.topic or before.liked)
        names_nodes = bool(slots.nodes() or slots.excluded)
        just_liked = before.turns in before.liked.values()  # likes given since the last answer
        # "how about white lion?": a question naming catalog artists, not about a shown track by position
        names_instead = intent is Intent.ASK_ABOUT_TRACK and all(r.index is None for r in slots.track_refs)
        # "what about with guitar?", "how about a few more from Mozart?": a question pointing at no track
        # asks for what it names
        asks_for_more = names_instead and (not points or (names_nodes and not slots.track_refs))
        # an unsure "out of scope" that names catalog artists or titles, or comes mid-conversation
        # ("wow, great selection"), is a request
        unsure_refusal = intent is Intent.OUT_OF_SCOPE and confidence < self.config.clarify_below
        # "shorter please" read as "less like that one": a cue about the slate, pointing at no track
        misread_cue = intent is Intent.LESS_LIKE and bool(followup) and not points
        # "anymore by Sam Smith?", "I like Roxette": more of a named artist, not more like a shown track
        more_of_named = intent is Intent.MORE_LIKE and mentioned and not points
        in_force, named = before.constraint.required, slots.nodes()
        replaces = any(in_force.get(f) and nodes != in_force[f] for f, nodes in named.items())
        if intent is Intent.CHITCHAT and just_liked and not (mentioned or followup):
            intent = Intent.REFINE  # "love these!" after liking some: more like them
        elif (
            (intent in (Intent.NEEDS_CLARIFICATION, Intent.CHITCHAT, Intent.OUT_OF_SCOPE) or names_instead)
            and (mentioned or followup)
            or asks_for_more
            or (unsure_refusal and ongoing)
            or misread_cue
            or more_of_named
        ):
            intent = Intent.REFINE if ongoing else Intent.RECOMMEND
            slots = slots.model_copy(update={"track_refs": []})
        elif intent is Intent.NEEDS_CLARIFICATION and ongoing:
            intent = Intent.REFINE  # "hmm, not sure": keep going with what we have
        elif intent is Intent.RECOMMEND and ongoing and not slots.nodes():
            intent = (
                Intent.REFINE
            )  # "under 3 minutes", "some Drake", "no electronic": adjust, don't start over
        elif intent is Intent.RECOMMEND and ongoing and ADDS.search(text):
            intent = Intent.REFINE
        elif intent is Intent.REFINE and replaces and len(named) >= NEW_TOPIC_FACETS:
            intent = Intent.RECOMMEND
        if parse.labels.intent in NON_RETRIEVAL_INTENTS and intent not in NON_RETRIEVAL_INTENTS:
            named_now = self.keywords.parse(text).labels.slots
            update = {
                "artists": slots.artists,
                "duration": slots.duration or named_now.duration,
                "track_refs": [],
            }
            slots = named_now.model_copy(update=update)
        return TurnLabels(intent=intent, slots=Slots.model_validate(slots.model_dump()))

    def _question(
        self,
        parse: ParseResult,
        labels: TurnLabels,
        before: DialogueState,
        toolbox: Toolbox,
        recognised: bool,
    ) -> tuple[str, str] | None:
        """The ambiguity policy: at most one question, and only when acting would be a guess."""
        if labels.intent is Intent.NEEDS_CLARIFICATION:
            return "vague", VAGUE_QUESTION
        if labels.intent in (Intent.CHITCHAT, Intent.OUT_OF_SCOPE):
            return None
        if parse.confidence < self.config.clarify_below and not recognised:
            return (
                "low_confidence",
                "Just to be sure: should I start something new, or adjust the current picks?",
            )
        asked = {n for nodes in labels.slots.nodes().values() for n in nodes}
        if both := sorted(asked & set(labels.slots.excluded)):
            names = ", ".join(map(self.taxonomy.spoken, both))
            return "conflict", f"You asked both for and against {names} — which should it be?"
        if labels.slots.track_refs and not (before.referenced(labels) or before.focus):
            return "unresolved_reference", "Which track do you mean? I haven't shown any yet."
        if labels.intent not in NON_RETRIEVAL_INTENTS and toolbox.base.relaxed:
            # The answer shows the closest tracks and says so.
            asked_for = describe_constraint(toolbox.constraint, self.taxonomy)
            return "no_match", f"Which part of {asked_for} should I relax?"
        return None

    def _finish(self, turn: _Turn, stories, latency_ms: float) -> TurnResult:
        session, labels, answer = turn.session, turn.labels, turn.answer
        parts = []
        if turn.ignored_feedback:
            parts.append(f"I don't know {_ids(turn.ignored_feedback)}, so I ignored that feedback.")
        if answer is not None:
            parts.append(answer.response)
        elif turn.question is None:
            parts.append(_no_action_reply(labels.intent, ongoing=bool(session.history)))
        if turn.notes:
            parts.append(f"Note: {'; '.join(turn.notes)}.")
        if turn.question is not None:
            parts.append(turn.question[1])
        response = " ".join(parts)
        track_ids = answer.track_ids if answer else []
        ranked = answer.ranked if answer else []
        if answer is not None and not ranked:  # an agent's picks, then the rankings of its searches
            ranked = list(dict.fromkeys([*track_ids, *(t for r in turn.toolbox.rankings for t in r)]))
        told: list[StoryResult] = [next(stories) for _ in track_ids[: self.config.stories]]
        # A bare question leaves the state as it was: nothing was decided. Shown tracks are remembered.
        if turn.question is None or turn.acts:
            session.state = turn.after.answered(track_ids, seen=session.sees_slates)
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
            ranked=ranked,
            ignored_feedback=turn.ignored_feedback,
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


def _no_action_reply(intent: Intent, ongoing: bool) -> str:
    """Out of scope, or chatter: a greeting opens a conversation, a "thanks" later on is not greeted."""
    if intent is Intent.OUT_OF_SCOPE:
        return OUT_OF_SCOPE_REPLY
    return ONGOING_CHITCHAT_REPLY if ongoing else CHITCHAT_REPLY


def _acts(intent: Intent) -> bool:
    return intent is Intent.ASK_ABOUT_TRACK or intent not in NON_RETRIEVAL_INTENTS


def _ids(track_ids: Sequence[str]) -> str:
    shown = ", ".join(track_ids[:3]) + (f" and {len(track_ids) - 3} more" if len(track_ids) > 3 else "")
    return f"track{'s' if len(track_ids) > 1 else ''} {shown}"
