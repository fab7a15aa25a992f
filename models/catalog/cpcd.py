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
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from checks.quarantine_rules import CatalogSourceError
from models.catalog.schema import RAW_PREVIEW_CHARS, STAGED_SCHEMA, StagedRows
from models.catalog.streams import line_batches

_UNIT = "\x1f"
_JSON_TYPES = {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _derived_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1(_UNIT.join(_normalise(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}{digest[:12]}"


class _WrongType(ValueError):
    def __init__(self, key: str, value: Any) -> None:
        kind = _JSON_TYPES.get(type(value), type(value).__name__)
        super().__init__(
            f"{key} holds a JSON {kind} ({json.dumps(value)[:60]}), expected text or a list of text"
        )


def _strings(meta: dict[str, Any], key: str) -> list[str]:
    """A string or a list of strings; absent is empty, anything else (a number, an object) is an error."""
    value = meta.get(key)
    values = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise _WrongType(key, value)
    if wrong := next((v for v in values if v is not None and not isinstance(v, str)), None):
        raise _WrongType(key, wrong)
    return [v for v in values if v]


def _first(meta: dict[str, Any], key: str) -> str | None:
    """CPCD stores one title as a string; tolerate a list (take the first) and absence."""
    return next(iter(_strings(meta, key)), None)


def _track_row(track_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    title, album = _first(meta, "track_titles"), _first(meta, "track_release_titles")
    artists = _strings(meta, "track_artists")
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


def stage_batches(stream: BinaryIO, source_file: str, source: str, batch_rows: int) -> Iterator[StagedRows]:
    """Track rows of every conversation, about `batch_rows` at a time. A track seen before folds into its first
    row when identical and is quarantined when not, across batches (first rows stay in memory: CPCD scale)."""
    rows: list[dict[str, Any]] = []
    first_seen: dict[str, tuple[int, dict[str, Any]]] = {}  # track id -> (line, first kept row)
    conversations = repeats = 0
    for batch in line_batches(stream, source_file, batch_rows):
        for line_no, raw_line in enumerate(batch.data.split(b"\n"), start=batch.first_line):
            if not raw_line.strip():
                continue  # JSON Lines readers skip blank lines; they hold no record
            is_conversation, line_repeats = _stage_line(
                line_no, raw_line.removesuffix(b"\r"), rows, first_seen
            )
            conversations, repeats = conversations + is_conversation, repeats + line_repeats
            if len(rows) >= batch_rows:
                yield _frame(rows, source, repeats)
                rows, repeats = [], 0
    if not conversations:
        raise CatalogSourceError(source_file, "wrong_format", "no line is a CPCD conversation object")
    yield _frame(rows, source, repeats)


def _frame(rows: list[dict[str, Any]], source: str, repeats: int) -> StagedRows:
    frame = pl.DataFrame(rows, schema=STAGED_SCHEMA).with_columns(source=pl.lit(source, pl.String))
    return StagedRows(frame, repeats_merged=repeats)


def _stage_line(
    line_no: int,
    raw_line: bytes,
    rows: list[dict[str, Any]],
    first_seen: dict[str, tuple[int, dict[str, Any]]],
) -> tuple[bool, int]:
    """Append the line's rows (tracks or its rejection); return (is a conversation, identical repeats folded)."""
    try:
        # strict=False admits raw control characters in strings: the control_character rule names them.
        conversation = json.loads(raw_line.decode("utf-8"), strict=False)
    except UnicodeDecodeError as exc:
        raw = raw_line.decode("utf-8", "backslashreplace")
        rows.append(
            _rejected(
                line_no,
                "bad_encoding",
                f"invalid UTF-8 byte 0x{raw_line[exc.start]:02x} at byte {exc.start}",
                raw,
            )
        )
        return False, 0
    except json.JSONDecodeError as exc:
        raw = raw_line.decode("utf-8")
        rows.append(
            _rejected(line_no, "malformed_line", f"invalid JSON: {exc.msg} at column {exc.colno}", raw)
        )
        return False, 0
    tracks = conversation.get("tracks", {}) if isinstance(conversation, dict) else None
    if not isinstance(tracks, dict):
        raw = raw_line.decode("utf-8")
        rows.append(_rejected(line_no, "malformed_line", "not a conversation object with a tracks map", raw))
        return False, 0
    repeats = 0
    for track_id, meta in tracks.items():
        raw = json.dumps({track_id: meta}, ensure_ascii=False)
        if not isinstance(meta, dict):
            rows.append(
                _rejected(line_no, "malformed_line", f"track {track_id!r} metadata is not an object", raw)
            )
            continue
        try:
            row = _track_row(track_id, meta)
        except _WrongType as exc:
            rows.append(_rejected(line_no, "wrong_value_type", f"track {track_id!r}: {exc}", raw))
            continue
        if track_id not in first_seen:
            first_seen[track_id] = (line_no, row)
        elif first_seen[track_id][1] == row:
            repeats += 1  # the same track rated in another conversation
            continue
        else:
            first_line, first_row = first_seen[track_id]
            differs = ", ".join(k for k in ("title", "artists", "album") if row[k] != first_row[k])
            rows.append(
                _rejected(line_no, "conflicting_duplicate", f"{differs} differ from line {first_line}", raw)
            )
            continue
        rows.append({"line_no": line_no, "raw": raw, **row})
    return True, repeats
