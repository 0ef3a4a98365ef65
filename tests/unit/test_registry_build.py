"""`build_registry`: a directory registry published by the CLI, damaged in each way, then checked and
repaired; the repaired registry installs over file:// and over a real HTTP server."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from adapterhub_client.errors import NotFoundError
from adapterhub_client.registry import layout
from adapterhub_client.registry.build import MAX_REPORTED_PROBLEMS, build_registry
from adapterhub_client.registry.publish import LOCK_FILE
from tests.conftest import run_adapters
from tests.pkgs import make_toy_base

# Published in the order of their index paths, so publish order and the index's order agree.
PUBLISHED = [("acme/alpha", "1.0.0"), ("acme/alpha", "1.1.0"), ("acme/beta", "1.0.0"), ("team/gamma", "0.1.0")]


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A tiny base model on disk (tests.pkgs.make_toy_base)."""
    return make_toy_base(tmp_path / "base")


@pytest.fixture
def registry(tmp_path: Path, cli: Callable, package: Callable, base_dir: Path) -> Path:
    """alpha 1.0.0 and 1.1.0 (the same weights: one blob) and beta (two files) on `base_dir`; gamma on no
    known base, depending on alpha."""
    root = tmp_path / "reg"
    packages = [
        package("acme/alpha", "1.0.0", seed=1),
        package("acme/alpha", "1.1.0", seed=1),
        package("acme/beta", "1.0.0", seed=2, files=2),
        package("team/gamma", "0.1.0", seed=3, deps=[("acme/alpha", ">=1")]),
    ]
    for pkg in packages[:3]:
        assert cli("publish", str(pkg), "--registry", root.as_uri(), "--base", str(base_dir)).code == 0
    assert cli("publish", str(packages[3]), "--registry", root.as_uri()).code == 0
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file of the registry (the lock file aside) by its relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def derived(root: Path) -> dict[str, bytes]:
    return {
        rel: data for rel, data in tree(root).items() if rel in ("search.jsonl", "config.json") or rel[:8] == "by-base/"
    }


def index_line(root: Path, name: str, version: str) -> dict:
    lines = (root / layout.index_path(name)).read_text().splitlines()
    return next(json.loads(ln) for ln in lines if json.loads(ln)["version"] == version)


def manifest_of(root: Path, name: str, version: str) -> dict:
    return json.loads((root / layout.blob_path(index_line(root, name, version)["manifest"]["sha256"])).read_bytes())


def file_blob(root: Path, name: str, version: str, path: str) -> Path:
    sha = next(f["sha256"] for f in manifest_of(root, name, version)["files"] if f["path"] == path)
    return root / layout.blob_path(sha)


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)  # blobs are published read-only
    return path


def test_a_published_registry_checks_clean_each_blob_hashed_once_and_nothing_rewritten(registry):
    before = tree(registry)
    assert file_blob(registry, "acme/alpha", "1.0.0", "adapter.safetensors") == file_blob(
        registry, "acme/alpha", "1.1.0", "adapter.safetensors"
    )  # the shared blob
    report = build_registry(registry)
    assert report.ok and report.problems == [] and report.repaired == []
    assert (report.names, report.versions) == (3, 4)
    blobs = {index_line(registry, n, v)["manifest"]["sha256"] for n, v in PUBLISHED}
    blobs |= {f["sha256"] for n, v in PUBLISHED for f in manifest_of(registry, n, v)["files"]}
    # 4 manifests, 4 model cards (publish adds one each), alpha's weights (shared), beta's two, gamma's
    assert report.blobs_checked == len(blobs) == 4 + 4 + 1 + 2 + 1
    # each blob hashed once, though alpha's weights are listed twice and build reads the index twice
    assert report.bytes_hashed == sum((registry / layout.blob_path(s)).stat().st_size for s in blobs)
    assert tree(registry) == before  # what build derives is byte for byte what publish wrote


def _drop_search_line(root: Path, name: str) -> None:
    path = root / "search.jsonl"
    path.write_text("".join(ln + "\n" for ln in path.read_text().splitlines() if json.loads(ln)["name"] != name))


