"""Per-sample routing (nn/routing.py): routed rows equal single-adapter runs, on the real MiniLM."""

from __future__ import annotations

import copy

import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.errors import NotFoundError, UsageError
from adapterhub_client.nn.bottleneck import BottleneckLayer
from adapterhub_client.nn.lora import LoRALinear
from adapterhub_client.nn.model import adapter_parameters
from adapterhub_client.nn.routing import Router, enable_adapter_names
from tests import models

METHODS = ("bmm", "segments")
BERT_LORA = ["query", "value", "dense"]
EMBEDDINGS = ["word_embeddings", "position_embeddings"]  # position ids come as a batch of 1


@pytest.fixture(scope="module")
def minilm():
    return models.minilm()


@pytest.fixture(scope="module")
def ids(minilm):
    return models.token_ids(minilm.config.vocab_size, batch=6, seq=10, seed=3)


def lora(r: int, embeddings: bool = False, **kw):
    targets = BERT_LORA + EMBEDDINGS if embeddings else BERT_LORA
    return ah.LoRAConfig(r=r, alpha=2 * r, target_modules=targets, init="none", **kw)


def bottleneck(style: str, **kw):
    return ah.BottleneckConfig(style=style, init="bert", **kw)


# adapter name -> config; each case's names cover its adapters, the base (None) and repeats, shuffled
CASES = {
    "lora": {"a": lora(4, True), "b": lora(8, True, rslora=True), "c": lora(2)},
    "dora": {"a": lora(4, dora=True), "b": lora(8), "c": lora(6, dora=True)},
    "houlsby": {"a": bottleneck("houlsby"), "b": bottleneck("houlsby", reduction_factor=8, non_linearity="gelu")},
    "pfeiffer": {"a": bottleneck("pfeiffer"), "b": bottleneck("pfeiffer", reduction_factor=4, scaling="channel")},
    "parallel": {"a": bottleneck("parallel", scaling="learned"), "b": bottleneck("parallel", reduction_factor=4)},
    "mixed": {"a": lora(4, dora=True), "b": bottleneck("houlsby"), "c": bottleneck("parallel"), "d": lora(8)},
}


def build(base, configs):
    model = copy.deepcopy(base)
    for name, config in configs.items():
        ah.add_adapter(model, name, config)
    models.randomize_magnitudes(model)
    with torch.no_grad():  # trained-looking bottlenecks: learned / channel scales away from 1
        for pname, p in model.named_parameters():
            if pname.endswith("scaling"):
                p.uniform_(0.5, 1.5)
    return model


def single_runs(model, ids, names):
    """Row i of the batch as run with adapter names[i] alone active (None: adapters disabled)."""
    outs = {}
    for name in dict.fromkeys(names):
        if name is None:
            with ah.disable_adapters(model):
                outs[name] = models.hidden(model, ids)
        else:
            ah.set_active_adapters(model, name)
            outs[name] = models.hidden(model, ids)
    return torch.stack([outs[n][i] for i, n in enumerate(names)]), outs


@pytest.mark.parametrize("case", CASES)
def test_routed_rows_equal_single_adapter_runs(minilm, ids, case):
    model = build(minilm, CASES[case])
    adapters = list(CASES[case])
    names = [adapters[-1], None, *adapters, *adapters][:6]
    expected, outs = single_runs(model, ids, names)
    distinct = [outs[n] for n in dict.fromkeys(names)]
    # the adapters really differ from each other and from the base
    assert min((x - y).abs().max().item() for i, x in enumerate(distinct) for y in distinct[i + 1 :]) > 1e-3
    ah.set_active_adapters(model, list(CASES[case])[-1])  # whatever is active, routing decides per row
    for method in METHODS:
        with ah.route(model, names, method=method):
            got = models.hidden(model, ids)
        models.assert_close(got, expected, 1e-4)
    models.assert_close(models.hidden(model, ids), outs[list(CASES[case])[-1]], 0)  # back to the selection


