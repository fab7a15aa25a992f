"""llama.cpp's own `llama-server`, built from the llama.cpp sources vendored in the same pinned
llama-cpp-python sdist: the engine with parallel slots.

llama-cpp-python's server decodes one request at a time (one model behind a lock). llama-server keeps
`--parallel` slots and batches them continuously: every decode step carries the next token of every busy
slot, so on a CPU, where one token costs a pass over the weights, several requests share that pass. The
gateway's concurrency then follows the slots (`SETLIST_LLM__MAX_CONCURRENCY`).

Built with the runtime's portable flags (`CMAKE_ARGS`: no AMX, see local_server.py) into a folder keyed by
version and flags, like the runtime wheel; no web UI and no TLS (the server binds 127.0.0.1 only, and the
build must not download the prebuilt UI).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from models.llm.local_server import (
    CMAKE_ARGS,
    RUNTIME,
    RUNTIME_VERSION,
    Progress,
    _run,
    _say,
)

BINARY = "llama-server"
SERVER_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    *(arg for arg in CMAKE_ARGS if not arg.startswith("-DLLAVA")),
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


def binary_path(root: Path) -> Path:
    """Where the binary for this version and these flags lives: another flag set, another folder."""
    key = hashlib.sha256(json.dumps([RUNTIME_VERSION, SERVER_CMAKE_ARGS]).encode()).hexdigest()[:12]
    return root / "bin" / f"{RUNTIME_VERSION}-{key}" / BINARY


def build_llama_server(root: Path, python: str = sys.executable, progress: Progress | None = None) -> Path:
    """The llama-server binary, building it (minutes) only when absent; the sdist comes from the index pip
    is configured with, like the runtime's."""
    target = binary_path(root)
    if target.exists():
        _say(progress, f"{BINARY} already built: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log = root / "llama-server-build.log"
    _say(progress, f"building {BINARY} from the {RUNTIME}=={RUNTIME_VERSION} sdist (about 10 min on 2 cores)")
    with tempfile.TemporaryDirectory(prefix="llama-server-", dir=root) as tmp:
        work = Path(tmp)
        _run(
            [
                python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                "-d", str(work), f"{RUNTIME}=={RUNTIME_VERSION}",
            ],
            f"downloading the {RUNTIME} {RUNTIME_VERSION} sdist",
        )  # fmt: skip
        (sdist,) = work.glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        (source,) = work.glob("*/vendor/llama.cpp")
        build = work / "build"
        _run(
            ["cmake", "-S", str(source), "-B", str(build), *SERVER_CMAKE_ARGS],
            f"configuring {BINARY}",
            log=log,
        )
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        _run(["cmake", "--build", str(build), "--target", BINARY, "-j", jobs], f"building {BINARY}", log=log)
        staged = target.with_suffix(".partial")
        shutil.copy2(build / "bin" / BINARY, staged)
        staged.rename(target)  # only a finished binary ever lands under its name
    return target
