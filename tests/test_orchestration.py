"""Schedules, sensors and declarative automation, evaluated with Dagster's own test helpers."""

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from orchestration import automation
from orchestration.definitions import build_definitions, build_resources
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


@pytest.fixture
def watched(settings, tmp_path, monkeypatch):
    """Settings whose catalog location (a drop folder) and prompt files are copies the test may edit."""
    drops, prompts = tmp_path / "drops", tmp_path / "prompts"
    drops.mkdir()
    shutil.copy(settings.catalog.location, drops / "catalog-2026-11-01.tsv")
    prompts.mkdir()
    for source in settings.prompts_dir.glob("*.yaml"):
        shutil.copy(source, prompts / source.name)
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", str(drops))
    monkeypatch.setenv("SETLIST_PROMPTS_DIR", str(prompts))
    return load_settings()


def _tick(defs: dg.Definitions, settings, instance: dg.DagsterInstance) -> dg.SensorResult:
    """One tick of the source sensor; its observations are recorded as the daemon would record them."""
    sensor = defs.resolve_sensor_def("source_files_changed")
    with dg.build_sensor_context(instance=instance, resources=build_resources(settings)) as context:
        result = sensor.evaluate_tick(context)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def _observed(result: dg.SensorResult) -> list[str]:
    return sorted(e.asset_key.to_user_string() for e in result.asset_events)


