"""Why this track: a short story grounded only in the track's metadata and the listener's request.

`TemplateStoryteller` is the offline baseline: it names the track's facets, those the listener asked
for first, and the request they answer. `LLMStoryteller` writes with the versioned prompt
track_story.yaml through the gateway; catalog and user text go into a delimited JSON data block,
and the output guard (models/assistant/output_guard.py) replaces a story that discloses the prompt,
holds a secret or follows an instruction found in the catalog. Both put catalog text (titles, artists,
albums) in quotes: it is data shown to the listener, never the storyteller's own words.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.assistant.output_guard import OutputGuard, quote_catalog_values
from models.labels import Constraint
from models.llm import LLMGateway, LLMRequest
from models.llm.config import api_key_from_env
from models.prompts import PLACEHOLDER, PromptSpec, data_json, load_prompt
from models.taxonomy import CATALOG_COLUMN, Taxonomy

STORY_PROMPT = "track_story"


class Story(BaseModel):
    """The LLM storyteller's structured answer."""

    model_config = ConfigDict(extra="forbid")

    story: str = Field(description="one or two sentences, at most 45 words")
    cited_facts: list[str] = Field(description="the metadata facts the story uses, e.g. 'mood: calm'")


@dataclass(frozen=True)
class StoryItem:
    card: Mapping[str, Any]  # tools.track_card
    request: str  # the listener's turn
    constraint: Constraint


@dataclass(frozen=True)
class StoryResult:
    text: str
    cited_facts: list[str] = field(default_factory=list)
    flagged: bool = False  # the guard replaced the LLM's story
    failure: str | None = None  # why the LLM's story is not used ("guard:<reason>" or the call's failure)
    cost_usd: float = 0.0


def describe_constraint(constraint: Constraint, taxonomy: Taxonomy) -> str:
    """ "calm, piano, no voice, under 4 min": the request in taxonomy words (never the raw user text)."""
    parts = [taxonomy.spoken(n) for nodes in constraint.required.values() for n in nodes]
    parts += [f"no {taxonomy.spoken(n)}" for n in constraint.excluded]
    if constraint.max_duration_s is not None:
        parts.append(f"under {round(constraint.max_duration_s / 60)} min")
    if constraint.min_duration_s is not None:
        parts.append(f"at least {round(constraint.min_duration_s / 60)} min")
    return ", ".join(parts)


