import pytest

from orchestration.settings import (
    SettingsError,
    SettingsWarning,
    env_var_for,
    known_variables,
    load_settings,
    unknown_variable_warnings,
)


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
        ("SETLIST_COMPARISON__RETRIEVERS", '["hybrid", "semantic"]'),
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


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("SETLIST_PROFIL", "SETLIST_PROFILE"),
        ("SETLIST_CATALOG_LOCATION", "SETLIST_CATALOG__LOCATION"),
        ("SETLIST_LLM__API_KEY", "SETLIST_LLM_API_KEY"),
        ("SETLIST_LLM__BASEURL", "SETLIST_LLM__BASE_URL"),
    ],
)
def test_misspelt_variable_warns_naming_the_closest(settings, monkeypatch, variable, closest):
    monkeypatch.setenv(variable, "x")
    with pytest.warns(SettingsWarning) as caught:
        load_settings()
    assert [str(w.message) for w in caught] == [
        f"{variable} is not a Setlist setting and is ignored; did you mean {closest}?"
    ]


def test_variables_other_tools_read_do_not_warn(settings, monkeypatch, recwarn):
    for variable in (
        "SETLIST_PG_HOST",
        "SETLIST_SHARED_DATA",
        "SETLIST_LLM_API_KEY",
        "SETLIST_CATALOG__COLUMNS__TITLE",
    ):
        monkeypatch.setenv(variable, "x")
    load_settings()
    assert [w for w in recwarn if issubclass(w.category, SettingsWarning)] == []
    assert unknown_variable_warnings({"SETLIST_NOTHING_LIKE_IT": "1"}) == [
        "SETLIST_NOTHING_LIKE_IT is not a Setlist setting and is ignored"
    ]


def test_every_settings_field_is_a_known_variable():
    known = known_variables()
    assert {
        "SETLIST_HOME",
        "SETLIST_CATALOG__KIND",
        "SETLIST_LLM__BASE_URL",
        "SETLIST_SCHEDULES__TIMEZONE",
    } <= set(known)
    assert known["SETLIST_LLM__PRICES"] and not known["SETLIST_SEED"]  # mappings may nest further


@pytest.mark.parametrize("url", ["not a url", "localhost:8080/v1", "ftp://host/v1", "http://"])
def test_base_url_must_be_an_http_url(settings, monkeypatch, url):
    monkeypatch.setenv("SETLIST_LLM__BASE_URL", url)
    with pytest.raises(SettingsError, match="SETLIST_LLM__BASE_URL: .*must be an http"):
        load_settings()


def test_empty_base_url_means_offline(settings, monkeypatch):
    monkeypatch.setenv("SETLIST_LLM__BASE_URL", "")
    assert load_settings().llm.base_url is None
