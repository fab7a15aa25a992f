"""The offline orchestrator: a deterministic plan from the intent to a tool sequence.

- recommend, refine, less_like, create_playlist: search_catalog(query from the state), falling back to
  filter_tracks when ranking finds nothing inside the constraint;
- more_like with seeds: similar_tracks for each seed fused with search_catalog by RRF, artist cap after;
- ask_about_track: explain_track on the referenced track (or the one in focus).
"""

from dataclasses import dataclass

from models.assistant.fusion import Hit, diversify, fuse
from models.assistant.retrieval_config import RetrieverConfig
from models.assistant.state import DialogueState
from models.assistant.stories import describe_constraint
from models.assistant.tools import Toolbox
from models.labels import Intent, TurnLabels
from models.taxonomy import Taxonomy

MAX_SEEDS = 3  # the most recent seeds steer "more like"; older ones stay excluded from the slate


@dataclass(frozen=True)
class Answer:
    """What an orchestrator (planner or LLM agent) returns for one turn."""

    track_ids: list[str]
    response: str
    failure: str | None = None
    flagged: bool = False  # the output guard replaced the response
    cost_usd: float = 0.0


class Planner:
    version = "planner-v1"

    def __init__(self, taxonomy: Taxonomy, config: RetrieverConfig) -> None:
        self.taxonomy, self.config = taxonomy, config

    def answer(self, state: DialogueState, labels: TurnLabels, toolbox: Toolbox) -> Answer:
        if labels.intent is Intent.ASK_ABOUT_TRACK:
            return self._explain(state, labels, toolbox)
        query = state.query(self.taxonomy)
        found = toolbox.run("search_catalog", {"query": query})
        rankings = {"search": _hits(found)}
        if labels.intent is Intent.MORE_LIKE:
            for seed in state.constraint.seed_track_ids[-MAX_SEEDS:]:
                rankings[f"similar:{seed}"] = _hits(toolbox.run("similar_tracks", {"track_id": seed}))
        ranked = [hits for hits in rankings.values() if hits]
        if not ranked and found.get("matching"):
            ranked = [_hits(toolbox.run("filter_tracks", {"filters": {}}))]
        hits = fuse(dict(enumerate(ranked)), self.config.rrf_k) if len(ranked) > 1 else (ranked or [[]])[0]
        if self.config.max_per_artist is not None:
            hits = diversify(hits, self.config.max_per_artist)
        track_ids = [h.track_id for h in hits[: self.config.slate_size]]
        asked = describe_constraint(state.constraint, self.taxonomy) or "what you liked"
        kind = "a playlist of" if labels.intent is Intent.CREATE_PLAYLIST else ""
        response = (
            f"Here are {kind} {len(track_ids)} tracks for {asked}."
            if track_ids
            else (f"I found nothing in the catalog for {asked}.")
        )
        return Answer(track_ids, " ".join(response.split()))

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
            facets = ", ".join([*card["genres"], *card["moods"], *card["instruments"]]) or "no tags"
            sentence = f"{title}{by}: {facets}."
            if explained["matches"]:
                names = ", ".join(
                    self.taxonomy.nodes[n].name for n in explained["matches"] if n in self.taxonomy.nodes
                )
                sentence += f" It matches your request for {names}."
            sentences.append(sentence)
        return Answer([], " ".join(sentences) or "I don't know which track you mean.")


def _hits(result: dict) -> list[Hit]:
    return [Hit(card["track_id"], 0.0, card["artist_id"]) for card in result.get("tracks", [])]
