"""Recovering the local store: corrupt blobs are quarantined and fetched again (`verify`, `verify --repair`,
`install --reinstall`), cached manifests are re-hashed on every read, and `--frozen` checks the lock's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from adapterhub_client.registry import layout


def corrupt(path: Path) -> bytes:
    """Flip the last byte of a file in place (the same inode: a hard-linked blob changes too)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def install_path(cli, ref: str) -> Path:
    r = cli("install", ref, "--json")
    assert r.code == 0, r.err
    return Path(r.json()["installed"][0]["path"])


def quarantine_notes(home: Path) -> list[dict]:
    folder = home / "cache" / "quarantine"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/note.json"))] if folder.is_dir() else []


def test_verify_quarantines_a_corrupt_blob_and_the_next_install_fetches_it_again(cli, package, home):
    pkg = package("acme/t", "1.0.0", size=20000)
    good = (pkg / "adapter.safetensors").read_bytes()
    assert cli("publish", str(pkg)).code == 0
    view = install_path(cli, "acme/t")
    bad = corrupt(view / "adapter.safetensors")

    r = cli("verify", "--json")
    assert r.code == 4 and "adapter.safetensors" in r.json()["problems"][0]
    assert r.json()["broken"] == ["acme/t 1.0.0"]
    [note] = quarantine_notes(home)
    assert note["reason"] and note["what"].startswith("blob") and note["when"]
    evidence = Path(note["path"])
    assert evidence.read_bytes() == bad  # moved aside, never deleted
    assert cli("verify").code == 4  # still broken until repaired

    r = cli("install", "acme/t", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["already_installed"] is False and r.json()["downloads"] == 1
    assert (view / "adapter.safetensors").read_bytes() == good
    assert cli("verify").code == 0
    assert evidence.read_bytes() == bad


def test_uninstall_then_install_after_verify_does_not_reuse_the_bad_blob(cli, package, home):
    pkg = package("acme/u", "1.0.0", size=20000)
    good = (pkg / "adapter.safetensors").read_bytes()
    cli("publish", str(pkg))
    view = install_path(cli, "acme/u")
    corrupt(view / "adapter.safetensors")
    assert cli("verify").code == 4
    assert cli("uninstall", "acme/u").code == 0
    r = cli("install", "acme/u", "--json")
    assert r.code == 0 and r.json()["downloads"] == 1
    assert (Path(r.json()["installed"][0]["path"]) / "adapter.safetensors").read_bytes() == good
    assert cli("verify").code == 0


def test_verify_repair_refetches_and_rebuilds_every_broken_view(cli, package, home):
    pkgs = [package(f"acme/r{i}", "1.0.0", size=20000, seed=i) for i in range(2)]
    for pkg in pkgs:
        cli("publish", str(pkg))
    views = [install_path(cli, f"acme/r{i}") for i in range(2)]
    corrupt(views[0] / "adapter.safetensors")
    manifest = views[1] / "manifest.json"
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace("test adapter", "changed"))

    r = cli("verify", "--repair", "--json")
    assert r.code == 0, r.out + r.err
    assert sorted(r.json()["repaired"]) == ["acme/r0 1.0.0", "acme/r1 1.0.0"]
    assert len(r.json()["problems"]) == 2 and r.json()["unrepaired"] == []
    for pkg, view in zip(pkgs, views, strict=True):
        assert (view / "adapter.safetensors").read_bytes() == (pkg / "adapter.safetensors").read_bytes()
    assert json.loads(manifest.read_text())["description"] == "test adapter acme/r1"
    after = cli("verify", "--json")
    assert after.code == 0 and after.json()["problems"] == [] and after.json()["broken"] == []
    # the replaced views are evidence too: moved into quarantine, not deleted
    whats = sorted(n["what"].split()[0] for n in quarantine_notes(home))
    assert whats == ["blob", "view", "view"]


def test_verify_repair_says_what_it_could_not_repair(cli, package, home):
    pkg = package("acme/gone", "1.0.0", size=20000)
    view = install_path(cli, str(pkg))  # installed from a directory that then disappears
    corrupt(view / "adapter.safetensors")
    for p in pkg.iterdir():
        p.unlink()
    pkg.rmdir()
    r = cli("verify", "--repair", "--json")
    assert r.code == 4
    [failure] = r.json()["unrepaired"]
    assert "acme/gone 1.0.0" in failure and r.json()["repaired"] == []
    r = cli("verify", "--repair")
    assert r.code == 4 and "could not repair acme/gone 1.0.0" in r.out + r.err


