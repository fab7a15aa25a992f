"""Preference pairs for DPO (prompt, chosen, rejected) from three sources, each row with its provenance.

- cpcd_likes: within one CPCD turn, a liked track beats a disliked one (a real listener's judgement).
  CPCD is also an evaluation set, so its conversations are split by a hash of their id: pairs come only
  from the preference-training part; models.golden.cpcd `cpcd_evaluation_turns` gives evaluation the rest.
- judge_pairwise: responses of assistant variants to the same SYNTHETIC turn (not an evaluation item),
  compared by a judge: offline the ResponseRulesGrader's ratings (higher rated is chosen), online the
  LLM pairwise judge asked in both orders. Ties and order disagreements are dropped and counted.
- user_feedback: within one served slate of the interaction log, a liked or saved track beats a skipped one.

Prompts are the conversation so far as "user: ..." / "assistant: ..." lines ending with the listener's
latest message; chosen and rejected are assistant texts (a response, or a track as "Title — Artists (Album)").

Length balance: DPO readily learns "longer is better" when chosen answers are systematically longer
(Park et al. 2024, "Disentangling Length from Quality in DPO"), and the code grader prefers fuller
answers (it chose the longer one in 76 of 94 judge pairs). `length_balanced` keeps, per source, as many
pairs whose chosen side is longer as pairs whose chosen side is shorter, dropping the surplus (in
pair-id hash order, so deterministic and unrelated to content) and counting it.
"""

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl

from models.assistant.assistant import Assistant
from models.assistant.replay import replay
from models.eval.judges import LLMPairwiseJudge, PairItem, ResponseItem, ResponseRulesGrader
from models.golden.cpcd import with_cpcd_part
from models.golden.curated import DEFAULT_BEHAVIOUR, Behaviour, ShownTrack
from models.labels import Intent, Slots, TurnLabels, constraints_over
from models.taxonomy import CATALOG_COLUMN, Taxonomy

SOURCES = ("cpcd_likes", "judge_pairwise", "user_feedback")
PAIR_SCHEMA = pl.Schema(
    {
        "pair_id": pl.String,  # stable hash of the provenance
        "source": pl.String,  # one of SOURCES
        "conversation_id": pl.String,  # CPCD or synthetic conversation id, or the log's session id
        "turn_index": pl.Int32,
        "intent": pl.String,  # labelled (synthetic) or logged (feedback) intent; null for CPCD
        "request": pl.String,  # the listener's latest message (what overlap checks compare)
        "prompt": pl.String,
        "chosen": pl.String,
        "rejected": pl.String,
        "chosen_id": pl.String,  # track id, or the variant whose response was chosen
        "rejected_id": pl.String,
        "judge_version": pl.String,  # judge_pairwise only
    }
)


@dataclass(frozen=True, eq=False)
class PairExtraction:
    pairs: pl.DataFrame  # PAIR_SCHEMA
    dropped: dict[str, int] = field(default_factory=dict)  # "<source>:<reason>" -> candidate pairs dropped

    @classmethod
    def of(cls, rows: list[dict[str, Any]], dropped: Mapping[str, int]) -> "PairExtraction":
        for row in rows:
            key = "|".join(
                str(row[k]) for k in ("source", "conversation_id", "turn_index", "chosen_id", "rejected_id")
            )
            row["pair_id"] = hashlib.sha256(key.encode()).hexdigest()[:16]
            row.setdefault("judge_version", None)
        frame = pl.DataFrame(rows, schema=PAIR_SCHEMA)
        # Two variants with the same answer give the same texts twice: one copy would weigh double in training.
        unique = frame.unique(["source", "prompt", "chosen", "rejected"], keep="first", maintain_order=True)
        counts = dict(dropped)
        for source in frame["source"].unique():
            duplicates = (
                frame.filter(pl.col("source") == source).height
                - unique.filter(pl.col("source") == source).height
            )
            counts[f"{source}:duplicate_texts"] = duplicates
        return cls(unique, {k: v for k, v in counts.items() if v})


def combine(extractions: Iterable[PairExtraction]) -> PairExtraction:
    extractions = list(extractions)
    dropped: dict[str, int] = {}
    for e in extractions:
        for key, count in e.dropped.items():
            dropped[key] = dropped.get(key, 0) + count
    pairs = pl.concat([e.pairs for e in extractions]) if extractions else pl.DataFrame(schema=PAIR_SCHEMA)
    return PairExtraction(pairs.unique("pair_id", keep="first", maintain_order=True), dropped)


