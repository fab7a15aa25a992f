"""`setlist llm install|serve|stop` without the real runtime: a fake `llama_cpp` package on PYTHONPATH
answers the runtime probe and serves `/v1/models`, and fake part wheels stand in for the model."""

import hashlib
import socket
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from models.llm import local_server
from models.llm.llama_server import SERVER_CMAKE_ARGS, binary_path
from models.llm.local_server import (
    LocalLLMError,
    LocalModel,
    ServerConfig,
    assemble_model,
    build_runtime_wheel,
    read_state,
    runtime_problem,
    server_command,
    start_server,
    stop_server,
    wheel_dir,
)
from orchestration.cli_llm import gateway_exports

FAKE_SERVER = """
import argparse, http.server, json, sys
parser = argparse.ArgumentParser()
for flag in ("--model", "--model_alias", "--alias", "--host", "--port"):
    parser.add_argument(flag)
args, _ = parser.parse_known_args()  # llama_cpp.server's flags, or llama-server's
alias = args.model_alias or args.alias
if args.model.endswith("broken.gguf"):
    sys.exit("error loading model: broken.gguf")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": alias}]}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_runtime(root: Path, system_info: str = "AVX = 1 | AVX2 = 1 | FMA = 1 | AMX_INT8 = 0") -> Path:
    package = root / "llama_cpp"
    (package / "server").mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"__version__ = {local_server.RUNTIME_VERSION!r}\n"
        f"def llama_print_system_info():\n    return {system_info.encode()!r}\n"
    )
    (package / "server" / "__init__.py").write_text("")
    (package / "server" / "__main__.py").write_text(FAKE_SERVER)
    return root


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHONPATH", str(fake_runtime(tmp_path / "fake")))
    return tmp_path


def _config(tmp_path: Path, name: str = "model.gguf", port: int | None = None) -> ServerConfig:
    model = tmp_path / name
    model.write_bytes(b"GGUF")
    return ServerConfig(model, "fake-model", port=port or free_port())


def test_server_starts_on_loopback_answers_and_stops_by_pid(runtime: Path) -> None:
    config = _config(runtime)
    state = start_server(config, runtime / "server.json", runtime / "server.log")
    try:
        assert state.base_url == f"http://127.0.0.1:{config.port}/v1"
        assert read_state(runtime / "server.json") == state
        listening = [c.laddr for c in psutil.Process(state.pid).net_connections() if c.status == "LISTEN"]
        assert [addr.ip for addr in listening] == ["127.0.0.1"]
        with pytest.raises(LocalLLMError, match="already runs"):
            start_server(config, runtime / "server.json", runtime / "server.log")
    finally:
        stopped = stop_server(runtime / "server.json")
    assert stopped is not None and stopped.pid == state.pid
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    assert stop_server(runtime / "server.json") is None  # nothing recorded any more


def test_prompt_cache_flags_bound_its_memory_and_stay_off_with_logprobs(tmp_path: Path) -> None:
    def flags(config: ServerConfig) -> dict[str, str]:
        command = server_command(config)
        return dict(zip(command[3::2], command[4::2], strict=True))

    cached = flags(_config(tmp_path))
    assert cached["--cache"] == "true" and cached["--cache_type"] == "ram"
    assert cached["--cache_size"] == str(256 << 20) and cached["--n_batch"] == "128"
    for config in (
        ServerConfig(tmp_path / "m.gguf", "m", logprobs=True),
        ServerConfig(tmp_path / "m.gguf", "m", prompt_cache_mb=0),
    ):
        assert "--cache" not in flags(config) and "--n_batch" not in flags(config)


def test_llama_server_serves_its_slots_and_the_gateway_sends_that_many(tmp_path: Path) -> None:
    binary = binary_path(tmp_path)
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!{sys.executable}\n{FAKE_SERVER}")  # answers as llama-server would
    binary.chmod(0o755)
    config = replace(_config(tmp_path), binary=binary, slots=4)
    command = server_command(config)
    assert command[0] == str(binary)
    expected = (
        ("--host", "127.0.0.1"),
        ("--parallel", "4"),
        ("--ctx-size", str(4 * config.ctx)),
        ("--repeat-penalty", "1.1"),  # as llama-cpp-python's server samples: without it the model loops
    )
    for flag, value in expected:
        assert command[command.index(flag) + 1] == value
    state = start_server(config, tmp_path / "server.json", tmp_path / "server.log")
    try:
        assert state.slots == 4 and read_state(tmp_path / "server.json") == state  # known as ours by PID
        assert (
            gateway_exports(state.base_url, state.model_name, state.slots)["SETLIST_LLM__MAX_CONCURRENCY"]
            == "4"
        )
    finally:
        assert stop_server(tmp_path / "server.json") == state
    unbuilt = replace(config, binary=tmp_path / "absent" / "llama-server")
    with pytest.raises(
        LocalLLMError, match="llama-server is missing: run `setlist llm install --llama-server`"
    ):
        start_server(unbuilt, tmp_path / "server.json", tmp_path / "server.log")


def test_busy_port_is_one_line_naming_it(runtime: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalLLMError, match=rf"^port {port} on 127.0.0.1 is busy") as err:
            start_server(_config(runtime, port=port), runtime / "server.json", runtime / "server.log")
    assert "\n" not in str(err.value)


def test_server_dying_at_start_names_its_last_line(runtime: Path) -> None:
    with pytest.raises(LocalLLMError, match="exited with code 1 before answering: error loading model"):
        start_server(_config(runtime, "broken.gguf"), runtime / "server.json", runtime / "server.log")
    assert read_state(runtime / "server.json") is None


def test_missing_model_and_runtime_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ServerConfig(tmp_path / "absent.gguf", "fake-model", port=free_port())
    with pytest.raises(LocalLLMError, match="absent.gguf is missing: run `setlist llm install`"):
        start_server(config, tmp_path / "server.json", tmp_path / "server.log")
    no_runtime = tmp_path / "python"  # an interpreter whose `import llama_cpp` fails
    no_runtime.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'llama_cpp'\" >&2\nexit 1\n"
    )
    no_runtime.chmod(0o755)
    assert "is not installed" in runtime_problem(str(no_runtime))


def test_a_build_with_amx_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(fake_runtime(tmp_path, "AVX2 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1")))
    assert "built with AMX" in runtime_problem()


def _part_wheel(folder: Path, package: str, version: str, index: int, payload: bytes) -> None:
    module = package.replace("-", "_")
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{module}/__init__.py", "def get_part_path(): ...\n")
        wheel.writestr(f"{module}/data/part{index:02d}.bin", payload)
        wheel.writestr(f"{module}-{version}.dist-info/METADATA", f"Name: {package}\n")


def _model(payloads: list[bytes], sha: str | None = None) -> LocalModel:
    whole = b"".join(payloads)
    return LocalModel(
        name="tiny",
        packages=tuple(f"tiny-part{i}" for i in range(1, len(payloads) + 1)),
        version="0.1.0",
        sha256=sha or hashlib.sha256(whole).hexdigest(),
        size_bytes=len(whole),
    )


def test_parts_assemble_in_package_order_and_are_verified(tmp_path: Path) -> None:
    payloads = [b"first-", b"second-", b"third"]
    model = _model(payloads)
    for index, payload in reversed(list(enumerate(payloads, start=1))):  # written out of order
        _part_wheel(tmp_path, f"tiny-part{index}", model.version, index, payload)
    target = tmp_path / "tiny.gguf"
    assemble_model(model, tmp_path, target)
    assert target.read_bytes() == b"first-second-third"


def test_wrong_checksum_keeps_nothing_and_names_both_hashes(tmp_path: Path) -> None:
    model = _model([b"abc", b"def"], sha="0" * 64)
    for index, payload in enumerate([b"abc", b"def"], start=1):
        _part_wheel(tmp_path, f"tiny-part{index}", model.version, index, payload)
    target = tmp_path / "tiny.gguf"
    with pytest.raises(
        LocalLLMError, match=f"sha256 {hashlib.sha256(b'abcdef').hexdigest()} does not match 0{{64}}"
    ):
        assemble_model(model, tmp_path, target)
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_runtime_wheel_dir_is_keyed_by_build_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    portable = wheel_dir(tmp_path)
    monkeypatch.setattr(local_server, "CMAKE_ARGS", ("-DGGML_NATIVE=ON",))
    assert wheel_dir(tmp_path) != portable  # a wheel built with other flags is never picked up


def test_an_existing_wheel_for_these_flags_is_reused(tmp_path: Path) -> None:
    folder = wheel_dir(tmp_path)
    folder.mkdir(parents=True)
    wheel = folder / f"llama_cpp_python-{local_server.RUNTIME_VERSION}-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"wheel")
    assert build_runtime_wheel(tmp_path, python="/nonexistent/python") == wheel


def test_failed_build_is_one_line_naming_the_cause(tmp_path: Path) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\necho 'compiling ggml'\necho 'CMake Error: no CMAKE_CXX_COMPILER could be found'\nexit 1\n"
    )
    fake_python.chmod(0o755)
    with pytest.raises(LocalLLMError) as err:
        build_runtime_wheel(tmp_path, python=str(fake_python))
    message = str(err.value)
    assert message.startswith(
        f"building llama-cpp-python {local_server.RUNTIME_VERSION} failed with exit code 1"
    )
    assert "no CMAKE_CXX_COMPILER could be found" in message and "\n" not in message
    assert not list(wheel_dir(tmp_path).glob("*.whl"))


def test_cli_serve_prints_exports_and_stop_ends_it(runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.cli import app

    monkeypatch.setenv("SETLIST_HOME", str(runtime / "home"))
    monkeypatch.setenv("SETLIST_LOCAL_LLM__PORT", str(free_port()))
    models = runtime / "home" / "llm" / "models"
    models.mkdir(parents=True)
    (models / local_server.QWEN_CODER_1_5B.filename).write_bytes(b"GGUF")
    runner = CliRunner()
    served = runner.invoke(app, ["llm", "serve"])
    try:
        assert served.exit_code == 0, served.output
        exports = dict(line.removeprefix("export ").split("=", 1) for line in served.stdout.splitlines())
        assert exports["SETLIST_LLM__MAX_CONCURRENCY"] == "1"
        assert exports["SETLIST_LLM__STRUCTURED_OUTPUT"] == "json_object"
        assert exports["SETLIST_LLM__BASE_URL"].startswith("http://127.0.0.1:")
        shell = subprocess.run(
            ["bash", "-c", f'eval "{served.stdout}"; echo "$SETLIST_LLM__MODEL"'],
            capture_output=True,
            text=True,
        )
        assert shell.stdout.strip() == local_server.QWEN_CODER_1_5B.name
    finally:
        stopped = runner.invoke(app, ["llm", "stop"])
    assert "stopped pid" in stopped.output
    assert read_state(runtime / "home" / "llm" / "server.json") is None
    one_slot = runner.invoke(app, ["llm", "serve", "--slots", "4"])
    assert one_slot.exit_code == 2 and "has one slot: use --engine llama-server" in one_slot.output
    unbuilt = runner.invoke(app, ["llm", "serve", "--engine", "llama-server", "--slots", "4"])
    assert unbuilt.exit_code == 1 and "run `setlist llm install --llama-server`" in unbuilt.output


def test_local_llm_extra_pins_what_install_builds() -> None:
    import tomllib

    from orchestration.cli_llm import RUNTIME_REQUIREMENT
    from orchestration.settings import REPO_ROOT

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["local-llm"] == [RUNTIME_REQUIREMENT]
    for flags in (local_server.CMAKE_ARGS, SERVER_CMAKE_ARGS):  # the runtime and llama-server alike
        assert "-DGGML_NATIVE=OFF" in flags and not any("AMX" in a for a in flags)
