"""Publishing a real PEFT LoRA directory: the manifest comes from its config and safetensors header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def peft_dirs(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    out = tmp_path_factory.mktemp("peft")
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100)
    )
    get_peft_model(bert, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])).save_pretrained(out / "bert")
    gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64))
    get_peft_model(gpt2, LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True)).save_pretrained(out / "gpt2")
    torch.save({"x": torch.zeros(1)}, out / "pickle.bin")
    return out


def test_publish_peft_dir_derives_manifest(cli, peft_dirs):
    r = cli("publish", str(peft_dirs / "bert"))
    assert r.code == 7 and "--name" in r.err
    r = cli("publish", str(peft_dirs / "bert"), "--name", "acme/bert-lora", "--version", "0.1.0", "--json")
    assert r.code == 0, r.err
    manifest = cli("info", "acme/bert-lora", "--json").json()["manifest"]
    assert manifest["adapter"]["type"] == "lora"
    cfg = manifest["adapter"]["config"]
    assert (cfg["r"], cfg["alpha"], cfg["format"]) == (4, 8, "peft")
    assert sorted(cfg["target_modules"]) == ["query", "value"]
    modules = manifest["base_model"]["architecture"]["modules"]
    assert sorted(modules) == [f"encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")]
    # the adapter file does not tell the base's dtype: unknown (any dtype matches) until --base
    assert all(m == {"shape": [32, 32], "dtype": None, "layer": "linear"} for m in modules.values())
    assert {f["path"] for f in manifest["files"]} >= {"adapter_model.safetensors", "adapter_config.json"}
    # installs as a complete PEFT directory
    path = Path(cli("install", "acme/bert-lora", "--json").json()["installed"][0]["path"])
    assert json.loads((path / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_publish_gpt2_conv1d_records_base_layout(cli, peft_dirs):
    r = cli("publish", str(peft_dirs / "gpt2"), "--name", "acme/gpt2-lora", "--version", "1.0.0")
    assert r.code == 0, r.err
    modules = cli("info", "acme/gpt2-lora", "--json").json()["manifest"]["base_model"]["architecture"]["modules"]
    # GPT-2's Conv1D c_attn weight is [in, 3*in]
    assert modules["h.0.attn.c_attn"] == {"shape": [32, 96], "dtype": None, "layer": "conv1d"}


def test_publish_refuses_pickle_only_peft(cli, peft_dirs, tmp_path):
    d = tmp_path / "old-peft"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (d / "adapter_model.bin").write_bytes((peft_dirs / "pickle.bin").read_bytes())
    r = cli("publish", str(d), "--name", "acme/old", "--version", "1.0.0")
    assert r.code == 7 and "pickle" in r.err
