"""AdapterFusion: AdapterHub's BertFusion math at every placement, training only the fusion on the real
MiniLM, and the fusion package (its parts as dependencies) round-tripping with identical outputs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

import adapterhub_client as ah
from adapterhub_client.errors import AdapterConfigError, NotFoundError, UsageError
from adapterhub_client.nn.bottleneck import BottleneckLayer
from tests import models

assert_close = models.assert_close
IDS = models.token_ids(96, batch=3, seq=8)


def randomize(model, names, std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(f".{n}." in pname for n in names):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def bertfusion(fusion, h, ds):
    """AdapterHub's BertFusion.forward, written out (value before softmax, no residual_before, T = 1)."""
    q = fusion.query(h)
    keys = [fusion.key(d) for d in ds]
    scores = torch.stack([(q * k).sum(-1) for k in keys], dim=-1)
    p = torch.softmax(scores, dim=-1)
    return sum(p[..., i : i + 1] * fusion.value(d) for i, d in enumerate(ds))


@pytest.fixture(scope="module")
def tiny_styles():
    out = {}
    for style in ("pfeiffer", "houlsby", "parallel"):
        model = models.tiny_bert()
        for name in ("a", "b"):
            ah.add_adapter(model, name, ah.BottleneckConfig(style=style, reduction_factor=4))
        randomize(model, ["a", "b"], seed=1)
        ah.add_fusion(model, ah.Fuse("a", "b"), ah.FusionConfig(dropout=0.0))
        randomize(model, ["a,b"], std=0.3, seed=2)  # query, key and value far from their init
        out[style] = model.eval()
    return out


@pytest.mark.parametrize("style", ["pfeiffer", "houlsby", "parallel"])
def test_fusion_is_adapterhubs_bertfusion_at_every_site(tiny_styles, style):
    """The query is what the fused adapters read: LN(z) at a post-LN norm (SeqBn), the module output
    (DoubleSeqBn), the sublayer input (ParBn)."""
    model = tiny_styles[style]
    seen, inputs = {}, {}
    hooks = []
    for path, m in model.named_modules():
        if isinstance(m, BottleneckLayer):
            hooks.append(m.register_forward_hook(lambda mod, a, o, p=path: seen.__setitem__(p, (mod, a[0], o))))
            if m._input_module is not None:
                hooks.append(
                    m._input_module.register_forward_pre_hook(lambda mod, a, p=path: inputs.__setitem__(p, a[0]))
                )
    ah.set_active_adapters(model, ah.Fuse("a", "b"))
    fused = models.hidden(model, IDS)
    for h in hooks:
        h.remove()
    assert len(seen) == (4 if style == "houlsby" else 2)
    for path, (layer, x, out) in seen.items():
        fusion, (a, b) = layer.fusions["a,b"], (layer.adapters["a"], layer.adapters["b"])
        with torch.no_grad():
            if style == "pfeiffer":
                ln = layer.base_layer
                h = ln(x)
                expected = ln(x + bertfusion(fusion, h, [a(h), b(h)]))
            else:
                y = layer.base_layer(x)
                h = y if style == "houlsby" else inputs[path]
                expected = y + bertfusion(fusion, h, [a(h), b(h)])
        assert_close(out, expected)
    for single in ("a", "b", None):
        ah.set_active_adapters(model, single)
        assert (models.hidden(model, IDS) - fused).abs().max() > 1e-3


def test_training_scores_take_dropout_as_adapterhub_does(tiny_styles):
    layer = next(m for m in tiny_styles["pfeiffer"].modules() if isinstance(m, BottleneckLayer))
    fusion = copy.deepcopy(layer.fusions["a,b"]).train()
    fusion.dropout.p = 0.5
    h, ds = torch.randn(2, 5, 32), [torch.randn(2, 5, 32) for _ in range(3)]
    torch.manual_seed(7)
    got = fusion(h, ds)
    torch.manual_seed(7)
    q = fusion.query(h)
    scores = F.dropout(torch.stack([(q * fusion.key(d)).sum(-1) for d in ds], -1), 0.5, True)
    p = torch.softmax(scores, -1)
    assert_close(got, sum(p[..., i : i + 1] * fusion.value(d) for i, d in enumerate(ds)))