def test_install_reinstall_refetches_a_corrupt_blob_without_a_verify_first(cli, package, home):
    pkg = package("acme/ri", "1.0.0", size=20000)
    good = (pkg / "adapter.safetensors").read_bytes()
    cli("publish", str(pkg))
    view = install_path(cli, "acme/ri")
    assert cli("install", "acme/ri", "--json").json()["installed"][0]["already_installed"] is True
    corrupt(view / "adapter.safetensors")
    r = cli("install", "acme/ri", "--reinstall", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["already_installed"] is False and r.json()["downloads"] == 1
    assert (view / "adapter.safetensors").read_bytes() == good
    assert cli("verify").code == 0
    # a sound install is rebuilt too, with nothing to download
    r = cli("install", "acme/ri", "--reinstall", "--json")
    assert r.json()["installed"][0]["already_installed"] is False and r.json()["downloads"] == 0
    assert cli("verify").code == 0


def test_a_truncated_cached_blob_is_fetched_again_on_install(cli, package, home):
    pkg = package("acme/tr", "1.0.0", size=20000)
    good = (pkg / "adapter.safetensors").read_bytes()
    cli("publish", str(pkg))
    view = install_path(cli, "acme/tr")
    cli("uninstall", "acme/tr")
    blob = home / "cache" / "blobs" / "sha256"
    [weights] = [p for p in blob.rglob("*") if p.is_file() and p.stat().st_size == len(good)]
    os.chmod(weights, 0o644)
    weights.write_bytes(good[:100])
    r = cli("install", "acme/tr", "--json")
    assert r.code == 0 and r.json()["downloads"] == 1
    assert (view / "adapter.safetensors").read_bytes() == good


def test_prune_keeps_the_quarantine_and_clean_removes_it(cli, package, home):
    cli("publish", str(package("acme/q", "1.0.0", size=20000)))
    corrupt(install_path(cli, "acme/q") / "adapter.safetensors")
    assert cli("verify").code == 4
    assert cli("cache", "prune", "--grace", "0").code == 0
    assert len(quarantine_notes(home)) == 1
    assert cli("cache", "clean", "--yes").code == 0
    assert quarantine_notes(home) == []


def cached_manifest_blob(home: Path, name: str) -> Path:
    index = home / "registry" / layout.index_path(name)
    sha = json.loads(index.read_text().splitlines()[0])["manifest"]["sha256"]
    return home / "cache" / "blobs" / "sha256" / sha[:2] / sha


def test_a_tampered_cached_manifest_is_quarantined_and_fetched_again(cli, package, home):
    cli("publish", str(package("acme/m", "1.0.0")))
    assert cli("install", "acme/m").code == 0
    blob = cached_manifest_blob(home, "acme/m")
    os.chmod(blob, 0o644)
    blob.write_text(blob.read_text().replace("test adapter", "PWNED adapte"))  # same size: only a hash sees it
    r = cli("info", "acme/m", "--json")
    assert r.code == 0, r.err
    assert r.json()["manifest"]["description"] == "test adapter acme/m"
    assert "PWNED" not in blob.read_text()
    [note] = quarantine_notes(home)
    assert "PWNED" in Path(note["path"]).read_text() and "manifest" in note["what"]


def test_a_tampered_cached_manifest_fails_offline_with_exit_4(cli, package, home, tmp_path, static_server_factory):
    root = tmp_path / "served"
    assert cli("publish", str(package("acme/off", "1.0.0")), "--registry", root.as_uri()).code == 0
    server = static_server_factory(root)
    assert cli("install", "acme/off", "--registry", server.url + "/").code == 0
    index = root / layout.index_path("acme/off")
    sha = json.loads(index.read_text().splitlines()[0])["manifest"]["sha256"]
    blob = home / "cache" / "blobs" / "sha256" / sha[:2] / sha
    os.chmod(blob, 0o644)
    blob.write_text(blob.read_text().replace("test adapter", "PWNED adapte"))
    r = cli("info", "acme/off", "--registry", server.url + "/", "--offline")
    assert r.code == 4 and "acme/off" in r.err and "manifest" in r.err


def lock_then_edit(cli, package, tmp_path, monkeypatch, edit) -> str:
    monkeypatch.chdir(tmp_path)
    cli("publish", str(package("acme/lk", "1.0.0", files=2)))
    assert cli("lock", "acme/lk").code == 0
    lock = json.loads((tmp_path / "adapters.lock").read_text())
    edit(lock["adapters"][0]["files"])
    (tmp_path / "adapters.lock").write_text(json.dumps(lock))
    r = cli("install", "--frozen")
    assert r.code == 4, r.err
    assert cli("list", "--json").json()["installed"] == []
    return r.err


def test_frozen_refuses_a_lockfile_whose_file_hash_differs(cli, package, tmp_path, monkeypatch):
    def edit(files):
        files[1]["sha256"] = "0" * 64

    err = lock_then_edit(cli, package, tmp_path, monkeypatch, edit)
    assert "adapter-1.safetensors" in err and "acme/lk 1.0.0" in err


def test_frozen_refuses_a_lockfile_whose_file_size_differs(cli, package, tmp_path, monkeypatch):
    def edit(files):
        files[0]["size"] += 1

    assert "adapter.safetensors" in lock_then_edit(cli, package, tmp_path, monkeypatch, edit)


def test_frozen_refuses_a_lockfile_with_other_files(cli, package, tmp_path, monkeypatch):
    def edit(files):
        files[1]["path"] = "other.safetensors"

    err = lock_then_edit(cli, package, tmp_path, monkeypatch, edit)
    assert "other.safetensors" in err or "adapter-1.safetensors" in err


def test_frozen_installs_an_intact_lockfile(cli, package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("publish", str(package("acme/ok", "1.0.0", files=2)))
    assert cli("lock", "acme/ok").code == 0
    r = cli("install", "--frozen", "--json")
    assert r.code == 0 and r.json()["installed"][0]["name"] == "acme/ok"