def render_prompt(history: Sequence[tuple[str, str]], request: str) -> str:
    """Earlier (speaker, text) turns and the latest user message as "user: ..." / "assistant: ..." lines."""
    return "\n".join([*(f"{speaker}: {text}" for speaker, text in history), f"user: {request}"])


def render_track(row: Mapping[str, Any]) -> str:
    """A track as "Title — Artists (Album)"; catalogs without titles (MTG-Jamendo) fall back to ids and their tags."""
    artists = ", ".join(row.get("artists") or []) or row.get("artist_id") or "unknown artist"
    title = row.get("title") or row.get("track_id")
    text = f"{title} — {artists}"
    if row.get("album"):
        text += f" ({row['album']})"
    if not row.get("title"):
        tags = [v for column in CATALOG_COLUMN.values() for v in (row.get(column) or [])]
        text += f": {', '.join(tags)}" if tags else ""
    return text


def track_texts(catalog: pl.DataFrame, track_ids: Iterable[str] | None = None) -> dict[str, str]:
    """{track id: rendered track}, for `track_ids` only when given (a slate's worth, not the catalog)."""
    return {row["track_id"]: render_track(row) for row in _only(catalog, track_ids).iter_rows(named=True)}


def _only(catalog: pl.DataFrame, track_ids: Iterable[str] | None) -> pl.DataFrame:
    if track_ids is None:
        return catalog
    return catalog.filter(pl.col("track_id").is_in(pl.Series(list(track_ids), dtype=pl.String).implode()))


# --- CPCD -------------------------------------------------------------------------------------


def cpcd_pairs(turns: pl.DataFrame, corpus: pl.DataFrame) -> PairExtraction:
    """Liked x disliked tracks of each turn of the preference-training part (golden_cpcd's TURNS_SCHEMA)."""
    rows: list[dict[str, Any]] = []
    dropped = {"cpcd_likes:rated_both": 0, "cpcd_likes:track_not_in_corpus": 0}
    training = with_cpcd_part(turns).filter(pl.col("cpcd_part") == "preference_training")
    rated = pl.concat([training["liked"].explode(), training["disliked"].explode()]).drop_nulls().unique()
    texts = track_texts(corpus, rated)
    for (conversation_id,), conversation in training.sort("turn_index").group_by(
        "conversation_id", maintain_order=True
    ):
        history: list[tuple[str, str]] = []
        for turn in conversation.iter_rows(named=True):
            liked, disliked = set(turn["liked"]), set(turn["disliked"])
            both = liked & disliked  # contradictory: no usable preference
            dropped["cpcd_likes:rated_both"] += len(both) * (len(liked) + len(disliked) - len(both))
            prompt = render_prompt(history, turn["user_query"])
            for good in sorted(liked - both):
                for bad in sorted(disliked - both):
                    if good not in texts or bad not in texts:
                        dropped["cpcd_likes:track_not_in_corpus"] += 1
                        continue
                    rows.append(
                        {
                            "source": "cpcd_likes",
                            "conversation_id": conversation_id,
                            "turn_index": turn["turn_index"],
                            "intent": None,
                            "request": turn["user_query"],
                            "prompt": prompt,
                            "chosen": texts[good],
                            "rejected": texts[bad],
                            "chosen_id": good,
                            "rejected_id": bad,
                        }
                    )
            history += [("user", turn["user_query"]), ("assistant", turn["system_response"])]
    return PairExtraction.of(rows, dropped)


# --- judge outcomes on synthetic turns -------------------------------------------------------


@dataclass(frozen=True)
class JudgedTurn:
    """One synthetic turn and each variant's response to it."""

    conversation_id: str
    turn_index: int
    intent: str
    request: str
    prompt: str
    responses: dict[str, ResponseItem]  # variant -> response


