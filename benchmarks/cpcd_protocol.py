"""The assistant on CPCD under the public protocol, against the BM25 baseline in the same run.

Bundled CPCD file (`data/cpcd/...train.jsonl.gz`), evaluation part only (70% of dialogs; the other 30% is the
co-likes' and preference pairs' training part), public protocol (`models/eval/cpcd_protocol.py`): target =
goal playlist minus seeds, seeds out of the ranking, 100 deep. Rows:

- BM25 baseline: the paper's (the user's utterances so far, joined), `BASELINE_CONFIG`;
- bare retriever: the candidate's preset alone, the listener's turns weighted to the latest, no parser/feedback;
- assistant without feedback / with feedback: the product path (trained intent parser, dialogue state,
  planner, retrieval, co-likes from the preference part), replayed turn by turn; "with feedback" gives the
  protocol's seeds as likes before each turn, exactly as `candidate_evaluation` does.

The intent model is trained here as `setlist run` trains it (grammar partition, 2,000 conversations, seed 7,
evaluation texts held out), in about half a minute. `--curated` also replays the curated golden set and
prints turn_success (the gate's primary) per preset.

    .venv/bin/python -m benchmarks.cpcd_protocol [--presets hybrid,tags] [--curated] [--cpcd path.jsonl]
"""

import argparse
import time
from pathlib import Path

import pandas as pd
import polars as pl
from rich.console import Console
from rich.table import Table

from models.assistant.assistant import Assistant, AssistantConfig
from models.assistant.co_likes import CoLikes, cpcd_sessions
from models.assistant.keyword_parser import KeywordParser
from models.assistant.offline_parser import OfflineParser
from models.assistant.replay import replay
from models.assistant.retrieval import CatalogIndex
from models.assistant.retrieval_config import RETRIEVER_PRESETS
from models.assistant.state import TOPIC_DECAY
from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.eval.cpcd_runs import BASELINE_CONFIG, RANK_DEPTH, run_assistant, run_retriever
from models.eval.evaluate import evaluate_curated
from models.golden.cpcd import CpcdGolden, cpcd_evaluation_turns, cpcd_preference_turns, import_cpcd
from models.golden.curated import load_curated_set
from models.intent.pyfunc import predictions_frame
from models.intent.training import split_by_conversation, train
from models.labels import conversations_to_frame
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.postprocess import postprocess
from models.taxonomy import Taxonomy, design_taxonomy, load_curated

REPO = Path(__file__).resolve().parents[1]
BUNDLED_CPCD = REPO / "data" / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz"
SEED, CONVERSATIONS = 7, 2000  # the settings' defaults


