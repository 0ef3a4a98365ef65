"""Shared fixtures: an isolated ADAPTERS_HOME, package builders, an in-process CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.pkgs import make_package

# Fixtures shared by every tier, registered here (not imported by name in test modules).
pytest_plugins = ["tests.httpserver", "tests.basemodels", "tests.hubfake", "tests.ociregistry"]

# No per-example deadline: a loaded 2-core CI machine must not turn slow examples into failures.
settings.register_profile("default", deadline=None)
settings.load_profile("default")

ENV_VARS = ("ADAPTERS_HOME", "ADAPTERS_CACHE_DIR", "ADAPTERS_REGISTRY", "ADAPTERS_OFFLINE", "ADAPTERS_TOKEN")
# Hugging Face settings that would point a test at the user's caches, tokens or endpoints.
HF_VARS = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_ENDPOINT",
    "HUGGINGFACE_HUB_CACHE",
    "HUGGING_FACE_HUB_TOKEN",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "PEFT_HOME",
)


def _isolate(mp: pytest.MonkeyPatch, root: Path, keep_cache_dir: bool = False) -> None:
    """Remove every ADAPTERS_* and HF_* setting, then point homes and caches into `root`."""
    cache_dir = os.environ.get("ADAPTERS_CACHE_DIR") if keep_cache_dir else None
    for var in list(os.environ):
        if var.startswith(("ADAPTERS_", "HF_")) or var in HF_VARS:
            mp.delenv(var, raising=False)
    mp.setenv("ADAPTERS_HOME", str(root / "adapters-home"))
    mp.setenv("HF_HOME", str(root / "hf-home"))
    mp.setenv("HF_HUB_CACHE", str(root / "hf-home" / "hub"))
    mp.setenv("HF_HUB_OFFLINE", "1")  # no test reaches the Hub: models come from disk
    hf_constants = sys.modules.get("huggingface_hub.constants")
    if hf_constants is not None:  # read once at import: keep the loaded library offline too
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    if cache_dir:
        mp.setenv("ADAPTERS_CACHE_DIR", cache_dir)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Session-scoped fixtures (models built once) run isolated too."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("isolated-session"))
        yield


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can touch the user's adapters config, cache or Hugging Face files: a fresh ADAPTERS_HOME
    and HF_HOME per test (the `private_cache` fixture's cache directory is kept)."""
    _isolate(monkeypatch, tmp_path / "isolated", keep_cache_dir="private_cache" in request.fixturenames)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ADAPTERS_HOME (config, local registry and cache all under it)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    h = tmp_path / "home"
    monkeypatch.setenv("ADAPTERS_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Keep the fingerprint cache (and any other cache use) out of the user's cache directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAPTERS_CACHE_DIR", str(tmp_path_factory.mktemp("adapters-cache")))
        yield


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `adapters ARGS...` in-process; returns exit code, stdout and stderr."""
    from adapterhub_client.cli.main import main

    def run(*args: str, input: str | None = None) -> Result:
        import io

        capsys.readouterr()
        stdin = sys.stdin
        if input is not None:
            sys.stdin = io.StringIO(input)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdin = stdin
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return Result(code, captured.out, captured.err)

    return run


def run_adapters(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `adapters` entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "adapterhub_client", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def package(tmp_path: Path) -> Callable[..., Path]:
    """make_package bound to a per-test directory."""
    counter = iter(range(10**6))

    def build(name: str = "acme/sent", version: str = "1.0.0", **kw: Any) -> Path:
        return make_package(tmp_path / f"pkg{next(counter)}", name, version, **kw)

    return build
