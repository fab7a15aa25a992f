"""CPCD rankings under the public protocol: the paper's BM25 baseline, a retriever alone, and the assistant's
replay with the protocol's seeds as likes (`models.eval.cpcd_protocol` scores them; the turns and corpus are
the golden set's, `models.golden.cpcd`)."""

from dataclasses import dataclass

import polars as pl

from models.assistant.assistant import Assistant
from models.assistant.replay import replay
from models.assistant.retrieval import CatalogIndex, RetrieverConfig
from models.eval.cpcd_protocol import ProtocolRun, dedup_keys, score, with_seeds

# Rankings are cut at the protocol's depth (100) after seeds and near-duplicates go: ask for more than that.
RANK_DEPTH = 200
# Plain BM25, no artist cap.
BASELINE_CONFIG = RetrieverConfig(
    components=("bm25",), max_per_artist=None, candidates=RANK_DEPTH, slate_size=RANK_DEPTH
)


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


def run_bm25_baseline(index: CatalogIndex, turns: pl.DataFrame, corpus: pl.DataFrame) -> ProtocolRun:
    """The CPCD paper's BM25 baseline over the corpus's index, scored with the public protocol."""
    return run_retriever(index.reconfigured(BASELINE_CONFIG), turns, corpus)


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
    (`feedback=False`: text only). The assistant's whole ranking (`AssistantConfig.rank_depth`) is scored.
    The dialogs are replayed as logged (`replay(logged=True)`): CPCD's listener answered the wizard's
    recommendations, never these slates, so a track this replay ranked a turn earlier is not held back."""
    seeded = with_seeds(turns)
    replayed = seeded.select(
        "conversation_id",
        "turn_index",
        text=pl.col("user_query"),
        liked_track_ids=pl.col("feedback") if feedback else pl.lit([], dtype=pl.List(pl.String)),
    )
    runs = replay(assistant, replayed, candidate, lockstep, logged=True)
    ranked = seeded.select("conversation_id", "turn_index").join(
        runs.select("conversation_id", "turn_index", "ranked_track_ids"),
        on=["conversation_id", "turn_index"],
        how="left",
        maintain_order="left",
    )
    return AssistantRun(
        score(seeded, ranked["ranked_track_ids"].to_list(), protocol_keys(turns, corpus)), runs
    )
