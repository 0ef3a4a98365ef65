"""Validation of names, versions, paths and references: full-match patterns (no trailing newline
slips through `$`), normalized versions, byte lengths checked before any download, and the
pickle filter in any letter case. Torch-free."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapterhub_client._fs import sha256_bytes
from adapterhub_client.errors import InvalidPackageError, UsageError
from adapterhub_client.manifest import (
    canonical_name,
    check_relative_path,
    dumps_manifest,
    loads_manifest,
    parse_version,
    validate_schema,
)
from adapterhub_client.refs import parse_ref, parse_requirement
from adapterhub_client.registry import layout


def all_paths(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*")] if root.exists() else []


def edit_manifest(pkg: Path, **fields: Any) -> None:
    m = json.loads((pkg / "manifest.json").read_text())
    (pkg / "manifest.json").write_text(json.dumps({**m, **fields}))


def tamper_published(home: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the published manifest of `name` (as a hostile registry would serve it), keeping the
    index line's sha256 consistent so only validation can refuse it."""
    reg = home / "registry"
    index = reg / layout.index_path(name)
    line = json.loads(index.read_text().splitlines()[0])
    manifest = json.loads((reg / layout.blob_path(line["manifest"]["sha256"])).read_bytes())
    change(manifest)
    raw = dumps_manifest(manifest)
    blob = reg / layout.blob_path(sha256_bytes(raw))
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(raw)
    line["manifest"] = {"sha256": sha256_bytes(raw), "size": len(raw)}
    index.write_text(json.dumps(line) + "\n")


# item 6: full-match patterns, normalized versions


@pytest.mark.parametrize(
    "field, value",
    [("name", "acme/demo\n"), ("version", "1.0.0\n"), ("version", " 1.0.0"), ("version", "1.0.0\t")],
)
def test_publish_refuses_a_name_or_version_with_surrounding_whitespace(cli, package, home, field, value):
    pkg = package("acme/demo", "1.0.0")
    edit_manifest(pkg, **{field: value})
    r = cli("publish", str(pkg))
    assert r.code == 7, (r.code, r.err)
    assert f"'{field}'" in r.err or field in r.err
    assert not any("\n" in p or "\t" in p or p.endswith(" ") for p in all_paths(home))
    assert not (home / "registry" / layout.index_path("acme/demo")).exists()


def test_publish_options_with_a_trailing_newline_are_refused(cli, package, home):
    pkg = package("acme/demo", "1.0.0")
    assert cli("publish", str(pkg), "--version", "1.0.0\n").code == 7
    assert cli("publish", str(pkg), "--name", "acme/demo\n").code == 7
    assert not any("\n" in p for p in all_paths(home))


def test_a_registry_manifest_with_a_trailing_newline_installs_nothing(cli, package, home):
    assert cli("publish", str(package("acme/demo", "1.0.0"))).code == 0
    tamper_published(home, "acme/demo", lambda m: m.update(version="1.0.0\n"))
    r = cli("install", "acme/demo")
    assert r.code == 7, (r.code, r.err)
    assert not any("\n" in p for p in all_paths(home))


def test_the_published_version_is_stored_normalized(cli, package, home):
    r = cli("publish", str(package("acme/norm", "1.0.0-RC1")), "--json")
    assert r.code == 0, r.err
    assert r.json()["version"] == "1.0.0rc1"
    line = json.loads((home / "registry" / layout.index_path("acme/norm")).read_text())
    assert line["version"] == "1.0.0rc1"
    r = cli("install", "acme/norm@1.0.0rc1", "--json")
    assert r.code == 0, r.err
    assert Path(r.json()["installed"][0]["path"]).name == "1.0.0rc1"
    assert cli("info", "acme/norm@1.0.0rc1", "--json").json()["manifest"]["version"] == "1.0.0rc1"


@pytest.mark.parametrize("text", ["1.0.0\n", " 1.0.0", "1.0.0 ", "\n1.0.0", "1.0.0\r\n"])
def test_parse_version_refuses_surrounding_whitespace(text):
    with pytest.raises(InvalidPackageError, match="whitespace"):
        parse_version(text)


@pytest.mark.parametrize("name", ["acme/demo\n", "acme\n/demo", "acme/demo\r", " acme/demo", "acme/de\nmo"])
def test_canonical_name_is_a_full_match(name):
    with pytest.raises(InvalidPackageError, match="invalid adapter name"):
        canonical_name(name)


