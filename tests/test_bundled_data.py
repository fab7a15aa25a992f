"""A bare clone runs on what it ships: every default data path is under the repository, and a run opens nothing
under ../shared (the development data beside the clone, which users do not have).

`files_opened` records the files Python opens (the `open`, directory-listing and `sqlite3.connect` audit
events); `tests/test_foundation_e2e.py` wraps its default foundation run in it. Readers that open files from
native code (polars) only ever get paths from settings, which the first test checks.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestration.definitions import build_resources
from orchestration.settings import BUNDLED_DATA, REPO_ROOT, Settings

SHARED = (REPO_ROOT.parent / "shared").resolve()
AUDITED = {"open", "os.listdir", "os.scandir", "glob.glob", "sqlite3.connect"}
_recording: list[list[Path]] = []


def _audit(event: str, args: tuple) -> None:
    if _recording and event in AUDITED and args and isinstance(args[0], str | bytes | Path):
        path = args[0].decode(errors="replace") if isinstance(args[0], bytes) else str(args[0])
        path = path.removeprefix("file:").split("?", 1)[0]  # SQLite URIs
        if path and path != ":memory:":
            _recording[-1].append(Path(path))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only inside `files_opened`


@contextmanager
def files_opened() -> Iterator[list[Path]]:
    opened: list[Path] = []
    _recording.append(opened)
    try:
        yield opened
    finally:
        _recording.remove(opened)


def under_shared(paths: list[Path]) -> list[Path]:
    return sorted({p for p in paths if p.resolve() == SHARED or SHARED in p.resolve().parents})


def test_default_data_paths_are_bundled(settings: Settings):
    data_paths = [
        Path(settings.catalog.location),
        settings.taxonomy_file,
        Path(settings.golden_cpcd_path),
        settings.prompts_dir,
    ]
    for path in data_paths:
        assert path.exists() and REPO_ROOT in path.resolve().parents, path
    assert BUNDLED_DATA in Path(settings.golden_cpcd_path).parents  # the bundled CPCD file
    # What the assets get: every path in the resources' configuration is in the repository or the home.
    for name, resource in build_resources(settings).items():
        for field, value in dict(resource).items():
            if isinstance(value, str) and value.startswith(("/", ".", "~")) and not value.startswith("//"):
                path = Path(value).expanduser().resolve()
                inside = REPO_ROOT in path.parents or settings.home_dir in [path, *path.parents]
                assert inside, f"{name}.{field} = {value}"


def test_the_audit_records_opens_and_sees_shared_paths(tmp_path):
    """The recorder itself: an open under a folder named like ../shared is reported, one elsewhere is not."""
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    with files_opened() as opened:
        probe.read_text()
    assert probe in opened and under_shared(opened) == []
    assert under_shared([SHARED / "data" / "cpcd" / "file.jsonl"]) == [
        SHARED / "data" / "cpcd" / "file.jsonl"
    ]
