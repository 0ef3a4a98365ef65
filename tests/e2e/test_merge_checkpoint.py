"""Streaming merge into checkpoints: layouts (Linear, Conv1D, square Embedding), trained biases,
DoRA; and PEFT adapters for half-precision bases keep checking as compatible."""

from __future__ import annotations

import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.formats.checkpoint import merge_checkpoint, read_lora_package
from tests import models


def tiny_bert_square():
    # vocab == hidden == max positions: every embedding is square, so only the recorded layout tells
    return models.tiny_bert(vocab=32, positions=32, pooler=True)


CASES = {
    "bert-embeddings-bias": (
        tiny_bert_square,
        dict(target_modules=["word_embeddings", "position_embeddings", "query"], bias="all"),
    ),
    "bert-dora": (tiny_bert_square, dict(target_modules=["query", "value"], dora=True)),
    "gpt2-conv1d": (lambda: models.tiny_gpt2(), dict(target_modules=["c_attn", "c_proj"])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_checkpoint_equals_attached_model(tmp_path, case):
    from transformers import AutoModel

    build, lora = CASES[case]
    base = build()
    base.save_pretrained(tmp_path / "base")
    vocab = base.config.vocab_size
    ids = models.token_ids(min(vocab, 32), batch=2, seq=8)
    model = build()
    model.load_state_dict(base.state_dict())
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, alpha=8, init="none", **lora))
    if lora.get("bias") == "all":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".bias") and "lora" not in name:
                    p.add_(0.1)  # as training would
    pkg = ah.save_adapter(model, "a", tmp_path / "pkg", name="acme/a", version="1.0.0")
    expected = models.hidden(model, ids)
    result = merge_checkpoint(tmp_path / "base", [read_lora_package(pkg)], tmp_path / "merged")
    assert result["merged_tensors"] > 0
    merged = AutoModel.from_pretrained(str(tmp_path / "merged")).eval()
    got = models.hidden(merged, ids)
    assert (got - models.hidden(base, ids)).abs().max() > 1e-3
    models.assert_close(got, expected)


def test_merge_refuses_a_non_empty_output(tmp_path):
    base = tiny_bert_square()
    base.save_pretrained(tmp_path / "base")
    ah.add_adapter(base, "a", ah.LoRAConfig(r=2, target_modules=["query"], init="none"))
    pkg = ah.save_adapter(base, "a", tmp_path / "pkg", name="acme/a", version="1.0.0")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ah.AdapterError, match="not an empty directory"):
        merge_checkpoint(tmp_path / "base", [read_lora_package(pkg)], tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_peft_adapter_on_a_bf16_base_checks_compatible(cli, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = models.tiny_llama().to(torch.bfloat16)
    base.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert next(p for n, p in peft_model.named_parameters() if "lora_A" in n).dtype == torch.float32
    peft_model.save_pretrained(tmp_path / "peft")
    assert cli("publish", str(tmp_path / "peft"), "--name", "acme/bf", "--version", "1.0.0").code == 0
    modules = cli("info", "acme/bf", "--json").json()["manifest"]["base_model"]["architecture"]["modules"]
    assert all(m["dtype"] is None and m["layer"] == "linear" for m in modules.values())
    r = cli("attach", "acme/bf", "--model", str(tmp_path / "base"), "--check", "--json")
    assert r.code == 0, r.err
    assert r.json()["adapters"][0]["compatibility"]["verdict"] == "architecture"
