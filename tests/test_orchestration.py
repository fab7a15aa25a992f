"""Schedules, sensors and declarative automation, evaluated with Dagster's own test helpers."""

import time
from datetime import UTC, datetime

import dagster as dg
import pytest

from orchestration import automation
from orchestration.definitions import build_definitions
from orchestration.settings import load_settings


def test_schedules_follow_settings_and_request_runs(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_SCHEDULES__TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("SETLIST_SCHEDULES__CATALOG_REFRESH", "30 2 * * *")
    defs = build_definitions(load_settings())
    catalog = defs.resolve_schedule_def("daily_catalog_refresh")
    assert (catalog.cron_schedule, catalog.execution_timezone) == ("30 2 * * *", "Europe/Berlin")
    assert catalog.job_name == "catalog_refresh"

    instance = dg.DagsterInstance.get()
    synthetic = defs.resolve_schedule_def("weekly_synthetic_refresh")
    when = datetime(2026, 11, 23, 4, tzinfo=UTC)
    requests = synthetic(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert [r.partition_key for r in requests] == ["grammar-v1"]
    assert instance.get_dynamic_partitions("synthetic_generator") == ["grammar-v1"]

    nightly = defs.resolve_schedule_def("nightly_evaluation")
    skipped = nightly(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(skipped, dg.SkipReason) and "no candidates partitions" in skipped.skip_message


def test_catalog_folder_sensor_requests_a_refresh_per_new_file(settings, monkeypatch, tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", str(drops))
    sensor = automation.build_catalog_folder_sensor(load_settings())
    instance = dg.DagsterInstance.get()

    empty = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert empty.run_requests == [] and "no file" in empty.skip_message

    (drops / "catalog-2026-11-01.tsv").write_text("x")
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert [r.run_key for r in first.run_requests] == ["catalog-2026-11-01.tsv"]
    assert first.cursor == "catalog-2026-11-01.tsv"

    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert again.run_requests == []

    (drops / "catalog-2026-11-08.tsv").write_text("y")
    newer = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert [r.run_key for r in newer.run_requests] == ["catalog-2026-11-08.tsv"]


def test_file_change_sensor_fires_once_per_change(settings, tmp_path):
    (tmp_path / "a.yaml").write_text("one")
    sensor = automation.build_file_change_sensor(
        "probe", tmp_path, "*.yaml", job_name="golden_refresh", interval_s=30
    )
    instance = dg.DagsterInstance.get()
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert len(first.run_requests) == 1
    unchanged = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert unchanged.run_requests == []
    time.sleep(0.01)
    (tmp_path / "a.yaml").write_text("one, edited")
    edited = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert len(edited.run_requests) == 1


@pytest.fixture
def materialized_foundation(settings):
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("setlist_foundation").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert result.success
    return defs, instance


def test_upstream_change_requests_exactly_its_dependents(materialized_foundation):
    defs, instance = materialized_foundation
    foundation = dg.AssetSelection.assets("taxonomy", "golden_curated", "golden_cpcd", "prompt_versions")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=foundation)
    assert first.total_requested == 0  # everything is fresh

    # A new catalog arrives (as the daily refresh or the folder sensor would write it).
    defs.resolve_job_def("catalog_refresh").execute_in_process(instance=instance)
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=foundation, cursor=first.cursor
    )
    assert second.get_num_requested(dg.AssetKey("taxonomy")) == 1
    for untouched in ("golden_cpcd", "prompt_versions"):
        assert second.get_num_requested(dg.AssetKey(untouched)) == 0


def test_changed_prompt_file_requests_prompt_versions(
    settings, tmp_path, monkeypatch, materialized_foundation
):
    defs, instance = materialized_foundation
    selection = dg.AssetSelection.assets("prompt_versions")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert first.total_requested == 0

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for source in settings.prompts_dir.glob("*.yaml"):
        (prompts / source.name).write_text(source.read_text())
    edited = prompts / "track_story.yaml"
    edited.write_text(edited.read_text().replace("content: |\n", "content: |\n      Be brief.\n", 1))
    monkeypatch.setenv("SETLIST_PROMPTS_DIR", str(prompts))
    changed_defs = build_definitions(load_settings())
    second = dg.evaluate_automation_conditions(
        defs=changed_defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    assert second.get_num_requested(dg.AssetKey("prompt_versions")) == 1
