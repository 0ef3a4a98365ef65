"""The README runs as written: every ```bash and ```python block, in order, in one empty directory
with an isolated ADAPTERS_HOME, each command exiting 0, and each `# prints: TEXT` comment found in
what its block printed. So the README cannot rot.

Left out, and only these: `pip install ...` steps (tests/e2e/test_fresh_install.py installs the
package from scratch; here it is installed already), `python -m pytest` (this is the suite), and a
block preceded by `<!-- readme-test: skip (reason) -->` (used sparingly; the reason is required)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
PRINTS = re.compile(r"#\s*prints:\s*(?P<text>.+?)\s*$")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the fence in README.md
    skip: str | None  # the marker's reason


def blocks(text: str) -> list[Block]:
    """The bash and python fences, with the skip marker that precedes each (if any)."""
    from markdown_it import MarkdownIt

    out, skip = [], None
    for token in MarkdownIt().parse(text):
        if token.type == "html_block":
            m = SKIP.search(token.content)
            skip = m.group("reason") if m else None
        elif token.type == "fence" and token.info.strip() in ("bash", "python"):
            assert token.map is not None
            out.append(Block(token.info.strip(), token.content, token.map[0] + 1, skip))
            skip = None
        else:  # a marker applies to the block right after it only
            skip = None
    return out


def commands(code: str) -> list[str]:
    """A bash block's commands, one a line, without comments, pip installs or the test suite."""
    out = []
    for raw in code.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("&&") if not p.strip().startswith("pip install")]
        line = " && ".join(parts)
        if line and not line.startswith("python -m pytest"):
            out.append(line)
    return out


def expected_prints(code: str) -> list[str]:
    return [m.group("text").strip().strip("\"'") for m in map(PRINTS.search, code.splitlines()) if m]


def test_markers_and_blocks_are_found():
    found = blocks(README.read_text())
    assert sum(b.lang == "bash" for b in found) >= 4 and sum(b.lang == "python" for b in found) >= 3
    assert commands(found[0].code) == ["adapters demo"]  # the first command runs the main job
    assert all(b.skip is None or b.skip.strip() for b in found)
    parsed = blocks("<!-- readme-test: skip (needs a server) -->\n\n```bash\nfalse\n```\n\n```bash\ntrue\n```\n")
    assert [b.skip for b in parsed] == ["needs a server", None]


def test_every_readme_block_runs_in_order(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
    env |= {
        "ADAPTERS_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),  # this checkout, whatever an editable install points at
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # `adapters` of this env
    }
    ran = 0
    for block in blocks(README.read_text()):
        if block.skip:
            continue
        if block.lang == "python":
            r = subprocess.run(
                [sys.executable, "-"], input=block.code, cwd=work, env=env, capture_output=True, text=True, timeout=600
            )
            where = f"README.md:{block.line} (python)"
            assert r.returncode == 0, f"{where}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            for text in expected_prints(block.code):
                assert text in r.stdout, f"{where}: the README says it prints {text!r}; it printed:\n{r.stdout}"
            ran += 1
            continue
        for command in commands(block.code):
            r = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
            where = f"README.md:{block.line}: {command}"
            assert r.returncode == 0, f"{where}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            ran += 1
    assert ran >= 25
