"""Synthetic conversations per second: the offline grammar (with post-processing) and the LLM path.

Run: .venv/bin/python benchmarks/synthetic.py [--large 100000]
The LLM path goes through the real gateway to the loopback test server (100 ms per answer), whose
responder writes grammar text for the requested labels, so answers pass the label check.
"""

import argparse
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.labels import TurnLabels
from models.llm import GatewayConfig, LLMGateway
from models.llm.test_server import FaultPlan, LLMTestServer
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.llm_generator import LLMGenerator
from models.synthetic.postprocess import postprocess
from models.taxonomy import load_curated
from orchestration.settings import BUNDLED_DATA


def offline(n: int, generator: GrammarGenerator) -> tuple[float, int]:
    started = time.perf_counter()
    result = postprocess(generator.generate(n, seed=7).conversations, generator.taxonomy)
    return time.perf_counter() - started, len(result.kept)


def llm(n: int, concurrency: int, grammar: GrammarGenerator, catalog) -> tuple[float, int]:
    rng = random.Random(0)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        plan = [
            TurnLabels.model_validate(t)
            for t in json.loads(re.search(r"<labels>(.*?)</labels>", user, re.S)[1])
        ]
        return {"turns": [{"text": grammar.realize(t, rng), **t.model_dump(mode="json")} for t in plan]}

    with (
        LLMTestServer(responder=respond, faults=FaultPlan(latency_ms=100)) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = GatewayConfig(
            base_url=server.base_url, max_concurrency=concurrency, cache_path=Path(tmp) / "cache.sqlite"
        )
        gateway = LLMGateway(config)
        started = time.perf_counter()
        generation = LLMGenerator(grammar.taxonomy, catalog, gateway).generate(n, seed=7)
        result = postprocess(generation.conversations, grammar.taxonomy)
        seconds = time.perf_counter() - started
        gateway.close()
    return seconds, len(result.kept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--llm", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("SETLIST_LLM_API_KEY", "sk-benchmark-not-a-key")
    taxonomy = load_curated(BUNDLED_DATA / "taxonomy.yaml")
    catalog = read_catalog(CatalogSourceSpec()).kept
    grammar = GrammarGenerator(taxonomy, catalog)

    rows = []
    for n in (2_000, args.large):
        seconds, kept = offline(n, grammar)
        rows.append((f"grammar + post-processing, {n:,} conversations", seconds, n, kept))
    seconds, kept = llm(args.llm, args.concurrency, grammar, catalog)
    rows.append(
        (
            f"LLM via gateway, {args.llm} conversations, 100 ms latency, concurrency {args.concurrency}",
            seconds,
            args.llm,
            kept,
        )
    )

    print("| path | seconds | conversations/s | kept after filters |")
    print("|---|---:|---:|---:|")
    for name, seconds, n, kept in rows:
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} | {kept:,} |")


if __name__ == "__main__":
    main()