def test_routing_under_autocast_equals_single_adapter_runs_under_autocast():
    # under autocast the base and A run in bf16 while B stays fp32: in-place adds must not mix them
    base = models.tiny_bert()
    model = build(base, {"a": ah.LoRAConfig(r=4, target_modules=BERT_LORA, init="none"), "b": lora(8)})
    ids = models.token_ids(96, batch=4, seq=8)
    names = ["b", None, "a", "b"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = single_runs(model, ids, names)
        for method in METHODS:
            with ah.route(model, names, method=method):
                got = models.hidden(model, ids)
            models.assert_close(got.float(), expected.float(), 5e-2)


@pytest.mark.parametrize("dora", [False, True])
@pytest.mark.parametrize("names", [["b", None, "a", "b"], [None, "a", "a", "b"]], ids=["shuffled", "grouped"])
def test_routing_on_gpt2_conv1d_and_embeddings(dora, names):
    model = models.tiny_gpt2()
    for name, r in (("a", 4), ("b", 2)):
        targets = ["c_attn", "c_fc", "wte", "wpe"]  # Conv1D and embeddings (wpe: position ids, a batch of 1)
        ah.add_adapter(model, name, ah.LoRAConfig(r=r, target_modules=targets, init="none", dora=dora))
    models.randomize_magnitudes(model)
    ids = models.token_ids(96, batch=4, seq=6)
    expected, _ = single_runs(model, ids, names)
    for method in METHODS:
        with ah.route(model, names, method=method):
            models.assert_close(models.hidden(model, ids), expected)


def test_bmm_is_one_batched_computation_and_segments_use_the_layers_math(minilm, ids, monkeypatch):
    model = build(minilm, CASES["lora"])
    names = ["a", "b", "c", "a", None, "b"]
    calls: list[str] = []
    own = LoRALinear._adapter_delta

    def spy(self, name, x, result):
        calls.append(name)
        return own(self, name, x, result)

    monkeypatch.setattr(LoRALinear, "_adapter_delta", spy)
    bmm = torch.bmm
    batched: list[int] = []
    monkeypatch.setattr(torch, "bmm", lambda a, b: batched.append(a.shape[0]) or bmm(a, b))
    with ah.route(model, names, method="bmm"):
        via_bmm = models.hidden(model, ids)
    assert calls == [] and batched and set(batched) == {6}  # one batch of all 6 rows, no per-adapter loop
    linear = sum(isinstance(m, LoRALinear) for m in model.modules())
    batched.clear()
    with ah.route(model, names, method="segments"):
        via_segments = models.hidden(model, ids)
    assert batched == [] and len(calls) == 3 * linear  # one segment per adapter and layer, base rows skipped
    models.assert_close(via_bmm, via_segments, 1e-4)


def test_auto_uses_segments_only_for_contiguous_lora_rows(monkeypatch):
    model = models.trained_tiny_lora("a")
    ah.add_adapter(model, "b", ah.LoRAConfig(r=4, target_modules=["query"], init="none"))
    ah.add_adapter(model, "c", ah.BottleneckConfig(style="houlsby", init="bert", reduction_factor=4))
    chosen: list[tuple[str, bool]] = []
    own = Router._segments

    def spy(self, plan, kind):
        chosen.append((kind, own(self, plan, kind)))
        return chosen[-1][1]

    monkeypatch.setattr(Router, "_segments", spy)
    ids = models.token_ids(96, batch=4, seq=5)
    for names, expected in (
        (["a", "a", "b", None], {("lora", True)}),  # grouped rows: each adapter's fused GEMM on a view
        (["a", None, "b", "a"], {("lora", False)}),  # scattered rows: gathering them costs more than bmm
        (["c", "c", None, None], {("bottleneck", False)}),  # bottleneck layers: bmm measured at least as fast
    ):
        chosen.clear()
        with ah.route(model, names):
            models.hidden(model, ids)
        assert set(chosen) == expected, names


def test_adapter_names_kwarg_equals_route_and_resets(minilm, ids):
    model = build(minilm, CASES["mixed"])
    ah.set_active_adapters(model, "d")
    active = models.hidden(model, ids)
    names = ["a", "b", None, "c", "d", "a"]
    with ah.route(model, names):
        routed = models.hidden(model, ids)
    assert enable_adapter_names(model) is model
    enable_adapter_names(model)  # idempotent: one hook
    peft_names = [n if n is not None else "__base__" for n in names]
    with torch.no_grad():
        got = model(input_ids=ids, adapter_names=peft_names).last_hidden_state
    models.assert_close(got, routed, 0)
    models.assert_close(models.hidden(model, ids), active, 0)  # the call's routing ended with it
    with pytest.raises(UsageError, match="adapter_names has 2 names for a batch of 6 rows"):
        model(input_ids=ids, adapter_names=["a", "b"])
    with pytest.raises(NotFoundError, match="'zz'"):
        model(input_ids=ids, adapter_names=["zz"] * 6)
    models.assert_close(models.hidden(model, ids), active, 0)


def test_adapter_names_reset_after_a_failing_forward():
    model = enable_adapter_names(models.trained_tiny_lora("a"))
    ids = models.token_ids(96, batch=2, seq=5)
    active = models.hidden(model, ids)

    def boom(module, args):
        raise RuntimeError("boom")

    handle = model.encoder.layer[1].register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        model(input_ids=ids, adapter_names=["a", "a"])
    handle.remove()
    models.assert_close(models.hidden(model, ids), active, 0)
    assert all(getattr(m, "_route", None) is None for m in model.modules())


def test_matches_peft_mixed_batch(minilm, ids, tmp_path):
    import peft

    ours = copy.deepcopy(minilm)
    targets = ["query", "key", "value", "dense"]
    for i, name in enumerate(("a", "b")):
        ah.add_adapter(ours, name, ah.LoRAConfig(r=4 * (i + 1), alpha=8, target_modules=targets, init="none"))
        ah.export_peft(ours, name, tmp_path / name)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(minilm), tmp_path / "a", adapter_name="a")
    theirs.load_adapter(tmp_path / "b", adapter_name="b")
    theirs.eval()
    names = ["b", "__base__", "a", "a", "b", "__base__"]
    with torch.no_grad():
        expected = theirs(input_ids=ids, adapter_names=names).last_hidden_state
    enable_adapter_names(ours)
    for method in METHODS:
        with ah.route(ours, [None if n == "__base__" else n for n in names], method=method), torch.no_grad():
            models.assert_close(ours(input_ids=ids).last_hidden_state, expected, 1e-4)
    with torch.no_grad():
        models.assert_close(ours(input_ids=ids, adapter_names=names).last_hidden_state, expected, 1e-4)


