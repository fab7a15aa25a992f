"""Prompt and model versions in the MLflow registry, the `setlist-assistant` versions, and the aliases.

Aliases live only in MLflow: code that needs "the champion" asks MLflow, never a local file.
A prompt file is registered as a new version only when its content hash is new, and each version
is tagged with that hash, so rerunning the sync with unchanged files creates nothing. What runs is read
back from the registry (`registered_prompt`): the files are reviewed sources, the registry is the record.

Registering a version and setting its alias are two calls; a kill between them must not leave the alias
unset for good. So a new version carries the alias it should get as a tag (`setlist.pending_alias`), which
is removed once the alias is set: a rerun that finds the version finishes the job. A name with versions but
no champion at all (left by an older Setlist) gets its first version as champion.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from models.prompts import PromptSpec

# Registry names: the offline parser's classifier (models/intent), the assistant (one version per evaluated
# candidate); the LLM components' prompts are registered under the names of their files.
INTENT_MODEL = "setlist-intent"
ASSISTANT_MODEL = "setlist-assistant"

CONTENT_HASH_TAG = "setlist.content_hash"
OUTPUT_SCHEMA_TAG = "setlist.output_schema"
PENDING_ALIAS_TAG = "setlist.pending_alias"
CANDIDATE_TAG = "candidate"  # a setlist-assistant version's candidate key
GATE_TAG = "setlist.gate_decision"  # what the last gate decided for a setlist-assistant version
CANDIDATE_ARTIFACT = "candidate.json"  # in the curated evaluation run: the source of an assistant version
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
            if OUTPUT_SCHEMA_TAG not in version.tags:  # registered before the tag existed
                client.set_prompt_version_tag(
                    spec.name, version.version, OUTPUT_SCHEMA_TAG, spec.output_schema
                )
            finish_prompt_registration(client, spec.name, version, versions)
            return PromptSync(spec.name, int(version.version), spec.content_hash, created=False)
    registered = client.register_prompt(
        name=spec.name,
        template=[dict(m) for m in spec.messages],
        commit_message=spec.description,
        tags={
            CONTENT_HASH_TAG: spec.content_hash,
            OUTPUT_SCHEMA_TAG: spec.output_schema,
            "setlist.file": Path(spec.source).name,
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


def registered_prompt(client: MlflowClient, name: str, version: int) -> PromptSpec:
    """`prompts:/<name>/<version>` as the MLflow prompt registry holds it: messages, model parameters and
    description from the registered version, whoever registered it (a file sync, a notebook, the UI)."""
    uri = f"prompts:/{name}/{version}"
    try:
        registered = client.get_prompt_version(name, version)
    except MlflowException as err:
        raise LookupError(f"{uri} is not in the MLflow prompt registry: {err.message}") from None
    if registered is None or registered.is_text_prompt:
        raise LookupError(f"{uri} is not a chat prompt (a list of role/content messages)")
    return PromptSpec(
        name=name,
        description=registered.commit_message or "",
        messages=tuple({"role": m["role"], "content": m["content"]} for m in registered.template),
        # MLflow stores numbers as floats (temperature 0 -> 0.0): integral ones are restored, so a version
        # synced from a file has the file's content, hash and LLM cache keys.
        model_parameters={
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in (registered.model_config or {}).items()
        },
        output_schema=registered.tags.get(OUTPUT_SCHEMA_TAG, ""),
        source=uri,
    )


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


# --- the assistant: one setlist-assistant version per evaluated candidate ---------------------------------


@dataclass(frozen=True)
class AssistantVersion:
    version: int
    candidate_key: str

    @property
    def uri(self) -> str:
        return f"models:/{ASSISTANT_MODEL}/{self.version}"


@dataclass(frozen=True)
class RegisteredCandidate:
    version: int
    created: bool
    champion: bool  # holds setlist-assistant@champion after registration


def register_candidate(client: MlflowClient, key: str, run_id: str) -> RegisteredCandidate:
    """A `setlist-assistant` version per candidate key (once), sourced from its evaluation run's candidate.json.

    The first version registered becomes the champion; later ones wait for the gate."""
    try:
        client.get_registered_model(ASSISTANT_MODEL)
    except MlflowException:
        client.create_registered_model(
            ASSISTANT_MODEL, description=f"Assistant candidates; tag `{CANDIDATE_TAG}` = candidate key"
        )
    existing = assistant_version_of(client, key)
    if existing is None:
        source = f"{client.get_run(run_id).info.artifact_uri}/{CANDIDATE_ARTIFACT}"
        version = int(
            client.create_model_version(
                ASSISTANT_MODEL, source=source, run_id=run_id, tags={CANDIDATE_TAG: key}
            ).version
        )
    else:
        version = existing
    champion = model_alias_version(client, ASSISTANT_MODEL, CHAMPION)
    if champion is None:  # the first version; also after a kill between its registration and this alias
        champion = min(int(v.version) for v in client.search_model_versions(f"name = '{ASSISTANT_MODEL}'"))
        set_model_alias(client, ASSISTANT_MODEL, CHAMPION, champion)
    return RegisteredCandidate(version, created=existing is None, champion=champion == version)


def assistant_version_of(client: MlflowClient, key: str) -> int | None:
    found = client.search_model_versions(f"name = '{ASSISTANT_MODEL}' and tags.{CANDIDATE_TAG} = '{key}'")
    return min(int(v.version) for v in found) if found else None


def assistant_by_alias(client: MlflowClient, alias: str) -> AssistantVersion | None:
    """The `setlist-assistant` version holding `alias` now (moved by the gate, or by hand in the MLflow UI)."""
    try:
        found = client.get_model_version_by_alias(ASSISTANT_MODEL, alias)
    except MlflowException:
        return None
    return AssistantVersion(int(found.version), found.tags[CANDIDATE_TAG])


def champion_key(client: MlflowClient) -> str | None:
    """The candidate key of `models:/setlist-assistant@champion`, or None without one."""
    found = assistant_by_alias(client, CHAMPION)
    return found.candidate_key if found else None


def tag_gate_decisions(client: MlflowClient, decisions: dict[str, str], champion: str) -> None:
    """Each gated candidate's version records what the gate decided and against whom, for the MLflow UI."""
    for key, decision in decisions.items():
        if (version := assistant_version_of(client, key)) is not None:
            value = json.dumps({"decision": decision, "champion": champion})
            client.set_model_version_tag(ASSISTANT_MODEL, str(version), GATE_TAG, value)
