"""Dialogue state: what is in force after each turn of a conversation, as one inspectable value.

The catalog constraint accumulates through `labels.apply_turn` (the same fold evaluation uses);
the state adds what the label schema leaves to the dialogue: the tracks shown last (references
resolve against them), the track in focus ("that one"), excluded artists and the free text of the
current topic (the retrieval query).
"""

import re
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from models.labels import NON_RETRIEVAL_INTENTS, Constraint, Intent, TrackRef, TurnLabels, apply_turn
from models.taxonomy import Taxonomy

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
        self, text: str, labels: TurnLabels, artist_of: Callable[[str], str | None]
    ) -> "DialogueState":
        """The state after the listener's turn (before the assistant answers it)."""
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
        artists = [] if new_topic else list(self.excluded_artist_ids)
        focus = self.focus
        referenced = self.referenced(labels)
        if intent is Intent.LESS_LIKE and ARTIST_CUE.search(text):
            about = referenced or ([self.focus] if self.focus else [])
            artists += [a for a in map(artist_of, about) if a]
        if intent is Intent.ASK_ABOUT_TRACK and len(referenced) == 1:
            focus = referenced[0]
        if new_topic:
            topic = [text]
        elif intent in NON_RETRIEVAL_INTENTS or intent is Intent.LESS_LIKE:
            topic = list(self.topic)  # words to steer away from are not search terms
        else:
            topic = [*self.topic, text]
        return self.model_copy(
            update={
                "constraint": constraint,
                "excluded_artist_ids": list(dict.fromkeys(artists)),
                "focus": focus,
                "topic": topic,
                "turns": self.turns + 1,
            }
        )

    def answered(self, shown: Sequence[str]) -> "DialogueState":
        """The state after the assistant showed tracks; a new slate moves the focus to its top pick."""
        if not shown:
            return self
        return self.model_copy(update={"shown": list(shown), "focus": shown[0]})

    def query(self, taxonomy: Taxonomy) -> str:
        """Free text of the topic plus the names of required nodes (which may come from earlier turns)."""
        names = [
            taxonomy.nodes[n].name
            for nodes in self.constraint.required.values()
            for n in nodes
            if n in taxonomy.nodes
        ]
        return " ".join([*self.topic, *names])

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=False)