def test_the_cached_query_key_product_follows_the_weights(tiny_styles):
    layer = next(m for m in tiny_styles["pfeiffer"].modules() if isinstance(m, BottleneckLayer))
    fusion = copy.deepcopy(layer.fusions["a,b"]).eval()
    h, ds = torch.randn(2, 5, 32), [torch.randn(2, 5, 32) for _ in range(2)]
    with torch.inference_mode():
        first = fusion(h, ds)
    with torch.no_grad():
        assert_close(fusion(h, ds), first)
        fusion.query.weight.add_(0.5)  # an optimizer step, a load_state_dict: in place
        fusion.key.bias.add_(3.0)  # shifts every score alike: no effect
        assert_close(fusion(h, ds), bertfusion(fusion, h, ds))
    assert (bertfusion(fusion, h, ds) - first).abs().max() > 1e-3
    assert_close(fusion(h, ds), bertfusion(fusion, h, ds))  # with gradients: the plain path


def test_temperature_anneals_while_training_only():
    fusion = ah.FusionConfig(temperature=True)
    from adapterhub_client.nn.fusion import AdapterFusion

    module = AdapterFusion(8, fusion, 0.0)
    h, ds = torch.randn(1, 2, 8), [torch.randn(1, 2, 8), torch.randn(1, 2, 8)]
    module.eval()(h, ds)
    assert module.T == 50.0
    module.train()(h, ds)
    assert pytest.approx(49.95) == module.T


# --- MiniLM: training and packages -----------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_fused():
    model = models.minilm()
    for name in ("p1", "p2"):
        ah.add_adapter(model, name, ah.BottleneckConfig(style="pfeiffer"))
    randomize(model, ["p1", "p2"], std=0.05, seed=3)  # as if trained
    ah.add_fusion(model, ah.Fuse("p1", "p2"))
    return model


BATCH = torch.randint(1000, 20000, (2, 10), generator=torch.Generator().manual_seed(0))


def test_fusion_trains_and_only_its_parameters_change(minilm_fused):
    model = copy.deepcopy(minilm_fused)
    share = ah.train_fusion(model, ah.Fuse("p1", "p2"))
    fusion_params = {n for n, p in model.named_parameters() if p.requires_grad}
    assert fusion_params and all(".fusions.p1,p2." in n for n in fusion_params)
    assert share.trainable == sum(p.numel() for n, p in model.named_parameters() if n in fusion_params)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = torch.randn(2, 384, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.eval()  # no dropout: the loss curve is deterministic

    def loss_now():
        pooled = model(input_ids=BATCH).last_hidden_state.mean(1)
        return F.mse_loss(pooled, target) + ah.fusion_regularization_loss(model, "p1,p2")

    losses = []
    for _ in range(6):
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    # base and adapters untouched; every fusion tensor trained but the key bias, which shifts every
    # score alike and so has no gradient without score dropout (in AdapterHub's formula too)
    assert changed == {n for n in fusion_params if not n.endswith("key.bias")}


def test_regularization_is_adapterhubs(minilm_fused):
    model = minilm_fused
    values = [m.fusions["p1,p2"].value.weight for m in model.modules() if isinstance(m, BottleneckLayer)]
    expected = sum(0.01 * (torch.eye(384) - v).pow(2).sum() for v in values)
    assert len(values) == 6
    assert torch.allclose(ah.fusion_regularization_loss(model, ah.Fuse("p1", "p2")), expected)


def test_fusion_package_round_trips_with_identical_outputs(minilm_fused, tmp_path):
    model = minilm_fused
    ah.set_active_adapters(model, ah.Fuse("p1", "p2"))
    with torch.no_grad():
        expected = model(input_ids=BATCH).last_hidden_state
    for name in ("p1", "p2"):
        ah.save_adapter(model, name, tmp_path / name, name=f"acme/{name}", version="1.0.0")
    parts = {"p1": "acme/p1", "p2": {"name": "acme/p2", "specifier": ">=1.0,<2"}}
    out = ah.save_fusion(model, "p1,p2", tmp_path / "fusion", name="acme/p-fusion", version="1.0.0", parts=parts)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"]["type"] == "fusion"
    assert manifest["adapter"]["parts"] == {"p1": "acme/p1", "p2": "acme/p2"}
    assert manifest["dependencies"] == [{"name": "acme/p1"}, {"name": "acme/p2", "specifier": ">=1.0,<2"}]
    assert manifest["adapter"]["config"]["children"] == ["p1", "p2"]

    fresh = models.minilm()
    with pytest.raises(NotFoundError, match="fuses adapter\\(s\\) 'p1', 'p2'"):
        ah.load_fusion(fresh, out)
    assert ah.list_adapters(fresh) == []  # nothing half-attached
    for name in ("p1", "p2"):  # under other names: the fusion is told which is which
        ah.load_adapter(fresh, tmp_path / name, name=f"x{name}")
    name = ah.load_fusion(fresh, out, adapters={"p1": "xp1", "p2": "xp2"})
    assert ah.active_composition(fresh) == ah.Fuse("xp1", "xp2", name=name)
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=BATCH).last_hidden_state, expected)

    again = models.minilm()  # the generic loader too: a fusion package is a package
    for name in ("p1", "p2"):
        ah.load_adapter(again, tmp_path / name, name=name)
    assert ah.load_adapter(again, out) == "p-fusion"
    with torch.no_grad():
        assert torch.equal(again(input_ids=BATCH).last_hidden_state, expected)
    with pytest.raises(UsageError, match="missing \\['p2'\\]"):
        ah.save_fusion(model, "p1,p2", tmp_path / "bad", name="acme/bad", parts={"p1": "acme/p1"})


