"""CPCD conversations as a golden set (turns with liked/disliked tracks), and the paper's BM25 baseline on it.

Any file of the public `cpcd_v1.dialogs.*.jsonl` format is accepted. Optional keys may be missing (texts
default to "", lists to []); a line that is not valid JSON, not a conversation object, has no id, repeats
an id, or holds wrongly typed turn fields is quarantined with file, line and rule, like the catalog
adapters do. The corpus is the file's tracks through the CPCD catalog adapter (`models.catalog.cpcd`).
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from checks.quarantine_rules import RAW_PREVIEW_CHARS
from models.assistant.retrieval import CatalogIndex, Filters, RetrieverConfig
from models.catalog.schema import QUARANTINE_SCHEMA
from models.catalog.sources import CatalogSourceSpec, read_bytes, read_catalog
from models.eval.retrieval import RetrievalReport, dedup_key_map, retrieval_report

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
    }
)
_TEXT_FIELDS = ("user_query", "system_response")
_LIST_FIELDS = {"search_queries": "search_queries", "liked_results": "liked", "disliked_results": "disliked"}

BASELINE_KS = (1, 5, 10, 20)
# Plain BM25, no artist cap; deep enough that the top 20 survive near-duplicate collapsing.
BASELINE_CONFIG = RetrieverConfig(components=("bm25",), max_per_artist=None, candidates=100, slate_size=100)


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
            value = turn.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MalformedConversation("malformed_line", f"turn {index}: {key} is not a list of strings")
            row[column] = value
        row["history"] = "\n".join(history)
        history.append(f"user: {row['user_query']}\nsystem: {row['system_response']}")
        rows.append(row)
    return rows


@dataclass(frozen=True, eq=False)
class BaselineRun:
    results: pl.DataFrame  # one row per evaluated turn: ids, query, liked, ranked ids, per-turn metrics
    report: RetrievalReport


def conversation_queries(turns: pl.DataFrame) -> pl.Series:
    """The BM25 query at turn t: the user's utterances of turns 0..t joined, as in the CPCD paper's baseline."""
    return turns.select(
        pl.col("user_query")
        .cumulative_eval(pl.element().str.join(" "))
        .over("conversation_id")
        .alias("query")
    ).to_series()


def run_bm25_baseline(
    golden: CpcdGolden,
    config: RetrieverConfig = BASELINE_CONFIG,
    ks: Sequence[int] = BASELINE_KS,
    exclude_rated: bool = False,
) -> BaselineRun:
    """Rank the corpus for every turn with a liked track; `exclude_rated` drops tracks rated in earlier turns."""
    index = CatalogIndex.build(golden.corpus, config=config)
    turns = golden.turns.with_columns(query=conversation_queries(golden.turns))
    if exclude_rated:
        rated = pl.col("liked").list.concat("disliked")
        earlier = rated.cumulative_eval(
            pl.element().list.explode(keep_nulls=False, empty_as_null=False).implode()
        )
        turns = turns.with_columns(rated_before=earlier.shift(1).over("conversation_id"))
    evaluated = turns.filter(pl.col("liked").list.len() > 0)
    depth = max(config.candidates, max(ks))
    rankings = []
    for row in evaluated.iter_rows(named=True):
        filters = Filters(exclude_track_ids=frozenset(row["rated_before"] or ())) if exclude_rated else None
        rankings.append([hit.track_id for hit in index.search(row["query"], filters, k=depth)])
    corpus = golden.corpus
    report = retrieval_report(
        rankings,
        [set(liked) for liked in evaluated["liked"]],
        evaluated["conversation_id"].to_list(),
        ks=ks,
        dedup_key=dedup_key_map(*(corpus[c].to_list() for c in ("track_id", "title", "artists"))),
    )
    results = evaluated.select("conversation_id", "turn_index", "query", "liked").with_columns(
        ranked=pl.Series([r[: max(ks)] for r in rankings], dtype=pl.List(pl.String)),
        **{name: pl.Series(np.asarray(values, dtype=np.float64)) for name, values in report.per_turn.items()},
    )
    return BaselineRun(results, report)


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


def cpcd_evaluation_turns(turns: pl.DataFrame) -> pl.DataFrame:
    """The CPCD turns evaluation may use: none of them ever produces a preference pair."""
    return with_cpcd_part(turns).filter(pl.col("cpcd_part") == "evaluation").drop("cpcd_part")
