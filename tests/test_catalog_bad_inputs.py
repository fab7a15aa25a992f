"""Walk the bad-input corpus: every file either fails with a clear file-level error or reconciles exactly."""

import json
from pathlib import Path

import pytest

from checks.quarantine_rules import RULES
from models.catalog.schema import CATALOG_SCHEMA, QUARANTINE_SCHEMA
from models.catalog.sources import CatalogSourceError, CatalogSourceSpec, read_catalog

CORPUS = Path(__file__).parent / "data" / "bad_inputs"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))


def _spec(name: str, case: dict) -> CatalogSourceSpec:
    extra = {"columns": MANIFEST["tabular_columns"]} if case["kind"] == "tabular" else {}
    return CatalogSourceSpec(kind=case["kind"], location=str(CORPUS / name), **extra)


def test_manifest_covers_the_corpus() -> None:
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file()} - {"manifest.json", "EXPECTED.md"}
    assert on_disk == set(MANIFEST["files"])
    assert len(on_disk) >= 12


@pytest.mark.parametrize("name", sorted(n for n, c in MANIFEST["files"].items() if "error" in c))
def test_file_level_error_names_file_and_rule(name: str) -> None:
    case = MANIFEST["files"][name]
    with pytest.raises(CatalogSourceError) as excinfo:
        read_catalog(_spec(name, case))
    message = str(excinfo.value)
    assert excinfo.value.rule == case["error"]
    assert RULES[case["error"]].scope == "file"
    assert name in message and case["error"] in message and case["message"] in message


@pytest.mark.parametrize("name", sorted(n for n, c in MANIFEST["files"].items() if "error" not in c))
def test_rows_reconcile_with_expected_rules(name: str) -> None:
    case = MANIFEST["files"][name]
    read = read_catalog(_spec(name, case))

    assert read.kept.schema == CATALOG_SCHEMA
    assert read.quarantined.schema == QUARANTINE_SCHEMA
    assert read.kept.height == case["kept"]
    assert read.quarantine_counts == case["quarantined"]
    assert read.repeats_merged == case.get("repeats_merged", 0)
    assert read.reconciles
    assert read.kept["track_id"].is_unique().all()

    q = read.quarantined
    assert set(q["rule"]) <= {rule for rule, r in RULES.items() if r.scope == "row"}
    assert (q["source_file"] == read.source_file).all() and name in read.source_file
    assert q["line_no"].min() is None or q["line_no"].min() >= 2  # data never starts on the header line
    assert q["detail"].null_count() == 0 and q["raw"].null_count() == 0


def test_bad_encoding_keeps_the_raw_bytes_visible() -> None:
    read = read_catalog(_spec("mtg_non_utf8.tsv", MANIFEST["files"]["mtg_non_utf8.tsv"]))
    assert read.quarantined["line_no"].to_list() == [3, 5]
    assert "genre---caf\\xe9" in read.quarantined["raw"][0]
    assert "99\\xff" in read.quarantined["raw"][1]


def test_crlf_file_loads_like_lf() -> None:
    crlf = (CORPUS / "mtg_crlf.tsv").read_bytes()
    read = read_catalog(_spec("mtg_crlf.tsv", MANIFEST["files"]["mtg_crlf.tsv"]))
    assert b"\r\n" in crlf
    assert not read.kept["track_id"].str.contains("\r").any()
    assert read.kept["moods"].to_list()[1] == ["happy"]