def card_text(card: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """A track card's free text from the catalog (title, artists, album: data, possibly hostile) and its
    facets (taxonomy tag values: vocabulary the assistant may use in its own words)."""
    text = [v for v in (card.get("title"), card.get("album"), *(card.get("artists") or [])) if v]
    facets = [v for facet in ("genres", "moods", "instruments") for v in card.get(facet) or []]
    return text, facets


def card_tags(card: Mapping[str, Any]) -> set[str]:
    """A track card's catalog tags as "<prefix>---<value>" strings."""
    return {f"{prefix}---{value}" for prefix, column in CATALOG_COLUMN.items() for value in card[column]}


def spoken_facets(card: Mapping[str, Any], taxonomy: Taxonomy) -> list[str]:
    """A track card's genres, moods and instruments as a listener says them ("classical guitar")."""
    return [taxonomy.spoken_value(c, value) for c in ("genres", "moods", "instruments") for value in card[c]]


def guard_secrets() -> list[str]:
    """What no answer may contain: the configured API key."""
    key = api_key_from_env()
    return [key.get_secret_value()] if key else []


def card_facts(card: Mapping[str, Any]) -> list[str]:
    facts = [f"{facet}: {value}" for facet in ("genres", "moods", "instruments") for value in card[facet]]
    facts += [f"artist: {a}" for a in card["artists"]]
    facts += [f"{key}: {card[key]}" for key in ("title", "album") if card[key]]
    return facts


class TemplateStoryteller:
    version = "template-v1"

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy

    def tell_batch(self, items: Sequence[StoryItem]) -> list[StoryResult]:
        return [self.tell(item) for item in items]

    def tell(self, item: StoryItem) -> StoryResult:
        card, wanted = item.card, self._wanted_values(item.constraint)
        moods = _wanted_first(card["moods"], wanted)[:2]
        genres = _wanted_first(card["genres"], wanted)[:1]
        instruments = _wanted_first(card["instruments"], wanted)[:2]
        say = self.taxonomy.spoken_value
        spoken_moods = [say("moods", m) for m in moods]
        core = (
            " ".join([" and ".join(spoken_moods), *(say("genres", g) for g in genres)]).strip() or "a track"
        )
        text = core[0].upper() + core[1:]
        if instruments:
            text += f" with {' and '.join(say('instruments', i) for i in instruments)}"
        if card["artists"]:
            text += f" by “{card['artists'][0]}”"  # catalog text, quoted as data
        asked = describe_constraint(item.constraint, self.taxonomy)
        if not asked:
            text += " — picked for this conversation."
        elif self._meets_every_facet(card, item.constraint):
            text += f" — fits your request for {asked}."
        else:  # a relaxed slate: "fits" would claim what the track lacks
            text += f" — the closest I found to your request for {asked}."
        cited = [f"moods: {m}" for m in moods] + [f"genres: {g}" for g in genres]
        cited += [f"instruments: {i}" for i in instruments] + [f"artist: {a}" for a in card["artists"][:1]]
        return StoryResult(text=text, cited_facts=cited)

    def _meets_every_facet(self, card: Mapping[str, Any], constraint: Constraint) -> bool:
        tags = card_tags(card)
        return all(
            any(self.taxonomy.catalog_tags(n) & tags for n in nodes) for nodes in constraint.required.values()
        )

    def _wanted_values(self, constraint: Constraint) -> set[str]:
        tags = set().union(
            set(), *(self.taxonomy.catalog_tags(n) for ns in constraint.required.values() for n in ns)
        )
        return {tag.split("---", 1)[1] for tag in tags}


def _wanted_first(values: Sequence[str], wanted: set[str]) -> list[str]:
    return sorted(values, key=lambda v: v not in wanted)  # stable: catalog order within each group


class LLMStoryteller:
    def __init__(
        self,
        gateway: LLMGateway,
        taxonomy: Taxonomy,
        prompt_name: str = STORY_PROMPT,
        prompt: PromptSpec
        | None = None,  # a given version (e.g. a variant file); default: prompt_name's file
    ) -> None:
        self.gateway, self.prompt = gateway, prompt or load_prompt(prompt_name)
        self.fallback = TemplateStoryteller(taxonomy)
        self.taxonomy = taxonomy
        self.guard = OutputGuard(
            [PLACEHOLDER.sub(" ", m["content"]) for m in self.prompt.messages if m["role"] == "system"],
            internal_names=[*Story.model_fields, "<data>"],
            secrets=guard_secrets(),
            config_names=list(self.prompt.model_parameters),
        )

    @property
    def version(self) -> str:
        return self.prompt.version

    def tell_batch(self, items: Sequence[StoryItem]) -> list[StoryResult]:
        if not items:
            return []
        batch = self.gateway.map(
            LLMRequest(
                messages=self.prompt.render(data=self._data(item)),
                output_schema=Story,
                params=self.prompt.model_parameters,
                prompt_version=self.prompt.version,
                id=str(item.card["track_id"]),
            )
            for item in items
        )
        results = []
        for item, result in zip(items, batch, strict=True):
            cost = (
                0.0
                if result.cached
                else self.gateway.config.cost_usd(
                    self.gateway.config.model, result.prompt_tokens, result.completion_tokens
                )
            )
            template = self.fallback.tell(item)
            if not result.ok or not isinstance(result.output, Story):
                results.append(
                    StoryResult(template.text, template.cited_facts, failure=result.failure, cost_usd=cost)
                )
                continue
            catalog_text, facets = card_text(item.card)
            story = quote_catalog_values(result.output.story, catalog_text)
            grounded = [item.request, describe_constraint(item.constraint, self.taxonomy), *facets]
            guarded = self.guard.check(story, template.text, catalog_text, grounded)
            facts = template.cited_facts if guarded.flagged else result.output.cited_facts
            failure = f"guard:{guarded.reason}" if guarded.flagged else None
            results.append(StoryResult(guarded.text, facts, guarded.flagged, failure, cost_usd=cost))
        return results

    def _data(self, item: StoryItem) -> str:
        """Everything from the catalog and the listener, as one JSON document the prompt marks as data."""
        track = {
            k: item.card[k]
            for k in ("title", "artists", "album", "duration_s", "genres", "moods", "instruments")
        }
        return data_json(
            {
                "request": item.request,
                "requested": describe_constraint(item.constraint, self.taxonomy),
                "track": track,
                "facts": card_facts(item.card),
            }
        )
