"""Versions of the platform's input files by content, so a replaced or edited file is a new version.

A local file is hashed by its bytes (also one replaced in place with the same name, size and time). A
remote object (gs://, https://) is versioned by fsspec's `ukey`, the store's identity of that object
version (ETag, generation, size), so checking it does not download it.
"""

import hashlib
from collections.abc import Iterable
from pathlib import Path

from upath import UPath

_LOCAL = {"", "file", "local"}


def file_version(location: str | Path) -> str:
    path = UPath(location)
    if path.protocol in _LOCAL:
        with open(path.path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    return hashlib.sha256(path.fs.ukey(path.path).encode("utf-8")).hexdigest()[:16]


def files_version(paths: Iterable[Path]) -> str:
    """One version over several files: each file's name and content, independent of listing order."""
    lines = sorted(f"{Path(p).name}\t{file_version(p)}" for p in paths)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]
