"""The offline orchestrator: a deterministic plan from the intent to a tool sequence.

- recommend, refine, less_like, create_playlist (and a vague turn with a topic to go on): search_catalog
  with the topic's latest words (older ones, named artists, likes and dislikes are the toolbox's
  `Steering`), falling back to filter_tracks when ranking finds nothing inside the constraint;
- more_like with seeds: similar_tracks for each seed fused with search_catalog by RRF;
- ask_about_track: explain_track on the referenced track (or the one in focus).

The answer holds the slate (what is shown) and the whole ranking behind it (what evaluation scores).
"""

from dataclasses import dataclass, field

from models.assistant.fusion import Hit, fuse
from models.assistant.retrieval_config import RetrieverConfig
from models.assistant.state import DialogueState
from models.assistant.stories import describe_constraint, spoken_facets
from models.assistant.tools import Toolbox
from models.labels import Intent, TurnLabels
from models.taxonomy import Taxonomy

MAX_SEEDS = 3  # the most recent seeds steer "more like"; older ones stay excluded from the slate


@dataclass(frozen=True)
class Answer:
    """What an orchestrator (planner or LLM agent) returns for one turn."""

    track_ids: list[str]  # the slate, best first
    response: str
    failure: str | None = None
    flagged: bool = False  # the output guard replaced the response
    cost_usd: float = 0.0
    ranked: list[str] = field(default_factory=list)  # the ranking the slate heads (the planner's, deeper)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Planner:
    version = "planner-v2"

    def __init__(self, taxonomy: Taxonomy, config: RetrieverConfig) -> None:
        self.taxonomy, self.config = taxonomy, config

    def answer(self, state: DialogueState, labels: TurnLabels, toolbox: Toolbox) -> Answer:
        if labels.intent is Intent.ASK_ABOUT_TRACK:
            return self._explain(state, labels, toolbox)
        found = toolbox.run("search_catalog", {"query": state.query(self.taxonomy)})
        rankings = {"search": toolbox.rankings[-1]}
        if labels.intent is Intent.MORE_LIKE:
            for seed in state.constraint.seed_track_ids[-MAX_SEEDS:]:
                toolbox.run("similar_tracks", {"track_id": seed})
                rankings[f"similar:{seed}"] = toolbox.rankings[-1]
        ranked_lists = {name: [Hit(t, 0.0) for t in ids] for name, ids in rankings.items() if ids}
        fallback = not ranked_lists and bool(found.get("matching"))
        if fallback:
            toolbox.run("filter_tracks", {"filters": {}})
            ranked = toolbox.rankings[-1]
        elif len(ranked_lists) > 1:
            ranked = toolbox.shape([h.track_id for h in fuse(ranked_lists, self.config.rrf_k)])
        else:
            ranked = next(iter(rankings.values()))
        # The slate repeats nothing shown before while anything else fits (the ranking keeps repeats last).
        fresh = [t for t in ranked[: toolbox.k] if t not in state.seen]
        slate = fresh or ranked[: toolbox.k]
        return Answer(slate, self._response(state, labels, toolbox, slate, fallback), ranked=ranked)

    def _response(
        self,
        state: DialogueState,
        labels: TurnLabels,
        toolbox: Toolbox,
        slate: list[str],
        fallback: bool,
    ) -> str:
        asked = self._request(state, labels, toolbox)
        if not slate:
            return (
                f"I found nothing in the catalog for {asked}." if asked else "I found nothing in the catalog."
            )
        kind = "a playlist of " if labels.intent is Intent.CREATE_PLAYLIST else ""
        if fallback:
            within = f" within {describe_constraint(state.constraint, self.taxonomy)}" if asked else ""
            sentences = [
                f"Nothing matched your words, so here are {kind}{plural(len(slate), 'track')}{within}."
            ]
        else:
            verb = "is" if kind or len(slate) == 1 else "are"  # "here is a playlist of 7 tracks"
            sentences = [f"Here {verb} {kind}{plural(len(slate), 'track')}"]
            sentences[0] += f" for {asked}." if asked else "."
        notes = toolbox.base.notes()
        if set(slate) <= set(state.seen):
            notes.append("nothing else in the catalog fits, so these were all shown before")
        if notes:
            sentences.append(f"Note: {'; '.join(notes)}.")
        return " ".join(sentences)

    def _request(self, state: DialogueState, labels: TurnLabels, toolbox: Toolbox) -> str:
        """The request in words: the constraint, soft boosts, the tracks "more like" starts from, artists
        named this turn, likes."""
        parts = [describe_constraint(state.constraint, self.taxonomy)]
        if labels.intent is Intent.MORE_LIKE and state.constraint.seed_track_ids:
            seeds = [toolbox.index.get_track(t) for t in state.constraint.seed_track_ids[-MAX_SEEDS:]]
            parts.append(
                "like " + ", ".join(f"“{r['title']}”" if r["title"] else r["track_id"] for r in seeds if r)
            )
        boosts = [n for n in state.boost if n in self.taxonomy.nodes]
        if boosts:
            parts.append(" and ".join(map(self.taxonomy.spoken, boosts)) + " (preferred)")
        latest = [a for a, turn in state.artists.items() if turn == state.turns - 1]
        if latest:
            parts.append("music by " + ", ".join(toolbox.index.names.names(latest)))
        if state.liked:
            parts.append("more like the tracks you liked")
        return ", ".join(p for p in parts if p)

    def _explain(self, state: DialogueState, labels: TurnLabels, toolbox: Toolbox) -> Answer:
        referenced = state.referenced(labels) or ([state.focus] if state.focus else [])
        sentences = []
        for track_id in referenced:
            explained = toolbox.run("explain_track", {"track_id": track_id})
            if "track" not in explained:
                continue
            card = explained["track"]
            title = f"“{card['title']}”" if card["title"] else f"Track {card['track_id']}"
            artists = ", ".join(f"“{a}”" for a in card["artists"])  # catalog text, quoted as data
            by = f" by {artists}" if artists else ""
            facets = ", ".join(spoken_facets(card, self.taxonomy)) or "no tags"
            sentence = f"{title}{by}: {facets}."
            if explained["matches"]:
                names = ", ".join(
                    self.taxonomy.spoken(n) for n in explained["matches"] if n in self.taxonomy.nodes
                )
                sentence += f" It matches your request for {names}."
            sentences.append(sentence)
        return Answer([], " ".join(sentences) or "I don't know which track you mean.")