def test_a_valid_name_message_says_what_a_valid_name_looks_like():
    with pytest.raises(InvalidPackageError) as info:
        canonical_name("acme/-demo")
    assert "letters, digits" in str(info.value) and "[A-Za-z" not in str(info.value)


def _manifest(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "schema_version": 1,
        "name": "acme/demo",
        "version": "1.0.0",
        "adapter": {"type": "lora", "config": {}},
        "base_model": {"name": None},
        "files": [{"path": "adapter.safetensors", "sha256": "a" * 64, "size": 1}],
    }
    m.update(changes)
    return m


@pytest.mark.parametrize(
    "changes",
    [
        {"adapter": {"type": "lora\n", "config": {}}},
        {"files": [{"path": "adapter.safetensors", "sha256": "a" * 64 + "\n", "size": 1}]},
        {"base_model": {"name": None, "fingerprint": {"content": "sha256:" + "b" * 64 + "\n"}}},
        {"dependencies": [{"name": "acme/other\n"}]},
    ],
    ids=["adapter-type", "file-sha256", "fingerprint", "dependency-name"],
)
def test_schema_patterns_do_not_match_before_a_final_newline(changes):
    with pytest.raises(InvalidPackageError):
        loads_manifest(dumps_manifest(_manifest(**changes)))
    loads_manifest(dumps_manifest(_manifest()))  # the unchanged manifest is valid


def test_index_lines_and_lockfiles_refuse_a_trailing_newline_too():
    line = {"name": "acme/demo\n", "version": "1.0.0", "manifest": {"sha256": "a" * 64, "size": 10}, "yanked": False}
    with pytest.raises(InvalidPackageError, match="name"):
        validate_schema(line, "index-entry", "index")
    line = {**line, "name": "acme/demo", "manifest": {"sha256": "a" * 64 + "\n", "size": 10}}
    with pytest.raises(InvalidPackageError, match="sha256"):
        validate_schema(line, "index-entry", "index")
    with pytest.raises(InvalidPackageError, match="version"):
        validate_schema({**line, "manifest": {"sha256": "a" * 64, "size": 10}, "version": "1.0\n"}, "index-entry", "i")
    entry = {
        "name": "acme/demo",
        "version": "1.0.0",
        "source": "file:///r/",
        "manifest": {"sha256": "a" * 64, "size": 1},
    }
    file = {"path": "adapter.safetensors", "sha256": "a" * 64, "size": 1}
    lock = {"lock_version": 1, "requirements": ["acme/demo"], "adapters": [{**entry, "files": [file]}]}
    validate_schema(lock, "lockfile", "adapters.lock")
    for bad in ({"name": "acme/demo\n"}, {"version": "1.0.0\n"}, {"files": [{**file, "path": "a\nb"}]}):
        with pytest.raises(InvalidPackageError):
            validate_schema({**lock, "adapters": [{**entry, "files": [file], **bad}]}, "lockfile", "adapters.lock")


def test_a_deeply_nested_manifest_is_invalid_not_a_crash():
    with pytest.raises(InvalidPackageError, match="nested too deeply"):
        loads_manifest(b"[" * 100_000 + b"]" * 100_000)


# item 7: byte lengths per component, before any download


LONG = "é" * 200  # 200 characters, 400 bytes in UTF-8


def test_a_path_component_over_255_bytes_is_refused():
    with pytest.raises(InvalidPackageError, match="255 bytes"):
        check_relative_path(f"weights/{LONG}.safetensors", "manifest")
    check_relative_path("weights/" + "a" * 255, "manifest")  # exactly the limit is fine


@pytest.mark.parametrize("bad", ["a\nb.safetensors", "a\x1b[2Jb.safetensors", "tab\there"])
def test_a_path_with_control_characters_is_refused(bad):
    with pytest.raises(InvalidPackageError, match="control character"):
        check_relative_path(bad, "manifest")


def test_publish_refuses_a_long_file_name_with_exit_7(cli, package, home):
    pkg = package("acme/long", "1.0.0")
    edit_manifest(pkg, files=[{"path": f"{LONG}.safetensors"}])
    r = cli("publish", str(pkg))
    assert r.code == 7, (r.code, r.err)
    assert "255 bytes" in r.err and "files/0/path" in r.err


