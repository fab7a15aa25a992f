"""A catalog location as a byte stream, and text cut into numbered batches of whole lines.

Reading in batches keeps the working memory of sourcing to one batch (plus the rows kept so far) instead
of the whole file's bytes, its lines and the staged frame at once.
"""

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from upath import UPath

from checks.quarantine_rules import CatalogSourceError

# Rows (lines of a text file) per batch: ~14 MB of MTG-Jamendo text; the working set is a few times that.
DEFAULT_BATCH_ROWS = 100_000
_READ_BYTES = 1 << 24
_BLANK = frozenset(b" \t\r\n\x0b\x0c")  # what `bytes.strip()` removes: a line of only these is blank


@contextmanager
def open_location(location: str) -> Iterator[BinaryIO]:
    """A local path or an fsspec URL opened for reading (`.gz` decompressed on the fly)."""
    try:
        stream = UPath(location).open("rb")
    except FileNotFoundError as exc:
        raise CatalogSourceError(location, "file_missing", "no such file") from exc
    except (OSError, ValueError) as exc:  # fsspec/aiohttp report HTTP and permission failures as these
        raise CatalogSourceError(location, "unreadable", f"{type(exc).__name__}: {exc}") from exc
    with stream:
        if location.rsplit("?", 1)[0].endswith(".gz"):
            with gzip.GzipFile(fileobj=stream) as unzipped:
                yield unzipped
        else:
            yield stream


@dataclass(frozen=True)
class LineBatch:
    first_line: int  # 1-based line number of the first line in `data`
    data: bytes  # whole lines; only the file's last line may lack its newline


def line_batches(
    stream: BinaryIO, source_file: str, batch_lines: int, read_bytes: int = _READ_BYTES
) -> Iterator[LineBatch]:
    """`stream` as batches of `batch_lines` lines (the last one shorter); blank lines at the very end of the
    file are dropped, so a batch never ends on blank lines that might turn out to be the file's tail."""
    buffer = bytearray()
    newlines = np.empty(0, dtype=np.int64)  # offsets of b"\n" in buffer
    first_line, yielded = 1, False
    while True:
        block = stream.read(read_bytes)
        if block:
            found = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + len(buffer)
            newlines = np.concatenate([newlines, found])
            buffer += block
        end = _end_of_content(buffer)
        # Lines ready to go: every complete line up to the last one with content (whose newline, if any,
        # is the first one at or after `end`, since a newline is blank).
        below = int(np.searchsorted(newlines, end))
        ready = below + (below < len(newlines)) if end else 0
        used = taken = 0  # bytes and newlines handed out from this buffer
        with memoryview(buffer) as view:
            while ready - taken >= batch_lines:
                cut = int(newlines[taken + batch_lines - 1]) + 1
                yield LineBatch(first_line, bytes(view[used:cut]))
                used, taken, first_line, yielded = cut, taken + batch_lines, first_line + batch_lines, True
        del buffer[:used]
        newlines, end = newlines[taken:] - used, end - used
        if not block:
            break
    if end > 0:  # the rest, up to the newline closing the last line with content
        below = int(np.searchsorted(newlines, end))
        yield LineBatch(
            first_line, bytes(buffer[: newlines[below] if below < len(newlines) else len(buffer)])
        )
    elif not yielded:
        raise CatalogSourceError(source_file, "empty_file", "the file has no content")


def _end_of_content(buffer: bytearray) -> int:
    """Offset just past the last byte that is not blank (0 when the buffer is all blank)."""
    end = len(buffer)
    while end and buffer[end - 1] in _BLANK:
        end -= 1
    return end
