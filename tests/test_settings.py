import pytest

from orchestration.settings import SettingsError, env_var_for, load_settings


def test_defaults_live_under_the_home_folder(settings):
    assert settings.profile == "local"
    for path in (
        settings.dagster_home,
        settings.assets_dir,
        settings.mlflow_artifacts_dir,
        settings.llm_cache_path,
    ):
        assert settings.home_dir in path.parents
    assert settings.mlflow_tracking_uri.startswith("sqlite:///")
    assert (settings.dagster_home / "dagster.yaml").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SETLIST_PROFILE", "staging"),
        ("SETLIST_SEED", "seven"),
        ("SETLIST_CATALOG__KIND", "spotify"),
    ],
)
def test_invalid_setting_names_the_variable(settings, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_nested_variables_are_read(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_CATALOG__KIND", "cpcd")
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", "/data/cpcd.jsonl")
    loaded = load_settings()
    assert (loaded.catalog.kind, loaded.catalog.location) == ("cpcd", "/data/cpcd.jsonl")


def test_env_var_names_follow_the_nesting():
    assert env_var_for(("catalog", "kind")) == "SETLIST_CATALOG__KIND"
    assert env_var_for(("seed",)) == "SETLIST_SEED"
