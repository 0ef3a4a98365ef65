"""PEFT interop both ways: a PEFT adapter loaded by us gives PeftModel's outputs, and one we export
loads in ``PeftModel.from_pretrained`` with ours (fp32, within 1e-5), on MiniLM, GPT-2 and Llama."""

from __future__ import annotations

import json

import peft
import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.errors import InvalidPackageError
from tests import models

BUILDERS = {"minilm": models.minilm, "gpt2": models.tiny_gpt2, "llama": models.tiny_llama}
TARGETS = {
    "minilm": ["query", "value", "dense", "word_embeddings"],
    "gpt2": ["c_attn", "c_fc", "wte"],
    "llama": ["q_proj", "o_proj", "gate_proj", "embed_tokens"],
}
VARIANTS = {"lora": {}, "rslora": {"use_rslora": True}, "dora": {"use_dora": True}}


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return models.token_ids(96, batch=2, seq=8)


def out(model, ids):
    return models.hidden(model, ids)


assert_close = models.assert_close


def peft_model(arch, **kw):
    torch.manual_seed(7)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS[arch], init_lora_weights=False, **kw)
    pm = peft.get_peft_model(BUILDERS[arch](), cfg).eval()
    assert (models.randomize_magnitudes(pm) > 0) == bool(kw.get("use_dora"))  # m != ||W + sBA||
    return pm


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_peft_adapter_loads_with_peft_outputs(arch, variant, ids, tmp_path):
    pm = peft_model(arch, **VARIANTS[variant])
    pm.save_pretrained(tmp_path)
    expected = out(pm, ids)
    model = BUILDERS[arch]()
    base = out(model, ids)
    assert ah.load_adapter(model, tmp_path, "p") == "p"
    assert (expected - base).abs().max() > 1e-3  # the adapter does something
    assert_close(out(model, ids), expected)
    ah.merge_adapters(model)
    assert_close(out(model, ids), expected)


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("variant", ["lora", "dora"])
def test_exported_adapter_loads_in_peft(arch, variant, ids, tmp_path):
    model = BUILDERS[arch]()
    cfg = ah.LoRAConfig(
        r=4,
        alpha=8,
        target_modules=TARGETS[arch],
        init="none",
        dora=variant == "dora",
        rank_pattern={"value|c_fc|o_proj": 2},
        alpha_pattern={"value|c_fc|o_proj": 3},
    )
    ah.add_adapter(model, "mine", cfg)
    assert (models.randomize_magnitudes(model) > 0) == (variant == "dora")
    expected = out(model, ids)
    ah.export_peft(model, "mine", tmp_path)
    data = json.loads((tmp_path / "adapter_config.json").read_text())
    assert data["peft_type"] == "LORA" and data["fan_in_fan_out"] == (arch == "gpt2")
    pm = peft.PeftModel.from_pretrained(BUILDERS[arch](), tmp_path).eval()
    assert_close(out(pm, ids), expected)


def test_layers_to_transform_round_trip(ids, tmp_path):
    pm = peft_model("llama", layers_to_transform=[1], layers_pattern="layers")
    pm.save_pretrained(tmp_path / "p")
    model = models.tiny_llama()
    ah.load_adapter(model, tmp_path / "p", "p")
    assert [a.modules for a in ah.list_adapters(model)] == [4]  # layer 1 + embed_tokens (exact name: PEFT keeps it)
    assert_close(out(model, ids), out(pm, ids))
    ah.export_peft(model, "p", tmp_path / "back")
    back = peft.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "back").eval()
    assert_close(out(back, ids), out(pm, ids))


def test_peft_keys_and_metadata(tmp_path):
    from safetensors import safe_open

    model = models.tiny_gpt2()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["c_attn", "wte"], dora=True))
    ah.export_peft(model, "a", tmp_path)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert meta == {"format": "pt"}
    assert {
        "base_model.model.h.0.attn.c_attn.lora_A.weight",
        "base_model.model.h.0.attn.c_attn.lora_B.weight",
        "base_model.model.h.0.attn.c_attn.lora_magnitude_vector",
        "base_model.model.wte.lora_embedding_A",
        "base_model.model.wte.lora_embedding_B",
    } <= keys


