"""Prompt versions: the reviewed prompt files synced into the MLflow prompt registry."""

import hashlib
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ui_metadata import preview
from models.prompts import prompt_files, prompt_names
from models.registry import sync_prompt
from orchestration.resources import MLflowTracking

PROMPT_VERSIONS_SCHEMA = pl.Schema(
    {
        "name": pl.String,
        "version": pl.Int64,
        "content_hash": pl.String,
        "created": pl.Boolean,
        "uri": pl.String,
    }
)


def prompts_fingerprint(prompts_dir: Path) -> str:
    """One hash over every prompt's content hash: the asset's code version follows the prompt files."""
    hashes = sorted(
        spec.version for name in prompt_names(prompts_dir) for spec in prompt_files(name, prompts_dir)
    )
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12]


def build_prompt_versions(prompts_dir: Path) -> dg.AssetsDefinition:
    @dg.asset(
        name="prompt_versions",
        group_name="registry",
        kinds={"mlflow"},
        code_version=prompts_fingerprint(prompts_dir),
        description=(
            "Registers each prompt file of models/prompts (`<name>.yaml` and its variants `<name>.<v>.yaml`) in "
            "the MLflow prompt registry when its content hash is new (tagged with the hash); a first version "
            "becomes `champion`, later ones `challenger`."
        ),
    )
    def prompt_versions(mlflow: MLflowTracking) -> dg.Output[pl.DataFrame]:
        client = mlflow.client()
        rows = []
        with mlflow.registry_lock():
            # The default file first: in a new registry it becomes version 1 (champion).
            for name in prompt_names(prompts_dir):
                for spec in prompt_files(name, prompts_dir):
                    synced = sync_prompt(client, spec, spec.schema())
                    rows.append({**synced.__dict__, "uri": synced.uri})
        table = pl.DataFrame(rows, schema=PROMPT_VERSIONS_SCHEMA)
        return dg.Output(
            table,
            metadata={
                "dagster/row_count": table.height,
                "new_versions": int(table["created"].sum()),
                "prompts": preview(table, rows=50),
            },
        )

    return prompt_versions
