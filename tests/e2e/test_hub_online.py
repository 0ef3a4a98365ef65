"""`hf://` sources against the fake Hub (tests/hubfake.py: a FAKE of the Hub's documented HTTP API, the only
fake this project allows, kept faithful to what huggingface_hub sends), through the real huggingface_hub:
verdicts from metadata before any weight is downloaded, installs verified against the LFS sha256, version
ranges over tags, lock / --frozen (then offline), attach with PEFT's outputs, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests import models as tiny

BASE_ID = "acme/tiny-bert"
LORA_ID = "acme/tiny-lora"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT base and a PEFT LoRA on it (random A and B), as save_pretrained writes them."""
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("tiny")
    base = tiny.tiny_bert()
    base.save_pretrained(out / "base")
    model = get_peft_model(
        tiny.tiny_bert(), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)
    )
    model.save_pretrained(out / "lora")
    config = json.loads((out / "lora" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_ID
    (out / "lora" / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return {"base": out / "base", "lora": out / "lora"}


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.fixture
def hub(fake_hub, tiny_dirs):
    fake_hub.add_repo(BASE_ID, files_of(tiny_dirs["base"]))
    fake_hub.add_repo(LORA_ID, files_of(tiny_dirs["lora"]))
    fake_hub.tag(LORA_ID, "v1.0.0")
    return fake_hub


def local_base(tiny_dirs) -> Path:
    """The base as a user has it after transformers downloaded it: a Hugging Face cache snapshot."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(BASE_ID, endpoint=os.environ["HF_ENDPOINT"], cache_dir=os.environ["HF_HUB_CACHE"]))


def weight_downloads(hub, path: str) -> list:
    """Requests that fetched `path` whole (a Range read of the header does not count)."""
    return [
        r
        for r in hub.requests
        if r.method == "GET" and r.path.endswith("/" + path) and "range" not in r.headers and r.origin == "hub"
    ] + [r for r in hub.requests if r.origin == "cdn" and r.method == "GET" and "range" not in r.headers]


def test_check_gives_exact_from_metadata_before_any_weight_is_downloaded(cli, hub, tiny_dirs):
    base = local_base(tiny_dirs)
    hub.clear_requests()
    r = cli("attach", f"hf://{LORA_ID}", "--model", str(base), "--check", "--json")
    assert r.code == 0, r.err
    assert r.json()["adapters"][0]["compatibility"]["verdict"] == "exact"
    assert weight_downloads(hub, "adapter_model.safetensors") == []
    ranged = [r for r in hub.requests if r.path.endswith("adapter_model.safetensors") and "range" in r.headers]
    assert ranged, "the safetensors header is read with a Range request"


def test_install_attach_and_match_peft(cli, hub, tiny_dirs):
    from peft import PeftModel

    r = cli("install", f"hf://{LORA_ID}", "--json")
    assert r.code == 0, r.err
    item = r.json()["installed"][0]
    assert (item["name"], item["version"]) == (LORA_ID, "1.0.0")
    assert item["source"] == f"hf://{LORA_ID}@{hub.head(LORA_ID)}"
    view = Path(item["path"])
    assert (view / "adapter_model.safetensors").read_bytes() == hub.file(LORA_ID, "adapter_model.safetensors")

    import adapterhub_client as ah

    model = tiny.tiny_bert()
    with ah.Hub() as h:
        name = h.attach(model, f"hf://{LORA_ID}")
    assert name == "acme_tiny_lora"
    ids = tiny.token_ids(96)
    peft = PeftModel.from_pretrained(tiny.tiny_bert(), str(tiny_dirs["lora"])).eval()
    with torch.no_grad():
        tiny.assert_close(model(input_ids=ids).last_hidden_state, peft(input_ids=ids).last_hidden_state)


def test_a_corrupted_download_is_refused_and_nothing_is_visible(cli, hub):
    data = bytearray(hub.file(LORA_ID, "adapter_model.safetensors"))
    data[-1] ^= 1
    hub.corrupt(LORA_ID, "adapter_model.safetensors", bytes(data))
    r = cli("install", f"hf://{LORA_ID}")
    assert r.code == 4, r.err
    assert "adapter_model.safetensors" in r.err
    assert cli("list", "--json").json()["installed"] == []


def test_version_ranges_resolve_over_tags(cli, hub, tiny_dirs):
    config = json.loads((tiny_dirs["lora"] / "adapter_config.json").read_text())
    config["lora_dropout"] = 0.25
    hub.commit(LORA_ID, {"adapter_config.json": json.dumps(config).encode()})
    hub.tag(LORA_ID, "v1.1.0")
    hub.commit(LORA_ID, {"README.md": b"# pre-release\n"})
    hub.tag(LORA_ID, "v2.0.0rc1")
    r = cli("info", f"hf://{LORA_ID}@>=1,<2", "--json")
    assert r.code == 0, r.err
    assert r.json()["manifest"]["version"] == "1.1.0"
    assert r.json()["versions"] == ["1.0.0", "1.1.0", "2.0.0rc1"]
    assert cli("info", f"hf://{LORA_ID}@~=1.0.0", "--json").json()["manifest"]["version"] == "1.0.0"
    assert cli("info", f"hf://{LORA_ID}@1.0.0", "--json").json()["manifest"]["version"] == "1.0.0"
    assert cli("info", f"hf://{LORA_ID}@>=2.0.0rc1", "--json").json()["manifest"]["version"] == "2.0.0rc1"
    r = cli("info", f"hf://{LORA_ID}@>=3")
    assert r.code == 3 and "1.1.0" in r.err


def test_lock_pins_the_commit_and_frozen_reproduces_it_offline(cli, hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pinned = hub.head(LORA_ID)
    assert cli("lock", f"hf://{LORA_ID}").code == 0
    entry = json.loads((tmp_path / "adapters.lock").read_text())["adapters"][0]
    assert entry["source"] == f"hf://{LORA_ID}@{pinned}"
    hub.commit(LORA_ID, {"README.md": b"moved on\n"})  # main moves; the lock does not
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["source"] == entry["source"]
    hub.clear_requests()
    r = cli("install", "--frozen", "--offline")
    assert r.code == 0, r.err
    assert hub.requests == []  # offline: not one request


def test_bad_input_exit_codes(cli, hub, fake_hub, monkeypatch):
    r = cli("info", "hf://acme/no-such-repo")
    assert r.code == 3 and "acme/no-such-repo" in r.err
    r = cli("info", f"hf://{LORA_ID}@no-such-branch")
    assert r.code == 3 and "no-such-branch" in r.err
    fake_hub.add_repo("acme/not-an-adapter", {"config.json": b"{}", "model.safetensors": b"\0" * 16})
    r = cli("info", "hf://acme/not-an-adapter")
    assert r.code == 7 and "config.json" in r.err and "model.safetensors" in r.err
    fake_hub.add_repo("acme/private-lora", files_of_repo(fake_hub, LORA_ID), private=True)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_123")
    r = cli("info", "hf://acme/private-lora")
    assert r.code == 6, r.err
    assert "hf_wrong_token_123" not in r.err + r.out
    monkeypatch.setenv("HF_TOKEN", "hf_test_read")
    assert cli("info", "hf://acme/private-lora").code == 0


def files_of_repo(hub, repo: str) -> dict[str, bytes]:
    return {p: d for p, d in hub.files(repo).items() if p != ".gitattributes"}


def test_a_peft_classifier_keeps_its_head(cli, fake_hub, tmp_path):
    """A SEQ_CLS adapter's classifier (modules_to_save) is a real part of it: installed, checked, attached."""
    from peft import LoraConfig, PeftModel, get_peft_model

    import adapterhub_client as ah

    peft_model = get_peft_model(
        tiny.bert_classifier(), LoraConfig(r=4, target_modules=["query"], task_type="SEQ_CLS", init_lora_weights=False)
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if ".modules_to_save." in name:
                p.add_(torch.randn_like(p) * 0.5)  # as trained: not the base's classifier any more
    peft_model.save_pretrained(tmp_path / "cls")
    fake_hub.add_repo("acme/tiny-cls", files_of(tmp_path / "cls"))
    info = cli("info", "hf://acme/tiny-cls", "--json").json()
    assert info["manifest"]["base_model"]["architecture"]["modules"]["classifier"]["shape"] == [3, 32]
    model = tiny.bert_classifier()
    with ah.Hub() as hub:
        hub.attach(model, "hf://acme/tiny-cls")
    ids = tiny.token_ids(96)
    want = PeftModel.from_pretrained(tiny.bert_classifier(), str(tmp_path / "cls")).eval()
    with torch.no_grad():
        tiny.assert_close(model.eval()(input_ids=ids).logits, want(input_ids=ids).logits)
        assert (model(input_ids=ids).logits - tiny.bert_classifier()(input_ids=ids).logits).abs().max() > 1e-2
