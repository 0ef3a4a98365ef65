"""Publish a trained adapter to the Hub, install it back into a fresh cache and attach it: outputs equal the
trained model's. The Hub is the fake (tests/hubfake.py: a FAKE of the Hub's documented HTTP API, faithful
to what huggingface_hub sends); everything else is real, PEFT loading the published repo included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import adapterhub_client as ah
from tests import models as tiny

REPO = "acme/trained-lora"


@pytest.fixture
def trained(tmp_path):
    """A LoRA on the tiny BERT with non-zero B (as after training), saved as our package."""
    base_dir = tmp_path / "base"
    tiny.tiny_bert().save_pretrained(base_dir)
    model = tiny.trained_tiny_lora("t", seed=1)
    pkg = ah.save_adapter(model, "t", tmp_path / "pkg", name=REPO, version="1.0.0")
    return {"model": model, "pkg": pkg, "base": base_dir}


def test_publish_install_back_attach_and_peft_loads_it(cli, fake_hub, trained, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard, snapshot_download
    from peft import PeftModel

    monkeypatch.setenv("HF_TOKEN", "hf_test_write")
    r = cli(
        "publish", str(trained["pkg"]), "--registry", f"hf://{REPO}", "--base", str(trained["base"]),
        "--base-name", "acme/tiny-bert", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.json()["created"] is True
    files = fake_hub.files(REPO, "v1.0.0")
    assert {"adapter_config.json", "adapter_model.safetensors", "manifest.json", "README.md"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["base_model"]["fingerprint"]["content"]  # the fingerprint travels with it
    assert manifest["base_model"]["name"] == "acme/tiny-bert"
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == "acme/tiny-bert" and card.data.library_name == "peft"
    assert "base_model:adapter:acme/tiny-bert" in card.data.tags

    # same content again: nothing committed; other content under the same version: refused
    head = fake_hub.head(REPO)
    r = cli("publish", str(trained["pkg"]), "--registry", f"hf://{REPO}", "--base", str(trained["base"]),
            "--base-name", "acme/tiny-bert", "--json")  # fmt: skip
    assert r.code == 0 and r.json()["created"] is False and fake_hub.head(REPO) == head
    r = cli("publish", str(trained["pkg"]), "--registry", f"hf://{REPO}", "--description", "changed")
    assert r.code == 7, r.err

    # a fresh cache and a fresh HF cache: install back, attach, compare with the trained model
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-hf"))
    monkeypatch.delenv("HF_TOKEN")
    model = tiny.tiny_bert()
    with ah.Hub() as hub:
        name = hub.attach(model, f"hf://{REPO}@>=1,<2", strict=True)  # exact: same base weights
    ids = tiny.token_ids(96)
    with torch.no_grad():
        want = trained["model"](input_ids=ids).last_hidden_state
        tiny.assert_close(model.eval()(input_ids=ids).last_hidden_state, want)
        assert name == "acme_trained_lora"
        # PEFT loads the very repo
        snapshot = snapshot_download(REPO, revision="v1.0.0", endpoint=fake_hub.url, cache_dir=tmp_path / "peft-hf")
        peft = PeftModel.from_pretrained(tiny.tiny_bert(), snapshot).eval()
        tiny.assert_close(peft(input_ids=ids).last_hidden_state, want)


def test_publish_to_the_hub_needs_a_token_that_may_write(cli, fake_hub, trained, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_read")  # read-only
    r = cli("publish", str(trained["pkg"]), "--registry", f"hf://{REPO}")
    assert r.code == 6, r.err
    assert "hf_test_read" not in r.err
    r = cli("publish", str(trained["pkg"]), "--registry", f"hf://{REPO}@main")
    assert r.code == 2 and "--version" in r.err
    monkeypatch.setenv("HF_TOKEN", "hf_test_write")
    r = cli("publish", str(trained["pkg"]), "--registry", "hf://acme/another-name")
    assert r.code == 2 and "--name acme/another-name" in r.err  # a repo holds the package of its own name
    assert not Path(trained["pkg"] / "README.md").exists()  # the package directory is left as it was