def test_cached_stacks_follow_weight_changes():
    model = models.trained_tiny_lora("a")
    ah.add_adapter(model, "b", ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none"))
    ids = models.token_ids(96, batch=3, seq=5)
    names = ["a", "b", "b"]
    with ah.route(model, names, method="bmm"):
        before = models.hidden(model, ids)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoRALinear):
                layer.lora_B["b"].mul_(-2.0)  # in place: same tensor, new version
    expected, _ = single_runs(model, ids, names)
    with ah.route(model, names, method="bmm"):
        after = models.hidden(model, ids)
    models.assert_close(after, expected)
    assert (after[1:] - before[1:]).abs().max() > 1e-3
    models.assert_close(after[0], before[0])
    ah.delete_adapter(model, "b")  # a new adapter of the same name and shapes: new tensors
    ah.add_adapter(model, "b", ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none"))
    expected, _ = single_runs(model, ids, names)
    with ah.route(model, names, method="bmm"):
        models.assert_close(models.hidden(model, ids), expected)


@pytest.mark.parametrize("kind", ["lora", "dora", "bottleneck"])
def test_routed_training_gives_each_adapter_the_gradient_of_its_own_rows(kind):
    model = models.tiny_bert()
    for name in ("a", "b", "unused"):
        if kind == "bottleneck":
            config = ah.BottleneckConfig(style="houlsby", init="bert", reduction_factor=4)
        else:
            config = ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none", dora=kind == "dora")
        ah.add_adapter(model, name, config)
    models.randomize_magnitudes(model)
    ah.mark_only_adapters_trainable(model, ["a", "b", "unused"])
    ids = models.token_ids(96, batch=4, seq=6)
    names = ["a", "b", None, "a"]
    params = {n: adapter_parameters(model, n) for n in ("a", "b", "unused")}
    with ah.route(model, names, method="bmm"):
        model(input_ids=ids).last_hidden_state.pow(2).sum().backward()
    routed = {n: [p.grad.clone() if p.grad is not None else None for p in ps] for n, ps in params.items()}
    assert all(g is None or not g.any() for g in routed["unused"])
    model.zero_grad()  # PEFT's spelling trains the same way (backward runs after the call's routing ended)
    enable_adapter_names(model)(input_ids=ids, adapter_names=names).last_hidden_state.pow(2).sum().backward()
    for p, g in zip(params["a"], routed["a"]):
        models.assert_close(p.grad, g, 1e-6)
    for name, rows in (("a", [0, 3]), ("b", [1])):
        model.zero_grad()
        ah.set_active_adapters(model, name)
        model(input_ids=ids[rows]).last_hidden_state.pow(2).sum().backward()
        for p, g in zip(params[name], routed[name]):
            assert g is not None
            models.assert_close(g, p.grad, 1e-4)


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_training_dropout_is_per_row(kind):
    model = models.tiny_bert()
    if kind == "lora":
        configs = {
            "a": ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none", dropout=0.5),
            "b": ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none"),
            "c": ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none", dropout=0.3, dora=True),
        }
    else:
        configs = {
            name: ah.BottleneckConfig(style="houlsby", init="bert", reduction_factor=4, dropout=p)
            for name, p in (("a", 0.5), ("b", 0.0), ("c", 0.3))
        }
    for name, config in configs.items():
        ah.add_adapter(model, name, config)
    ids = models.token_ids(96, batch=4, seq=6)
    names = ["a", "b", None, "c"]
    expected, _ = single_runs(model, ids, names)  # eval: no dropout anywhere
    for layer in model.modules():  # only the adapters train: BERT's own dropout stays off
        if isinstance(layer, (LoRALinear, BottleneckLayer)):
            layer.train()
    with ah.route(model, names, method="bmm"):
        got = models.hidden(model, ids)
    models.assert_close(got[1:3], expected[1:3])  # no dropout in b's rows, none in the base rows
    for row in (0, 3):  # dropout ran in the rows of a and c
        assert (got[row] - expected[row]).abs().max() > 1e-4 and torch.isfinite(got[row]).all()


# --- errors -----------------------------------------------------------------------------------


def test_errors_are_checked_up_front():
    model = models.trained_tiny_lora("a")
    with pytest.raises(NotFoundError, match="'nope'"):
        ah.route(model, ["a", "nope"])
    for bad, message in (
        ("a", "one adapter name"),
        ([], "empty"),
        (["a", 3], "got 3"),
        (["a", torch.ones(1)], "got tensor"),
        (None, "per row"),
    ):
        with pytest.raises(UsageError, match=message):
            ah.route(model, bad)
    with pytest.raises(UsageError, match="unknown routing method 'fast'"):
        ah.route(model, ["a"], method="fast")
    with pytest.raises(UsageError, match="expected a torch nn.Module"):
        ah.route(object(), ["a"])
    ah.merge_adapters(model, ["a"])
    with pytest.raises(UsageError, match=r"merged .*unmerge_adapters"):
        ah.route(model, [None, None])


def test_batch_size_mismatch_and_reset_on_exception():
    model = models.trained_tiny_lora("a")
    ids = models.token_ids(96, batch=3, seq=5)
    active = models.hidden(model, ids)
    with (
        pytest.raises(UsageError, match=r"^route\(\) got 2 adapter names for a batch of 3 rows$"),
        ah.route(model, ["a", None]),
    ):
        models.hidden(model, ids)
    with pytest.raises(RuntimeError, match="inside"), ah.route(model, [None, None, None]):
        raise RuntimeError("inside")
    assert all(getattr(m, "_route", None) is None for m in model.modules())
    assert not model._forward_pre_hooks
    models.assert_close(models.hidden(model, ids), active, 0)


def test_module_copies_cannot_route():
    model = models.bert_classifier()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["query"], init="none"))
    ah.add_head(model, "a", ah.ModuleCopy("classifier"))
    ah.add_adapter(model, "b", ah.LoRAConfig(r=4, target_modules=["query"], init="none"))
    with pytest.raises(UsageError, match=r"'a' has a trained copy of classifier"):
        ah.route(model, ["a", "b"])
    ah.set_active_adapters(model, "a")
    with pytest.raises(UsageError, match=r"'a' has a trained copy of classifier, which would run for every row"):
        ah.route(model, ["b", None])
    ah.set_active_adapters(model, "b")
    ids = models.token_ids(96, batch=2, seq=5)
    with ah.route(model, ["b", None]):
        assert model(input_ids=ids).logits.shape == (2, 3)


def test_routing_overrides_compositions_and_refuses_fusions_and_batch_replication():
    model = models.tiny_bert()
    for name in ("a", "b"):
        ah.add_adapter(model, name, ah.BottleneckConfig(style="houlsby", init="bert", reduction_factor=4))
    ids = models.token_ids(96, batch=3, seq=5)
    names = ["b", None, "a"]
    expected, _ = single_runs(model, ids, names)
    fusion = ah.add_fusion(model, ah.Fuse("a", "b"))  # the Fuse is active now
    with pytest.raises(UsageError, match=f"{fusion!r} is a fusion adapter"):
        ah.route(model, [fusion, "a", "b"])
    for block in (ah.Fuse("a", "b"), ah.Stack("a", "b")):
        ah.set_active_adapters(model, block)
        with ah.route(model, names):
            models.assert_close(models.hidden(model, ids), expected)
    ah.set_active_adapters(model, ah.Parallel("a", "b"))
    with pytest.raises(UsageError, match="replicates or splits the batch"):
        ah.route(model, names)
