"""Processes killed at the exact points where an installed view is renamed into place, and killed publishes'
temp files: nothing half-done is ever visible, the next run completes, `verify` is clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from adapterhub_client._fs import TEMP_PREFIX
from adapterhub_client.registry import layout
from adapterhub_client.registry.publish import clean_stale_temps
from tests.conftest import run_adapters


def kill_at(point: str, env: dict[str, str], *args: str) -> None:
    """Run `adapters ARGS` until it stops itself at `point` (ADAPTERS_TEST_PAUSE_AT), then SIGKILL it."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adapterhub_client", *args],
            env={**os.environ, **env, "ADAPTERS_TEST_PAUSE_AT": point},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
        while True:
            pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            if pid and os.WIFSTOPPED(status):
                break
            if pid:  # exited without reaching the point
                proc.returncode = os.waitstatus_to_exitcode(status)
                err.seek(0)
                pytest.fail(f"never reached {point} (exit {proc.returncode}): {err.read().decode()}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"never reached {point}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL


def adapters_json(env: dict[str, str], *args: str) -> dict:
    done = run_adapters(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"ADAPTERS_HOME": str(home)}


def test_killed_before_the_view_is_renamed_into_place(cli, package, home, env):
    pkg = package("acme/k", "1.0.0", size=50_000)
    assert cli("publish", str(pkg)).code == 0
    kill_at("view-rename", env, "install", "acme/k")
    assert adapters_json(env, "list")["installed"] == []
    assert not (home / "cache" / "installed" / "acme" / "k" / "1.0.0").exists()
    report = adapters_json(env, "verify")  # the built-aside view is a leftover, not a problem
    assert report["problems"] == [] and len(report["incomplete_views"]) == 1
    done = adapters_json(env, "install", "acme/k")["installed"][0]
    assert done["already_installed"] is False
    assert (Path(done["path"]) / "adapter.safetensors").read_bytes() == (pkg / "adapter.safetensors").read_bytes()
    assert adapters_json(env, "verify")["problems"] == []


def test_killed_between_moving_the_old_view_aside_and_renaming_the_new_one(cli, package, home, env):
    first, second = package("acme/s", "1.0.0", seed=1), package("acme/s", "1.0.0", seed=2)  # same version
    view = Path(cli("install", str(first), "--json").json()["installed"][0]["path"])
    kill_at("view-swapped", env, "install", str(second))
    assert adapters_json(env, "list")["installed"] == []  # absent, never half of one and half of the other
    assert not view.exists()
    assert adapters_json(env, "verify")["problems"] == []
    assert adapters_json(env, "install", str(second))["installed"][0]["path"] == str(view)
    assert (view / "adapter.safetensors").read_bytes() == (second / "adapter.safetensors").read_bytes()
    assert adapters_json(env, "verify")["problems"] == []


def test_killed_while_a_broken_view_is_replaced(cli, package, home, env):
    pkg = package("acme/b", "1.0.0", size=50_000)
    cli("publish", str(pkg))
    view = Path(cli("install", "acme/b", "--json").json()["installed"][0]["path"])
    weights = view / "adapter.safetensors"
    os.chmod(weights, 0o644)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert cli("verify").code == 4
    kill_at("view-rename", env, "install", "acme/b")  # before the swap: the broken view is still there, marked
    assert run_adapters("verify", env=env).returncode == 4
    kill_at("view-swapped", env, "install", "acme/b")  # the broken view went into quarantine
    assert adapters_json(env, "list")["installed"] == []
    assert adapters_json(env, "install", "acme/b")["installed"][0]["path"] == str(view)
    assert weights.read_bytes() == (pkg / "adapter.safetensors").read_bytes()
    assert adapters_json(env, "verify")["problems"] == []


def leave_temp(folder: Path, data: bytes, age: float = 0.0) -> Path:
    """What a publish killed inside write_blob leaves: a partial copy under a temp name next to the target."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if age:
        os.utime(name, (time.time() - age, time.time() - age))
    return Path(name)


def test_the_next_publish_removes_temps_of_killed_publishes(cli, package, home):
    reg = home / "registry"
    assert cli("publish", str(package("acme/one", "1.0.0"))).code == 0
    shard = reg / "blobs" / "sha256" / "ab"
    temps = [leave_temp(shard, b"x" * 100_000), leave_temp(reg / "index" / "acme", b"{}")]
    assert cli("publish", str(package("acme/two", "1.0.0", seed=3))).code == 0
    assert not any(t.exists() for t in temps)
    assert [p for p in reg.rglob(f"{TEMP_PREFIX}*")] == []
    assert cli("install", "acme/one").code == 0 and cli("install", "acme/two").code == 0
    assert cli("verify").code == 0


def test_clean_stale_temps_for_registry_build(cli, package, home, tmp_path):
    reg = tmp_path / "reg"
    assert cli("publish", str(package("acme/one", "1.0.0")), "--registry", reg.as_uri()).code == 0
    blobs_before = sorted(p for p in (reg / "blobs").rglob("*") if p.is_file())
    temp = leave_temp(reg / "blobs" / "sha256" / "cd", b"y" * 1234)
    assert clean_stale_temps(reg) == (1, 1234)
    assert not temp.exists() and sorted(p for p in (reg / "blobs").rglob("*") if p.is_file()) == blobs_before
    # while another writer holds the lock, only temps older than an hour go
    from filelock import FileLock

    fresh, old = leave_temp(reg / "blobs", b"f"), leave_temp(reg / "blobs", b"o", age=7200)
    with FileLock(str(reg / ".publish.lock")):
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from adapterhub_client.registry.publish import clean_stale_temps as c; "
                f"from pathlib import Path; assert c(Path({str(reg)!r})) == (1, 1)",
            ],
            check=True,
        )
    assert fresh.exists() and not old.exists()
    assert (reg / layout.index_path("acme/one")).exists()
