"""The golden assets materialized in-process with their checks, and the CPCD location failing clearly."""

import dagster as dg
from conftest import require_shared

import assets.catalog
import assets.golden
import assets.taxonomy
from orchestration.definitions import build_resources
from orchestration.settings import Settings, load_settings

GOLDEN_CHECKS = {
    "golden_curated_expectations",
    "golden_ratings_expectations",
    "golden_cpcd_expectations",
    "cpcd_corpus_expectations",
}


def _materialize(settings: Settings, *modules) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*dg.load_assets_from_modules(modules), *dg.load_asset_checks_from_modules(modules)],
        resources=build_resources(settings),
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def test_golden_assets_materialize_with_checks_passing_and_versions(settings, monkeypatch):
    monkeypatch.setenv(
        "SETLIST_GOLDEN_CPCD_PATH", str(require_shared("cpcd/cpcd_v1.dialogs.dev.train.jsonl"))
    )
    result = _materialize(load_settings(), assets.catalog, assets.taxonomy, assets.golden)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks.keys() >= GOLDEN_CHECKS and all(checks.values()), checks

    meta = _metadata(result)
    curated = meta["golden_curated"]
    assert curated["conversations"] >= 60 and curated["turns"] >= 150
    assert "needs_clarification" in curated["turns_per_intent"]
    assert meta["golden_ratings"]["dagster/row_count"] >= 40
    assert meta["golden_cpcd"]["conversations"] == 400 and meta["golden_cpcd"]["turns"] == 2129
    assert meta["cpcd_corpus"]["dagster/row_count"] == 7527

    instance = dg.DagsterInstance.get()
    for key in ("golden_curated", "golden_ratings", "golden_cpcd", "cpcd_corpus"):
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        tags = event.asset_materialization.tags
        assert tags["dagster/data_version"] == meta[key]["version"], key


def test_missing_cpcd_file_names_the_setting(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("SETLIST_GOLDEN_CPCD_PATH", str(tmp_path / "nowhere.jsonl"))
    result = dg.materialize(
        [assets.golden.golden_cpcd_assets],
        resources=build_resources(load_settings()),
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "SETLIST_GOLDEN_CPCD_PATH" in message and "nowhere.jsonl" in message
