"""Usage signals: the one interaction-log schema, a validating source adapter, and per-session metrics.

A log is one row per event a listener caused on a served slate: every shown track gets an `impression`;
a started track a `play`; a play abandoned early a `skip` (with the seconds listened in `dwell_s`);
`like` and `save` are explicit signals. Real logs (JSONL or Parquet) and the simulator write the same
schema. A row that breaks a rule is quarantined with its rule and detail, never dropped, so
rows read = rows kept + rows quarantined.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from models.catalog.schema import QUARANTINE_SCHEMA, RAW_PREVIEW_CHARS
from models.catalog.sources import read_bytes

EVENTS = ("impression", "play", "skip", "like", "save")
DWELL_EVENTS = frozenset({"play", "skip"})  # the events that carry listening time

INTERACTION_SCHEMA = pl.Schema(
    {
        "session_id": pl.String,
        "user_id": pl.String,
        "variant": pl.String,  # what served the slate: a candidate key, or an experiment arm
        "turn_index": pl.Int32,  # the listener's request within the session (0-based): one slate per turn
        "request": pl.String,  # the listener's words that produced the slate (the DPO prompt)
        "intent": pl.String,  # the intent the serving assistant parsed; null when not logged
        "event": pl.String,  # one of EVENTS
        "track_id": pl.String,
        "position": pl.Int32,  # 0-based rank in the slate
        "timestamp": pl.Datetime("us", "UTC"),
        "dwell_s": pl.Float64,  # seconds listened: on a play, and repeated on the skip that ended it
    }
)
_REQUIRED = ("session_id", "user_id", "variant", "event", "track_id", "position", "timestamp")

SESSION_METRICS_SCHEMA = pl.Schema(
    {
        "session_id": pl.String,
        "user_id": pl.String,
        "variant": pl.String,
        "turns": pl.Int32,  # slates served: the session length
        "impressions": pl.Int64,
        "plays": pl.Int64,
        "skips": pl.Int64,
        "likes": pl.Int64,
        "saves": pl.Int64,
        "listening_min": pl.Float64,
        "like_rate": pl.Float64,  # likes / impressions; 0 when nothing was shown
        "skip_rate": pl.Float64,  # skips / plays; 0 when nothing was played
    }
)


class BadInteraction(ValueError):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule, self.detail = rule, detail


@dataclass(frozen=True, eq=False)
class InteractionRead:
    source: str
    rows_read: int
    kept: pl.DataFrame  # INTERACTION_SCHEMA
    quarantined: pl.DataFrame  # QUARANTINE_SCHEMA

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.kept.height + self.quarantined.height


def read_interaction_logs(location: str | Path) -> InteractionRead:
    """JSONL (one event object a line) or Parquet, chosen by the file suffix."""
    source = str(location)
    if source.endswith(".parquet"):
        records = enumerate(pl.read_parquet(source).to_dicts(), start=1)
        lines: list[tuple[int, Any]] = list(records)
    else:
        lines = [(no, raw) for no, raw in enumerate(read_bytes(source).split(b"\n"), start=1) if raw.strip()]
    kept, rejects = [], []
    for line_no, raw in lines:
        try:
            record = _json_record(raw) if isinstance(raw, bytes) else raw
            kept.append(validate_event(record))
        except BadInteraction as exc:
            preview = (
                raw.decode("utf-8", "backslashreplace")
                if isinstance(raw, bytes)
                else json.dumps(raw, default=str)
            )
            rejects.append(
                {
                    "source_file": source,
                    "line_no": line_no,
                    "rule": exc.rule,
                    "detail": exc.detail,
                    "raw": preview[:RAW_PREVIEW_CHARS],
                }
            )
    return InteractionRead(
        source=source,
        rows_read=len(lines),
        kept=pl.DataFrame(kept, schema=INTERACTION_SCHEMA),
        quarantined=pl.DataFrame(rejects, schema=QUARANTINE_SCHEMA),
    )


def _json_record(raw: bytes) -> dict[str, Any]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInteraction("malformed_line", f"not a JSON object: {exc}") from None
    if not isinstance(record, dict):
        raise BadInteraction("malformed_line", "not a JSON object")
    return record


def validate_event(record: dict[str, Any]) -> dict[str, Any]:
    """One log record as a typed row, or BadInteraction naming the rule it breaks."""
    missing = [key for key in _REQUIRED if record.get(key) in (None, "")]
    if missing:
        raise BadInteraction("missing_field", f"missing {', '.join(missing)}")
    unknown = set(record) - set(INTERACTION_SCHEMA)
    if unknown:
        raise BadInteraction("unknown_field", f"unknown field(s) {sorted(unknown)}")
    event = record["event"]
    if event not in EVENTS:
        raise BadInteraction("unknown_event", f"event {event!r} is not one of {EVENTS}")
    position = _integer(record["position"], "position")
    turn_index = _integer(record.get("turn_index", 0), "turn_index")
    if position < 0 or turn_index < 0:
        raise BadInteraction("negative_value", "position and turn_index must be >= 0")
    dwell = record.get("dwell_s")
    if dwell is not None:
        if isinstance(dwell, bool) or not isinstance(dwell, int | float):
            raise BadInteraction("bad_type", f"dwell_s {dwell!r} is not a number")
        if dwell < 0:
            raise BadInteraction("negative_value", f"dwell_s {dwell} is negative")
        if event not in DWELL_EVENTS:
            raise BadInteraction("dwell_on_non_play", f"a {event} event carries dwell_s")
    text_fields = ("session_id", "user_id", "variant", "track_id", "request", "intent")
    for key in text_fields:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise BadInteraction("bad_type", f"{key} {record[key]!r} is not a string")
    return {
        **{key: record.get(key) for key in text_fields},
        "event": event,
        "turn_index": turn_index,
        "position": position,
        "timestamp": _timestamp(record["timestamp"]),
        "dwell_s": None if dwell is None else float(dwell),
    }


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInteraction("bad_type", f"{name} {value!r} is not an integer")
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadInteraction("bad_timestamp", f"timestamp {value!r} is not ISO 8601") from None
    else:
        raise BadInteraction("bad_timestamp", f"timestamp {value!r} is not ISO 8601")
    # A naive timestamp is taken as UTC: logging systems that omit the zone write UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def session_metrics(events: pl.DataFrame) -> pl.DataFrame:
    """The online proxies per session: slates served, event counts, like and skip rates, listening time."""
    count = {name: (pl.col("event") == name).sum().cast(pl.Int64) for name in EVENTS}
    return (
        events.group_by("session_id", maintain_order=True)
        .agg(
            pl.col("user_id").first(),
            pl.col("variant").first(),
            pl.col("turn_index").n_unique().cast(pl.Int32).alias("turns"),
            count["impression"].alias("impressions"),
            count["play"].alias("plays"),
            count["skip"].alias("skips"),
            count["like"].alias("likes"),
            count["save"].alias("saves"),
            # A skip repeats the dwell of its play, so listening time sums plays only.
            (pl.col("dwell_s").filter(pl.col("event") == "play").sum() / 60).alias("listening_min"),
        )
        .with_columns(
            like_rate=pl.when(pl.col("impressions") > 0)
            .then(pl.col("likes") / pl.col("impressions"))
            .otherwise(0.0),
            skip_rate=pl.when(pl.col("plays") > 0).then(pl.col("skips") / pl.col("plays")).otherwise(0.0),
        )
        .select(list(SESSION_METRICS_SCHEMA))
        .cast(dict(SESSION_METRICS_SCHEMA))
    )
