"""End-to-end package management against the embedded local registry and file:// registries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapterhub_client.registry import layout


def test_fresh_machine_publish_install_list_info(cli, package, home):
    pkg = package("Acme/Sent_Lora", "1.0.0", size=10000)
    r = cli("publish", str(pkg), "--json")
    assert r.code == 0, r.err
    assert r.json()["created"] is True and r.json()["registry"] == "local"
    # the local registry lives under ADAPTERS_HOME with the documented layout
    reg = home / "registry"
    assert json.loads((reg / "config.json").read_text())["protocol"] == 1
    index = reg / layout.index_path("acme/sent-lora")
    assert index == reg / "index/acme/se/nt/sent-lora"
    line = json.loads(index.read_text().splitlines()[0])
    assert line["version"] == "1.0.0" and line["yanked"] is False

    r = cli("install", "acme/sent-lora", "--json")
    assert r.code == 0, r.err
    inst = r.json()["installed"][0]
    view = Path(inst["path"])
    weights = view / "adapter.safetensors"
    assert weights.read_bytes() == (pkg / "adapter.safetensors").read_bytes()
    assert not os.access(weights, os.W_OK) or os.geteuid() == 0  # read-only blob link
    assert (weights.stat().st_mode & 0o222) == 0

    r = cli("list", "--json")
    assert [(i["name"], i["version"]) for i in r.json()["installed"]] == [("acme/sent-lora", "1.0.0")]
    r = cli("info", "acme/sent-lora", "--json")
    assert r.json()["manifest"]["files"][0]["size"] == (pkg / "adapter.safetensors").stat().st_size
    r = cli("verify")
    assert r.code == 0


def test_republish_identical_is_noop_and_different_is_refused(cli, package):
    pkg = package("acme/a", "1.0.0", seed=1)
    assert cli("publish", str(pkg)).code == 0
    r = cli("publish", str(pkg), "--json")
    assert r.code == 0 and r.json()["created"] is False
    other = package("acme/a", "1.0.0", seed=2)
    r = cli("publish", str(other))
    assert r.code == 7 and "already published with different content" in r.err


def test_version_selection_prerelease_and_yank(cli, package):
    for i, v in enumerate(["1.0.0", "1.5.0", "2.0.0rc1", "2.0.0b1"]):
        assert cli("publish", str(package("acme/x", v, seed=i))).code == 0  # stable seeds: same bytes every run
    pick = lambda *a: cli("install", *a, "--json").json()["installed"][0]["version"]
    assert pick("acme/x") == "1.5.0"  # no pre-releases unless asked
    assert pick("acme/x", "--pre") == "2.0.0rc1"
    assert pick("acme/x@>=2.0.0b1") == "2.0.0rc1"  # a specifier naming a pre-release admits them
    assert pick("acme/x@<1.5") == "1.0.0"
    assert cli("yank", "acme/x@1.5.0").code == 0
    assert pick("acme/x") == "1.0.0"  # yanked versions are skipped...
    assert pick("acme/x@1.5.0") == "1.5.0"  # ...unless pinned exactly
    r = cli("install", "acme/x@>=3")
    assert r.code == 3 and "no version of acme/x matches" in r.err and "1.5.0 (yanked)" in r.err


def test_dependencies_resolve_transitively_and_conflicts_name_both(cli, package):
    cli("publish", str(package("acme/base-a", "1.0.0", seed=1)))
    cli("publish", str(package("acme/base-a", "2.0.0", seed=2)))
    cli("publish", str(package("acme/part-b", "1.0.0", seed=3, deps=[("acme/base-a", ">=2")])))
    cli("publish", str(package("acme/combo", "1.0.0", seed=4, deps=[("acme/part-b", "")])))
    r = cli("install", "acme/combo", "--json")
    assert r.code == 0, r.err
    assert sorted((i["name"], i["version"]) for i in r.json()["installed"]) == [
        ("acme/base-a", "2.0.0"),
        ("acme/combo", "1.0.0"),
        ("acme/part-b", "1.0.0"),
    ]
    r = cli("install", "acme/combo", "acme/base-a@<2")
    assert r.code == 3
    assert "acme/base-a" in r.err and ">=2" in r.err and "<2" in r.err and "acme/part-b 1.0.0" in r.err


def test_file_url_registry_and_registry_commands(cli, package, tmp_path):
    remote = tmp_path / "shared-registry"
    pkg = package("team/tool", "0.1.0")
    assert cli("publish", str(pkg), "--registry", remote.as_uri()).code == 0
    # not visible through the default (local) registry
    assert cli("install", "team/tool").code == 3
    # a registry URL followed by the name
    r = cli("install", f"{remote.as_uri()}/team/tool@0.1.0", "--json")
    assert r.code == 0 and r.json()["installed"][0]["version"] == "0.1.0"
    assert cli("registry", "add", "team", remote.as_uri()).code == 0
    names = [x["name"] for x in cli("registry", "list", "--json").json()["registries"]]
    assert names == ["local", "team"]
    r = cli("search", "tool", "--json")
    assert [h["name"] for h in r.json()["results"]] == ["team/tool"]
    assert cli("registry", "remove", "team").code == 0
    assert cli("registry", "remove", "team").code == 3


def test_env_and_flag_precedence(cli, package, tmp_path, monkeypatch):
    remote = tmp_path / "env-registry"
    cli("publish", str(package("env/one", "1.0.0")), "--registry", remote.as_uri())
    monkeypatch.setenv("ADAPTERS_REGISTRY", remote.as_uri())
    assert cli("install", "env/one").code == 0  # environment selects the registry
    other = tmp_path / "empty-registry"
    other.mkdir()
    assert cli("install", "env/one", "--registry", other.as_uri()).code == 3  # flag beats environment
    cache = tmp_path / "flag-cache"
    r = cli("install", "env/one", "--cache-dir", str(cache), "--json")
    assert Path(r.json()["installed"][0]["path"]).is_relative_to(cache)


def test_lockfile_locked_and_frozen(cli, package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("publish", str(package("acme/l", "1.0.0", seed=1)))
    assert cli("lock", "acme/l").code == 0
    lock = json.loads((tmp_path / "adapters.lock").read_text())
    assert [(a["name"], a["version"]) for a in lock["adapters"]] == [("acme/l", "1.0.0")]
    assert cli("install", "--locked").code == 0
    cli("publish", str(package("acme/l", "1.1.0", seed=2)))
    r = cli("install", "--locked")
    assert r.code == 1 and "out of date" in r.err
    # --frozen installs exactly the lock, even though 1.1.0 now exists
    cli("cache", "clean", "--yes")
    r = cli("install", "--frozen", "--json")
    assert r.code == 0 and r.json()["installed"][0]["version"] == "1.0.0"


def test_offline_uses_cache_only(cli, package, monkeypatch):
    cli("publish", str(package("acme/off", "1.0.0")))
    assert cli("install", "acme/off").code == 0
    monkeypatch.setenv("ADAPTERS_OFFLINE", "1")
    assert cli("install", "acme/off").code == 0
    cli("cache", "clean", "--yes")
    # the local registry is on disk, so resolving works; the blob must come from the registry dir
    assert cli("install", "acme/off").code == 0


@pytest.mark.parametrize("bad_path", ["../escape.safetensors", "/etc/passwd", "a/../../b", "./x"])
def test_manifest_with_unsafe_paths_is_refused(cli, package, bad_path):
    pkg = package("acme/bad", "1.0.0")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"][0]["path"] = bad_path
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    r = cli("publish", str(pkg))
    assert r.code == 7 and "files/0/path" in r.err


def test_invalid_manifests_name_the_field(cli, package):
    pkg = package("acme/v", "1.0.0")
    m = json.loads((pkg / "manifest.json").read_text())
    for field, value, expect in [
        ("version", "1.0+local", "local version"),
        ("version", "not a version", "field 'version'"),
        ("name", "noslash", "name"),
    ]:
        (pkg / "manifest.json").write_text(json.dumps({**m, field: value}))
        r = cli("publish", str(pkg))
        assert r.code == 7 and expect in r.err, r.err
    (pkg / "manifest.json").write_text("{not json")
    r = cli("publish", str(pkg))
    assert r.code == 7 and "not valid JSON" in r.err


def test_pickle_weights_are_refused(cli, package):
    pkg = package("acme/p", "1.0.0")
    (pkg / "adapter_model.bin").write_bytes(b"\x80\x04not really")
    m = json.loads((pkg / "manifest.json").read_text())
    m["files"] = [{"path": "adapter_model.bin"}]
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("publish", str(pkg))
    assert r.code == 7 and "pickle" in r.err


def test_malformed_index_line(cli, package, home):
    cli("publish", str(package("acme/m", "1.0.0")))
    index = home / "registry" / layout.index_path("acme/m")
    index.write_text(index.read_text() + "{broken\n")
    r = cli("install", "acme/m")
    assert r.code == 7 and "line 2" in r.err and "malformed" in r.err
    assert cli("list", "--json").json()["installed"] == []


def test_uninstall_and_cache_prune(cli, package, home):
    cli("publish", str(package("acme/u", "1.0.0", size=50000)))
    cli("install", "acme/u")
    info = cli("cache", "info", "--json").json()
    assert info["blobs"] == 3 and info["installed"] == 1  # weights + the generated model card + manifest
    assert cli("uninstall", "acme/u").code == 0
    assert cli("list", "--json").json()["installed"] == []
    assert cli("cache", "prune", "--json").json()["removed"] == 0  # just used: kept for a grace period
    r = cli("cache", "prune", "--grace", "0", "--json")
    assert r.json()["removed"] >= 3
    assert cli("cache", "info", "--json").json()["blobs"] == 0
    assert cli("uninstall", "acme/u").code == 3
    assert (home / "cache" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_verify_detects_tampering(cli, package, home):
    cli("publish", str(package("acme/t", "1.0.0")))
    path = Path(cli("install", "acme/t", "--json").json()["installed"][0]["path"])
    weights = path / "adapter.safetensors"
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    r = cli("verify", "--json")
    assert r.code == 4 and "adapter.safetensors" in r.json()["problems"][0]


def test_usage_errors_are_one_line(cli):
    r = cli("install")
    assert r.code == 2
    r = cli("install", "not a ref!!")
    assert r.code == 2 and r.err.count("error:") == 1
    r = cli("info", "hf://org-only")  # not org/repo
    assert r.code == 2 and "hf://org/repo" in r.err
    r = cli("info", "hf://org/repo@>=1,,2")
    assert r.code == 2 and "PEP 440" in r.err


def test_install_local_package_directory_with_several_files(cli, package):
    pkg = package("acme/multi", "2.0.0", files=3, size=20000)
    r = cli("install", str(pkg), "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    for name in ("adapter.safetensors", "adapter-1.safetensors", "adapter-2.safetensors"):
        assert (view / name).read_bytes() == (pkg / name).read_bytes()
    assert r.json()["downloads"] == 3
    assert cli("info", str(pkg), "--json").json()["manifest"]["version"] == "2.0.0"


@pytest.mark.parametrize("reserved", [".install.json", "manifest.json"])
def test_reserved_paths_are_refused(cli, package, reserved):
    pkg = package("acme/r", "1.0.0")
    m = json.loads((pkg / "manifest.json").read_text())
    if reserved != "manifest.json":
        (pkg / reserved).write_bytes((pkg / "adapter.safetensors").read_bytes())
    m["files"].append({"path": reserved})
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("publish", str(pkg))
    assert r.code == 7 and "reserved" in r.err, r.err


def test_a_path_cannot_be_both_file_and_directory():
    from adapterhub_client.errors import InvalidPackageError
    from adapterhub_client.manifest import new_manifest, validate_manifest

    m = new_manifest("acme/x", "1.0.0", "lora", {}, {"name": None})
    m["files"] = [{"path": p, "sha256": "0" * 64, "size": 1} for p in ("x", "x/y")]
    with pytest.raises(InvalidPackageError, match="both a file and a directory"):
        validate_manifest(m)


def test_changed_content_for_an_installed_version_replaces_the_view(cli, package):
    pkg = package("acme/c", "1.0.0", seed=1)
    first = Path(cli("install", str(pkg), "--json").json()["installed"][0]["path"])
    package_again = package("acme/c", "1.0.0", seed=2)  # same version, other bytes
    r = cli("install", str(package_again), "--json")
    assert r.code == 0 and r.json()["installed"][0]["already_installed"] is False
    view = Path(r.json()["installed"][0]["path"])
    assert view == first
    assert (view / "adapter.safetensors").read_bytes() == (package_again / "adapter.safetensors").read_bytes()
    assert cli("verify").code == 0


def test_verify_checks_the_view_manifest_against_the_install_record(cli, package):
    pkg = package("acme/vm", "1.0.0")
    view = Path(cli("install", str(pkg), "--json").json()["installed"][0]["path"])
    manifest = view / "manifest.json"
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"test adapter', '"changed'))
    (view / "stray.bin").write_bytes(b"x")
    problems = cli("verify", "--json").json()["problems"]
    assert any("installed manifest" in p for p in problems)
    os.chmod(manifest, 0o644)
    assert cli("uninstall", "acme/vm").code == 0  # start again with a sound view: only the stray file wrong
    assert Path(cli("install", str(pkg), "--json").json()["installed"][0]["path"]) == view
    assert cli("verify").code == 0
    (view / "stray.bin").write_bytes(b"x")
    r = cli("verify", "--json")
    assert r.code == 4 and r.json()["problems"] == [f"{view / 'stray.bin'}: not part of the package"]


def test_files_not_listed_in_the_manifest_are_neither_published_nor_installed(cli, package, home):
    pkg = package("acme/listed", "1.0.0")
    (pkg / "stray.bin").write_bytes(b"not listed in manifest.json")
    (pkg / "notes.txt").write_text("mine")
    assert cli("publish", str(pkg)).code == 0
    blobs = {p.read_bytes() for p in (home / "registry" / "blobs").rglob("*") if p.is_file()}
    assert b"not listed in manifest.json" not in blobs and b"mine" not in blobs
    assert len(blobs) == 3  # the weights, the generated model card and the manifest
    view = Path(cli("install", "acme/listed", "--json").json()["installed"][0]["path"])
    names = sorted(p.name for p in view.iterdir())
    assert names == [".install.json", "README.md", "adapter.safetensors", "manifest.json"]
    assert cli("verify").code == 0


def test_publish_generates_a_card_or_completes_the_publishers_own(cli, package, home):
    from huggingface_hub import ModelCard

    r = cli("publish", str(package("acme/carded", "1.0.0")), "--base-name", "acme/base", "--license", "mit")
    assert r.code == 0, r.err
    view = Path(cli("install", "acme/carded", "--json").json()["installed"][0]["path"])
    card = ModelCard((view / "README.md").read_text())
    assert card.data.base_model == "acme/base" and card.data.license == "mit"
    assert "base_model:adapter:acme/base" in card.data.tags
    assert "adapters install" in card.text
    own = package("acme/own-card", "1.0.0")
    body = "# My adapter\n\nWritten by hand.\n"
    (own / "README.md").write_text("---\nlicense: apache-2.0\ntags: [mine]\n---\n" + body)
    manifest = json.loads((own / "manifest.json").read_text())
    manifest["files"].append({"path": "README.md"})
    (own / "manifest.json").write_text(json.dumps(manifest))
    assert cli("publish", str(own), "--base-name", "acme/base").code == 0
    view = Path(cli("install", "acme/own-card", "--json").json()["installed"][0]["path"])
    text = (view / "README.md").read_text()
    assert text.endswith(body)  # the author's words, untouched
    card = ModelCard(text)
    assert card.data.license == "apache-2.0" and card.data.tags[0] == "mine"  # kept, first
    assert card.data.base_model == "acme/base"  # completed


@pytest.mark.parametrize(
    "config,expect",
    [
        ("cache_dir = 5\n", "'cache_dir' must be a str"),
        ('offline = "no"\n', "'offline' must be a bool"),
        ('[registry]\nname = "a"\nurl = "file:///tmp"\n', "'registry' must be an array of tables"),
        ("not toml = = =\n", "invalid TOML"),
    ],
)
def test_bad_config_file_is_a_one_line_usage_error(cli, home, config, expect):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)
    r = cli("install", "acme/x")
    assert r.code == 2 and expect in r.err


def test_unwritable_paths_are_clean_errors(cli, package, tmp_path):
    cli("publish", str(package("acme/w", "1.0.0")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = cli("lock", "acme/w", "--lockfile", str(blocker / "adapters.lock"))
    assert r.code == 1 and "cannot write the lockfile" in r.err
    r = cli("install", "acme/w", "--cache-dir", str(blocker / "cache"))
    assert r.code == 1 and "cannot use the cache directory" in r.err
    assert cli("install", "acme/w", "--cache-dir", "").code == 2
    assert cli("install", "https://[::1/acme/w").code == 2


def test_empty_cache_dir_is_refused_and_clean_only_touches_a_cache(cli, home, tmp_path, monkeypatch):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('cache_dir = ""\n')
    r = cli("cache", "clean", "--yes")
    assert r.code == 2 and "must not be empty" in r.err
    (home / "config.toml").unlink()
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    r = cli("cache", "clean", "--yes", "--cache-dir", str(project))
    assert r.code == 1 and "not an adapters cache" in r.err
    assert (project / "notes.txt").read_text() == "mine" and (project / "src").is_dir()


def test_reserved_name_as_a_directory_is_refused(cli, package):
    pkg = package("acme/rd", "1.0.0")
    (pkg / ".install.json").mkdir()
    (pkg / ".install.json" / "x").write_bytes(b"x")
    m = json.loads((pkg / "manifest.json").read_text())
    m["files"].append({"path": ".install.json/x"})
    (pkg / "manifest.json").write_text(json.dumps(m))
    r = cli("publish", str(pkg))
    assert r.code == 7 and "reserved" in r.err