class _InProcessModel:
    """The pyfunc interface `OfflineParser` calls, over a predictor trained in this process."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return predictions_frame(self.predictor, frame["text"].astype(str).tolist())


def trained_parser(golden: CpcdGolden) -> tuple[OfflineParser, Taxonomy, pl.DataFrame, pl.DataFrame]:
    """The intent model as `setlist run` trains it on the bundled sample; also the taxonomy, catalog, curated set."""
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo")).kept
    taxonomy = Taxonomy.from_table(design_taxonomy(load_curated(REPO / "data" / "taxonomy.yaml"), catalog))
    curated = load_curated_set(taxonomy).turns
    generated = GrammarGenerator(taxonomy, catalog).generate(CONVERSATIONS, seed=SEED)
    held_out = [*curated["text"], *cpcd_evaluation_turns(golden.turns)["user_query"]]
    kept = postprocess(generated.conversations, taxonomy, eval_texts=held_out).kept
    model = train(split_by_conversation(conversations_to_frame(kept), SEED), taxonomy, seed=SEED)
    return OfflineParser(_InProcessModel(model.predictor), 0, taxonomy), taxonomy, catalog, curated


def _row(system: str, report, seconds: float, note: str = "") -> dict[str, object]:
    micro, macro = report.micro, report.macro
    return {
        "system": system,
        "hit@10 micro": micro["hit_at_10"],
        "hit@10 macro": macro["hit_at_10"],
        "hit@1": micro["hit_at_1"],
        "hit@100": micro["hit_at_100"],
        "recall@10": micro["recall_at_10"],
        "MRR@10": micro["mrr_at_10"],
        "nDCG@10": micro["ndcg_at_10"],
        "turns": report.n_evaluated,
        "seconds": seconds,
        "note": note,
    }


def run(cpcd: Path, presets: list[str], curated: bool) -> None:
    console = Console(width=200)
    golden = import_cpcd(cpcd)
    turns = cpcd_evaluation_turns(golden.turns)
    started = time.perf_counter()
    parser, taxonomy, catalog, curated_turns = trained_parser(golden)
    console.print(f"[dim]intent model trained in {time.perf_counter() - started:.0f}s[/dim]")
    co_likes = CoLikes.from_sessions(cpcd_sessions(cpcd_preference_turns(golden.turns)))

    rows = []
    started = time.perf_counter()
    baseline = run_retriever(CatalogIndex.build(golden.corpus, config=BASELINE_CONFIG), turns, golden.corpus)
    rows.append(_row("BM25 baseline (paper query)", baseline.report, time.perf_counter() - started))
    config = AssistantConfig(stories=0, rank_depth=RANK_DEPTH)
    for preset in presets:
        index = CatalogIndex.build(golden.corpus, taxonomy, RETRIEVER_PRESETS[preset])
        started = time.perf_counter()
        bare = run_retriever(index, turns, golden.corpus, decay=TOPIC_DECAY)
        rows.append(_row(f"bare retriever ({preset})", bare.report, time.perf_counter() - started))
        for name, turn_parser in (("trained parser", parser), ("keyword parser", KeywordParser(taxonomy))):
            assistant = Assistant(turn_parser, index, taxonomy, config=config, co_likes=co_likes)
            for feedback in (False, True):
                if name == "keyword parser" and not feedback:
                    continue  # a diagnostic of the parser's share: one row is enough
                started = time.perf_counter()
                product = run_assistant(
                    assistant, turns, golden.corpus, preset, lockstep=True, feedback=feedback
                )
                empty = int((product.runs["ranked_track_ids"].list.len() == 0).sum())
                rows.append(
                    _row(
                        f"assistant {'with' if feedback else 'without'} feedback ({preset}, {name})",
                        product.protocol.report,
                        time.perf_counter() - started,
                        f"{empty} of {product.runs.height} turns without tracks",
                    )
                )
    _print(
        console, rows, f"CPCD public protocol, {cpcd.name}, evaluation part, corpus {golden.corpus.height}"
    )
    base = rows[0]["hit@10 micro"]
    console.print(
        "assistant with feedback / BM25 baseline hit@10: "
        + ", ".join(
            f"{r['system']}: {r['hit@10 micro'] / base:.2f}x"
            for r in rows
            if "with feedback" in str(r["system"])
        )
    )

    if curated:
        table = []
        for preset in presets:
            index = CatalogIndex.build(catalog, taxonomy, RETRIEVER_PRESETS[preset])
            runs = replay(Assistant(parser, index, taxonomy), curated_turns, preset, lockstep=False)
            m = evaluate_curated(runs, curated_turns, catalog, taxonomy).metrics
            table.append(
                {
                    "preset": preset,
                    "turn_success": m["turn_success.mean"],
                    "95% CI": f"{m['turn_success.mean.ci_low']:.3f}-{m['turn_success.mean.ci_high']:.3f}",
                    "constraint_rate": m["constraint.rate"],
                    "groundedness": m["groundedness.mean"],
                    "clarification P/R": f"{m['clarification.precision']:.2f}/{m['clarification.recall']:.2f}",
                    "latency p95 ms": m["latency_ms.p95"],
                }
            )
        _print(console, table, f"Curated golden set ({curated_turns.height} turns), trained intent parser")


def _print(console: Console, rows: list[dict[str, object]], title: str) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("system", "preset", "note") else "right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpcd", type=Path, default=BUNDLED_CPCD, help="a cpcd_v1.dialogs.*.jsonl(.gz) file")
    parser.add_argument("--presets", default="hybrid,tags", help="retriever presets, comma-separated")
    parser.add_argument("--curated", action="store_true", help="also the curated golden set's turn_success")
    args = parser.parse_args()
    run(args.cpcd, args.presets.split(","), args.curated)
