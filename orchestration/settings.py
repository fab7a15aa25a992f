"""The one settings object: every knob of Setlist, read from `SETLIST_*` environment variables.

Nested groups use a double underscore: `SETLIST_CATALOG__KIND=cpcd`, `SETLIST_LLM__BASE_URL=...`.
"""

import os
import re
import warnings
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Dagster validates its own cron strings with this; using it keeps one definition of "valid cron".
from dagster._utils.schedules import is_valid_cron_string
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError
from rapidfuzz import fuzz, process

from models.assistant.retrieval_config import RETRIEVER_PRESETS
from models.catalog.sources import CatalogSourceSpec
from models.llm.config import API_KEY_ENV_VARS, GatewayConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DATA = REPO_ROOT / "data"
ENV_PREFIX = "SETLIST_"
NESTED_DELIMITER = "__"


# SETLIST_* variables that are not settings but are read by others: the API key (never a setting),
# the deploy files' PostgreSQL connection, the tests' shared data folder. A trailing `*` is a prefix.
OTHER_VARIABLES = (
    *(v for v in API_KEY_ENV_VARS if v.startswith(ENV_PREFIX)),
    "SETLIST_PG_*",
    "SETLIST_SHARED_DATA",
)


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable to fix."""


class SettingsWarning(UserWarning):
    """A `SETLIST_*` variable that nothing reads: most likely a misspelt setting."""


class ComparisonSettings(BaseModel):
    """The offline candidates every run evaluates beside the registry's (models/lifecycle/candidates.py), so
    the gate and MLflow's compare view have real alternatives: the champion intent model with each retriever
    preset here, and the keyword parser (no model) with hybrid retrieval."""

    retrievers: list[str] = ["hybrid", "bm25"]
    keyword_baseline: bool = True

    @field_validator("retrievers")
    @classmethod
    def _known_presets(cls, value: list[str]) -> list[str]:
        if unknown := sorted(set(value) - set(RETRIEVER_PRESETS)):
            raise ValueError(f"unknown retriever presets {unknown}; presets: {sorted(RETRIEVER_PRESETS)}")
        return list(dict.fromkeys(value))


class ScheduleSettings(BaseModel):
    """When things run on their own (cron strings in `timezone`)."""

    timezone: str = "UTC"
    catalog_refresh: str = "0 3 * * *"  # daily
    synthetic_refresh: str = "0 4 * * 1"  # weekly, Monday
    nightly_evaluation: str = "0 5 * * *"  # after the catalog refresh has settled
    sensor_interval_s: int = Field(default=60, ge=5)
    llm_pool_limit: int = Field(default=2, ge=1)  # LLM-calling steps that may run at once

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("catalog_refresh", "synthetic_refresh", "nightly_evaluation")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not is_valid_cron_string(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value


class GcpSettings(BaseModel):
    """The production profile: tables in BigQuery, files in GCS, a shared MLflow server."""

    project: str | None = None
    dataset: str = "setlist"
    location: str = "US"
    bucket: str | None = None  # gs://bucket/prefix: MLflow artifacts and Setlist files


class CelerySettings(BaseModel):
    """The Celery executor (SETLIST_EXECUTOR=celery): the run submits each step to `queue` on the broker, and
    workers started with `celery -A orchestration.celery_app worker` read these same settings."""

    broker_url: str = "pyamqp://guest:guest@127.0.0.1:5672//"
    backend_url: str = (
        "rpc://"  # results travel back over the broker (AMQP); use redis:// with a Redis broker
    )
    queue: str = "setlist"
    # A worker's pool process keeps the memory a step freed (the allocator does not give it back), so each
    # step would start from the peak of the ones before; after a step that leaves it above this many MB it is
    # replaced by a fresh fork (0: never). At 1M tracks two ratcheted workers plus one step's peak went past
    # the machine's 23 GB and the kernel killed a pool process (benchmarks/engines.py, README *Engines*).
    max_memory_per_child_mb: int = Field(default=2048, ge=0)


LocalEngine = Literal["llama-cpp-python", "llama-server"]


class LocalLLMSettings(BaseModel):
    """`setlist llm install|serve`: llama.cpp's OpenAI-compatible server on 127.0.0.1 (models/llm/local_server.py)."""

    port: int = Field(default=8181, ge=1, le=65535)
    threads: int = Field(default=2, ge=1)
    ctx: int = Field(default=8192, ge=512)  # tokens of context: prompt + answer of one request
    # KV bytes of evaluated prompts the server keeps, so each task's prefix is found again (0: off); each
    # cached prompt also holds ~78 MB of logits (models/llm/local_server.py ServerConfig).
    prompt_cache_mb: int = Field(default=256, ge=0)
    # llama-cpp-python's server (one slot) or llama.cpp's llama-server (`setlist llm install --llama-server`),
    # whose parallel slots decode several requests together.
    engine: LocalEngine = "llama-cpp-python"
    slots: int = Field(default=1, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    home: Path = Path(".setlist")
    profile: Literal["local", "gcp"] = "local"
    seed: int = 7
    synthetic_conversations: int = Field(default=2000, ge=1)
    # The synthetic_generator partition the intent model trains on; None is the grammar's current one.
    intent_training_partition: str | None = None
    # The catalog source: kind, location (path, folder or URL) and, for tabular files, format and column map.
    # Declared here once, as the shape the sourcing code reads (`read_catalog`): no resource restates it.
    catalog: CatalogSourceSpec = Field(default_factory=CatalogSourceSpec)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    comparison: ComparisonSettings = Field(default_factory=ComparisonSettings)
    # The endpoint, model and limits; the API key is read from SETLIST_LLM_API_KEY only, never a setting.
    # The cache lives in the home folder (`llm_cache_path`), so the file's own cache_path is ignored.
    llm: GatewayConfig = Field(default_factory=GatewayConfig)
    local_llm: LocalLLMSettings = Field(default_factory=LocalLLMSettings)
    gcp: GcpSettings = Field(default_factory=GcpSettings)
    # Where a run's steps execute; None: in one process locally, one process per step in the gcp profile.
    executor: Literal["in_process", "multiprocess", "celery"] | None = None
    celery: CelerySettings = Field(default_factory=CelerySettings)
    mlflow_uri: str | None = None  # a shared tracking server; default: SQLite under the home folder
    # A PostgreSQL URL whose advisory lock serialises registry writes to a shared MLflow server between
    # processes and machines (locally a file lock beside the SQLite store does it).
    mlflow_lock_url: str | None = None
    taxonomy_file: Path = BUNDLED_DATA / "taxonomy.yaml"
    # The CPCD dev/train file, bundled gzipped (CC BY 4.0, data/LICENSE-data.md); any file of the public format.
    golden_cpcd_path: str = str(BUNDLED_DATA / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz")
    prompts_dir: Path = REPO_ROOT / "models" / "prompts"
    # Interaction logs (JSONL or Parquet, models/feedback/interactions.py); empty: simulated listeners.
    interaction_logs_path: str = ""
    # The bundled sample's track-text vectors (`python -m orchestration.vector_seed` writes them): reused by
    # text key, so a first run embeds only texts they lack. Empty: none.
    vector_seed: str = str(BUNDLED_DATA / "mtg_jamendo_sample.vectors.parquet")

    @field_validator("mlflow_lock_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a postgresql:// URL: {value!r}")
        return value

    @property
    def executor_kind(self) -> str:
        return self.executor or ("multiprocess" if self.profile == "gcp" else "in_process")

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def dagster_home(self) -> Path:
        return self.home_dir / "dagster"

    @property
    def assets_dir(self) -> Path:
        return self.home_dir / "assets"

    @property
    def exports_dir(self) -> Path:
        return self.home_dir / "exports"

    @property
    def mlflow_dir(self) -> Path:
        return self.home_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def mlflow_artifact_root(self) -> str:
        if self.profile == "gcp":
            return f"{self.gcp.bucket.rstrip('/')}/mlflow"
        return self.mlflow_artifacts_dir.as_uri()

    def profile_problems(self) -> list[str]:
        """Settings the chosen profile needs but does not have, each naming its variable."""
        if self.profile != "gcp":
            return []
        problems = [
            f"{env_var_for(loc)}: required by the gcp profile"
            for loc, value in (
                (("gcp", "project"), self.gcp.project),
                (("gcp", "bucket"), self.gcp.bucket),
                (("mlflow_uri",), self.mlflow_uri),
                (("mlflow_lock_url",), self.mlflow_lock_url),
            )
            if not value
        ]
        if self.gcp.bucket and not self.gcp.bucket.startswith("gs://"):
            problems.append(f"{env_var_for(('gcp', 'bucket'))}: must be a gs:// URL, got {self.gcp.bucket!r}")
        return problems

    @property
    def llm_cache_path(self) -> Path:
        return self.home_dir / "llm_cache.sqlite"

    @property
    def local_llm_dir(self) -> Path:
        """The local model's runtime wheels, model file, server PID and log."""
        return self.home_dir / "llm"


def env_var_for(loc: tuple[int | str, ...]) -> str:
    """`('catalog', 'kind')` -> `SETLIST_CATALOG__KIND`."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in loc if not isinstance(part, int))


def known_variables(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> dict[str, bool]:
    """Every variable a setting is read from -> whether it holds a mapping (whose keys may nest further)."""
    known: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            known[variable] = False  # the whole group as one JSON value
            known |= known_variables(annotation, variable + NESTED_DELIMITER)
        else:
            known[variable] = "dict[" in str(annotation)
    return known


def unknown_variable_warnings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One message per `SETLIST_*` variable that no setting reads, naming the closest known variable."""
    known = known_variables()
    others = [v for v in OTHER_VARIABLES if not v.endswith("*")]
    prefixes = [v.removesuffix("*") for v in OTHER_VARIABLES if v.endswith("*")]
    prefixes += [v + NESTED_DELIMITER for v, mapping in known.items() if mapping]
    messages = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings reads variables case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in others:
            continue
        if any(upper.startswith(p) for p in prefixes):
            continue
        closest = process.extractOne(upper, [*known, *others], scorer=fuzz.ratio)
        hint = f"; did you mean {closest[0]}?" if closest and closest[1] >= 70 else ""
        messages.append(f"{name} is not a Setlist setting and is ignored{hint}")
    return messages


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; fail with a message naming each bad variable, and warn
    (SettingsWarning) about each `SETLIST_*` variable nothing reads."""
    for message in unknown_variable_warnings():
        warnings.warn(message, SettingsWarning, stacklevel=2)
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        problems = "; ".join(f"{env_var_for(e['loc'])}: {e['msg']}" for e in err.errors())
        raise SettingsError(f"invalid Setlist settings: {problems}") from None
    except EnvParseError as err:
        # pydantic-settings names only the group ('field "catalog"') when a JSON-valued variable does not parse.
        field = re.search(r'field "(\w+)"', str(err))
        prefix = env_var_for((field[1],)) if field else ENV_PREFIX
        suspects = ", ".join(sorted(k for k in os.environ if k.startswith(prefix))) or prefix
        problem = f"{suspects}: a JSON value does not parse ({err.__cause__})"
        raise SettingsError(f"invalid Setlist settings: {problem}") from None
    if problems := settings.profile_problems():
        raise SettingsError(f"invalid Setlist settings for profile {settings.profile}: {'; '.join(problems)}")
    return settings
