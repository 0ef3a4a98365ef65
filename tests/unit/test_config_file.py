"""config.toml: broken files are one-line usage errors naming the file; unknown keys warn with the closest
known one; `timeout` follows the one precedence (flag > environment > file > default)."""

from __future__ import annotations

import warnings

import pytest

from adapterhub_client.config import load_settings
from adapterhub_client.errors import AdapterWarning, UsageError


@pytest.fixture
def config(home):
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"

    def write(text: str):
        path.write_text(text)
        return path

    return write


def test_deeply_nested_config_is_a_usage_error_naming_the_file(cli, config):
    path = config("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    r = cli("search")
    assert r.code == 2, r.err
    assert str(path) in r.err and "nested too deeply" in r.err


def test_deeply_nested_inline_tables_too(config):
    path = config("a = " + "{b = " * 20_000 + "1" + "}" * 20_000 + "\n")
    with pytest.raises(UsageError, match="nested too deeply") as info:
        load_settings()
    assert str(path) in str(info.value)


def test_unknown_top_level_key_warns_with_the_closest_known_one(cli, config):
    path = config("ofline = true\n")
    r = cli("search")
    assert r.code == 0, r.err
    assert f"warning: {path}: unknown key 'ofline' (did you mean 'offline'?)" in r.err


def test_unknown_registry_key_warns_naming_the_registry(cli, config, tmp_path):
    (tmp_path / "reg").mkdir()
    config(f'[[registry]]\nname = "team"\nurl = "{(tmp_path / "reg").as_uri()}"\ntokn = "x"\n')
    r = cli("search")
    assert r.code == 0, r.err
    assert "unknown key 'tokn' in [[registry]] 'team' (did you mean 'token'?)" in r.err


def test_an_unknown_key_with_no_close_match_still_warns(config):
    config("colour = 'blue'\n")
    with pytest.warns(AdapterWarning, match=r"unknown key 'colour'$"):
        load_settings()


def test_known_keys_do_not_warn(config, tmp_path):
    config(f'offline = false\ntimeout = 7\ncache_dir = "{tmp_path / "c"}"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_settings()


def test_timeout_precedence_flag_env_file_default(config, monkeypatch):
    assert load_settings().timeout is None  # the network layer's default
    config("timeout = 7\n")
    assert load_settings().timeout == 7.0
    monkeypatch.setenv("ADAPTERS_TIMEOUT", "3.5")
    assert load_settings().timeout == 3.5
    assert load_settings(timeout=2).timeout == 2.0


@pytest.mark.parametrize("text", ["timeout = 0\n", "timeout = -1\n", "timeout = 'soon'\n", "timeout = nan\n"])
def test_a_bad_timeout_in_the_file_is_a_usage_error(config, text):
    path = config(text)
    with pytest.raises(UsageError, match="timeout") as info:
        load_settings()
    assert str(path) in str(info.value)
