"""Bottleneck adapters (Houlsby, Pfeiffer, parallel): placement, invariants, training, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers  # noqa: F401

import adapterhub_client as ah
from adapterhub_client.errors import AdapterConfigError, AdapterWeightsError, UsageError
from adapterhub_client.nn.base import AdapterConfig
from adapterhub_client.nn.bottleneck import PRESETS, BottleneckLayer, Preset, register_preset
from adapterhub_client.nn.model import adapter_tensors, attach_weights
from tests import models

STYLES = ["houlsby", "pfeiffer", "parallel"]
ARCHS = ["bert", "gpt2", "llama"]


tiny_bert = models.tiny_bert


@pytest.fixture(scope="module")
def bases():
    return {"bert": tiny_bert(), "gpt2": models.tiny_gpt2(), "llama": models.tiny_llama()}


@pytest.fixture(scope="module")
def ids():
    return models.token_ids(96, batch=2, seq=8)


def out(model, ids):
    return models.hidden(model, ids)


def layers(model):
    return {p: m for p, m in model.named_modules() if isinstance(m, BottleneckLayer)}


# --- placement ------------------------------------------------------------------------------

EXPECTED_SITES = {
    ("bert", "houlsby"): ["encoder.layer.{i}.attention.output.dense", "encoder.layer.{i}.output.dense"],
    ("bert", "pfeiffer"): ["encoder.layer.{i}.output.LayerNorm"],
    ("bert", "parallel"): ["encoder.layer.{i}.output.dense"],
    ("gpt2", "houlsby"): ["h.{i}.attn.c_proj", "h.{i}.mlp.c_proj"],
    ("gpt2", "pfeiffer"): ["h.{i}.mlp.c_proj"],
    ("gpt2", "parallel"): ["h.{i}.mlp"],
    ("llama", "houlsby"): ["layers.{i}.self_attn.o_proj", "layers.{i}.mlp.down_proj"],
    ("llama", "pfeiffer"): ["layers.{i}.mlp.down_proj"],
    ("llama", "parallel"): ["layers.{i}.mlp"],
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("style", STYLES)
def test_presets_place_adapters(bases, arch, style):
    model = copy.deepcopy(bases[arch])
    paths = ah.add_adapter(model, "a", ah.BottleneckConfig(style=style))
    want = sorted(t.format(i=i) for i in range(2) for t in EXPECTED_SITES[arch, style])
    assert sorted(paths) == want
    assert sorted(layers(model)) == want


def test_presets_on_real_minilm():
    model = models.minilm()
    n_base = sum(p.numel() for p in model.parameters())
    share = {}
    for style in ("pfeiffer", "houlsby"):
        m = copy.deepcopy(model) if style == "pfeiffer" else model
        paths = ah.add_adapter(m, style, ah.BottleneckConfig(style=style))
        assert len(paths) == 6 * (2 if style == "houlsby" else 1)
        share[style] = ah.mark_only_adapters_trainable(m).trainable / n_base
    # AdapterHub's figures for the same presets on MiniLM: 0.50% and 1.00% trainable
    assert share["pfeiffer"] == pytest.approx(0.0050, abs=5e-4)
    assert share["houlsby"] == pytest.approx(0.0100, abs=5e-4)


def test_generic_sites_and_registered_preset(ids):
    # a new architecture needs configuration only: explicit sites, or a registered preset
    model = models.tiny_llama()
    cfg = ah.BottleneckConfig(sites=[{"target": "mlp.up_proj", "mode": "output"}], init="bert")
    assert sorted(ah.add_adapter(model, "a", cfg)) == ["layers.0.mlp.up_proj", "layers.1.mlp.up_proj"]
    register_preset("mini-llama", Preset("self_attn.o_proj", "mlp.gate_proj", None, "mlp"))
    try:
        cfg = ah.BottleneckConfig(style="pfeiffer", architecture="mini-llama")
        assert sorted(ah.add_adapter(model, "b", cfg)) == ["layers.0.mlp.gate_proj", "layers.1.mlp.gate_proj"]
    finally:
        del PRESETS["mini-llama"]


def test_unknown_architecture_and_no_match_are_clear():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(UsageError, match="no bottleneck placement preset"):
        ah.add_adapter(net, "a", ah.BottleneckConfig())
    with pytest.raises(UsageError, match="no module matched"):
        ah.add_adapter(net, "a", ah.BottleneckConfig(sites=[{"target": "nothing", "mode": "output"}]))
    with pytest.raises(AdapterConfigError, match="style"):
        ah.BottleneckConfig(style="sideways")


def test_leave_out_and_per_layer_width(bases):
    model = copy.deepcopy(bases["bert"])
    cfg = ah.BottleneckConfig(style="houlsby", reduction_factor={"0": 4, "default": 16}, leave_out=[1])
    paths = ah.add_adapter(model, "a", cfg)
    assert all(p.startswith("encoder.layer.0.") for p in paths)
    widths = {p: m.adapters["a"].adapter_down[0].out_features for p, m in layers(model).items()}
    assert set(widths.values()) == {8}  # 32 // 4
    model = copy.deepcopy(bases["bert"])
    ah.add_adapter(model, "b", ah.BottleneckConfig(bottleneck_size={"1": 3, "default": 5}))
    assert [m.adapters["b"].adapter_down[0].out_features for m in layers(model).values()] == [5, 3]


def test_config_round_trips_through_dict():
    cfg = ah.BottleneckConfig(
        style="parallel",
        reduction_factor={"0": 2, "default": 4},
        scaling="learned",
        non_linearity="swish",
        leave_out=[3],
    )
    again = AdapterConfig.from_dict({"kind": "bottleneck", **cfg.to_dict()})
    assert again == cfg and again.kind == "bottleneck"


# --- invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("style", STYLES)
def test_new_adapter_is_exact_noop_and_random_one_is_not(bases, ids, arch, style):
    base = bases[arch]
    ref = out(base, ids)
    model = copy.deepcopy(base)
    ah.add_adapter(model, "new", ah.BottleneckConfig(style=style))
    assert torch.equal(out(model, ids), ref)
    ah.add_adapter(model, "rnd", ah.BottleneckConfig(style=style, init="bert", scaling=10.0))
    assert (out(model, ids) - ref).abs().max() > 1e-4


@pytest.mark.parametrize("style", STYLES)
def test_disable_equals_base_and_restores(bases, ids, style):
    base = bases["bert"]
    ref = out(base, ids)
    model = copy.deepcopy(base)
    ah.add_adapter(model, "a", ah.BottleneckConfig(style=style, init="bert", scaling=10.0))
    adapted = out(model, ids)
    assert not torch.allclose(adapted, ref)
    with ah.disable_adapters(model):
        assert torch.equal(out(model, ids), ref)
    assert torch.equal(out(model, ids), adapted)
    ah.set_active_adapters(model, None)
    assert torch.equal(out(model, ids), ref)


def test_two_active_adapters_compose(bases, ids):
    model = copy.deepcopy(bases["bert"])
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="houlsby", init="bert", scaling=10.0))
    ah.add_adapter(model, "b", ah.BottleneckConfig(style="parallel", init="bert", scaling=10.0))
    ah.set_active_adapters(model, "a")
    only_a = out(model, ids)
    ah.set_active_adapters(model, ["a", "b"])
    both = out(model, ids)
    assert not torch.allclose(both, only_a)


def test_delete_restores_the_base_modules(bases, ids):
    base = bases["bert"]
    model = copy.deepcopy(base)
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="parallel", init="bert"))
    ah.delete_adapter(model, "a")
    assert not layers(model)
    # the parallel adapter's input hook is gone too
    assert not model.encoder.layer[0].intermediate._forward_pre_hooks
    assert torch.equal(out(model, ids), out(base, ids))


def test_parallel_input_hook_survives_deepcopy_and_stays_out_of_state_dict(bases, ids):
    base = bases["bert"]
    model = copy.deepcopy(base)
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="parallel", init="bert", scaling=10.0))
    # the hooked input module is not registered twice (its weights would be saved twice)
    keys, base_keys = set(model.state_dict()), set(base.state_dict())
    assert len(keys) == len(base_keys) + 2 * 4  # 4 adapter tensors in each of 2 layers
    assert all(".adapters.a." in k or ".base_layer." in k for k in keys - base_keys)
    twin = copy.deepcopy(model)
    assert torch.equal(out(twin, ids), out(model, ids))
    ah.delete_adapter(twin, "a")  # removes the twin's hooks only
    assert torch.equal(out(twin, ids), out(base, ids))
    assert not torch.equal(out(model, ids), out(base, ids))


def test_merge_and_unload_releases_parallel_hooks(bases, ids):
    from adapterhub_client.nn.base import AdapterLayer

    model = copy.deepcopy(bases["bert"])
    ah.add_adapter(model, "par", ah.BottleneckConfig(style="parallel", init="bert"))  # hooks `intermediate`
    ah.add_adapter(model, "lo", ah.LoRAConfig(r=4, target_modules=["query"], init="none"))  # the only active one
    expected = out(model, ids)
    plain = ah.merge_and_unload(model)
    assert not [p for p, m in plain.named_modules() if isinstance(m, AdapterLayer)]
    assert not [p for p, m in plain.named_modules() if m._forward_pre_hooks]
    models.assert_close(out(plain, ids), expected)


def test_merge_raises_a_clear_error(bases):
    model = copy.deepcopy(bases["bert"])
    ah.add_adapter(model, "a", ah.BottleneckConfig())
    with pytest.raises(UsageError, match="cannot be merged"):
        ah.merge_adapters(model)


@pytest.mark.parametrize("style", STYLES)
def test_save_load_round_trip(bases, ids, style):
    model = copy.deepcopy(bases["bert"])
    cfg = ah.BottleneckConfig(style=style, init="bert", scaling="learned")
    ah.add_adapter(model, "a", cfg)
    tensors = adapter_tensors(model, "a")
    # keys: logical module path + parameter name, no adapter name
    assert "encoder.layer.0.output.dense.adapter_up.weight" in tensors or style == "pfeiffer"
    assert all(".a." not in k for k in tensors)
    fresh = copy.deepcopy(bases["bert"])
    attach_weights(fresh, "b", AdapterConfig.from_dict({"kind": "bottleneck", **cfg.to_dict()}), tensors)
    assert torch.equal(out(fresh, ids), out(model, ids))
    # a wrong shape is refused and leaves the model untouched
    bad = {k: (v[:1] if k.endswith("adapter_up.bias") else v) for k, v in tensors.items()}
    with pytest.raises(AdapterWeightsError, match="shape"):
        attach_weights(fresh, "c", cfg, bad)
    assert [a.name for a in ah.list_adapters(fresh)] == ["b"]


def test_package_save_load(bases, ids, tmp_path):
    model = copy.deepcopy(bases["gpt2"])
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="houlsby", init="bert"))
    ah.save_adapter(model, "a", tmp_path / "pkg")
    fresh = copy.deepcopy(bases["gpt2"])
    name = ah.load_adapter(fresh, tmp_path / "pkg")
    assert torch.equal(out(fresh, ids), out(model, ids))
    assert ah.list_adapters(fresh)[0].name == name


# --- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,style",
    [("bert", "pfeiffer"), ("bert", "houlsby"), ("bert", "parallel"), ("gpt2", "parallel"), ("llama", "houlsby")],
)
def test_training_touches_only_adapters(bases, ids, arch, style):
    torch.manual_seed(0)  # init and dropout masks: deterministic whatever ran before
    model = copy.deepcopy(bases[arch])
    # width 8, not 2: with relu a 2-unit bottleneck can be dead on every token and never train
    ah.add_adapter(model, "a", ah.BottleneckConfig(style=style, reduction_factor=4, dropout=0.1, scaling="learned"))
    ah.mark_only_adapters_trainable(model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    adapter_keys = {k for k, p in model.named_parameters() if p.requires_grad}
    assert adapter_keys and all(".adapters.a." in k for k in adapter_keys)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    target = torch.randn_like(out(model, ids))
    for _ in range(3):
        opt.zero_grad()
        loss = ((model(input_ids=ids).last_hidden_state - target) ** 2).mean()
        loss.backward()
        for k, p in model.named_parameters():  # gradients reach only adapter params
            assert (p.grad is not None) == (k in adapter_keys), k
        opt.step()
    model.eval()
    for k, p in model.named_parameters():
        if k in adapter_keys:
            assert not torch.equal(p, before[k]), f"{k} did not train"
        else:
            assert torch.equal(p, before[k]), f"base parameter {k} changed"
    # the zero-initialised up-projection learned, so the adapter is no longer a no-op
    assert not torch.equal(out(model, ids), out(bases[arch], ids))


def test_composes_with_lora_in_either_order(bases, ids):
    # LoRA sits innermost around the Linear, the bottleneck outside it: same model either way
    outs = []
    for order in (("lora", "bn"), ("bn", "lora")):
        torch.manual_seed(1)
        model = copy.deepcopy(bases["bert"])
        cfgs = {
            "lora": ah.LoRAConfig(target_modules=["dense"], init="none"),
            "bn": ah.BottleneckConfig(style="houlsby", init="bert", scaling=10.0),
        }
        weights = {}
        for n in order:
            ah.add_adapter(model, n, cfgs[n])
        for n in ("lora", "bn"):  # same weights whatever the attach order
            weights[n] = {k: torch.randn_like(v) * 0.1 for k, v in sorted(adapter_tensors(model, n).items())}
        fresh = copy.deepcopy(bases["bert"])
        for n in order:
            attach_weights(fresh, n, cfgs[n], weights[n])
        ah.set_active_adapters(fresh, ["lora", "bn"])
        outs.append(out(fresh, ids))
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert not torch.allclose(outs[0], out(bases["bert"], ids), atol=1e-3)