def _stale_search(root: Path) -> None:
    """The last line lost (build appends what is missing, as publish would have), another out of date, and
    lines for no published version."""
    _drop_search_line(root, "team/gamma")
    lines = [json.loads(ln) for ln in (root / "search.jsonl").read_text().splitlines()]
    lines[0]["description"] = "edited by hand"
    lines.append({"name": "acme/ghost", "version": "9.9.9", "description": "", "tags": [], "type": "lora"})
    (root / "search.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines) + "not json\n")


def _stale_by_base(root: Path) -> None:
    (listed,) = [p for p in (root / "by-base").rglob("*") if p.is_file()]
    with listed.open("a") as fh:
        fh.write(json.dumps({"name": "acme/ghost", "version": "9.9.9", "type": "lora"}) + "\n")
    orphan = root / layout.base_index_path("blake3:" + "0" * 64)
    orphan.parent.mkdir(parents=True)
    orphan.write_text(json.dumps({"name": "acme/ghost", "version": "1.0.0", "type": "lora"}) + "\n")


BY_BASE = r"by-base/blake3/[0-9a-f]{2}/[0-9a-f]{64}"
REPAIRABLE = {  # damage, and a pattern for each line of `repaired`
    "search.jsonl deleted": (
        lambda root: (root / "search.jsonl").unlink(),
        [r"search\.jsonl: rewritten \(it was missing\)"],
    ),
    "search.jsonl stale": (
        _stale_search,
        [r"search\.jsonl: rewritten \(it was stale: 1 missing, 1 out of date, 2 extra or malformed\)"],
    ),
    "by-base deleted": (
        lambda root: shutil.rmtree(root / "by-base"),
        [rf"{BY_BASE}: rewritten \(it was missing\)"],
    ),
    "by-base stale": (
        _stale_by_base,
        [
            rf"{BY_BASE}: rewritten \(it was stale: 1 extra or malformed\)",
            r"by-base/blake3/00/0{64}: removed \(it was listing no published version\)",
        ],
    ),
    "config.json removed": (
        lambda root: (root / "config.json").unlink(),
        [r"config\.json: rewritten \(it was missing\)"],
    ),
}


@pytest.mark.parametrize("damage", REPAIRABLE, ids=list(REPAIRABLE))
def test_derived_files_are_rebuilt_exactly_as_publish_wrote_them(registry, damage):
    published = derived(registry)
    harm, expected = REPAIRABLE[damage]
    harm(registry)
    damaged = tree(registry)

    check = build_registry(registry, repair=False)
    assert not check.ok and check.repaired == []
    assert all("repairable" in p for p in check.problems), check.problems
    assert tree(registry) == damaged  # a check writes nothing

    report = build_registry(registry)
    assert report.ok, report.problems
    assert len(report.repaired) == len(expected)
    for pattern in expected:
        assert sum(1 for line in report.repaired if re.fullmatch(pattern, line)) == 1, report.repaired
    assert derived(registry) == published
    assert build_registry(registry).repaired == []  # nothing left to repair


def test_a_repaired_registry_installs_and_searches_over_file_and_http(registry, cli, static_server_factory, base_dir):
    (registry / "search.jsonl").unlink()
    shutil.rmtree(registry / "by-base")
    (registry / "config.json").unlink()
    r = cli("search", "--registry", registry.as_uri(), "--json")
    assert r.code == 0 and r.json()["results"] == []  # what a reader sees before the build

    report = build_registry(registry)
    assert report.ok and len(report.repaired) == 3

    r = cli("install", "team/gamma", "--registry", registry.as_uri(), "--json")
    assert r.code == 0, r.err
    assert sorted((i["name"], i["version"]) for i in r.json()["installed"]) == [
        ("acme/alpha", "1.1.0"),
        ("team/gamma", "0.1.0"),
    ]
    server = static_server_factory(registry)
    url = server.url + "/"
    r = cli("install", "acme/beta", "--registry", url, "--json")
    assert r.code == 0 and r.json()["installed"][0]["version"] == "1.0.0", r.err
    r = cli("search", "--registry", url, "--json")
    assert [(h["name"], h["version"]) for h in r.json()["results"]] == [
        ("acme/alpha", "1.1.0"),
        ("acme/beta", "1.0.0"),
        ("team/gamma", "0.1.0"),
    ]
    r = cli("search", "--for-model", str(base_dir), "--registry", url, "--json")  # reads by-base/
    assert [(h["name"], h["version"]) for h in r.json()["results"]] == [
        ("acme/alpha", "1.1.0"),
        ("acme/alpha", "1.0.0"),
        ("acme/beta", "1.0.0"),
    ]


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    writable(path).write_bytes(bytes(data))


def _blob_rel(root: Path, name: str, version: str, path: str) -> str:
    return file_blob(root, name, version, path).relative_to(root).as_posix()


def _manifest_rel(root: Path, name: str, version: str) -> str:
    return layout.blob_path(index_line(root, name, version)["manifest"]["sha256"])


def _rewrite_index_line(root: Path, name: str, **changes: object) -> None:
    path = root / layout.index_path(name)
    items = [{**json.loads(ln), **changes} for ln in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(i, sort_keys=True, separators=(",", ":")) + "\n" for i in items))


