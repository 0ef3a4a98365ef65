"""The documentation holds as written: docs/CLI.md is what tools/gen_cli_docs.py makes of the commands today,
shell completion answers, and the guide to writing an adapter kind (docs/ADAPTER_KINDS.md) runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

from tests.e2e.test_readme import blocks, expected_prints

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tools" / "gen_cli_docs.py"


def _env() -> dict[str, str]:
    """This checkout's package, whatever an editable install points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADAPTERS_", "_ADAPTERS_"))}
    return env | {"PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_current() -> None:
    r = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"docs/CLI.md is stale: run python tools/gen_cli_docs.py\n{r.stderr}"


def test_the_check_fails_on_a_stale_file_and_passes_once_regenerated(
    gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "docs" / "CLI.md"
    target.parent.mkdir()
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "CLI_MD", target)
    assert gen.main(["--check"]) == 1  # missing
    target.write_text(gen.render().replace("--strict", "--strikt", 1))
    assert gen.main(["--check"]) == 1  # one option renamed by hand
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert target.read_text() == (ROOT / "docs" / "CLI.md").read_text()


def _leaf_paths(cmd: click.Command, ctx: click.Context, path: list[str]) -> list[list[str]]:
    if not isinstance(cmd, click.Group):
        return [path]
    out = [path]
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        assert sub is not None
        out += _leaf_paths(sub, click.Context(sub, info_name=name, parent=ctx), [*path, name])
    return out


def test_every_command_option_default_and_exit_code_is_documented(gen: ModuleType) -> None:
    from adapterhub_client import errors
    from adapterhub_client.cli.main import cli

    text = gen.render()
    commands = _leaf_paths(cli, click.Context(cli, info_name="adapters"), ["adapters"])
    assert ["adapters", "registry", "build"] in commands and len(commands) > 25
    for path in commands:
        assert f"# `{' '.join(path)}`\n" in text, f"no section for {' '.join(path)}"
    install = text.split("### `adapters install`", 1)[1].split("\n### ", 1)[0]
    assert "`--frozen`" in install and "[default: hub]" in install  # options, with the defaults Click knows
    assert "| `--grace FLOAT RANGE` |" in text and "[default: 600.0; x>=0]" in text
    for code in range(errors.EXIT_OK, errors.EXIT_STORAGE + 1):
        assert f"\n| {code} | " in text.split("## Exit codes", 1)[1]
    assert "`StorageError`" in text and "`ResolutionError`" in text
    assert gen.render() == text  # deterministic


@pytest.mark.parametrize(
    ("words", "cword", "offered"),
    [("adapters ins", 1, "install"), ("adapters registry b", 2, "build"), ("adapters install --fr", 2, "--frozen")],
)
def test_shell_completion_offers_commands_subcommands_and_options(words: str, cword: int, offered: str) -> None:
    """What the script `_ADAPTERS_COMPLETE=bash_source adapters` installs asks the program at each <TAB>."""
    adapters = Path(sys.executable).parent / "adapters"
    env = _env() | {"_ADAPTERS_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    r = subprocess.run([str(adapters)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"plain,{offered}" in r.stdout.splitlines(), r.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_call_the_program_back(shell: str) -> None:
    adapters = Path(sys.executable).parent / "adapters"
    env = _env() | {"_ADAPTERS_COMPLETE": f"{shell}_source"}
    r = subprocess.run([str(adapters)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"_ADAPTERS_COMPLETE={shell}_complete" in r.stdout


def test_the_adapter_kind_guide_runs_as_written(tmp_path: Path) -> None:
    guide = ROOT / "docs" / "ADAPTER_KINDS.md"
    code = [b for b in blocks(guide.read_text()) if b.lang == "python" and not b.skip]
    assert len(code) >= 3
    script = "\n".join(b.code for b in code)  # the blocks build on each other: one script, in order
    env = _env() | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    r = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, f"docs/ADAPTER_KINDS.md: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    for text in expected_prints(script):
        assert text in r.stdout, f"the guide says it prints {text!r}; it printed:\n{r.stdout}"
    assert (tmp_path / "ia3-package" / "adapter.safetensors").is_file()
