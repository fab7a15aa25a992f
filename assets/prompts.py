"""Prompt files and prompt versions: the reviewed prompt files synced into the MLflow prompt registry."""

import warnings
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.file_versions import files_version
from models.lifecycle.registry import sync_prompt
from models.prompts import prompt_names, prompt_specs
from orchestration.resources import MLflowTracking

GROUP = "registry"
PROMPT_VERSIONS_SCHEMA = pl.Schema(
    {"name": pl.String, "version": pl.Int64, "content_hash": pl.String, "uri": pl.String}
)


def build_prompt_assets(prompts_dir: Path) -> list[dg.AssetsDefinition]:
    """The prompt files of `prompts_dir` (SETLIST_PROMPTS_DIR) as a source, and their registry versions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # observable source assets are beta in Dagster 1.13

        @dg.multi_observable_source_asset(
            specs=[
                dg.AssetSpec(
                    "prompt_files",
                    group_name=GROUP,
                    description=(
                        f"The prompt files ({prompts_dir}/*.yaml), versioned by their names and content: an "
                        "edited prompt is a new data version, which reruns prompt_versions without reloading "
                        "definitions."
                    ),
                )
            ]
        )
        def prompt_files() -> dg.ObserveResult:
            paths = sorted(prompts_dir.glob("*.yaml"))
            return dg.ObserveResult(
                data_version=dg.DataVersion(files_version(paths)),
                metadata={"folder": dg.MetadataValue.path(str(prompts_dir)), "files": len(paths)},
            )

    @dg.asset(
        name="prompt_versions",
        group_name=GROUP,
        kinds={"mlflow"},
        deps=[prompt_files],
        description=(
            "Registers each prompt file of models/prompts (`<name>.yaml` and its variants `<name>.<v>.yaml`) in "
            "the MLflow prompt registry when its content hash is new (tagged with the hash); a first version "
            "becomes `champion`, later ones `challenger`."
        ),
    )
    def prompt_versions(mlflow: MLflowTracking) -> dg.Output[pl.DataFrame]:
        client = mlflow.client()
        synced = []
        with mlflow.registry_lock():
            # The default file first: in a new registry it becomes version 1 (champion).
            for name in prompt_names(prompts_dir):
                for spec in prompt_specs(name, prompts_dir):
                    synced.append(sync_prompt(client, spec, spec.schema()))
        # Whether this run registered a version is an event, not content: metadata, so a rerun's table is equal.
        table = pl.DataFrame(
            [
                {"name": s.name, "version": s.version, "content_hash": s.content_hash, "uri": s.uri}
                for s in synced
            ],
            schema=PROMPT_VERSIONS_SCHEMA,
        )
        return dg.Output(
            table,
            metadata={
                "dagster/row_count": table.height,
                "new_versions": sum(s.created for s in synced),
                "registered_now": ", ".join(s.uri for s in synced if s.created) or "none",
                "prompts": preview(table, rows=50),
            },
        )

    return [prompt_files, prompt_versions]