def _damage_blob_removed(root: Path) -> list[str]:
    rel = _blob_rel(root, "acme/beta", "1.0.0", "adapter-1.safetensors")
    (root / rel).unlink()
    return [f"acme/beta 1.0.0: adapter-1.safetensors (blob {rel}) is missing"]


def _damage_blob_bit_flipped(root: Path) -> list[str]:
    rel = _blob_rel(root, "acme/alpha", "1.0.0", "adapter.safetensors")
    _flip_bit(root / rel)
    return [
        f"acme/alpha {v}: adapter.safetensors (blob {rel}) is corrupt (its bytes do not match its sha256)"
        for v in ("1.0.0", "1.1.0")  # one line for each version that lists it
    ]


def _damage_manifest_missing(root: Path) -> list[str]:
    rel = _manifest_rel(root, "team/gamma", "0.1.0")
    (root / rel).unlink()
    return [f"team/gamma 0.1.0: manifest blob {rel} is missing"]


def _damage_manifest_bit_flipped(root: Path) -> list[str]:
    rel = _manifest_rel(root, "acme/beta", "1.0.0")
    _flip_bit(root / rel)
    return [f"acme/beta 1.0.0: manifest blob {rel} is corrupt (its bytes do not match its sha256)"]


def _damage_index_line_malformed(root: Path) -> list[str]:
    with (root / layout.index_path("acme/alpha")).open("a") as fh:
        fh.write('{"name": "acme/alpha", "version": \n')
    return ["index/acme/al/ph/alpha line 3: malformed index line (not JSON)"]


def _damage_index_line_disagrees(root: Path) -> list[str]:
    _rewrite_index_line(root, "acme/beta", size=1)
    return ["index/acme/be/ta/beta line 1: differs from its manifest in size"]


def _damage_index_line_duplicated(root: Path) -> list[str]:
    path = root / layout.index_path("acme/alpha")
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    return ["index/acme/al/ph/alpha line 3: acme/alpha 1.0.0 is listed twice"]


UNREPAIRABLE = {
    "blob removed": _damage_blob_removed,
    "blob bit-flipped": _damage_blob_bit_flipped,
    "manifest missing": _damage_manifest_missing,
    "manifest bit-flipped": _damage_manifest_bit_flipped,
    "index line malformed": _damage_index_line_malformed,
    "index line disagrees with its manifest": _damage_index_line_disagrees,
    "index line duplicated": _damage_index_line_duplicated,
}


@pytest.mark.parametrize("damage", UNREPAIRABLE, ids=list(UNREPAIRABLE))
def test_what_cannot_be_rederived_is_reported_and_left_in_place(registry, damage):
    expected = UNREPAIRABLE[damage](registry)
    damaged = tree(registry)
    for repair in (False, True):
        report = build_registry(registry, repair=repair)
        assert report.problems == expected and report.problem_count == len(expected)
        assert report.repaired == []
        assert tree(registry) == damaged  # no blob, index line or derived line removed


