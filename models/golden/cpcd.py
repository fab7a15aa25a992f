"""CPCD conversations as a golden set (turns with liked/disliked tracks), and the paper's BM25 baseline on it.

Rankings are scored with the public CPCD protocol (`models.eval.cpcd_protocol`): the goal playlist minus
the seeds is the target of every turn.

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

from checks.quarantine_rules import RAW_PREVIEW_CHARS
from models.assistant.assistant import Assistant
from models.assistant.replay import replay
from models.assistant.retrieval import CatalogIndex, RetrieverConfig
from models.catalog.schema import QUARANTINE_SCHEMA
from models.catalog.sources import CatalogSourceSpec, read_bytes, read_catalog
from models.eval.cpcd_protocol import ProtocolRun, dedup_keys, score, with_seeds

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

# Rankings are cut at the protocol's depth (100) after seeds and near-duplicates go: ask for more than that.
RANK_DEPTH = 200
# Plain BM25, no artist cap.
BASELINE_CONFIG = RetrieverConfig(
    components=("bm25",), max_per_artist=None, candidates=RANK_DEPTH, slate_size=RANK_DEPTH
)


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


def conversation_queries(turns: pl.DataFrame) -> pl.Series:
    """The BM25 query at turn t: the user's utterances of turns 0..t joined, as in the CPCD paper's baseline."""
    return turns.select(
        pl.col("user_query")
        .cumulative_eval(pl.element().str.join(" "))
        .over("conversation_id")
        .alias("query")
    ).to_series()


def protocol_keys(turns: pl.DataFrame, corpus: pl.DataFrame) -> dict[str, str]:
    """The protocol's near-duplicate keys over the corpus: the file's clusters when given, else title+artists."""
    clusters = turns.select(pl.col("track_clusters").explode().struct.unnest()).drop_nulls()
    return dedup_keys(corpus, dict(clusters.iter_rows()))


def weighted_queries(turns: pl.DataFrame, decay: float) -> list[list[tuple[str, float]]]:
    """The listener's turns so far, the latest weighing 1 and each older one `decay` times the next."""
    queries, previous, history = [], None, []
    for conversation_id, text in turns.select("conversation_id", "user_query").iter_rows():
        if conversation_id != previous:
            previous, history = conversation_id, []
        history.append(text)
        queries.append([(t, decay**age) for age, t in enumerate(reversed(history))])
    return queries


def run_retriever(
    index: CatalogIndex, turns: pl.DataFrame, corpus: pl.DataFrame, decay: float | None = None
) -> ProtocolRun:
    """The retriever alone under the public protocol, no feedback: the query is the user's utterances so far,
    joined (the paper's baseline), or weighted towards the latest turn by `decay` (the assistant's weighting)."""
    seeded = with_seeds(turns)
    seeded = seeded.with_columns(query=conversation_queries(seeded))
    queries = seeded["query"].to_list() if decay is None else weighted_queries(seeded, decay)
    rankings = [[h.track_id for h in index.search(query, k=RANK_DEPTH)] for query in queries]
    run = score(seeded, rankings, protocol_keys(turns, corpus))
    query = seeded.select("conversation_id", "turn_index", "query")
    return ProtocolRun(run.results.join(query, on=["conversation_id", "turn_index"]), run.report)


def run_bm25_baseline(golden: CpcdGolden, config: RetrieverConfig = BASELINE_CONFIG) -> ProtocolRun:
    """The CPCD paper's BM25 baseline over the file's corpus, scored with the public protocol."""
    return run_retriever(CatalogIndex.build(golden.corpus, config=config), golden.turns, golden.corpus)


@dataclass(frozen=True, eq=False)
class AssistantRun:
    protocol: ProtocolRun
    runs: pl.DataFrame  # the replay (models.assistant.replay.RUN_SCHEMA), every turn


def run_assistant(
    assistant: Assistant,
    turns: pl.DataFrame,
    corpus: pl.DataFrame,
    candidate: str,
    lockstep: bool = False,
    feedback: bool = True,
) -> AssistantRun:
    """The product path under the public protocol: every dialog replayed turn by turn through the assistant
    (parser, dialogue state, planner, retrieval), with the protocol's seeds given as likes before each turn
    (`feedback=False`: text only). The assistant's whole ranking (`AssistantConfig.rank_depth`) is scored."""
    seeded = with_seeds(turns)
    replayed = seeded.select(
        "conversation_id",
        "turn_index",
        text=pl.col("user_query"),
        liked_track_ids=pl.col("feedback") if feedback else pl.lit([], dtype=pl.List(pl.String)),
    )
    runs = replay(assistant, replayed, candidate, lockstep)
    ranked = seeded.select("conversation_id", "turn_index").join(
        runs.select("conversation_id", "turn_index", "ranked_track_ids"),
        on=["conversation_id", "turn_index"],
        how="left",
        maintain_order="left",
    )
    return AssistantRun(
        score(seeded, ranked["ranked_track_ids"].to_list(), protocol_keys(turns, corpus)), runs
    )


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
