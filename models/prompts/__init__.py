"""Prompts as reviewed files: one YAML file per prompt version in this folder.

`<name>.yaml` is a prompt's default version; `<name>.<variant>.yaml` (e.g. `parse_request.v2.yaml`)
is another version of the same prompt, kept beside it so both can be registered and evaluated as
candidates side by side. A prompt file holds a description, the chat messages (with `{{placeholders}}`, MLflow's
template syntax, so a registered version also works with `mlflow.genai.load_prompt(...).format`),
model parameters and its output schema as an import path ("models.labels:TurnLabels", a pydantic
model owned by the task's module). Its content hash is its version: the
registry sync, the LLM cache key and Dagster code versions all follow it.
"""

import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel

PROMPTS_DIR = Path(__file__).parent
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
REQUIRED = {"description", "messages", "model_parameters", "output_schema"}


class PromptFileError(ValueError):
    """A prompt file is malformed; the message names the file and the rule."""


@dataclass(frozen=True)
class PromptSpec:
    name: str
    description: str
    messages: tuple[dict[str, str], ...]  # {"role": ..., "content": ...}
    model_parameters: dict[str, object]
    output_schema: str
    source: str  # the file it was read from, or its registry URI ("prompts:/parse_request/2")
    variant: str | None = None  # None for the default file, "v2" for `<name>.v2.yaml`

    @property
    def content_hash(self) -> str:
        payload = {
            "messages": list(self.messages),
            "model_parameters": self.model_parameters,
            "output_schema": self.output_schema,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def version(self) -> str:
        return f"{self.name}@{self.content_hash}"

    @property
    def placeholders(self) -> set[str]:
        return {name for m in self.messages for name in PLACEHOLDER.findall(m["content"])}

    def schema(self) -> type[BaseModel]:
        """The pydantic model the answer must validate against."""
        module_name, _, attribute = self.output_schema.partition(":")
        try:
            schema = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError):
            raise PromptFileError(
                f"{self.source}: output_schema {self.output_schema!r} is not an importable model"
            ) from None
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise PromptFileError(
                f"{self.source}: output_schema {self.output_schema!r} is not a pydantic model"
            )
        return schema

    def render(self, **values: object) -> list[dict[str, str]]:
        missing = self.placeholders - set(values)
        if missing:
            raise PromptFileError(f"{self.source}: placeholder(s) {sorted(missing)} have no value")
        return [
            {"role": m["role"], "content": PLACEHOLDER.sub(lambda match: str(values[match[1]]), m["content"])}
            for m in self.messages
        ]


def load_prompt(name: str, directory: Path = PROMPTS_DIR) -> PromptSpec:
    """`name` is a file stem: "parse_request" (the default version) or "parse_request.v2"."""
    path = directory / f"{name}.yaml"
    name, _, variant = name.partition(".")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise PromptFileError(f"{path}: cannot read prompt file: {err}") from None
    if not isinstance(raw, dict) or REQUIRED - set(raw):
        missing = sorted(REQUIRED - set(raw or {})) if isinstance(raw, dict) else sorted(REQUIRED)
        raise PromptFileError(f"{path}: missing field(s) {missing}")
    messages = raw["messages"]
    if not isinstance(messages, list) or not messages:
        raise PromptFileError(f"{path}: 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in {"system", "user", "assistant"}
            or not isinstance(message.get("content"), str)
        ):
            raise PromptFileError(
                f"{path}: messages[{i}] needs a role (system/user/assistant) and string content"
            )
    if not isinstance(raw["model_parameters"], dict):
        raise PromptFileError(f"{path}: 'model_parameters' must be a mapping")
    return PromptSpec(
        name=name,
        description=str(raw["description"]),
        messages=tuple(messages),
        model_parameters=dict(raw["model_parameters"]),
        output_schema=str(raw["output_schema"]),
        source=str(path),
        variant=variant or None,
    )


def data_json(value: object) -> str:
    """JSON for a prompt's <data> block: '<', '>' and '&' are \\u-escaped, so no catalog title or listener turn
    can close the fence and speak outside it."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def prompt_names(directory: Path = PROMPTS_DIR) -> list[str]:
    return sorted({p.stem.partition(".")[0] for p in directory.glob("*.yaml")})


def prompt_specs(name: str, directory: Path = PROMPTS_DIR) -> list[PromptSpec]:
    """Every file of one prompt: the default first, then the variants by name."""
    variants = sorted(p.stem for p in directory.glob(f"{name}.*.yaml"))
    return [load_prompt(stem, directory) for stem in [name, *variants]]


def prompt_by_hash(name: str, content_hash: str, directory: Path = PROMPTS_DIR) -> PromptSpec | None:
    """The file of prompt `name` whose content hash is `content_hash`, if one is in the folder."""
    return next((s for s in prompt_specs(name, directory) if s.content_hash == content_hash), None)
