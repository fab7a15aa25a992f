"""The rest of the bad-input corpus: golden sets, prompt files, the taxonomy file and SETLIST_* settings.

Catalog files are walked by tests/test_catalog_bad_inputs.py. Here every case must fail as a whole with the error
its loader documents, naming the file (or variable), the row (conversation and turn, node, message) and the rule;
a golden set reports every issue at once, so nothing is silently dropped and the issue count reconciles.
"""

import json
from pathlib import Path

import pytest

from models.golden.curated import GoldenSetError, load_curated_set
from models.prompts import PromptFileError, load_prompt
from models.taxonomy import Taxonomy, TaxonomyFileError, load_curated
from orchestration.settings import BUNDLED_DATA, SettingsError, load_settings

CORPUS = Path(__file__).parent / "data" / "bad_inputs"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
SECTIONS = ("golden", "prompts", "taxonomy")


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_curated(BUNDLED_DATA / "taxonomy.yaml")


def test_manifest_covers_every_case() -> None:
    for section in SECTIONS:
        on_disk = {str(p.relative_to(CORPUS)) for p in (CORPUS / section).iterdir()}
        assert on_disk == set(MANIFEST[section]), section
    total = sum(len(MANIFEST[s]) for s in ("files", "settings", *SECTIONS))
    assert total >= 20 and all(len(MANIFEST[s]) >= 5 for s in ("settings", *SECTIONS))


@pytest.mark.parametrize("case", sorted(MANIFEST["golden"]))
def test_golden_set_names_file_conversation_turn_and_rule(case: str, taxonomy: Taxonomy) -> None:
    expected = MANIFEST["golden"][case]
    with pytest.raises(GoldenSetError) as excinfo:
        load_curated_set(taxonomy, CORPUS / case)
    issues = excinfo.value.issues
    found = [[Path(i.file).name, i.conversation_id, i.turn_index, i.rule] for i in issues]
    assert found == expected["issues"]  # every issue reported, none beyond the one planted
    assert expected["detail"] in issues[0].detail
    assert f"{len(issues)} golden-set issue(s)" in str(excinfo.value) and case in str(excinfo.value)


@pytest.mark.parametrize("case", sorted(MANIFEST["prompts"]))
def test_prompt_file_error_names_file_and_rule(case: str) -> None:
    path = CORPUS / case
    with pytest.raises(PromptFileError) as excinfo:
        load_prompt(path.stem, path.parent).schema()  # the schema is resolved when the prompt is registered
    message = str(excinfo.value)
    assert message.startswith(str(path))
    for part in MANIFEST["prompts"][case]:
        assert part in message


@pytest.mark.parametrize("case", sorted(MANIFEST["taxonomy"]))
def test_taxonomy_file_error_names_file_and_node(case: str) -> None:
    with pytest.raises(TaxonomyFileError) as excinfo:
        load_curated(CORPUS / case)
    message = str(excinfo.value)
    assert message.startswith(str(CORPUS / case))
    for part in MANIFEST["taxonomy"][case]:
        assert part in message


@pytest.mark.parametrize("case", sorted(MANIFEST["settings"]))
def test_bad_setting_names_the_variable(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in MANIFEST["settings"][case]["env"].items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    for part in MANIFEST["settings"][case]["message"]:
        assert part in str(excinfo.value)
