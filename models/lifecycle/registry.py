"""Prompt and model versions in the MLflow registry, and the `champion` / `challenger` aliases.

Aliases live only in MLflow: code that needs "the champion" asks MLflow, never a local file.
A prompt file is registered as a new version only when its content hash is new, and each version
is tagged with that hash, so rerunning the sync with unchanged files creates nothing.

Registering a version and setting its alias are two calls; a kill between them must not leave the alias
unset for good. So a new version carries the alias it should get as a tag (`setlist.pending_alias`), which
is removed once the alias is set: a rerun that finds the version finishes the job. A name with versions but
no champion at all (left by an older Setlist) gets its first version as champion.
"""

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from models.prompts import PromptSpec

CONTENT_HASH_TAG = "setlist.content_hash"
PENDING_ALIAS_TAG = "setlist.pending_alias"
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
            finish_prompt_registration(client, spec.name, version, versions)
            return PromptSync(spec.name, int(version.version), spec.content_hash, created=False)
    registered = client.register_prompt(
        name=spec.name,
        template=[dict(m) for m in spec.messages],
        commit_message=spec.description,
        tags={
            CONTENT_HASH_TAG: spec.content_hash,
            "setlist.file": spec.path.name,
            PENDING_ALIAS_TAG: CHALLENGER if versions else CHAMPION,
        },
        response_format=output_schema,
        model_config=spec.model_parameters or None,
    )
    finish_prompt_registration(client, spec.name, registered, [*versions, registered])
    return PromptSync(spec.name, int(registered.version), spec.content_hash, created=True)


def finish_prompt_registration(client: MlflowClient, name: str, version, versions: list) -> None:
    """Set the alias `version` was registered for (its pending tag), and a champion if the name has none."""
    if alias := version.tags.get(PENDING_ALIAS_TAG):
        client.set_prompt_alias(name, alias, int(version.version))
        client.delete_prompt_version_tag(name, int(version.version), PENDING_ALIAS_TAG)
    if prompt_alias_version(client, name, CHAMPION) is None:
        client.set_prompt_alias(name, CHAMPION, min(int(v.version) for v in versions))


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


def finish_model_registration(client: MlflowClient, name: str, version: int) -> None:
    """Set the alias model `version` was registered for (its pending tag), and a champion if the name has
    none (its first version): what a kill between registering and aliasing left undone."""
    pending = client.get_model_version(name, str(version)).tags.get(PENDING_ALIAS_TAG)
    if pending:
        set_model_alias(client, name, pending, version)
        client.delete_model_version_tag(name, str(version), PENDING_ALIAS_TAG)
    if model_alias_version(client, name, CHAMPION) is None:
        first = min(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        set_model_alias(client, name, CHAMPION, first)


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
