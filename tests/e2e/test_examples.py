"""Every script in examples/ runs as a user runs it (a subprocess, `--tiny`, its own working directory) and
does what it says: predictions equal between the trainer and a fresh install, the quantization recorded,
the recipe installed with all its parts, imported adapters checked and merged, the unsigned version refused
with exit 4. The assertions read what the scripts print and the files they leave."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
ADAPTERHUB_FIXTURES = ROOT / "tests" / "fixtures" / "adapterhub"

pytestmark = pytest.mark.slow


def run_example(script: str, work: Path, *args: str) -> str:
    """Run examples/`script` --tiny in `work`; return what it printed (stdout and stderr), failing on exit != 0."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout, whatever an editable install points at
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, str(EXAMPLES / script), "--tiny", "--workdir", str(work), *args]
    r = subprocess.run(command, cwd=work.parent, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out


def number(pattern: str, out: str) -> float:
    """The number the one line matching `pattern` (a regex with one group) prints."""
    found = re.findall(pattern, out)
    assert len(found) == 1, (pattern, out[-3000:])
    return float(found[0])


def test_lora_trained_published_installed_elsewhere_predicts_the_same(tmp_path):
    work = tmp_path / "work"
    out = run_example("01_lora_sms_spam.py", work)
    assert number(r"the LoRA moves the label logits by up to (\S+)", out) > 0  # the training changed something
    assert "predictions elsewhere equal the trainer's: 8/8" in out
    assert number(r"logits differ by at most (\S+)\)", out) == 0.0
    assert (work / "elsewhere-cache" / "installed" / "acme" / "sms-spam-lora" / "1.0.0" / "manifest.json").is_file()


def test_houlsby_with_a_head_attached_in_a_fresh_process_predicts_the_same(tmp_path):
    work = tmp_path / "work"
    out = run_example("02_houlsby_head.py", work)
    assert f"[fresh process] ADAPTERS_HOME={work / 'elsewhere'}" in out
    assert "with its head: ['classification']" in out
    trainer = json.loads((work / "held-out.json").read_text())
    fresh = json.loads((work / "held-out-elsewhere.json").read_text())
    assert fresh["labels"] == trainer["labels"] and fresh["logits"] == trainer["logits"]
    assert len({tuple(row) for row in trainer["logits"]}) > 1  # the head reads each message
    assert (work / "elsewhere" / "cache" / "installed" / "acme" / "sms-spam-houlsby" / "1.0.0").is_dir()
    trainer_views = work / "home" / "cache" / "installed"
    assert not trainer_views.exists() or not any(trainer_views.iterdir())  # only the fresh process installed


def test_qlora_trains_and_publishes_with_the_quantization_recorded(tmp_path):
    out = run_example("03_qlora_llama.py", tmp_path / "work")
    before = number(r"held-out loss: (\S+) before training", out)
    after = number(r"before training, (\S+) after", out)
    assert after < before
    recorded = re.search(r"base_model\.quantization = (\{.*\}) \((\d+) layers\)", out)
    assert recorded is not None, out[-3000:]
    assert json.loads(recorded.group(1)) == {
        "type": "nf4", "blocksize": 64, "double_quant": True, "compute_dtype": "bfloat16"
    }  # fmt: skip
    assert int(recorded.group(2)) == 14  # 2 layers x 7 linears; the LM head stays
    assert number(r"fresh NF4 base: held-out loss (\S+)", out) == after
    assert "acme/smollm2-qlora 1.0.0: exact" in out  # adapters attach --quantize nf4 --check --strict
    assert "quantized:  nf4 (blocksize 64, double quant)" in out  # adapters info


def test_two_task_adapters_routed_fused_and_published_as_a_recipe(tmp_path):
    work = tmp_path / "work"
    out = run_example("04_compose_recipe.py", work)
    assert number(r"each row equals its adapter run alone, up to (\S+)", out) < 1e-4
    assert "recipe:     Fuse(acme/sms-spam-bn, acme/review-sentiment-bn)" in out  # adapters info
    assert "active composition: Fuse('acme_sms_spam_bn', 'acme_review_sentiment_bn')" in out
    installed = sorted(p.name for p in (work / "elsewhere-cache" / "installed" / "acme").iterdir())
    assert installed == ["review-sentiment-bn", "sms-spam-bn", "spam-sentiment-fusion", "spam-with-sentiment"]
    assert "the recipe predicts as the trainer: 8/8" in out
    assert number(r"the recipe predicts as the trainer: 8/8 \(logits differ by at most (\S+)\)", out) == 0.0


def test_peft_and_adapterhub_adapters_checked_attached_and_merged(tmp_path):
    out = run_example(
        "05_import_check_merge.py",
        tmp_path / "work",
        "--base",
        str(ADAPTERHUB_FIXTURES / "base"),
        "--adapterhub",
        str(ADAPTERHUB_FIXTURES / "double_seq_bn"),
    )
    assert "local/peft-lora 0.0.0: architecture" in out  # raw PEFT files: no base fingerprint
    assert "local/double-seq-bn 0.0.0:" in out  # the AdapterHub directory's verdict
    assert "acme/imported-lora 1.0.0: exact" in out  # packed with --base
    assert number(r"it changes the outputs by up to (\S+)\n  and matches", out) > 1e-3
    assert number(r"matches PEFT's own forward up to (\S+)", out) < 1e-5
    assert (
        number(
            r"AdapterHub adapter as 'local_double_seq_bn' \(bottleneck\): it changes the outputs by up to (\S+)", out
        )
        > 1e-3
    )
    assert number(r"matches the attached LoRA up to (\S+)", out) < 1e-4
    assert (tmp_path / "work" / "merged" / "model.safetensors").is_file()


def test_team_registry_static_and_oci_signed_installs_and_unsigned_refused(tmp_path, oci_registry):
    work = tmp_path / "work"
    out = run_example("06_team_registry.py", work, "--oci", oci_registry.host)
    *versions, signatures = oci_registry.tags_on_disk("acme/sms-spam")
    assert versions == ["1.0.0", "1.1.0"] and signatures.startswith("sha256-")  # 1.0.0's signature artifact
    assert re.search(r"\$ adapters verify oci://\S+@1\.0\.0 --key \S+\n(  .*\n)*  \(exit 0,", out)
    unsigned = re.findall(r"\$ adapters install (\S+)@1\.1\.0\n  error: (.*)\n  \(exit (\d+),", out)
    assert [(ref.startswith("oci://"), code) for ref, _, code in unsigned] == [(False, "4"), (True, "4")]
    assert all("is unsigned" in error and "requires a signature" in error for _, error, _ in unsigned)
    assert "signed by:  sha256:" in out  # adapters info
    installed = work / "member" / "cache" / "installed" / "acme" / "sms-spam"
    assert sorted(p.name for p in installed.iterdir()) == ["1.0.0"]  # 1.1.0 refused from both: nothing visible
