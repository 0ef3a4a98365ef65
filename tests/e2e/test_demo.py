"""`adapters demo`: publish -> search -> install -> check -> attach -> predict on the shipped adapter,
in a home of its own (the user's registry and cache untouched), on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterhub_client.demo import EXAMPLES_FILE, PACKAGE_DIR

STEPS = ["publish", "search", "install", "check", "attach", "predict"]


def test_demo_json_runs_the_main_job_and_the_adapter_improves_predictions(cli, home):
    r = cli("demo", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert [s["step"] for s in report["steps"]] == STEPS
    verdicts = {s["step"]: s["verdict"] for s in report["steps"]}
    assert verdicts["check"] == "exact" and verdicts["predict"] == "better"
    assert all(isinstance(s["seconds"], float) for s in report["steps"])
    assert report["real_base"] is True
    examples = report["examples"]
    assert len(examples) == len(json.loads(EXAMPLES_FILE.read_text())["examples"])
    assert any(e["before"] != e["after"] for e in examples)  # attaching changed predictions
    right_before = sum(e["before"] == e["label"] for e in examples)
    right_after = sum(e["after"] == e["label"] for e in examples)
    assert right_after > right_before
    assert (report["correct_before"], report["correct_after"]) == (right_before, right_after)
    held = report["held_out"]
    assert held["accuracy_after"] > 0.95 > held["accuracy_before"]  # what the training script measured
    # nothing kept, and the user's own home was never written
    assert report["home"] is None
    assert not home.exists() or not any(home.rglob("*"))
    assert "Loading weights" not in r.out + r.err  # no transformers progress bars in the output


def test_demo_human_output_and_kept_home(cli, tmp_path, monkeypatch):
    kept = tmp_path / "demo-home"
    r = cli("demo", "--home", str(kept))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert [line.split()[0] for line in lines[:6]] == STEPS
    assert lines[3].split()[1] == "exact" and lines[5].split()[1] == "better"
    assert "right before attach" in r.out and f"kept: {kept}" in r.out
    # the kept home is a normal ADAPTERS_HOME: the adapter is published and installed there
    monkeypatch.setenv("ADAPTERS_HOME", str(kept))
    listed = cli("list", "--json")
    assert listed.code == 0 and [a["name"] for a in listed.json()["installed"]] == ["demo/sms-spam"]
    assert cli("verify").code == 0
    again = cli("demo", "--home", str(kept), "--json")  # a second run reuses it
    assert again.code == 0 and "already published" in again.json()["steps"][0]["detail"]


def test_fallback_base_built_from_a_config_gets_an_architecture_verdict(tmp_path):
    from adapterhub_client.demo.run import run_demo

    report = run_demo(home=tmp_path / "h", use_real_base=False)
    check = next(s for s in report.steps if s.step == "check")
    assert check.verdict == "architecture" and "tiny model" in check.detail
    assert not report.real_base and report.home == str(tmp_path / "h")
    assert Path(report.base_dir).is_relative_to(tmp_path)


def test_shipped_adapter_is_small_and_complete():
    manifest = json.loads((PACKAGE_DIR / "manifest.json").read_text())
    assert manifest["name"] == "demo/sms-spam" and manifest["base_model"]["fingerprint"]["content"]
    assert manifest["base_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    size = sum(p.stat().st_size for p in PACKAGE_DIR.parent.rglob("*") if p.is_file())
    assert size < 400_000


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """The demo needs no network: make any socket connection outside loopback fail."""
    import socket

    real = socket.socket.connect

    def connect(self, address):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
            raise OSError(f"test: no network ({host})")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
