"""What `setlist chat` reads and shows: typed turns and feedback commands, JSON lines, tracks as people read them.

Typed: a line is a turn, except `/like N [M ...]` and `/dislike N [M ...]`, which rate tracks of the last answer
by their position in it (1 = the first). The reaction is given to the assistant before the next turn.

JSON (`--json`, one object per line in, one per line out): a line is either plain text (a turn) or an object

    {"text": "something calm", "like": [1, 3], "dislike": [2], "liked_track_ids": ["t1"], "disliked_track_ids": []}

where every key is optional: `like`/`dislike` are positions in the last answer, `*_track_ids` name catalog
tracks directly (an unknown id is reported, not applied), and feedback applies before `text`. With text the answer is the turn's result (`TurnResult`, plus
`feedback_errors`); without it, `{"feedback": {"liked": [...], "disliked": [...]}, "feedback_errors": [...]}`.
A line that is not valid JSON or not such an object gets `{"error": "..."}`; the chat goes on.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from models.assistant.assistant import Assistant, Session
from models.assistant.planner import plural
from models.assistant.stories import spoken_facets
from models.taxonomy import Taxonomy

COMMANDS = {"/like": "like", "/dislike": "dislike"}
USAGE = "Commands: /like N and /dislike N rate track N of the last answer (several numbers are fine)."
FEEDBACK_KEYS = {"text", "like", "dislike", "liked_track_ids", "disliked_track_ids"}


def by_position(session: Session, positions: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Track ids at 1-based positions of the last answer, and an error for each position that names none."""
    slate, ids, errors = session.last_slate, [], []
    for position in positions:
        if isinstance(position, bool) or not isinstance(position, int):
            errors.append(f"{position!r} is not a track number")
        elif not slate:
            errors.append(f"there is no track {position}: nothing has been shown yet")
        elif not 1 <= position <= len(slate):
            errors.append(f"there is no track {position} in the last answer (1-{len(slate)})")
        else:
            ids.append(slate[position - 1])
    return ids, errors


def command(session: Session, text: str) -> str:
    """Run a typed `/like` or `/dislike`; the reply says what was noted or what was wrong."""
    name, *args = text.split()
    kind = COMMANDS.get(name.lower())
    if kind is None or not args:
        return USAGE
    numbers = [int(a) if a.isdigit() else a for a in " ".join(args).replace(",", " ").split()]
    ids, errors = by_position(session, numbers)
    (session.like if kind == "like" else session.dislike)(*ids)
    noted = f"Noted: you {kind} {plural(len(ids), 'track')}; I'll use that next." if ids else ""
    return " ".join([noted, *(f"{e[0].upper()}{e[1:]}." for e in errors)]).strip()


def json_turn(assistant: Assistant, session: Session, line: str) -> dict[str, Any]:
    """One `--json` input line: feedback, then the turn if there is text."""
    stripped = line.strip()
    if not stripped.startswith("{"):
        return assistant.respond(session, stripped).model_dump(mode="json")
    try:
        message = json.loads(stripped)
    except json.JSONDecodeError as err:
        return {"error": f"invalid JSON: {err.msg} at column {err.colno}"}
    if not isinstance(message, dict) or (unknown := set(message) - FEEDBACK_KEYS):
        keys = ", ".join(sorted(FEEDBACK_KEYS))
        detail = f"unknown keys {sorted(unknown)}" if isinstance(message, dict) else "not an object"
        return {"error": f"{detail}; a line is text or an object with keys {keys}"}
    errors: list[str] = []
    liked, like_errors = by_position(session, _list(message, "like", errors))
    disliked, dislike_errors = by_position(session, _list(message, "dislike", errors))
    errors += like_errors + dislike_errors
    for ids, key in ((liked, "liked_track_ids"), (disliked, "disliked_track_ids")):
        for track_id in _list(message, key, errors):
            if not isinstance(track_id, str) or track_id not in assistant.index:
                errors.append(f"{key}: no track {track_id!r} in the catalog")
            else:
                ids.append(track_id)
    session.like(*liked)
    session.dislike(*disliked)
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return {"feedback": {"liked": liked, "disliked": disliked}, "feedback_errors": errors}
    return assistant.respond(session, text).model_dump(mode="json") | {"feedback_errors": errors}


def _list(message: Mapping[str, Any], key: str, errors: list[str]) -> list[Any]:
    value = message.get(key, [])
    if not isinstance(value, list):
        errors.append(f"{key} must be a list")
        return []
    return value


def track_display(card: Mapping[str, Any], taxonomy: Taxonomy) -> dict[str, str]:
    """A track as a person reads it: title (or id), artist, album, length, tags (as spoken: "classical guitar").

    MTG-Jamendo has no titles or names, only ids (the artist and album ids are what it knows); CPCD has titles,
    artists and albums but no lengths or tags. Whatever a catalog lacks is left blank.
    """
    duration = card.get("duration_s")
    minutes, seconds = divmod(round(duration), 60) if duration is not None else (0, 0)
    return {
        "track": card["title"] or card["track_id"],
        "artist": ", ".join(card["artists"]) or (card["artist_id"] or ""),
        "album": card["album"] or (card["album_id"] or ""),
        "length": f"{minutes}:{seconds:02d}" if duration is not None else "",
        "tags": ", ".join(spoken_facets(card, taxonomy)),
    }
