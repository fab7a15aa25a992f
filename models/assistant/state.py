"""Dialogue state: what is in force after each turn of a conversation, as one inspectable value.

The catalog constraint accumulates through `labels.apply_turn` (the same fold evaluation uses);
the state adds what the label schema leaves to the dialogue: the tracks shown last (references
resolve against them), the track in focus ("that one"), excluded artists, the free text of the
current topic (the retrieval query, latest turn first), the artists and titles the listener named,
the listener's likes and dislikes, and every track shown so far (not repeated).
"""

import re
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from models.labels import NON_RETRIEVAL_INTENTS, Constraint, Intent, TrackRef, TurnLabels, apply_turn
from models.taxonomy import Taxonomy

# Each older turn of a topic counts half as much as the one after it: the latest words lead the query.
TOPIC_DECAY = 0.5

# "not that artist", "no more from this band": the label schema has no artist slot yet, so an
# artist-level exclusion is a less_like turn about a track whose text names the artist.
ARTIST_CUE = re.compile(r"\b(artists?|bands?|singers?|musicians?|composers?)\b", re.IGNORECASE)


class DialogueState(BaseModel):
    model_config = ConfigDict(frozen=True)

    constraint: Constraint = Constraint()
    excluded_artist_ids: list[str] = []
    shown: list[str] = []  # track ids of the last answer, in slate order
    focus: str | None = None  # the track "that one" means: the last one talked about, else the top pick
    topic: list[str] = []  # the listener's words since the last new topic, for the retrieval query
    turns: int = 0
    boost: list[str] = []  # taxonomy nodes asked for softly ("faster" -> mood/fast): query words, not filters
    artists: dict[str, int] = {}  # artist keys (models.assistant.names) the listener named -> turn last named
    named_tracks: list[str] = []  # tracks whose titles this turn named
    liked: dict[str, int] = {}  # track id -> turn the like was given before; insertion order = order liked
    disliked: list[str] = []
    seen: list[str] = []  # every track shown in this conversation, in order

    def with_feedback(self, liked: Sequence[str] = (), disliked: Sequence[str] = ()) -> "DialogueState":
        """The listener's reaction to what was shown (known track ids only), before the next turn."""
        disliked = [t for t in disliked if t not in liked]
        kept = {t: at for t, at in self.liked.items() if t not in disliked}
        return self.model_copy(
            update={
                "liked": kept | {t: self.turns for t in liked if t not in kept},
                "disliked": list(dict.fromkeys([*(d for d in self.disliked if d not in liked), *disliked])),
            }
        )

    def resolve(self, refs: Sequence[TrackRef]) -> list[TrackRef]:
        """Point "that one" (index None) at the track in focus when several tracks were shown."""
        if self.focus in self.shown and len(self.shown) > 1:
            focus = TrackRef(index=self.shown.index(self.focus))
            return [focus if ref.index is None else ref for ref in refs]
        return list(refs)

    def referenced(self, labels: TurnLabels) -> list[str]:
        ids = []
        for ref in self.resolve(labels.slots.track_refs):
            index = 0 if ref.index is None else ref.index
            if self.shown and -len(self.shown) <= index < len(self.shown):
                ids.append(self.shown[index])
        return ids

    def advance(
        self,
        text: str,
        labels: TurnLabels,
        artist_of: Callable[[str], str | None],
        artists: Sequence[str] = (),
        named_tracks: Sequence[str] = (),
        boost: Sequence[str] = (),
        unboost: Sequence[str] = (),
        words: bool = True,
    ) -> "DialogueState":
        """The state after the listener's turn (before the assistant answers it).

        `artists` and `named_tracks` are the catalog names the turn mentions; `boost` the nodes it asks for
        softly and `unboost` the earlier soft asks it reverses; `words=False` keeps the turn's words out of the query ("love these!"). A new topic starts
        afresh (constraint, words, boosts); named artists and likes stay, weighed by how recent they are.
        """
        resolved = labels.model_copy(
            update={
                "slots": labels.slots.model_copy(update={"track_refs": self.resolve(labels.slots.track_refs)})
            }
        )
        constraint = apply_turn(self.constraint, resolved, self.shown)
        intent, slots = labels.intent, labels.slots
        new_topic = intent is Intent.RECOMMEND or (
            intent is Intent.CREATE_PLAYLIST and bool(slots.nodes() or slots.excluded)
        )
        excluded = [] if new_topic else list(self.excluded_artist_ids)
        focus = self.focus
        referenced = self.referenced(labels)
        if intent is Intent.LESS_LIKE and ARTIST_CUE.search(text):
            about = referenced or ([self.focus] if self.focus else [])
            excluded += [a for a in map(artist_of, about) if a]
        if intent is Intent.ASK_ABOUT_TRACK and len(referenced) == 1:
            focus = referenced[0]
        if new_topic:
            topic = [text]
        elif intent in NON_RETRIEVAL_INTENTS or intent is Intent.LESS_LIKE or not words:
            topic = list(self.topic)  # words to steer away from are not search terms
        else:
            topic = [*self.topic, text]
        named = dict(self.artists) | {a: self.turns for a in artists}
        reversed_ = {*labels.slots.excluded, *unboost}
        kept_boost = [] if new_topic else [b for b in self.boost if b not in reversed_]
        return self.model_copy(
            update={
                "constraint": constraint,
                "excluded_artist_ids": list(dict.fromkeys(excluded)),
                "focus": focus,
                "topic": topic,
                "turns": self.turns + 1,
                "boost": list(dict.fromkeys([*kept_boost, *boost])),
                "artists": named,
                "named_tracks": list(named_tracks),
            }
        )

    def answered(self, shown: Sequence[str], seen: bool = True) -> "DialogueState":
        """The state after the assistant showed tracks; a new slate moves the focus to its top pick.
        `seen=False`: the listener did not see them (a logged conversation replayed), so they may come again."""
        if not shown:
            return self
        seen_now = list(dict.fromkeys([*self.seen, *shown])) if seen else self.seen
        return self.model_copy(update={"shown": list(shown), "focus": shown[0], "seen": seen_now})

    def query(self, taxonomy: Taxonomy) -> str:
        """The latest words of the topic plus the names of required and boosted nodes (from any turn)."""
        nodes = [*(n for nodes in self.constraint.required.values() for n in nodes), *self.boost]
        names = [taxonomy.nodes[n].name for n in dict.fromkeys(nodes) if n in taxonomy.nodes]
        return " ".join([*self.topic[-1:], *names])

    def history(self) -> list[tuple[str, float]]:
        """The topic's older words, each turn weighted TOPIC_DECAY times the one after it."""
        older = self.topic[:-1]
        return [(text, TOPIC_DECAY ** (len(older) - i)) for i, text in enumerate(older)]

    def recency(self, turn: int) -> float:
        """The weight of something said or liked at `turn`: 1 for the latest turn, halving per turn since."""
        return TOPIC_DECAY ** max(self.turns - 1 - turn, 0)

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=False)
