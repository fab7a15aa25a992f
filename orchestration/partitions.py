"""The partitions definitions assets are keyed by: a leaf that asset modules, stages and sensors import."""

import dagster as dg

from models.lifecycle.candidates import Candidate, CandidateKeyError

# Keys are "<generator>-<version>" ("grammar-v1", "llm-3f2a9c1b0d4e"): versions coexist side by side and
# new ones are added as they appear, which a static or multi-dimensional partitioning cannot express
# without listing every version up front.
SYNTHETIC_GENERATORS = dg.DynamicPartitionsDefinition(name="synthetic_generator")
# Keys are candidate keys ("intent-v3.hybrid.template"); the registry sensor, the nightly schedule and
# `setlist run` add them (models/lifecycle/candidates.py).
CANDIDATES = dg.DynamicPartitionsDefinition(name="candidates")


def synthetic_partition_key(generator: str, version: str) -> str:
    return f"{generator}-{version}"


def partition_candidate(context: dg.AssetExecutionContext) -> Candidate:
    """The candidate a `candidates` partition names; a key that names none fails the step, saying why."""
    try:
        return Candidate.from_key(context.partition_key)
    except CandidateKeyError as err:
        raise dg.Failure(str(err)) from err
