"""The champion gate's error and power by simulation on the real golden structure, beside the old rule.

Run: .venv/bin/python -m benchmarks.gate_power [--decisions 500] [--resamples 1000]
The structure (conversations, turns per conversation, story and safety turns) is read from
data/golden/curated and the bundled CPCD file's evaluation part; outcomes are simulated
(models/eval/gate_simulation.py). "Old rule" = each challenger at one-sided 0.025 alone, the best
promoted, guardrail margins at the tolerances (no power analysis), measured on the same draws.
"""

import argparse
import time

import polars as pl

from models.eval.gate_simulation import CURATED, GoldenStructure, Scenario, promotion_rates
from models.golden.cpcd import cpcd_evaluation_turns, import_cpcd
from models.golden.curated import load_curated_set
from models.taxonomy import load_curated
from orchestration.settings import BUNDLED_DATA

SCENARIOS = {
    "A/A, 1 challenger": Scenario(challengers=1, guardrails=False),
    "A/A, 3 challengers": Scenario(challengers=3, guardrails=False),
    "A/A, 5 challengers": Scenario(challengers=5, guardrails=False),
    "A/A, 10 challengers": Scenario(challengers=10, guardrails=False),
    "+5 points, curated + CPCD, guardrails": Scenario(lift=0.05),
    "+10 points, curated only, guardrails": Scenario(lift=0.10, with_cpcd=False),
    "+10 points, curated + CPCD, no guardrails": Scenario(lift=0.10, guardrails=False),
    "+10 points, curated + CPCD, guardrails": Scenario(lift=0.10),
    "+10 points, curated + CPCD, guardrails, 5% slower": Scenario(lift=0.10, slowdown=1.05),
    "+10 points on curated only, curated + CPCD, guardrails": Scenario(lift=0.10, lift_on=(CURATED,)),
    "+10 points, curated + CPCD, guardrails, 1 of 5 challengers": Scenario(challengers=5, lift=0.10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    curated = load_curated_set(load_curated(BUNDLED_DATA / "taxonomy.yaml")).turns
    cpcd = import_cpcd(BUNDLED_DATA / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz").turns
    evaluation = cpcd_evaluation_turns(cpcd).filter(pl.col("liked").list.len() > 0)
    structure = GoldenStructure.of(curated, evaluation)
    print(
        f"curated: {curated['conversation_id'].n_unique()} conversations, {curated.height} turns "
        f"({int(structure.story_turns.sum())} with stories, {int(structure.safety_turns.sum())} safety); "
        f"CPCD evaluation: {evaluation['conversation_id'].n_unique()} conversations, {evaluation.height} turns"
    )
    print(f"{args.decisions} decisions per row, {args.resamples} bootstrap resamples each\n")
    print("| scenario | promoted (gate) | promoted (old rule) | wins blocked by guardrails | s |")
    print("|---|---:|---:|---|---:|")
    for i, (name, scenario) in enumerate(SCENARIOS.items()):
        started = time.perf_counter()
        rates = promotion_rates(structure, scenario, args.decisions, 100 + i, args.resamples)
        blocked = ", ".join(f"{k} {v}" for k, v in sorted(rates.blocked_by.items())) or "none"
        print(
            f"| {name} | {rates.promoted:.3f} | {rates.promoted_old_rule:.3f} | {blocked} | "
            f"{time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
