"""CPCD (Conversational Playlist Curation Dataset) adapter: catalog rows from the `tracks` map of each conversation.

Any split of the public format works (`cpcd_v1.dialogs.*.jsonl`): one JSON conversation a line, optional keys
may be missing, titles may be strings or lists. Records are conversations (hundreds to thousands a file), so
they are parsed with `json` line by line; polars would infer the id-keyed `tracks` map as a struct with one
field per track.

Derived ids (CPCD has none): `artist_id` = "cpcd-ar-" + first 12 hex of sha1 over the normalised artist names
(NFKC, casefolded, whitespace collapsed, joined by U+001F); `album_id` = "cpcd-al-" + the same over the
normalised album title and artists, since titles such as "Greatest Hits" recur across artists.
"""

import hashlib
import json
import unicodedata
from typing import Any

import polars as pl

from checks.quarantine_rules import CatalogSourceError
from models.catalog.schema import RAW_PREVIEW_CHARS, STAGED_SCHEMA, StagedRows

_UNIT = "\x1f"


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _derived_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1(_UNIT.join(_normalise(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}{digest[:12]}"


def _first(value: Any) -> str | None:
    """CPCD stores one title as a string; tolerate a list (take the first) and absence."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def _artists(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    return [a for a in value or [] if isinstance(a, str) and a]


def _track_row(track_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    title, album = _first(meta.get("track_titles")), _first(meta.get("track_release_titles"))
    artists = _artists(meta.get("track_artists"))
    return {
        "track_id": track_id,
        "artist_id": _derived_id("cpcd-ar-", *artists) if artists else None,
        "album_id": _derived_id("cpcd-al-", album, *artists) if album else None,
        "title": title,
        "artists": artists,
        "album": album,
        "genres": [],
        "instruments": [],
        "moods": [],
    }


def _rejected(line_no: int, rule: str, detail: str, raw: str) -> dict[str, Any]:
    return {"line_no": line_no, "rule": rule, "detail": detail, "raw": raw[:RAW_PREVIEW_CHARS]}


def stage(data: bytes, source_file: str, source: str = "cpcd") -> StagedRows:
    if not data.strip():
        raise CatalogSourceError(source_file, "empty_file", "the file has no content")
    rows: list[dict[str, Any]] = []
    first_seen: dict[str, tuple[int, dict[str, Any]]] = {}  # track id -> (line, first kept row)
    conversations = repeats = 0
    for line_no, raw_line in enumerate(data.split(b"\n"), start=1):
        raw_line = raw_line.removesuffix(b"\r")
        if not raw_line.strip():
            continue  # JSON Lines readers skip blank lines; they hold no record
        try:
            conversation = json.loads(raw_line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raw = raw_line.decode("utf-8", "backslashreplace")
            rows.append(_rejected(line_no, "bad_encoding", f"invalid UTF-8 at byte {exc.start}", raw))
            continue
        except json.JSONDecodeError as exc:
            raw = raw_line.decode("utf-8")
            rows.append(
                _rejected(line_no, "malformed_line", f"invalid JSON: {exc.msg} at column {exc.colno}", raw)
            )
            continue
        tracks = conversation.get("tracks", {}) if isinstance(conversation, dict) else None
        if not isinstance(tracks, dict):
            raw = raw_line.decode("utf-8")
            rows.append(
                _rejected(line_no, "malformed_line", "not a conversation object with a tracks map", raw)
            )
            continue
        conversations += 1
        for track_id, meta in tracks.items():
            raw = json.dumps({track_id: meta}, ensure_ascii=False)
            if not isinstance(meta, dict):
                rows.append(
                    _rejected(line_no, "malformed_line", f"track {track_id!r} metadata is not an object", raw)
                )
                continue
            row = _track_row(track_id, meta)
            if track_id not in first_seen:
                first_seen[track_id] = (line_no, row)
            elif first_seen[track_id][1] == row:
                repeats += 1  # the same track rated in another conversation
                continue
            else:
                first_line, first_row = first_seen[track_id]
                differs = ", ".join(k for k in ("title", "artists", "album") if row[k] != first_row[k])
                rows.append(
                    _rejected(
                        line_no, "conflicting_duplicate", f"{differs} differ from line {first_line}", raw
                    )
                )
                continue
            rows.append({"line_no": line_no, "raw": raw, **row})
    if not conversations:
        raise CatalogSourceError(source_file, "wrong_format", "no line is a CPCD conversation object")
    frame = pl.DataFrame(rows, schema=STAGED_SCHEMA).with_columns(source=pl.lit(source, pl.String))
    return StagedRows(frame, repeats_merged=repeats)
