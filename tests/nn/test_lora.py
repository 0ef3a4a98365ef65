"""LoRA modules and the model-level API: invariants on real MiniLM and tiny GPT-2 / Llama."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import adapterhub_client as ah
from adapterhub_client.errors import AdapterError, AdapterWeightsError, InvalidPackageError, NotFoundError
from adapterhub_client.nn.lora import LoRAEmbedding, LoRALayer, LoRALinear
from adapterhub_client.nn.model import adapter_parameters, base_state_dict
from adapterhub_client.nn.targets import TargetError, layer_index, select_modules
from tests import models

BUILDERS = {"gpt2": models.tiny_gpt2, "llama": models.tiny_llama}
TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "llama": ["q_proj", "v_proj", "down_proj"]}
VARIANTS = {"lora": {}, "rslora": {"rslora": True}, "dora": {"dora": True}}


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return models.token_ids(96, batch=2, seq=8)


def out(model, ids):
    return models.hidden(model, ids)


assert_close = models.assert_close


def has_lora(model) -> bool:
    return any(isinstance(m, LoRALayer) for m in model.modules())


# --- invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_new_adapter_is_exact_noop_and_trained_one_is_not(arch, variant, ids):
    model = BUILDERS[arch]()
    base = out(model, ids)
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, alpha=8, target_modules=TARGETS[arch], **VARIANTS[variant]))
    assert torch.equal(out(model, ids), base)  # bitwise: B = 0 (DoRA: m = ||W||)
    ah.add_adapter(model, "b", ah.LoRAConfig(r=4, target_modules=TARGETS[arch], init="none", **VARIANTS[variant]))
    assert (out(model, ids) - base).abs().max() > 1e-3


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_disable_merge_unmerge_unload(arch, variant, ids):
    model = BUILDERS[arch]()
    base = out(model, ids)
    cfg = ah.LoRAConfig(r=4, alpha=8, target_modules=TARGETS[arch], init="none", **VARIANTS[variant])
    ah.add_adapter(model, "a", cfg)
    assert (models.randomize_magnitudes(model) > 0) == (variant == "dora")
    unmerged = out(model, ids)
    with ah.disable_adapters(model):
        assert torch.equal(out(model, ids), base)
    assert torch.equal(out(model, ids), unmerged)  # the selection came back

    ah.merge_adapters(model)
    assert ah.list_adapters(model)[0].merged
    assert_close(out(model, ids), unmerged)
    with ah.disable_adapters(model):  # unmerges inside, merges again after
        assert_close(out(model, ids), base)
    assert_close(out(model, ids), unmerged)
    ah.unmerge_adapters(model)
    assert_close(out(model, ids), unmerged)

    plain = ah.merge_and_unload(model)
    assert plain is model and not has_lora(model) and not hasattr(model, "_ah_state")
    assert set(model.state_dict()) == set(BUILDERS[arch]().state_dict())
    assert_close(out(model, ids), unmerged)


def test_unmerge_restores_weights_within_1e5():
    model = models.tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["q_proj", "o_proj"], init="none", dora=True))
    ah.add_adapter(model, "b", ah.LoRAConfig(target_modules=["q_proj"], init="none"), activate=False)
    assert models.randomize_magnitudes(model) == 4
    ah.merge_adapters(model, ["a", "b"])
    ah.unmerge_adapters(model)
    after = base_state_dict(model)
    assert max((before[k] - after[k]).abs().max().item() for k in before) <= 1e-5


def test_several_active_adapters_add_up():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.Embedding(10, 12))
    lin = model[0]
    x = torch.randn(3, 16)
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, target_modules=["0", "1"], init="none"))
    ah.add_adapter(model, "b", ah.LoRAConfig(r=3, alpha=5, target_modules=["0", "1"], init="none"))
    assert isinstance(model[0], LoRALinear) and isinstance(model[1], LoRAEmbedding)
    base = lin(x)
    deltas = {}
    for name in ("a", "b"):
        ah.set_active_adapters(model, name)
        deltas[name] = model[0](x) - base
    ah.set_active_adapters(model, ["a", "b"])
    assert_close(model[0](x), base + deltas["a"] + deltas["b"])
    ah.set_active_adapters(model, None)
    assert torch.equal(model[0](x), base)
    with pytest.raises(NotFoundError):
        ah.set_active_adapters(model, ["a", "nope"])


def test_inference_under_autocast_runs_and_stays_close_to_fp32(ids):
    # autocast runs the base and A in bf16 while B stays fp32: the in-place add must not mix the two
    model = models.trained_tiny_lora()
    full = models.hidden(model, ids)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = models.hidden(model, ids)
    models.assert_close(half.float(), full, 5e-2)


def test_conv1d_and_embedding_shapes_follow_peft():
    model = models.tiny_gpt2()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["c_attn", "wte"]))
    c_attn = model.h[0].attn.c_attn
    assert c_attn.fan_in_fan_out and c_attn.lora_A["a"].shape == (4, 32) and c_attn.lora_B["a"].shape == (96, 4)
    assert model.wte.lora_A["a"].shape == (4, 96) and model.wte.lora_B["a"].shape == (32, 4)
    # the wrapped module's attributes still answer (model code reads them)
    assert c_attn.weight is c_attn.base_layer.weight and c_attn.nf == 96 and model.wte.num_embeddings == 96


# --- training ---------------------------------------------------------------------------------


def test_training_touches_only_adapter_params(ids):
    model = models.tiny_llama()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["q_proj", "v_proj", "embed_tokens"], dora=True))
    share = ah.mark_only_adapters_trainable(model)
    base_before = {k: v.clone() for k, v in base_state_dict(model).items()}
    adapter_params = {id(p) for p in adapter_parameters(model, "a")}
    assert share.trainable == sum(p.numel() for p in model.parameters() if id(p) in adapter_params)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == (id(p) in adapter_params), n
        opt.step()
    after = base_state_dict(model)
    assert all(torch.equal(base_before[k], after[k]) for k in base_before)  # base bitwise unchanged
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p)]
    assert len(changed) == len(before)  # every adapter param moved (B left zero, A then learns)


def test_mark_trainable_report_on_minilm():
    model = models.minilm()
    ah.add_adapter(model, "sent", ah.LoRAConfig(r=8, alpha=16, target_modules=["query", "value"]))
    share = ah.mark_only_adapters_trainable(model)
    assert share.trainable == 12 * 2 * 8 * 384 and share.total == 22_713_216 + share.trainable
    assert str(share).endswith(f"{share.share:.2%} of 22.8M")
    summary = ah.adapter_summary(model)
    assert "sent" in summary and "73,728" in summary and "0.32% of 22.8M" in summary


def test_bias_all_trains_and_saves_biases(tmp_path, ids):
    model = models.tiny_gpt2()
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["c_attn"], bias="lora_only"))
    ah.mark_only_adapters_trainable(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.endswith("bias")} == {f"h.{i}.attn.c_attn.base_layer.bias" for i in range(2)}
    with torch.no_grad():
        model.h[0].attn.c_attn.base_layer.bias.add_(1.0)
    expected = out(model, ids)
    ah.save_adapter(model, "a", tmp_path)
    assert "h.0.attn.c_attn.bias" in load_file(str(tmp_path / "adapter.safetensors"))
    fresh = models.tiny_gpt2()
    ah.load_adapter(fresh, tmp_path)
    assert torch.equal(out(fresh, ids), expected)


# --- save / load ------------------------------------------------------------------------------


def test_package_round_trip_under_another_seed(tmp_path, ids):
    model = models.minilm()
    cfg = ah.LoRAConfig(r=8, alpha=16, target_modules=["query", "value"], init="none", dora=True)
    ah.add_adapter(model, "sent", cfg)
    models.randomize_magnitudes(model)
    expected = out(model, ids)
    pkg = ah.save_adapter(model, "sent", tmp_path / "pkg", name="org/sent", version="1.0.0")
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["name"] == "org/sent" and manifest["adapter"]["type"] == "lora"
    arch = manifest["base_model"]["architecture"]
    assert arch["model_type"] == "bert" and len(arch["modules"]) == 12
    assert arch["modules"]["encoder.layer.0.attention.self.query"] == {
        "shape": [384, 384],
        "dtype": "float32",
        "layer": "linear",
    }
    assert manifest["base_model"]["name"] and manifest["base_model"]["fingerprint"]["content"]
    keys = set(load_file(str(pkg / "adapter.safetensors")))
    assert "encoder.layer.0.attention.self.query.lora_A" in keys
    assert "encoder.layer.5.attention.self.value.lora_magnitude_vector" in keys

    torch.manual_seed(1234)
    fresh = models.minilm()
    assert ah.load_adapter(fresh, pkg) == "sent"
    assert torch.equal(out(fresh, ids), expected)
    assert all(not p.requires_grad for p in adapter_parameters(fresh, "sent"))


def test_loading_is_strict(tmp_path, ids):
    model = models.tiny_llama()
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["q_proj"], init="none"))
    ah.export_peft(model, "a", tmp_path / "peft")
    weights = tmp_path / "peft" / "adapter_model.safetensors"
    tensors = load_file(str(weights))

    fresh = models.tiny_llama()
    extra = dict(tensors, **{"base_model.model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(8, 32)})
    save_file(extra, str(weights))
    with pytest.raises(AdapterWeightsError, match="layers.0.mlp.up_proj.lora_A"):
        ah.load_adapter(fresh, tmp_path / "peft")
    assert not has_lora(fresh) and ah.list_adapters(fresh) == []  # rolled back

    missing = {k: v for k, v in tensors.items() if "layers.1." not in k}
    save_file(missing, str(weights))
    with pytest.raises(AdapterWeightsError, match="layers.1.self_attn.q_proj"):
        ah.load_adapter(fresh, tmp_path / "peft")

    torch.save(tensors, tmp_path / "peft" / "adapter_model.bin")
    weights.unlink()
    with pytest.raises(InvalidPackageError, match="allow_pickle"):
        ah.load_adapter(fresh, tmp_path / "peft")
    ah.load_adapter(fresh, tmp_path / "peft", "a", allow_pickle=True)
    assert torch.equal(out(fresh, ids), out(model, ids))


def test_load_refuses_a_dir_without_adapter_files(tmp_path):
    # real dispatch to the AdapterHub reader (trainable/activate/allow_pickle) is covered in
    # test_adapterhub_interop.py on the committed fixtures
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InvalidPackageError, match="neither manifest.json nor adapter_config.json"):
        ah.load_adapter(nn.Linear(2, 2), tmp_path)


# --- merging edge cases -----------------------------------------------------------------------


def test_safe_merge_refuses_non_finite_and_leaves_base(ids):
    model = models.tiny_llama()
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["q_proj", "v_proj"], init="none"))
    with torch.no_grad():
        model.layers[1].self_attn.v_proj.lora_B["a"][0, 0] = float("inf")
    before = {k: v.clone() for k, v in base_state_dict(model).items()}
    with pytest.raises(AdapterError, match="non-finite"):
        ah.merge_adapters(model, safe=True)
    after = base_state_dict(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(a.merged for a in ah.list_adapters(model))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_merge_uses_fp32_delta(dtype):
    model = models.tiny_llama().to(dtype)
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["q_proj"], init="none"))
    layer = model.layers[0].self_attn.q_proj
    assert layer.lora_A["a"].dtype == torch.float32  # fp32 adapters on half bases
    w = layer.base_layer.weight.detach().clone()
    expected = (w.float() + layer.lora_B["a"].detach() @ layer.lora_A["a"].detach() * layer.scaling["a"]).to(dtype)
    ah.merge_adapters(model)
    assert torch.equal(layer.base_layer.weight, expected)


def test_merged_adapters_block_switching_and_deleting():
    model = models.tiny_gpt2()
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["c_attn"]))
    ah.add_adapter(model, "b", ah.LoRAConfig(target_modules=["c_attn"]))
    ah.merge_adapters(model)
    with pytest.raises(AdapterError, match="merged"):
        ah.set_active_adapters(model, "a")
    with pytest.raises(AdapterError, match="merged"):
        ah.delete_adapter(model, "b")


def test_merge_into_tied_embedding_is_refused_unless_untied(ids):
    model = models.tiny_gpt2(lm_head=True)  # wte is tied to lm_head
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["wte", "c_attn"], init="none"))
    unmerged = out(model, ids)
    before = {k: v.clone() for k, v in base_state_dict(model).items()}
    with pytest.raises(AdapterError, match=r"transformer\.wte\.weight is shared with lm_head\.weight.*untie=True"):
        ah.merge_adapters(model)
    after = base_state_dict(model)
    assert all(torch.equal(before[k], after[k]) for k in before) and not ah.list_adapters(model)[0].merged
    plain = ah.merge_and_unload(model, untie=True)
    assert plain.lm_head.weight is not plain.transformer.wte.weight and not plain.config.tie_word_embeddings
    assert torch.equal(plain.lm_head.weight, before["lm_head.weight"])  # the head kept the original
    assert_close(out(plain, ids), unmerged)


def test_merge_follows_forward_order_with_dora(ids):
    def two_adapters():
        torch.manual_seed(0)
        model = models.tiny_llama()
        ah.add_adapter(model, "a", ah.LoRAConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"], init="none"))
        ah.add_adapter(model, "d", ah.LoRAConfig(r=4, alpha=8, target_modules=["q_proj"], init="none", dora=True))
        models.randomize_magnitudes(model)
        ah.set_active_adapters(model, ["a", "d"])  # d rescales a's output too (PEFT's order semantics)
        return model, out(model, ids)

    model, unmerged = two_adapters()
    ah.merge_adapters(model, ["d", "a"])  # names in another order: merged in forward order
    assert_close(out(model, ids), unmerged)
    ah.unmerge_adapters(model)
    assert_close(out(model, ids), unmerged)

    model, unmerged = two_adapters()
    ah.merge_adapters(model, "a")  # partial: d still runs, its norm from the unmerged weight
    assert_close(out(model, ids), unmerged)
    ah.merge_adapters(model, "d")
    assert_close(out(model, ids), unmerged)
    with pytest.raises(AdapterError, match="merged"):
        ah.set_active_adapters(model, ["d", "a"])  # reordering changes the math: not while merged

    model, unmerged = two_adapters()
    before = {k: v.clone() for k, v in base_state_dict(model).items()}
    with pytest.raises(AdapterError, match="'a' stays unmerged"):
        ah.merge_adapters(model, "d")  # d after an unmerged a cannot be folded in exactly
    assert all(torch.equal(before[k], v) for k, v in base_state_dict(model).items())


def test_adapter_named_like_a_parameter_claims_only_its_own():
    model = models.tiny_llama()
    for name in ("x", "lora_A", "lora_B"):
        ah.add_adapter(model, name, ah.LoRAConfig(r=2, target_modules=["q_proj"]))
    q = model.layers[0].self_attn.q_proj
    for name in ("x", "lora_A", "lora_B"):
        mine = {id(q.lora_A[name]), id(q.lora_B[name])}
        assert {id(p) for p in q.adapter_parameters(name)} == mine
        ah.mark_only_adapters_trainable(model, name)
        trainable = {n.split("q_proj.")[1] for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {f"lora_A.{name}", f"lora_B.{name}"}


# --- delete / list ----------------------------------------------------------------------------


def test_delete_adapter(ids):
    model = models.tiny_llama()
    base = out(model, ids)
    ah.add_adapter(model, "a", ah.LoRAConfig(target_modules=["q_proj"], init="none"))
    ah.add_adapter(model, "b", ah.LoRAConfig(target_modules=["q_proj", "k_proj"], init="none"))
    assert [(a.name, a.modules, a.active) for a in ah.list_adapters(model)] == [("a", 2, False), ("b", 4, True)]
    with pytest.raises(NotFoundError, match="nope"):
        ah.delete_adapter(model, "nope")
    ah.delete_adapter(model, "b")
    assert type(model.layers[0].self_attn.k_proj) is nn.Linear  # unwrapped: no adapter left there
    assert isinstance(model.layers[0].self_attn.q_proj, LoRALinear)
    ah.delete_adapter(model, "a")
    assert not has_lora(model) and ah.list_adapters(model) == []
    assert torch.equal(out(model, ids), base)
    ah.add_adapter(model, "c", ah.LoRAConfig(target_modules=["q_proj"]))
    with pytest.raises(AdapterError, match="already exists"):
        ah.add_adapter(model, "c", ah.LoRAConfig(target_modules=["k_proj"]))


# --- targeting --------------------------------------------------------------------------------


def test_targeting_rules():
    model = models.tiny_llama(lm_head=True)
    paths = lambda **kw: [p for p, _ in select_modules(model, **kw)]
    assert paths(target_modules=["q_proj"]) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert paths(target_modules=r".*1\.mlp\.(up|down)_proj") == [
        "model.layers.1.mlp.up_proj",
        "model.layers.1.mlp.down_proj",
    ]
    linear = paths(target_modules="all-linear")
    assert len(linear) == 14 and "lm_head" not in linear
    assert paths(target_modules="all-linear", layers_to_transform=[1], exclude_modules=["o_proj"]) == [
        f"model.layers.1.{m}"
        for m in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    ]
    assert layer_index("model.layers.12.mlp.up_proj", "layers") == 12
    with pytest.raises(TargetError, match="unsupported"):
        select_modules(model, ["self_attn"])
    with pytest.raises(TargetError, match="matched no module"):
        select_modules(model, ["query"])
    with pytest.raises(TargetError):
        select_modules(model, "q_proj", layers_to_transform=[0])


def test_rank_and_alpha_patterns():
    model = models.tiny_llama()
    cfg = ah.LoRAConfig(
        r=4,
        alpha=8,
        target_modules=["q_proj", "v_proj"],
        rank_pattern={"layers.1.self_attn.q_proj": 2},
        alpha_pattern={"v_proj": 3},
    )
    ah.add_adapter(model, "a", cfg)
    assert model.layers[1].self_attn.q_proj.r["a"] == 2 and model.layers[0].self_attn.q_proj.r["a"] == 4
    assert model.layers[0].self_attn.v_proj.scaling["a"] == 3 / 4
    assert model.layers[1].self_attn.q_proj.scaling["a"] == 8 / 2


def test_attach_on_meta_device():
    with torch.device("meta"):
        model = models.tiny_llama()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], dora=True))
    assert all(p.is_meta for p in adapter_parameters(model, "a"))


@pytest.mark.parametrize("lora_first", [True, False])
def test_composes_with_bottleneck_wrappers(lora_first, ids):
    model = models.tiny_gpt2()
    base = out(model, ids)
    configs = [
        ("l", ah.LoRAConfig(target_modules=["c_proj"], init="none")),
        ("b", ah.BottleneckConfig(style="houlsby", init="bert")),
    ]
    for name, cfg in configs if lora_first else configs[::-1]:
        ah.add_adapter(model, name, cfg)
    lora = model.h[0].mlp.c_proj.base_layer  # LoRA sits innermost, under the bottleneck
    assert isinstance(lora, LoRALinear) and lora.adapter_names == ["l"]
    ah.set_active_adapters(model, "l")
    only_lora = out(model, ids)
    ah.merge_adapters(model)
    assert_close(out(model, ids), only_lora)
    ah.unmerge_adapters(model)
    ah.delete_adapter(model, "l")
    assert type(model.h[0].mlp.c_proj.base_layer).__name__ == "Conv1D"
    ah.delete_adapter(model, "b")
    assert type(model.h[0].mlp.c_proj).__name__ == "Conv1D"
    assert_close(out(model, ids), base)  # only merge/unmerge rounding is left


def test_dropout_and_gaussian_init():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    ah.add_adapter(model, "g", ah.LoRAConfig(r=4, target_modules=["0"], init="gaussian"))
    layer = model[0]
    assert torch.count_nonzero(layer.lora_B["g"]) == 0 and 0.15 < layer.lora_A["g"].std().item() < 0.35  # N(0, 1/r)
    ah.add_adapter(model, "d", ah.LoRAConfig(r=4, target_modules=["0"], init="none", dropout=0.5))
    x = torch.randn(8, 64)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout on the LoRA path only while training
