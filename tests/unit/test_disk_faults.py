"""A full or read-only disk under the cache or a registry: one line naming the directory, exit 8, nothing
corrupt left. The file systems are small tmpfs mounts the tests make (skipped where they cannot mount)."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapterhub_client.errors import EXIT_STORAGE, StorageError, UsageError, storage_error
from adapterhub_client.registry import layout

Mount = Callable[..., Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """mount(name, size="2m") -> a fresh tmpfs directory; every mount is undone at teardown."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m") -> Path:
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def read_only(target: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in err and "Errno" not in err, err
    return lines[0]


def test_installing_more_than_the_cache_disk_holds_fails_before_downloading(cli, package, tmpfs):
    cache = tmpfs("cache", "2m")
    assert cli("publish", str(package("acme/big", "1.0.0", size=3_000_000))).code == 0
    assert cli("publish", str(package("acme/small", "1.0.0", size=20_000))).code == 0
    r = cli("install", "acme/big", "--cache-dir", str(cache))
    assert r.code == EXIT_STORAGE == 8
    line = one_error_line(r.err)
    assert "no space left" in line and str(cache) in line and "3.0 MB" in line
    # nothing half-done: no partial download, no view, and the cache still works
    assert not any((cache / "partial").iterdir()) and not any((cache / "tmp").iterdir())
    assert cli("list", "--json", "--cache-dir", str(cache)).json()["installed"] == []
    assert cli("install", "acme/small", "--cache-dir", str(cache)).code == 0
    r = cli("verify", "--json", "--cache-dir", str(cache))
    assert r.code == 0 and r.json()["problems"] == []


def test_publishing_to_a_full_registry_disk_leaves_nothing_behind(cli, package, tmpfs):
    registry = tmpfs("registry", "2m")
    pkg = package("acme/big", "1.0.0", size=3_000_000)
    r = cli("publish", str(pkg), "--registry", registry.as_uri())
    assert r.code == 8
    line = one_error_line(r.err)
    assert "no space left" in line and str(registry) in line
    leftovers = [p for p in registry.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert not (registry / layout.index_path("acme/big")).exists()  # nothing published
    assert cli("install", "acme/big", "--registry", registry.as_uri()).code == 3


def test_a_read_only_cache_is_one_clear_line_and_stays_readable(cli, package, tmpfs):
    cache = tmpfs("cache", "4m")
    cli("publish", str(package("acme/a", "1.0.0", size=20_000)))
    cli("publish", str(package("acme/b", "1.0.0", size=20_000, seed=1)))
    assert cli("install", "acme/a", "--cache-dir", str(cache)).code == 0
    read_only(cache)
    r = cli("install", "acme/b", "--cache-dir", str(cache))
    assert r.code == 8
    line = one_error_line(r.err)
    assert "read-only file system" in line and str(cache) in line
    r = cli("uninstall", "acme/a", "--cache-dir", str(cache))
    assert r.code == 8 and "read-only file system" in one_error_line(r.err)
    # what is there is intact and still usable
    assert [i["name"] for i in cli("list", "--json", "--cache-dir", str(cache)).json()["installed"]] == ["acme/a"]
    r = cli("verify", "--json", "--cache-dir", str(cache))
    assert r.code == 0 and r.json()["problems"] == []
    assert cli("install", "acme/a", "--cache-dir", str(cache), "--json").json()["installed"][0]["already_installed"]


def test_a_read_only_empty_cache_directory(cli, package, tmpfs):
    cache = tmpfs("cache", "1m")
    read_only(cache)
    cli("publish", str(package("acme/a", "1.0.0")))
    r = cli("install", "acme/a", "--cache-dir", str(cache / "adapters"), "--json")
    assert r.code == 8 and "read-only file system" in one_error_line(r.err)
    assert r.json()["exit_code"] == 8


def test_a_read_only_registry(cli, package, tmpfs):
    registry = tmpfs("registry", "4m")
    assert cli("publish", str(package("acme/a", "1.0.0")), "--registry", registry.as_uri()).code == 0
    read_only(registry)
    r = cli("publish", str(package("acme/a", "1.1.0")), "--registry", registry.as_uri())
    assert r.code == 8 and "read-only file system" in one_error_line(r.err)
    lines = (registry / layout.index_path("acme/a")).read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == ["1.0.0"]


@pytest.mark.parametrize(
    "code,kind,words",
    [
        (errno.ENOSPC, StorageError, "no space left"),
        (errno.EDQUOT, StorageError, "no space left"),
        (errno.EROFS, StorageError, "read-only file system"),
        (errno.EACCES, StorageError, "permission denied"),
        (errno.EPERM, StorageError, "permission denied"),
        (errno.ENAMETOOLONG, UsageError, "file name too long"),
    ],
)
def test_os_errors_of_a_refusing_disk_become_one_line_errors(code, kind, words):
    # EACCES cannot be provoked as root, so the mapping itself is checked for every errno it knows
    exc = OSError(code, "strerror", "/srv/cache/blobs/x")
    mapped = storage_error(exc, "/srv/cache")
    assert isinstance(mapped, kind) and words in str(mapped)
    assert "/srv/cache" in str(mapped) and "\n" not in str(mapped)
    assert storage_error(OSError(errno.ENOENT, "gone", "/x")) is None
