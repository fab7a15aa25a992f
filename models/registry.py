"""Prompt and model versions in the MLflow registry, and the `champion` / `challenger` aliases.

Aliases live only in MLflow: code that needs "the champion" asks MLflow, never a local file.
A prompt file is registered as a new version only when its content hash is new, and each version
is tagged with that hash, so rerunning the sync with unchanged files creates nothing.
"""

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from models.prompts import PromptSpec

CONTENT_HASH_TAG = "setlist.content_hash"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class PromptSync:
    name: str
    version: int
    content_hash: str
    created: bool

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"


def _prompt_versions(client: MlflowClient, name: str) -> list:
    try:
        return list(client.search_prompt_versions(name))
    except MlflowException:
        return []  # the prompt has never been registered


def sync_prompt(
    client: MlflowClient, spec: PromptSpec, output_schema: type[BaseModel] | None = None
) -> PromptSync:
    """Register `spec` unless a version with its content hash exists; a first version becomes champion."""
    versions = _prompt_versions(client, spec.name)
    for version in versions:
        if version.tags.get(CONTENT_HASH_TAG) == spec.content_hash:
            return PromptSync(spec.name, int(version.version), spec.content_hash, created=False)
    registered = client.register_prompt(
        name=spec.name,
        template=[dict(m) for m in spec.messages],
        commit_message=spec.description,
        tags={CONTENT_HASH_TAG: spec.content_hash, "setlist.file": spec.path.name},
        response_format=output_schema,
        model_config=spec.model_parameters or None,
    )
    version = int(registered.version)
    client.set_prompt_alias(spec.name, CHAMPION if not versions else CHALLENGER, version)
    return PromptSync(spec.name, version, spec.content_hash, created=True)


def prompt_alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_prompt_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def model_alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_model_alias(client: MlflowClient, name: str, alias: str, version: int) -> None:
    client.set_registered_model_alias(name, alias, str(version))


@dataclass(frozen=True)
class RegistryVersion:
    kind: str  # "prompt" or "model"
    name: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}:{self.version}"


def registry_versions(
    client: MlflowClient, prompt_names: list[str], model_names: list[str]
) -> list[RegistryVersion]:
    """Every prompt and model version in MLflow for the given names, whoever registered it."""
    found = [
        RegistryVersion("prompt", name, int(v.version))
        for name in prompt_names
        for v in _prompt_versions(client, name)
    ]
    for name in model_names:
        for v in client.search_model_versions(f"name = '{name}'"):
            found.append(RegistryVersion("model", name, int(v.version)))
    return sorted(found, key=lambda v: (v.kind, v.name, v.version))