def _replace_in_place(path: Path, old: str, new: str) -> None:
    """Rewrite a file keeping its name, size and modification time: only its content tells."""
    stat = path.stat()
    text = path.read_text()
    assert len(old) == len(new) and old in text
    path.write_text(text.replace(old, new, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


def test_source_sensor_records_a_version_only_when_content_changes(watched):
    defs, instance = build_definitions(watched), dg.DagsterInstance.get()
    sources = ["catalog_file", "golden_cpcd_file", "golden_curated_files", "prompt_files"]
    assert _observed(_tick(defs, watched, instance)) == sources  # nothing recorded yet
    unchanged = _tick(defs, watched, instance)
    assert unchanged.asset_events == [] and unchanged.run_requests == []
    assert "no source file changed" in unchanged.skip_message

    catalog = Path(watched.catalog.location) / "catalog-2026-11-01.tsv"
    _replace_in_place(catalog, "\t", "\t")  # same bytes: not a change
    assert _tick(defs, watched, instance).asset_events == []
    first_line = catalog.read_text().splitlines()[1]
    _replace_in_place(catalog, first_line, first_line.swapcase())
    assert _observed(_tick(defs, watched, instance)) == ["catalog_file"]

    newer = Path(watched.catalog.location) / "catalog-2026-11-08.tsv"
    shutil.copy(catalog, newer)
    assert _tick(defs, watched, instance).asset_events == []  # the newest file holds the same content
    newer.write_text(catalog.read_text() + "\n")
    (event,) = _tick(defs, watched, instance).asset_events
    assert event.metadata["file"].value == str(newer)

    prompt = watched.prompts_dir / "judge_relevance.yaml"
    prompt.write_text(prompt.read_text() + "\n# reviewed\n")
    assert _observed(_tick(defs, watched, instance)) == ["prompt_files"]
    assert _tick(defs, watched, instance).run_requests == []  # the sensor observes, automation launches

    for path in Path(watched.catalog.location).iterdir():
        path.unlink()
    empty = _tick(defs, watched, instance)
    assert (
        empty.asset_events == [] and "catalog_file" in empty.skip_message and "no file" in empty.skip_message
    )


def test_an_unreadable_source_is_named_and_the_others_still_observed(watched, monkeypatch, tmp_path):
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", str(tmp_path / "absent.tsv"))
    monkeypatch.setenv("SETLIST_GOLDEN_CPCD_PATH", str(tmp_path / "absent.jsonl"))
    settings = load_settings()
    result = _tick(build_definitions(settings), settings, dg.DagsterInstance.get())
    assert _observed(result) == ["golden_curated_files", "prompt_files"]
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.get(), resources=build_resources(settings)
    ) as context:
        skipped = (
            build_definitions(settings).resolve_sensor_def("source_files_changed").evaluate_tick(context)
        )
    assert "absent.tsv: file_missing" in skipped.skip_message
    assert "SETLIST_GOLDEN_CPCD_PATH" in skipped.skip_message


def test_automation_never_launches_a_partition_its_launcher_added(settings):
    """A new partition is requested by the registry sensor or a schedule; automation reruns existing ones."""
    partitions = dg.DynamicPartitionsDefinition(name="probe_partitions")

    @dg.asset
    def upstream() -> int:
        return 1

    def build(condition: dg.AutomationCondition) -> dg.Definitions:
        @dg.asset(deps=[upstream], partitions_def=partitions, automation_condition=condition)
        def per_partition() -> int:
            return 1

        return dg.Definitions(assets=[upstream, per_partition])

    instance = dg.DagsterInstance.get()
    current = build(automation.EAGER_EXISTING_PARTITIONS)
    instance.add_dynamic_partitions("probe_partitions", ["a"])
    assert dg.materialize(current.assets, instance=instance, selection=["upstream"]).success
    assert dg.materialize(
        current.assets, instance=instance, partition_key="a", selection=["per_partition"]
    ).success
    key = dg.AssetKey("per_partition")
    first = dg.evaluate_automation_conditions(defs=current, instance=instance)
    old = dg.evaluate_automation_conditions(defs=build(automation.EAGER), instance=instance)

    instance.add_dynamic_partitions("probe_partitions", ["b"])  # as the registry sensor does, with its run
    new_partition = dg.evaluate_automation_conditions(defs=current, instance=instance, cursor=first.cursor)
    assert new_partition.get_num_requested(key) == 0
    eager = dg.evaluate_automation_conditions(
        defs=build(automation.EAGER), instance=instance, cursor=old.cursor
    )
    assert eager.get_num_requested(key) == 1  # what plain eager() does: a second launch of "b"

    assert dg.materialize(current.assets, instance=instance, selection=["upstream"]).success
    updated = dg.evaluate_automation_conditions(defs=current, instance=instance, cursor=new_partition.cursor)
    (requested,) = [r for r in updated.results if r.key == key]
    assert requested.true_subset.expensively_compute_partition_keys() == {"a"}


def test_candidate_partitions_use_the_existing_partitions_condition(settings):
    defs = build_definitions(settings)
    for name in ("assistant_runs", "candidate_evaluation", "synthetic_conversations"):
        key = dg.AssetKey(name)
        assert (
            defs.get_assets_def(key).automation_conditions_by_key[key] == automation.EAGER_EXISTING_PARTITIONS
        )
    catalog = dg.AssetKey("catalog")
    assert defs.get_assets_def(catalog).automation_conditions_by_key[catalog] == automation.EAGER


@pytest.fixture
def materialized_foundation(watched):
    """What `setlist run` leaves: the foundation stage materialized, its source files observed."""
    defs = build_definitions(watched)
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("setlist_foundation").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert result.success
    observed = {
        e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert observed == {"catalog_file", "golden_cpcd_file", "golden_curated_files", "prompt_files"}
    return defs, instance, watched


def test_upstream_change_requests_exactly_its_dependents(materialized_foundation):
    defs, instance, _ = materialized_foundation
    foundation = dg.AssetSelection.assets("taxonomy", "golden_curated", "golden_cpcd", "prompt_versions")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=foundation)
    assert first.total_requested == 0  # everything is fresh

    # A new catalog arrives (as the daily refresh would write it).
    defs.resolve_job_def("catalog_refresh").execute_in_process(instance=instance)
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=foundation, cursor=first.cursor
    )
    assert second.get_num_requested(dg.AssetKey("taxonomy")) == 1
    for untouched in ("golden_cpcd", "prompt_versions"):
        assert second.get_num_requested(dg.AssetKey(untouched)) == 0


def test_after_a_run_nothing_starts_until_a_source_changes_and_then_only_its_dependents(
    materialized_foundation,
):
    defs, instance, settings = materialized_foundation
    quiet = _tick(defs, settings, instance)  # the first tick after `setlist run`: nothing to record
    assert quiet.asset_events == [] and quiet.run_requests == []
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0

    # Edited in place, with the same definitions loaded: no "Reload definitions".
    prompt = settings.prompts_dir / "judge_relevance.yaml"
    prompt.write_text(prompt.read_text() + "\n# reviewed\n")
    catalog = next(Path(settings.catalog.location).iterdir())
    line = catalog.read_text().splitlines()[1]
    _replace_in_place(catalog, line, line.swapcase())
    assert _observed(_tick(defs, settings, instance)) == ["catalog_file", "prompt_files"]
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {r.key.to_user_string() for r in second.results if r.true_subset.size}
    # What reads the catalog follows it in the same tick; the golden sets and their dependents do not.
    assert requested == {
        "catalog",
        "catalog_quarantine",
        "taxonomy",
        "track_embeddings",
        "retrieval_index",
        "judge_calibration",
        "prompt_versions",
    }
    assert _tick(defs, settings, instance).asset_events == []
