"""The LLM's parser and storyteller on a seeded sample of the curated golden set, each prompt version
beside its offline baseline in the same run, against whatever endpoint SETLIST_LLM__BASE_URL names.

    eval "$(setlist llm serve)"; python -m benchmarks.llm_components [--turns 24] [--stories 12]

A component diagnostic for when a full candidate replay is too slow for the model at hand (the product's
number is `candidate_evaluation`): per-turn parsing (intent macro-F1 over every intent, slot F1) against
the trained classifier (TF-IDF + LinearSVC + gazetteer, trained here on 2,000 grammar conversations as
the intent model is), and stories for the top track of the turn's gold constraint, graded for
groundedness by the code grader (`response_rules`: 5 = names facets, all carried by the track) against
the template storyteller. The history a turn is parsed with is the conversation's earlier user turns.
Each prompt version is one MLflow run in experiment `llm-components` (metrics, tokens, wall time).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from mlflow import MlflowClient

from models.assistant.llm_parser import LLMParser
from models.assistant.retrieval import CatalogIndex
from models.assistant.retrieval_config import RetrieverConfig
from models.assistant.stories import LLMStoryteller, StoryItem, TemplateStoryteller
from models.assistant.tools import track_card
from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.eval.evaluate import _TrackFacts  # the product's grading of a shown track
from models.eval.judges import ResponseItem, ResponseRulesGrader
from models.eval.metrics import intent_report, slot_report
from models.golden.curated import ShownTrack, load_curated_set
from models.intent.training import split_by_conversation, train
from models.labels import Constraint, Intent, Slots, conversations_to_frame
from models.llm import LLMGateway
from models.prompts import prompt_specs
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.postprocess import postprocess
from models.taxonomy import load_curated
from orchestration.settings import load_settings

EXPERIMENT = "llm-components"
INTENTS = [i.value for i in Intent]


@dataclass
class Row:
    task: str
    system: str
    n: int
    figures: dict[str, float]


def sample_turns(turns: pl.DataFrame, n: int, seed: int) -> tuple[pl.DataFrame, list[list[str]]]:
    """A seeded sample of turns and, for each, the earlier user turns of its conversation."""
    ordered = turns.sort("conversation_id", "turn_index")
    texts: dict[str, list[str]] = {}
    for cid, text in ordered.select("conversation_id", "text").iter_rows():
        texts.setdefault(cid, []).append(text)
    keep = sorted(random.Random(seed).sample(range(ordered.height), min(n, ordered.height)))
    sample = ordered[keep]
    histories = [texts[cid][:i] for cid, i in sample.select("conversation_id", "turn_index").iter_rows()]
    return sample, histories


def parse_figures(
    gold: pl.DataFrame, intents: list[str], slots: list[Slots], failures: int
) -> dict[str, float]:
    report = intent_report(gold["intent"].to_list(), intents, labels=INTENTS)
    slot = slot_report(
        [Slots.model_validate_json(s).pairs() for s in gold["slots"]], [s.pairs() for s in slots]
    )
    return {
        "intent_macro_f1": report.macro_f1,
        "intent_accuracy": report.accuracy,
        "slot_f1": slot.overall.f1,
        "failures": failures,
    }


def story_items(
    turns: pl.DataFrame, index: CatalogIndex, facts: _TrackFacts, n: int, seed: int
) -> list[tuple[StoryItem, ShownTrack]]:
    """For show-tracks turns, the best search hit that meets the turn's gold expectations (as a shown
    slate would), as a story item and as the grader sees the track."""
    rows = turns.filter(pl.col("expected_behaviour") == "show_tracks").sample(
        fraction=1.0, shuffle=True, seed=seed
    )
    items = []
    for row in rows.iter_rows(named=True):
        constraint = Constraint.model_validate_json(row["constraint"])
        must, must_not = json.loads(row["must"]), json.loads(row["must_not"])
        fitting = [
            h
            for h in index.search(row["text"], k=50)
            if facts.satisfies(h.track_id, must, must_not, constraint)
        ]
        if fitting:
            card = track_card(index.get_track(fitting[0].track_id))
            items.append((StoryItem(card, row["text"], constraint), facts.shown(fitting[0].track_id)))
        if len(items) == n:
            break
    return items


def groundedness(
    grader: ResponseRulesGrader, request: list[str], stories: list[str], shown: list[ShownTrack]
) -> float:
    ratings = [
        grader.grade(ResponseItem("", "", r, s, shown=(t,))).value
        for r, s, t in zip(request, stories, shown, strict=True)
    ]
    return sum(r == 5 for r in ratings) / len(ratings)


def log_run(client: MlflowClient, experiment_id: str, row: Row, params: dict[str, str]) -> None:
    run = client.create_run(experiment_id, run_name=f"{row.task}:{row.system}")
    for key, value in {**params, "task": row.task, "system": row.system, "n": str(row.n)}.items():
        client.log_param(run.info.run_id, key, value)
    for key, value in row.figures.items():
        client.log_metric(run.info.run_id, key, float(value))
    client.set_terminated(run.info.run_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--stories", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--versions", nargs="*", help="prompt files to run (default: every version)")
    args = parser.parse_args(argv)
    settings = load_settings()
    if not settings.llm.base_url:
        raise SystemExit('set SETLIST_LLM__BASE_URL (e.g. eval "$(setlist llm serve)")')
    taxonomy = load_curated(settings.taxonomy_file)
    catalog = read_catalog(CatalogSourceSpec()).kept
    curated = load_curated_set(taxonomy).turns
    gateway = LLMGateway(settings.llm.model_copy(update={"cache_path": settings.llm_cache_path}))
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    rows: list[Row] = []

    def record(row: Row) -> None:  # logged as it comes: a slow model may not finish every row
        rows.append(row)
        log_run(client, experiment_id, row, {"model": settings.llm.model, "seed": str(args.seed)})
        print(json.dumps({"task": row.task, "system": row.system, "n": row.n, **row.figures}), flush=True)

    def versions(name: str) -> list:
        return [p for p in prompt_specs(name) if not args.versions or Path(p.source).name in args.versions]

    # Parsing: each parser prompt version, then the trained classifier, on the same turns.
    turns, histories = sample_turns(curated, args.turns, args.seed)
    for prompt in versions("parse_request"):
        before, started = gateway.totals.copy(), time.perf_counter()
        parsed = LLMParser(gateway, taxonomy, prompt=prompt).parse_batch(turns["text"].to_list(), histories)
        usage = gateway.totals - before
        figures = parse_figures(
            turns,
            [p.labels.intent.value for p in parsed],
            [p.labels.slots for p in parsed],
            sum(p.failure is not None for p in parsed),
        )
        figures |= {
            "wall_s": time.perf_counter() - started,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
        }
        record(Row("parse", Path(prompt.source).name, turns.height, figures))
        print(
            json.dumps({"failure_reasons": dict(Counter(p.failure for p in parsed if p.failure))}), flush=True
        )
    generation = GrammarGenerator(taxonomy, catalog).generate(
        settings.synthetic_conversations, seed=settings.seed
    )
    synthetic = conversations_to_frame(postprocess(generation.conversations, taxonomy).kept)
    classifier = train(
        split_by_conversation(synthetic, settings.seed), taxonomy, seed=settings.seed
    ).predictor
    predictions = classifier.predict(turns["text"].to_list())
    record(
        Row(
            "parse",
            "trained classifier",
            turns.height,
            parse_figures(turns, [p.intent.value for p in predictions], [p.slots for p in predictions], 0),
        )
    )

    # Stories: the template storyteller, then each story prompt version, on the same tracks.
    index = CatalogIndex.build(catalog, taxonomy, RetrieverConfig())
    items = story_items(curated, index, _TrackFacts(catalog, taxonomy), args.stories, args.seed)
    requests, shown = [i.request for i, _ in items], [t for _, t in items]
    grader = ResponseRulesGrader(taxonomy)
    template = TemplateStoryteller(taxonomy).tell_batch([i for i, _ in items])
    record(
        Row(
            "story",
            "template",
            len(items),
            {"groundedness": groundedness(grader, requests, [s.text for s in template], shown)},
        )
    )
    for prompt in versions("track_story"):
        before, started = gateway.totals.copy(), time.perf_counter()
        told = LLMStoryteller(gateway, taxonomy, prompt=prompt).tell_batch([i for i, _ in items])
        usage = gateway.totals - before
        figures = {
            "groundedness": groundedness(grader, requests, [s.text for s in told], shown),
            "failures": sum(
                s.failure is not None for s in told
            ),  # a failed story falls back to the template's
            "wall_s": time.perf_counter() - started,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
        }
        record(Row("story", Path(prompt.source).name, len(items), figures))
        print(
            json.dumps(
                {"prompt": Path(prompt.source).name, "examples": [s.text for s in told[:3]]},
                ensure_ascii=False,
            )
        )
    gateway.close()

    print(f"\nmodel {settings.llm.model}; logged to MLflow '{EXPERIMENT}'\n")
    print("| task | system | n | figures |")
    print("|---|---|---:|---|")
    for row in rows:
        shown_figures = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.figures.items()
        )
        print(f"| {row.task} | {row.system} | {row.n} | {shown_figures} |")


if __name__ == "__main__":
    main()
