"""CPCD conversations as a golden set: turns with liked/disliked tracks, the corpus, and the fixed split of
conversations between evaluation and preference training. Replaying and scoring them is evaluation's
(`models.eval.cpcd_runs`, the public protocol in `models.eval.cpcd_protocol`).

Any file of the public `cpcd_v1.dialogs.*.jsonl` format is accepted. Optional keys may be missing (texts
default to "", lists to []); a line that is not valid JSON, not a conversation object, has no id, repeats
an id, or holds wrongly typed turn fields is quarantined with file, line and rule, like the catalog
adapters do. The corpus is the file's tracks through the CPCD catalog adapter (`models.catalog.cpcd`).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from models.catalog.schema import QUARANTINE_SCHEMA, RAW_PREVIEW_CHARS
from models.catalog.sources import CatalogSourceSpec, read_bytes, read_catalog

TURNS_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.String,
        "turn_index": pl.Int32,  # 0-based within the conversation
        "line_no": pl.Int64,  # 1-based line of the conversation in the source file
        "user_query": pl.String,
        "system_response": pl.String,
        "history": pl.String,  # earlier turns as "user: ...\nsystem: ..." lines
        "search_queries": pl.List(pl.String),
        "liked": pl.List(pl.String),
        "disliked": pl.List(pl.String),
        "goal_playlist": pl.List(pl.String),  # the dialog's, repeated on each of its turns
        # The file's near-duplicate clusters of the dialog's tracks (newer CPCD versions; empty otherwise).
        "track_clusters": pl.List(pl.Struct({"track_id": pl.String, "cluster_id": pl.String})),
    }
)
_TEXT_FIELDS = ("user_query", "system_response")
_LIST_FIELDS = {"search_queries": "search_queries", "liked_results": "liked", "disliked_results": "disliked"}


class MalformedConversation(ValueError):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule, self.detail = rule, detail


@dataclass(frozen=True, eq=False)
class CpcdGolden:
    source_file: str
    content_hash: str  # sha256 of the file bytes: the golden set's version
    turns: pl.DataFrame  # TURNS_SCHEMA
    corpus: pl.DataFrame  # CATALOG_SCHEMA, the tracks rated in the file
    rejects: pl.DataFrame  # QUARANTINE_SCHEMA, conversation lines not imported
    corpus_quarantined: pl.DataFrame  # QUARANTINE_SCHEMA, track records the catalog adapter rejected

    @property
    def n_conversations(self) -> int:
        return self.turns["conversation_id"].n_unique()


def import_cpcd(path: str | Path) -> CpcdGolden:
    location = str(path)
    data = read_bytes(location)
    turns: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: dict[str, int] = {}  # conversation id -> line
    for line_no, raw_line in enumerate(data.split(b"\n"), start=1):
        raw_line = raw_line.removesuffix(b"\r")
        if not raw_line.strip():
            continue
        raw = raw_line.decode("utf-8", "backslashreplace")
        try:
            conversation = _conversation(raw_line)
            conversation_id = conversation["id"]
            if conversation_id in seen:
                raise MalformedConversation(
                    "duplicate_id",
                    f"conversation {conversation_id!r} is also on line {seen[conversation_id]}",
                )
            turns.extend(_turn_rows(conversation, line_no))
            seen[conversation_id] = line_no
        except MalformedConversation as exc:
            rejects.append(
                {
                    "source_file": location,
                    "line_no": line_no,
                    "rule": exc.rule,
                    "detail": exc.detail,
                    "raw": raw[:RAW_PREVIEW_CHARS],
                }
            )
    catalog = read_catalog(CatalogSourceSpec(kind="cpcd", location=location))
    return CpcdGolden(
        source_file=location,
        content_hash=hashlib.sha256(data).hexdigest(),
        turns=pl.DataFrame(turns, schema=TURNS_SCHEMA),
        corpus=catalog.kept,
        rejects=pl.DataFrame(rejects, schema=QUARANTINE_SCHEMA),
        corpus_quarantined=catalog.quarantined,
    )


def _conversation(raw_line: bytes) -> dict[str, Any]:
    try:
        conversation = json.loads(raw_line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedConversation("bad_encoding", f"invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise MalformedConversation(
            "malformed_line", f"invalid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(conversation, dict):
        raise MalformedConversation("malformed_line", "not a conversation object")
    if not isinstance(conversation.get("id"), str) or not conversation["id"]:
        raise MalformedConversation("missing_id", "the conversation has no id")
    if not isinstance(conversation.get("turns", []), list):
        raise MalformedConversation("malformed_line", "turns is not a list")
    return conversation


def _turn_rows(conversation: dict[str, Any], line_no: int) -> list[dict[str, Any]]:
    """All turns or none: one bad turn quarantines the conversation, since later turns depend on it."""
    rows, history = [], []
    goal = _strings(conversation.get("goal_playlist"), "goal_playlist")
    if "goal_playlist" not in conversation:  # the goal playlist is, by definition, every track liked
        turns = [t for t in conversation.get("turns", []) if isinstance(t, dict)]
        liked = [t.get("liked_results") for t in turns]
        goal = list(dict.fromkeys(x for ids in liked if isinstance(ids, list) for x in ids))
    tracks = conversation.get("tracks") or {}
    clusters = [
        {"track_id": track_id, "cluster_id": meta["track_cluster_ids"]}
        for track_id, meta in (tracks.items() if isinstance(tracks, dict) else ())
        if isinstance(meta, dict) and isinstance(meta.get("track_cluster_ids"), str)
    ]
    for index, turn in enumerate(conversation.get("turns", [])):
        if not isinstance(turn, dict):
            raise MalformedConversation("malformed_line", f"turn {index} is not an object")
        row = {"conversation_id": conversation["id"], "turn_index": index, "line_no": line_no}
        for key in _TEXT_FIELDS:
            value = turn.get(key) or ""
            if not isinstance(value, str):
                raise MalformedConversation("malformed_line", f"turn {index}: {key} is not a string")
            row[key] = value
        for key, column in _LIST_FIELDS.items():
            row[column] = _strings(turn.get(key), f"turn {index}: {key}")
        row["goal_playlist"], row["track_clusters"] = goal, clusters
        row["history"] = "\n".join(history)
        history.append(f"user: {row['user_query']}\nsystem: {row['system_response']}")
        rows.append(row)
    return rows


def _strings(value: Any, where: str) -> list[str]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedConversation("malformed_line", f"{where} is not a list of strings")
    return value


# 30% of CPCD conversations train preferences (models/feedback); 70% stay for evaluation. Versioned salt:
# changing the rule must change the name, or evaluation numbers silently stop being comparable.
CPCD_PREFERENCE_SHARE = 0.3
CPCD_SPLIT_SALT = "setlist-cpcd-split-v1"
CpcdPart = Literal["evaluation", "preference_training"]


def cpcd_part(conversation_id: str) -> CpcdPart:
    """Which part a CPCD conversation belongs to; depends only on its id, so it never moves."""
    digest = hashlib.sha256(f"{CPCD_SPLIT_SALT}:{conversation_id}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return "preference_training" if unit < CPCD_PREFERENCE_SHARE else "evaluation"


def with_cpcd_part(turns: pl.DataFrame) -> pl.DataFrame:
    return turns.with_columns(
        pl.col("conversation_id").map_elements(cpcd_part, return_dtype=pl.String).alias("cpcd_part")
    )


def cpcd_preference_turns(turns: pl.DataFrame) -> pl.DataFrame:
    """The CPCD turns that train preferences (and co-likes): evaluation never scores them."""
    return with_cpcd_part(turns).filter(pl.col("cpcd_part") == "preference_training").drop("cpcd_part")


def cpcd_evaluation_turns(turns: pl.DataFrame) -> pl.DataFrame:
    """The CPCD turns evaluation may use: none of them ever produces a preference pair."""
    return with_cpcd_part(turns).filter(pl.col("cpcd_part") == "evaluation").drop("cpcd_part")
