"""Item 21: the smaller rough edges of a first hour with the CLI, each checked as a user meets it."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import save_file


def test_lock_without_arguments_relocks_the_lockfile_requirements(cli, package, tmp_path):
    assert cli("publish", str(package("acme/a", "1.0.0"))).code == 0
    lock = tmp_path / "adapters.lock"
    assert cli("lock", "acme/a", "--lockfile", str(lock)).code == 0
    assert cli("publish", str(package("acme/a", "1.1.0", seed=1))).code == 0
    assert cli("install", "--locked", "--lockfile", str(lock)).code == 1  # out of date: run `adapters lock`
    r = cli("lock", "--lockfile", str(lock), "--json")
    assert r.code == 0, r.err
    assert r.json()["requirements"] == ["acme/a"] and r.json()["adapters"][0]["version"] == "1.1.0"
    assert cli("install", "--locked", "--lockfile", str(lock)).code == 0
    assert cli("lock", "--lockfile", str(tmp_path / "none.lock")).code == 3


def test_search_warns_when_it_skips_an_unreadable_registry(cli, package, tmp_path):
    assert cli("publish", str(package("acme/a", "1.0.0"))).code == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"protocol": 1}))
    (broken / "search.jsonl").write_text("{not json\n")
    assert cli("registry", "add", "team", str(broken)).code == 0
    r = cli("search")
    assert r.code == 0 and "acme/a" in r.out
    assert "warning: search skipped registry team" in r.err


def test_pip_style_specifier_suggests_the_at_form(cli):
    for cmd in ("install", "info", "lock"):
        r = cli(cmd, "acme/x==1.0.0")
        assert r.code == 2 and "acme/x@==1.0.0" in r.err, (cmd, r.err)
    assert "acme/x@>=1,<2" in cli("install", "acme/x>=1,<2").err


def test_peft_directory_without_name_says_what_a_name_is(cli, tmp_path):
    d = tmp_path / "peft"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    a, b = np.zeros((4, 8), dtype=np.float32), np.zeros((8, 4), dtype=np.float32)
    prefix = "base_model.model.layer.q"
    save_file({f"{prefix}.lora_A.weight": a, f"{prefix}.lora_B.weight": b}, str(d / "adapter_model.safetensors"))
    r = cli("publish", str(d))
    assert r.code == 7 and "manifest.json" not in r.err and "--name org/name" in r.err
    r = cli("publish", str(d), "--name", "not a name", "--version", "1.0.0")
    assert r.code == 7 and "letters, digits" in r.err and "^[" not in r.err


def test_help_texts_and_options_that_mean_something(cli):
    fp = cli("fingerprint", "--help").out
    assert "NotFoundError" not in fp and "InvalidPackageError" not in fp
    for args in (("verify",), ("uninstall",), ("yank",), ("cache", "info"), ("cache", "prune"), ("cache", "clean")):
        text = cli(*args, "--help").out
        assert "--offline" not in text, args
        if args != ("yank",):
            assert "--registry" not in text, args
    assert "registry to publish to" in cli("publish", "--help").out
    assert "registry to yank in" in cli("yank", "--help").out


def test_global_options_before_the_command(cli, package):
    from adapterhub_client.cli.main import hoist_global_options

    assert hoist_global_options(["--json", "list"]) == ["list", "--json"]
    assert hoist_global_options(["--registry", "x", "--json", "search", "q"]) == [
        "search",
        "q",
        "--registry",
        "x",
        "--json",
    ]
    assert hoist_global_options(["--version"]) == ["--version"]
    r = cli("--json", "list")
    assert r.code == 0 and r.json() == {"installed": []}
    assert cli("publish", str(package("acme/a", "1.0.0"))).code == 0
    assert cli("--json", "search").json()["results"][0]["name"] == "acme/a"
    assert cli("--json", "cache", "info").code == 0


def test_grammar_of_counts(cli, package):
    assert cli("publish", str(package("acme/a", "1.0.0"))).code == 0
    assert cli("install", "acme/a").code == 0
    r = cli("verify")
    assert "checked 1 installed adapter: 0 problems" in r.err
    assert "installed: 1 adapter version\n" in cli("cache", "info").out
    assert cli("uninstall", "acme/a").code == 0
    assert "(0 downloads)" in cli("install", "acme/a").err  # the blob stayed in the cache


def test_publish_message_names_the_registry_once(cli, package, tmp_path):
    target = tmp_path / "reg"
    target.mkdir()
    r = cli("publish", str(package("acme/a", "1.0.0")), "--registry", target.as_uri())
    assert r.code == 0, r.err
    assert r.out.count(target.resolve().as_uri()) == 1, r.out
    r = cli("publish", str(package("acme/b", "1.0.0")))
    assert r.out.startswith("published acme/b 1.0.0 to local (file://")


def test_offline_miss_names_the_adapter(cli):
    assert cli("registry", "add", "web", "https://adapters.example.com/reg").code == 0
    r = cli("install", "acme/never", "--offline")
    assert r.code == 3 and "acme/never is not in the cache" in r.err, r.err


def test_republishing_with_other_capitalisation_is_the_same_content(cli, package):
    same = {"description": "sentiment"}
    assert cli("publish", str(package("acme/sentiment", "1.0.0", extra=same))).code == 0
    r = cli("publish", str(package("Acme/Sentiment", "1.0.0", extra=same)))
    assert r.code == 0, r.err
    assert "already published (identical content)" in r.out


def test_fingerprint_of_an_adapter_directory_says_so(cli, package, tmp_path):
    r = cli("fingerprint", str(package("acme/a", "1.0.0")))
    assert r.code == 2 and "is an adapter, not a base model" in r.err
    d = tmp_path / "peft"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(d / "adapter_model.safetensors"))
    assert "is an adapter" in cli("fingerprint", str(d)).err


def test_installed_views_respect_the_umask(cli, package, home):
    import os
    import stat

    assert cli("publish", str(package("acme/a", "1.0.0"))).code == 0
    old = os.umask(0o022)
    try:
        r = cli("install", "acme/a", "--json")
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    view = r.json()["installed"][0]["path"]
    assert stat.S_IMODE(os.stat(view).st_mode) == 0o755  # not mkdtemp's 0700


def test_a_deeply_nested_adapter_config_is_an_invalid_package(cli, tmp_path):
    d = tmp_path / "peft"
    d.mkdir()
    (d / "adapter_config.json").write_text("[" * 100_000 + "]" * 100_000)
    r = cli("install", str(d))
    assert r.code == 7 and "Traceback" not in r.err, r.err
    from adapterhub_client.errors import InvalidPackageError
    from adapterhub_client.formats.files import read_json

    try:
        read_json(d / "adapter_config.json")
    except InvalidPackageError as exc:
        assert "nested too deeply" in str(exc)
    else:
        raise AssertionError("expected InvalidPackageError")
