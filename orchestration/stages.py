"""The main job as stages: Dagster runs one partitions definition per job, so the graph is cut
where partitioned assets sit, and `setlist run` executes the stages in order.

    foundation   observes the source files; catalog, taxonomy, golden sets, prompt versions, judge calibration
    synthetic    synthetic conversations, one run per generator partition
    training     what learns from synthetic data: training set, intent model
    candidates   assistant runs and their evaluation, one run per candidate partition
    comparison   what follows the candidates: the gate, the report, and what the champion serves
                 (interaction logs, preference pairs, the online experiment)
"""

from dataclasses import dataclass

import dagster as dg

from models.synthetic.grammar import VERSION as GRAMMAR_VERSION
from models.synthetic.llm_generator import generator_version as llm_generator_version
from orchestration.partitions import CANDIDATES, SYNTHETIC_GENERATORS, synthetic_partition_key
from orchestration.registry_sensor import current_candidates
from orchestration.settings import Settings


@dataclass(frozen=True)
class Stage:
    name: str
    selection: dg.AssetSelection
    partitions_def: dg.PartitionsDefinition | None
    description: str


def _partitioned_by(
    assets: list[dg.AssetsDefinition], partitions: dg.PartitionsDefinition
) -> dg.AssetSelection:
    return dg.AssetSelection.assets(
        *(key for a in assets if a.partitions_def == partitions for key in a.keys)
    )


def plan_stages(assets: list[dg.AssetsDefinition]) -> list[Stage]:
    synthetic = _partitioned_by(assets, SYNTHETIC_GENERATORS)
    candidates = _partitioned_by(assets, CANDIDATES)
    sources = dg.AssetSelection.assets(*(k for a in assets if a.is_observable for k in a.keys))
    everything = dg.AssetSelection.all() | sources  # the foundation observes the source files first
    partitioned = synthetic | candidates
    after_synthetic = synthetic.downstream() - partitioned
    after_candidates = candidates.downstream() - partitioned
    stages = [
        Stage(
            "foundation",
            everything - synthetic.downstream() - candidates.downstream(),
            None,
            "Catalog, taxonomy, golden sets, prompt versions: everything before synthetic data.",
        ),
        Stage(
            "synthetic",
            synthetic,
            SYNTHETIC_GENERATORS,
            "Synthetic conversations, per generator partition.",
        ),
        Stage("training", after_synthetic - after_candidates, None, "What learns from the synthetic data."),
        Stage(
            "candidates",
            candidates,
            CANDIDATES,
            "Assistant runs and their evaluation, per candidate partition.",
        ),
        Stage("comparison", after_candidates, None, "The gate and reports over all candidates."),
    ]
    return [s for s in stages if s.selection.resolve(assets)]


def stage_jobs(assets: list[dg.AssetsDefinition]) -> list:
    return [
        dg.define_asset_job(
            f"setlist_{stage.name}",
            selection=stage.selection,
            partitions_def=stage.partitions_def,
            description=stage.description,
        )
        for stage in plan_stages(assets)
    ]


def stage_partition_keys(stage: Stage, settings: Settings, instance: dg.DagsterInstance) -> list[str | None]:
    """Which partitions `setlist run` materializes in a stage; new keys are added to the instance."""
    if stage.partitions_def is None:
        return [None]
    if stage.partitions_def == SYNTHETIC_GENERATORS:
        keys = synthetic_partition_keys(settings)
    else:
        keys = [c.key for c in current_candidates(settings)]
    instance.add_dynamic_partitions(stage.partitions_def.name, keys)
    return keys


def synthetic_partition_keys(settings: Settings) -> list[str]:
    """The current version of each generator: the grammar always, the LLM generator when it can run."""
    keys = [synthetic_partition_key("grammar", GRAMMAR_VERSION)]
    if settings.llm.base_url:
        keys.append(synthetic_partition_key("llm", llm_generator_version()))
    return keys