def test_install_refuses_a_long_file_name_before_any_download(cli, package, home):
    assert cli("publish", str(package("acme/long", "1.0.0", size=50_000))).code == 0

    def long_path(m: dict[str, Any]) -> None:
        m["files"][0]["path"] = f"{LONG}.safetensors"

    tamper_published(home, "acme/long", long_path)
    r = cli("install", "acme/long")
    assert r.code == 7, (r.code, r.err)
    assert "255 bytes" in r.err
    blobs = [p for p in (home / "cache" / "blobs").rglob("*") if p.is_file()] if (home / "cache").exists() else []
    assert all(p.stat().st_size < 50_000 for p in blobs)  # the manifest at most, never the weights


def test_a_10000_character_reference_is_a_usage_error(cli):
    ref = "acme/" + "x" * 10_000
    with pytest.raises(UsageError, match="too long"):
        parse_ref(ref)
    r = cli("install", ref)
    assert r.code == 2, (r.code, r.err)
    assert "too long" in r.err and len(r.err) < 500


def test_a_long_path_like_reference_is_a_usage_error(cli):
    for ref in ["./" + "d" * 300, "./" + "/".join(["d" * 200] * 30)]:
        r = cli("install", ref)
        assert r.code == 2, (r.code, r.err)
        assert "internal error" not in r.err


def test_a_long_registry_url_reference_is_a_usage_error():
    with pytest.raises(UsageError, match="too long"):
        parse_ref("https://127.0.0.1/" + "r/" * 2000 + "acme/x")
    with pytest.raises(UsageError, match="too long"):
        parse_requirement("acme/x@==" + "1" * 2000)


def test_name_parts_are_bounded_by_bytes_too():
    with pytest.raises(InvalidPackageError):
        canonical_name("acme/" + "a" * 65)
    assert canonical_name("acme/" + "a" * 64) == "acme/" + "a" * 64


# item 8: the pickle filter ignores letter case


@pytest.mark.parametrize("weights", ["adapter.BIN", "weights.Pt", "model.PTH", "x.Ckpt", "y.PKL"])
def test_pickles_in_any_case_are_not_published(cli, package, home, weights):
    pkg = package("acme/pickled", "1.0.0")
    (pkg / weights).write_bytes(b"\x80\x04not really")
    edit_manifest(pkg, files=[{"path": weights}])
    r = cli("publish", str(pkg))
    assert r.code == 7, (r.code, r.err)
    assert "pickle" in r.err and weights in r.err
    assert not (home / "registry" / layout.index_path("acme/pickled")).exists()


def test_a_pickle_listed_beside_safetensors_in_any_case_is_refused(cli, package):
    pkg = package("acme/pickled", "1.0.0")
    (pkg / "extra.BIN").write_bytes(b"\x80\x04")
    edit_manifest(pkg, files=[{"path": "adapter.safetensors"}, {"path": "extra.BIN"}])
    r = cli("publish", str(pkg))
    assert r.code == 7 and "extra.BIN" in r.err


def test_no_os_error_leaks_for_a_long_component_in_a_local_package(package):
    """complete_package must refuse by name length, not by the OSError a stat would raise."""
    from adapterhub_client.manifest import complete_package

    pkg = package("acme/long", "1.0.0")
    data = json.loads((pkg / "manifest.json").read_text())
    data["files"] = [{"path": "a" * 300}]
    with pytest.raises(InvalidPackageError, match="255 bytes"):
        complete_package(pkg, data)
    assert os.path.isdir(pkg)


def test_a_manifest_over_the_one_limit_is_refused_at_publish(cli, package, home):
    """Publish, local installs and registry reads share MAX_MANIFEST_BYTES (8 MiB): publishing one that
    every later install would refuse is refused up front."""
    from adapterhub_client.manifest import MAX_MANIFEST_BYTES

    pkg = package("acme/huge", "1.0.0", extra={"description": "x" * (MAX_MANIFEST_BYTES + 1)})
    r = cli("publish", str(pkg))
    assert r.code == 7 and "manifest" in r.err, (r.code, r.err[:300])
    assert not (home / "registry" / layout.index_path("acme/huge")).exists()


@pytest.mark.parametrize("char", ["\x1b", "\x7f", "\x85", "\x9b"])
def test_file_paths_with_c0_del_or_c1_characters_are_refused(char):
    with pytest.raises(InvalidPackageError):
        check_relative_path(f"weights/a{char}b.safetensors", "manifest")