def synthetic_responses(
    turns: pl.DataFrame,
    assistants: Mapping[str, Assistant],
    catalog: pl.DataFrame,
    taxonomy: Taxonomy,
    max_conversations: int,
    memoryless: Collection[str] = (),
) -> list[JudgedTurn]:
    """Replay synthetic conversations (conversation_id, turn_index, text, intent, slots JSON) through each
    variant; what each turn expected comes from its labels, as the golden sets derive it.

    Variants named in `memoryless` answer every turn as a new conversation: the multi-turn failure
    (forgetting what was asked before) that makes refinements the most informative pairs.
    """
    ids = sorted(turns["conversation_id"].unique(), key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    chosen = turns.filter(pl.col("conversation_id").is_in(ids[:max_conversations])).sort(
        "conversation_id", "turn_index"
    )
    runs = {
        variant: _replayed(assistant, chosen, variant, memoryless=variant in memoryless)
        for variant, assistant in assistants.items()
    }
    served = _only(catalog, {t for run in runs.values() for r in run.values() for t in r["track_ids"]})
    nodes_of = _track_nodes(served, taxonomy)
    durations = dict(zip(served["track_id"], served["duration_s"], strict=True))
    judged = []
    for (conversation_id,), conversation in chosen.group_by("conversation_id", maintain_order=True):
        labels = [
            TurnLabels(intent=Intent(r["intent"]), slots=Slots.model_validate_json(r["slots"]))
            for r in conversation.iter_rows(named=True)
        ]
        earlier: list[tuple[str, str]] = []
        for row, turn_labels, constraint in zip(
            conversation.iter_rows(named=True), labels, constraints_over(labels), strict=True
        ):
            key = (conversation_id, row["turn_index"])
            prompt = render_prompt(earlier, row["text"])
            behaviour = DEFAULT_BEHAVIOUR.get(turn_labels.intent, Behaviour.SHOW_TRACKS)
            responses = {}
            for variant, run in runs.items():
                r = run[key]
                shown = tuple(
                    ShownTrack(nodes=nodes_of[t], duration_s=durations.get(t))
                    for t in r["track_ids"]
                    if nodes_of.get(t)
                )
                responses[variant] = ResponseItem(
                    item_id=f"{conversation_id}:{row['turn_index']}:{variant}",
                    conversation="\n".join(f"user: {text}" for _, text in earlier),
                    request=row["text"],
                    response="\n".join([r["response"], *r["stories"]]),
                    shown=shown,
                    must=tuple(tuple(nodes) for nodes in constraint.required.values()),
                    must_not=tuple(constraint.excluded),
                    min_duration_s=constraint.min_duration_s,
                    max_duration_s=constraint.max_duration_s,
                    expected_behaviour=behaviour.value,
                )
            judged.append(
                JudgedTurn(conversation_id, row["turn_index"], row["intent"], row["text"], prompt, responses)
            )
            # Variants answer differently, so the shared prompt carries the listener's side only.
            earlier.append(("user", row["text"]))
    return judged


def _replayed(
    assistant: Assistant, turns: pl.DataFrame, variant: str, memoryless: bool
) -> dict[tuple[str, int], dict[str, Any]]:
    texts = turns.select("conversation_id", "turn_index", "text")
    if memoryless:
        texts = texts.with_columns(
            pl.format("{}#{}", "conversation_id", "turn_index").alias("conversation_id"),
            pl.lit(0, pl.Int32).alias("turn_index"),
        )
    runs = replay(assistant, texts, variant, lockstep=False)
    keys = turns.sort("conversation_id", "turn_index").select("conversation_id", "turn_index").rows()
    if memoryless:
        by_id = {r["conversation_id"]: r for r in runs.iter_rows(named=True)}
        return {(c, t): by_id[f"{c}#{t}"] for c, t in keys}
    return {(r["conversation_id"], r["turn_index"]): r for r in runs.iter_rows(named=True)}


def _track_nodes(catalog: pl.DataFrame, taxonomy: Taxonomy) -> dict[str, list[str]]:
    """Each track's facets as the taxonomy nodes that own its tags (what ShownTrack describes)."""
    owners: dict[str, list[str]] = {}
    for node in taxonomy.nodes.values():
        for tag in node.tags:
            owners.setdefault(tag, []).append(node.node_id)
    out = {}
    for row in catalog.select("track_id", *CATALOG_COLUMN.values()).iter_rows(named=True):
        tags = [f"{prefix}---{v}" for prefix, column in CATALOG_COLUMN.items() for v in row[column] or []]
        out[row["track_id"]] = sorted({n for tag in tags for n in owners.get(tag, [])})
    return out


def _distinct_pairs(turn: JudgedTurn, dropped: dict[str, int]) -> list[tuple[str, str]]:
    """Variant pairs whose responses differ; identical answers carry no preference. Identical is by the text
    the pair holds: slates of duplicate tracks (a catalog's copies under other ids) read the same."""
    pairs = []
    for a, b in combinations(sorted(turn.responses), 2):
        if turn.responses[a].response == turn.responses[b].response:
            dropped["judge_pairwise:identical_responses"] += 1
        else:
            pairs.append((a, b))
    return pairs


def _judge_row(turn: JudgedTurn, winner: str, loser: str, judge_version: str) -> dict[str, Any]:
    return {
        "source": "judge_pairwise",
        "conversation_id": turn.conversation_id,
        "turn_index": turn.turn_index,
        "intent": turn.intent,
        "request": turn.request,
        "prompt": turn.prompt,
        "chosen": turn.responses[winner].response,
        "rejected": turn.responses[loser].response,
        "chosen_id": winner,
        "rejected_id": loser,
        "judge_version": judge_version,
    }


def rated_pairs(turns: Sequence[JudgedTurn], grader: ResponseRulesGrader) -> PairExtraction:
    """Offline: the code grader rates every response 1-5; the higher-rated response is chosen."""
    dropped = {"judge_pairwise:identical_responses": 0, "judge_pairwise:tie_rating": 0}
    rows = []
    for turn in turns:
        ratings = {v: grader.grade(item).value for v, item in turn.responses.items()}
        for a, b in _distinct_pairs(turn, dropped):
            if ratings[a] == ratings[b]:
                dropped["judge_pairwise:tie_rating"] += 1
                continue
            winner, loser = (a, b) if ratings[a] > ratings[b] else (b, a)
            rows.append(_judge_row(turn, winner, loser, grader.version))
    return PairExtraction.of(rows, dropped)


def llm_judged_pairs(
    turns: Sequence[JudgedTurn], judge: LLMPairwiseJudge, max_items: int | None = None
) -> PairExtraction:
    """Online: the LLM pairwise judge in both orders; a tie or an order disagreement is no preference.
    At most `max_items` pairs are asked (the first, in order: an LLM on a CPU is slow); the rest are counted."""
    dropped = {
        "judge_pairwise:identical_responses": 0,
        "judge_pairwise:tie_or_order_disagreement": 0,
        "judge_pairwise:judge_failure": 0,
        "judge_pairwise:beyond_llm_item_limit": 0,
    }
    asked = [(turn, a, b) for turn in turns for a, b in _distinct_pairs(turn, dropped)]
    if max_items is not None and len(asked) > max_items:
        dropped["judge_pairwise:beyond_llm_item_limit"] = len(asked) - max_items
        asked = asked[:max_items]
    items = [
        PairItem(f"{t.conversation_id}:{t.turn_index}:{a}~{b}", t.responses[a], t.responses[b])
        for t, a, b in asked
    ]
    verdicts = judge.judge(items).verdicts if items else []
    rows = []
    for (turn, a, b), verdict in zip(asked, verdicts, strict=True):
        if not verdict.ok:
            dropped["judge_pairwise:judge_failure"] += 1
        elif verdict.value == "tie":
            dropped["judge_pairwise:tie_or_order_disagreement"] += 1
        else:
            winner, loser = (a, b) if verdict.value == "A" else (b, a)
            rows.append(_judge_row(turn, winner, loser, judge.version))
    return PairExtraction.of(rows, dropped)


# --- logged user feedback ---------------------------------------------------------------------


def feedback_pairs(events: pl.DataFrame, catalog: pl.DataFrame, max_per_slate: int = 2) -> PairExtraction:
    """Within one slate (session, turn): a liked or saved track beats a skipped, unliked one.

    Pairs of one slate share the listener and the moment, so at most `max_per_slate` are kept (the
    highest-placed positives and skips first): long slates would otherwise outweigh short ones.
    """
    rated = events.filter(pl.col("event").is_in(["like", "save", "skip"]))["track_id"].unique()
    texts = track_texts(catalog, rated)
    dropped = {
        "user_feedback:track_not_in_catalog": 0,
        "user_feedback:identical_texts": 0,  # duplicates in the catalog (a re-release): no preference to learn
        "user_feedback:over_slate_cap": 0,
    }
    slates = (
        events.group_by("session_id", "turn_index")
        .agg(
            pl.col("request").first(),
            pl.col("intent").drop_nulls().first(),
            _by_position(pl.col("event").is_in(["like", "save"])).alias("positive"),
            _by_position(pl.col("event") == "skip").alias("skipped"),
        )
        .sort("session_id", "turn_index")
    )
    rows = []
    for (session_id,), session in slates.group_by("session_id", maintain_order=True):
        earlier: list[tuple[str, str]] = []
        for slate in session.iter_rows(named=True):
            negative = [t for t in slate["skipped"] if t not in set(slate["positive"])]
            kept = 0
            for good in slate["positive"]:
                for bad in negative:
                    if good not in texts or bad not in texts:
                        dropped["user_feedback:track_not_in_catalog"] += 1
                        continue
                    if texts[good] == texts[bad]:
                        dropped["user_feedback:identical_texts"] += 1
                        continue
                    if kept == max_per_slate:
                        dropped["user_feedback:over_slate_cap"] += 1
                        continue
                    kept += 1
                    rows.append(
                        {
                            "source": "user_feedback",
                            "conversation_id": session_id,
                            "turn_index": slate["turn_index"],
                            "intent": slate["intent"],
                            "request": slate["request"],
                            "prompt": render_prompt(earlier, slate["request"] or ""),
                            "chosen": texts[good],
                            "rejected": texts[bad],
                            "chosen_id": good,
                            "rejected_id": bad,
                        }
                    )
            earlier.append(("user", slate["request"] or ""))
    return PairExtraction.of(rows, dropped)


def _by_position(condition: pl.Expr) -> pl.Expr:
    """Distinct track ids of the slate's events meeting `condition`, best-placed first."""
    return (
        pl.col("track_id")
        .filter(condition)
        .sort_by(pl.col("position").filter(condition))
        .unique(maintain_order=True)
    )


# --- length balance ---------------------------------------------------------------------------


def chosen_longer(pairs: pl.DataFrame) -> pl.Expr:
    """+1 where the chosen text is longer, -1 where shorter, 0 where equally long."""
    return (
        pl.col("chosen").str.len_chars().cast(pl.Int64) - pl.col("rejected").str.len_chars().cast(pl.Int64)
    ).sign()


def length_balanced(extraction: PairExtraction) -> PairExtraction:
    """Per source, drop the surplus of chosen-longer (or chosen-shorter) pairs so both count the same."""
    pairs = extraction.pairs.with_columns(_direction=chosen_longer(extraction.pairs))
    ranked = pairs.with_columns(
        _rank=pl.col("pair_id").rank("ordinal").over("source", "_direction"),
        _keep=pl.min_horizontal(
            (pl.col("_direction") == 1).sum().over("source"),
            (pl.col("_direction") == -1).sum().over("source"),
        ),
    )
    kept = ranked.filter((pl.col("_direction") == 0) | (pl.col("_rank") <= pl.col("_keep")))
    dropped = dict(extraction.dropped)
    for source, count in ranked.group_by("source").len().iter_rows():
        surplus = count - kept.filter(pl.col("source") == source).height
        if surplus:
            dropped[f"{source}:length_balance"] = surplus
    return PairExtraction(kept.drop("_direction", "_rank", "_keep"), dropped)


# --- export -----------------------------------------------------------------------------------


def export_pairs(pairs: pl.DataFrame, directory: Path, name: str = "preference_pairs") -> dict[str, Path]:
    """JSONL and Parquet with prompt/chosen/rejected first (TRL's DPOTrainer reads those columns)."""
    directory.mkdir(parents=True, exist_ok=True)
    ordered = pairs.select(
        "prompt",
        "chosen",
        "rejected",
        *(c for c in pairs.columns if c not in ("prompt", "chosen", "rejected")),
    )
    paths = {"jsonl": directory / f"{name}.jsonl", "parquet": directory / f"{name}.parquet"}
    with paths["jsonl"].open("w", encoding="utf-8") as out:
        for row in ordered.iter_rows(named=True):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    ordered.write_parquet(paths["parquet"])
    return paths