def test_unsupported_peft_options_are_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_bias": True}))
    with pytest.raises(InvalidPackageError, match="lora_bias"):
        ah.load_adapter(models.tiny_llama(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(InvalidPackageError, match="IA3"):
        ah.load_adapter(models.tiny_llama(), tmp_path)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_trained_biases_both_ways(bias, ids, tmp_path):
    pm = peft.get_peft_model(
        models.tiny_gpt2(), peft.LoraConfig(r=4, target_modules=["c_attn"], bias=bias, init_lora_weights=False)
    ).eval()
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if n.endswith("bias") and (bias == "all" or "c_attn" in n):  # what PEFT trains and saves
                p.add_(0.5)
    pm.save_pretrained(tmp_path / "p")
    model = models.tiny_gpt2()
    ah.load_adapter(model, tmp_path / "p", "p")
    assert_close(out(model, ids), out(pm, ids))
    ah.export_peft(model, "p", tmp_path / "back")
    back = peft.PeftModel.from_pretrained(models.tiny_gpt2(), tmp_path / "back").eval()
    assert_close(out(back, ids), out(pm, ids))


def test_task_model_adapter_loads_on_backbone_and_back(ids, tmp_path):
    torch.manual_seed(3)
    # patterns written with the task model's full paths: they must follow the keys onto the backbone
    cfg = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        rank_pattern={"model.layers.1.self_attn.q_proj": 2},
        alpha_pattern={"model.layers.0.self_attn.v_proj": 32},
    )
    pm = peft.get_peft_model(models.tiny_llama(lm_head=True), cfg).eval()
    pm.save_pretrained(tmp_path / "lm")  # keys base_model.model.model.layers...
    backbone = models.tiny_llama()
    ah.load_adapter(backbone, tmp_path / "lm", "a")
    assert backbone.layers[1].self_attn.q_proj.r["a"] == 2 and backbone.layers[0].self_attn.v_proj.scaling["a"] == 8
    expected = pm.base_model.model.model(input_ids=ids).last_hidden_state.detach()
    assert_close(out(backbone, ids), expected)
    ah.export_peft(backbone, "a", tmp_path / "bare")  # keys base_model.model.layers...
    assert_close(out(peft.PeftModel.from_pretrained(models.tiny_llama(), tmp_path / "bare").eval(), ids), expected)
    lm = models.tiny_llama(lm_head=True)
    ah.load_adapter(lm, tmp_path / "bare", "a")
    assert_close(out(lm, ids), out(pm, ids))


def test_adapters_that_rewrite_the_base_are_refused(tmp_path):
    # PiSSA/OLoRA/CorDA/LoRA-GA subtract their init from the base weights, LoftQ quantizes them: the
    # saved A/B are no plain LoRA of the original base
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights="olora")
    peft.get_peft_model(models.tiny_llama(), cfg).save_pretrained(tmp_path / "olora")
    olora = "init_lora_weights='olora'.*path_initial_model_for_weight_conversion"
    with pytest.raises(InvalidPackageError, match=olora):
        ah.load_adapter(models.tiny_llama(), tmp_path / "olora")
    for init in ("pissa_niter_4", "corda", "loftq", "lora_ga"):
        (tmp_path / init).mkdir()
        (tmp_path / init / "adapter_config.json").write_text(
            json.dumps({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "init_lora_weights": init})
        )
        with pytest.raises(InvalidPackageError, match=f"init_lora_weights='{init}'"):
            ah.load_adapter(models.tiny_llama(), tmp_path / init)


def test_named_peft_adapter_in_subfolder(ids, tmp_path):
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)
    pm = peft.get_peft_model(models.tiny_llama(), cfg, adapter_name="foo").eval()
    pm.save_pretrained(tmp_path)  # -> tmp_path/foo/adapter_config.json
    model = models.tiny_llama()
    assert ah.load_adapter(model, tmp_path) == "foo"
    assert_close(out(model, ids), out(pm, ids))


def test_package_wrapping_a_peft_dir(ids, tmp_path):
    from adapterhub_client.errors import IntegrityError
    from adapterhub_client.manifest import complete_package, new_manifest, write_manifest

    pm = peft_model("gpt2", use_dora=True)
    pm.save_pretrained(tmp_path)
    files = ["adapter_model.safetensors", "adapter_config.json"]
    data = new_manifest("acme/gpt2-dora", "1.0.0", "lora", {"format": "peft"}, {"name": None}, files)
    write_manifest(tmp_path, complete_package(tmp_path, data))
    model = models.tiny_gpt2()
    assert ah.load_adapter(model, tmp_path) == "gpt2-dora"
    assert_close(out(model, ids), out(pm, ids))
    with open(tmp_path / "adapter_config.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(IntegrityError):
        ah.load_adapter(models.tiny_gpt2(), tmp_path)