def test_an_index_line_breaking_the_schema_is_named_by_field(registry):
    _rewrite_index_line(registry, "team/gamma", yanked="no")
    report = build_registry(registry)
    assert report.problem_count == 1
    assert report.problems[0].startswith("malformed index line: index/team/ga/mm/gamma line 1: field 'yanked'")


def test_lines_that_cannot_be_rederived_are_kept(registry):
    """A version whose manifest is gone keeps its search line; a name whose index file is malformed keeps
    every derived line, even one build cannot match to a valid index line."""
    (registry / _manifest_rel(registry, "team/gamma", "0.1.0")).unlink()
    _damage_index_line_malformed(registry)
    with (registry / "search.jsonl").open("a") as fh:
        fh.write(json.dumps({"name": "acme/alpha", "version": "0.9.0"}) + "\n")
        fh.write(json.dumps({"name": "acme/ghost", "version": "1.0.0"}) + "\n")
    report = build_registry(registry)
    assert report.problem_count == 2 and report.repaired == [
        "search.jsonl: rewritten (it was stale: 1 extra or malformed)"
    ]
    names = [
        (ln["name"], ln["version"]) for ln in map(json.loads, (registry / "search.jsonl").read_text().splitlines())
    ]
    assert names == [*PUBLISHED, ("acme/alpha", "0.9.0")]  # the ghost went; gamma's line and alpha's stayed


def test_stale_temps_are_removed_only_when_repairing(registry):
    temps = [
        registry / "blobs/sha256/ab/.tmp-killed",
        registry / "index/acme/.tmp-alpha.x",
        registry / "by-base/.tmp-abc.y",
        registry / ".tmp-search.jsonl.z",
    ]
    for i, path in enumerate(temps):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (100 + i))
    fresh_config_temp = registry / ".tmp-config.json.live"  # publish writes config.json before it locks
    old_config_temp = registry / ".tmp-config.json.old"
    for path in (fresh_config_temp, old_config_temp):
        path.write_bytes(b"{}")
    os.utime(old_config_temp, (time.time() - 7200, time.time() - 7200))

    check = build_registry(registry, repair=False)
    assert check.ok and check.temps_removed == 0 and all(p.exists() for p in temps)

    report = build_registry(registry)
    assert report.ok and (report.temps_removed, report.temp_bytes_freed) == (5, 100 + 101 + 102 + 103 + 2)
    assert report.repaired == ["removed 5 temp files of killed writers (408 B)"]
    assert not any(p.exists() for p in [*temps, old_config_temp]) and fresh_config_temp.exists()


@pytest.mark.parametrize(
    ("content", "rewritten_as"),
    [
        (b"{not json", {"protocol": 1, "blobs": "blobs/"}),
        (b'["protocol", 1]', {"protocol": 1, "blobs": "blobs/"}),
        (b'{"protocol": 1, "name": "team", "blobs": 5}', {"protocol": 1, "blobs": "blobs/", "name": "team"}),
        (
            b'{"name": "team", "blobs": "https://cdn.example.com/b/"}',
            {"protocol": 1, "name": "team", "blobs": "https://cdn.example.com/b/"},
        ),
    ],
)
def test_an_invalid_config_is_rewritten_keeping_its_valid_fields(registry, content, rewritten_as):
    (registry / "config.json").write_bytes(content)
    assert build_registry(registry, repair=False).problem_count == 1
    report = build_registry(registry)
    assert report.ok and len(report.repaired) == 1 and report.repaired[0].startswith("config.json: rewritten")
    assert json.loads((registry / "config.json").read_text()) == rewritten_as
    assert (registry / "config.json").stat().st_mode & 0o044 == 0o044  # a web server's user can read it


def test_a_newer_protocol_is_reported_not_rewritten(registry):
    (registry / "config.json").write_text('{"protocol": 2}')
    report = build_registry(registry)
    assert report.problems == ["config.json: protocol 2 is not one this client knows (1); left as it is"]
    assert (registry / "config.json").read_text() == '{"protocol": 2}'