# --- the API's edges -------------------------------------------------------------------------------


@pytest.fixture
def tiny():
    model = models.tiny_bert()
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="pfeiffer"))
    ah.add_adapter(model, "b", ah.BottleneckConfig(style="pfeiffer"))
    ah.add_adapter(model, "l", ah.LoRAConfig(r=2, target_modules=["query"]))
    return model


def test_add_fusion_refuses_what_it_cannot_fuse(tiny):
    with pytest.raises(UsageError, match="'l' is a lora adapter"):
        ah.add_fusion(tiny, ah.Fuse("a", "l"))
    with pytest.raises(NotFoundError, match="'ghost'"):
        ah.add_fusion(tiny, ah.Fuse("a", "ghost"))
    with pytest.raises(UsageError, match="expected a Fuse block"):
        ah.add_fusion(tiny, ah.Stack("a", "b"))
    ah.add_fusion(tiny, ah.Fuse("a", "b"))
    with pytest.raises(UsageError, match="already exists"):
        ah.add_fusion(tiny, ah.Fuse("a", "b"))
    with pytest.raises(AdapterConfigError, match="FusionConfig.query"):
        ah.FusionConfig(query="yes")
    with pytest.raises(AdapterConfigError, match="appears twice"):
        ah.FusionConfig(children=["a", "a"])
    assert sorted(a.name for a in ah.list_adapters(tiny)) == ["a", "a,b", "b", "l"]


def test_a_fusion_is_activated_by_its_name_and_deleted_cleanly(tiny):
    base = models.hidden(tiny, IDS) if ah.set_active_adapters(tiny, None) is None else None
    name = ah.add_fusion(tiny, ah.Fuse("a", "b"), activate=False)
    ah.set_active_adapters(tiny, name)
    assert ah.active_composition(tiny) == ah.Fuse("a", "b", name="a,b")
    info = {a.name: a for a in ah.list_adapters(tiny)}
    assert info["a,b"].kind == "fusion" and info["a,b"].active and info["a"].active and not info["l"].active
    with pytest.raises(UsageError, match="activate it alone"):
        ah.set_active_adapters(tiny, ["a,b", "l"])
    with pytest.raises(UsageError, match="cannot be merged"):
        ah.set_active_adapters(tiny, None) or ah.merge_adapters(tiny, "a,b")
    ah.delete_adapter(tiny, "a,b")
    assert not any(len(m.fusions) for m in tiny.modules() if isinstance(m, BottleneckLayer))
    assert torch.equal(models.hidden(tiny, IDS), base)