def test_problems_are_listed_one_line_each_up_to_a_bound(registry):
    with (registry / layout.index_path("acme/beta")).open("a") as fh:
        fh.write("garbage\n" * (MAX_REPORTED_PROBLEMS + 50))
    report = build_registry(registry)
    assert report.problem_count == MAX_REPORTED_PROBLEMS + 50
    assert len(report.problems) == MAX_REPORTED_PROBLEMS and not any("\n" in p for p in report.problems)


def test_a_directory_that_is_no_registry_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="is not a directory registry"):
        build_registry(tmp_path)
    with pytest.raises(NotFoundError, match="is not a directory"):
        build_registry(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_build_waits_for_a_publish_that_holds_the_lock(registry):
    """A publish stopped between its index line and its search line (holding the lock): build must wait,
    or it would add gamma's line and the publish's own append would list gamma twice."""
    _drop_search_line(registry, "team/gamma")
    lock = FileLock(str(registry / LOCK_FILE))
    lock.acquire()
    reports = []
    builder = threading.Thread(target=lambda: reports.append(build_registry(registry)))
    try:
        builder.start()
        builder.join(0.5)
        assert builder.is_alive()  # waiting for the lock
        line = {"name": "team/gamma", "version": "0.1.0", "description": "test adapter team/gamma"}
        line |= {"tags": ["test"], "type": "lora", "base": "test/base"}
        with (registry / "search.jsonl").open("a") as fh:  # the publish finishes
            fh.write(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")
    finally:
        lock.release()
    builder.join()
    assert reports[0].ok and reports[0].repaired == []
    assert build_registry(registry, repair=False).ok


def test_build_while_another_process_publishes_leaves_a_consistent_registry(registry, package, cli):
    new = [package("acme/delta", "1.0.0", seed=4), package("acme/alpha", "2.0.0", seed=5)]
    done: list[int] = []

    def publish_all() -> None:
        for pkg in new:
            done.append(run_adapters("publish", str(pkg), "--registry", registry.as_uri()).returncode)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    builds = 0
    while publisher.is_alive():
        report = build_registry(registry)
        assert report.ok, report.problems
        builds += 1
    publisher.join()
    assert done == [0, 0] and builds >= 1
    final = build_registry(registry, repair=False)
    assert final.ok, final.problems
    assert (final.names, final.versions) == (4, 6)
    lines = [json.loads(ln) for ln in (registry / "search.jsonl").read_text().splitlines()]
    assert sorted((ln["name"], ln["version"]) for ln in lines) == sorted(
        [*PUBLISHED, ("acme/delta", "1.0.0"), ("acme/alpha", "2.0.0")]
    )
    r = cli("install", "acme/alpha", "acme/delta", "--registry", registry.as_uri(), "--json")
    assert r.code == 0, r.err
    assert sorted(i["version"] for i in r.json()["installed"]) == ["1.0.0", "2.0.0"]


def test_the_cli_builds_and_exits_7_naming_what_it_cannot_repair(cli, package, tmp_path):
    root = tmp_path / "static"
    assert cli("publish", str(package("acme/cli-built", "1.0.0")), "--registry", root.as_uri()).code == 0
    (root / "search.jsonl").unlink()
    r = cli("registry", "build", str(root), "--check", "--json")
    assert r.code == 7 and not (root / "search.jsonl").exists()  # --check rewrites nothing
    r = cli("registry", "build", str(root), "--json")
    assert r.code == 0, r.err
    assert r.json()["ok"] and any("search.jsonl" in line for line in r.json()["repaired"])
    blob = next(p for p in (root / "blobs").rglob("*") if p.is_file() and p.stat().st_size > 1000)
    blob.chmod(0o644)
    blob.write_bytes(b"\0" * blob.stat().st_size)
    r = cli("registry", "build", str(root))
    assert r.code == 7 and blob.name[:12] in r.err and r.err.count("\n") == 1
