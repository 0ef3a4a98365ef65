"""Composition blocks (Stack, Parallel, Average, BatchSplit, Fuse): the headline identities on the real
MiniLM, the whole nesting matrix on a tiny BERT (every valid pair against a per-site reference and the
row blocks against single runs; every invalid pair refused before any forward), and the errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.errors import NotFoundError, UsageError
from adapterhub_client.nn.bottleneck import BottleneckLayer
from adapterhub_client.nn.compose import Block, input_hook
from adapterhub_client.nn.lora import LoRALayer
from tests import models

Stack, Parallel, Average, BatchSplit, Fuse = ah.Stack, ah.Parallel, ah.Average, ah.BatchSplit, ah.Fuse
BLOCKS = [Stack, Parallel, Average, BatchSplit, Fuse]
assert_close = models.assert_close


def randomize(model, names, std=0.2, seed=0):
    """Adapter weights drawn at random (as after training): no adapter is close to the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(f".{n}." in pname or pname.endswith(f".{n}") for n in names):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def run(model, spec, **inputs):
    ah.set_active_adapters(model, spec)
    with torch.no_grad():
        return model(**inputs).last_hidden_state


# --- MiniLM: the headline identities -------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    model = models.minilm()
    ah.add_adapter(model, "la", ah.LoRAConfig(r=8, alpha=16, target_modules=["query", "value"], init="none"))
    ah.add_adapter(model, "lb", ah.LoRAConfig(r=4, alpha=4, target_modules=["query", "key", "dense"], init="none"))
    ah.add_adapter(model, "bn", ah.BottleneckConfig(style="pfeiffer"))
    randomize(model, ["bn"], std=0.1)
    return model


@pytest.fixture(scope="module")
def batch():
    ids = torch.randint(1000, 20000, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row: the mask must be replicated with the ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_parallel_rows_equal_the_single_runs(minilm, batch):
    singles = [run(minilm, spec, **batch) for spec in ("la", "bn", Stack("la", "bn"))]
    out = run(minilm, Parallel("la", "bn", Stack("la", "bn")), **batch)
    assert out.shape == (6, *singles[0].shape[1:])
    for i, single in enumerate(singles):
        assert_close(out[2 * i : 2 * i + 2], single)
    assert (singles[0] - singles[1]).abs().max() > 1e-2  # the branches differ: rows cannot be mixed up


def test_average_with_weights_one_zero_is_the_first_adapter(minilm, batch):
    assert torch.equal(run(minilm, Average("la", "bn", weights=[1, 0]), **batch), run(minilm, "la", **batch))


def test_average_of_loras_is_the_weighted_sum_of_deltas(minilm, batch):
    out = run(minilm, Average("la", "lb", weights=[1, 3]), **batch)  # normalized: 0.25, 0.75
    with scaled(minilm, {"la": 0.25, "lb": 0.75}):
        expected = run(minilm, ["la", "lb"], **batch)
    assert_close(out, expected)
    assert (out - run(minilm, "la", **batch)).abs().max() > 1e-3


def test_stack_of_two_loras_equals_both_active(minilm, batch):
    stacked = run(minilm, Stack("la", "lb"), **batch)
    assert_close(stacked, run(minilm, ["la", "lb"], **batch))
    assert (stacked - run(minilm, "la", **batch)).abs().max() > 1e-3


class scaled:
    """Each LoRA adapter's scale multiplied by a factor inside the block (a weighted delta, exactly)."""

    def __init__(self, model, factors):
        self.layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
        self.factors = factors

    def __enter__(self):
        self.saved = [dict(layer.scaling) for layer in self.layers]
        for layer in self.layers:
            for name, f in self.factors.items():
                if name in layer.scaling:
                    layer.scaling[name] *= f

    def __exit__(self, *exc):
        for layer, saved in zip(self.layers, self.saved):
            layer.scaling.clear()
            layer.scaling.update(saved)


# --- bottleneck Stack: AdapterHub's math, per site ------------------------------------------------


class Sites:
    """Every bottleneck layer's input and output in the next forward."""

    def __init__(self, model):
        self.seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.handles = [
            m.register_forward_hook(lambda mod, args, out, p=p: self.seen.__setitem__(p, (args[0], out)))
            for p, m in model.named_modules()
            if isinstance(m, BottleneckLayer)
        ]
        self.layers = {p: m for p, m in model.named_modules() if isinstance(m, BottleneckLayer)}

    def close(self):
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def tiny_bn():
    model = models.tiny_bert()
    for name in ("p1", "p2", "p3"):
        ah.add_adapter(model, name, ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    for name in ("h1", "h2"):
        ah.add_adapter(model, name, ah.BottleneckConfig(style="houlsby", reduction_factor=4, non_linearity="swish"))
    randomize(model, ["p1", "p2", "p3", "h1", "h2"], seed=1)
    return model


IDS = models.token_ids(96, batch=4, seq=8)


def test_stack_of_bottlenecks_feeds_each_into_the_next(tiny_bn):
    """AdapterHub's Stack: at a post-LN site LN(z2), z1 = z + A1(LN z), z2 = z1 + A2(LN z1); at an output
    site y1 = y + A1(y), y2 = y1 + A2(y1)."""
    model = copy.deepcopy(tiny_bn)
    sites = Sites(model)
    for names in (("p1", "p2"), ("h1", "h2")):
        run(model, Stack(*names), input_ids=IDS)
        checked = 0
        for path, (x, out) in sites.seen.items():
            layer = sites.layers[path]
            a1, a2 = (layer.adapters[n] for n in names) if names[0] in layer.adapters else (None, None)
            if a1 is None:
                continue
            if "LayerNorm" in path:
                ln = layer.base_layer
                z1 = x + a1(ln(x))
                expected = ln(z1 + a2(ln(z1)))
            else:
                y = layer.base_layer(x)
                y1 = y + a1(y)
                expected = y1 + a2(y1)
            assert_close(out, expected)
            checked += 1
        assert checked == (2 if names[0] == "p1" else 4)
        sites.seen.clear()
    sites.close()
    # a Stack is not the list (whose outputs add): LN(z + A1(LN z) + A2(LN z))
    assert (run(model, Stack("p1", "p2"), input_ids=IDS) - run(model, ["p1", "p2"], input_ids=IDS)).abs().max() > 1e-4


# --- the nesting matrix: bottleneck adapters (every block, Fuse included) --------------------------


def child_block(kind, rows):
    """kind("p1", "p2"), fitting a slot of `rows` rows."""
    if kind is BatchSplit:
        return BatchSplit("p1", "p2", batch_sizes=[1, rows - 1])
    if kind is Average:
        return Average("p1", "p2", weights=[0.7, 0.3])
    return kind("p1", "p2")


def parent_block(kind, child):
    if kind is BatchSplit:
        return BatchSplit(child, "p3", batch_sizes=[2, 2])
    if kind is Average:
        return Average(child, "p3", weights=[0.6, 0.4])
    return kind(child, "p3")


def tree(parent, child, n=4):
    return parent_block(parent, child_block(child, 2 if parent is BatchSplit else n))


def fuses(block):
    out = [] if isinstance(block, str) else [c for child in block.children for c in fuses(child)]
    return out + [block] if isinstance(block, Fuse) else out


def reference(block, z, layer):
    """The stream at a post-LN site after `block`, written from the blocks' definitions."""
    ln = layer.base_layer
    if isinstance(block, str):
        return z + layer.adapters[block](ln(z)) if block in layer.adapters else z
    if isinstance(block, Stack):
        for c in block.children:
            z = reference(c, z, layer)
        return z
    if isinstance(block, Average):
        return z + sum(w * (reference(c, z, layer) - z) for c, w in zip(block.children, block.effective_weights))
    if isinstance(block, (BatchSplit, Parallel)):
        n = z.shape[0] // len(block.children)
        sizes = block.batch_sizes if isinstance(block, BatchSplit) else [n] * len(block.children)
        parts, start = [], 0
        for c, size in zip(block.children, sizes):
            parts.append(reference(c, z[start : start + size], layer))
            start += size
        return torch.cat(parts)
    ds = [reference(c, z, layer) - z for c in block.children]
    return z + layer.fusions[block.fusion_name](ln(z), ds)


VALID = [(p, c) for p in BLOCKS for c in BLOCKS if c is not Parallel or p is Stack]
INVALID = [(p, Parallel) for p in BLOCKS if p is not Stack]


@pytest.mark.parametrize("parent,child", VALID, ids=lambda b: b.__name__)
def test_valid_nestings_give_the_defined_result(tiny_bn, parent, child):
    model = copy.deepcopy(tiny_bn)
    block = tree(parent, child)
    for i, fuse in enumerate(fuses(block)):
        ah.add_fusion(model, fuse, ah.FusionConfig(dropout=0.0), activate=False)
        randomize(model, [fuse.fusion_name], std=0.3, seed=10 + i)
    sites = Sites(model)
    out = run(model, block, input_ids=IDS)
    assert out.shape[0] == (8 if Parallel in (parent, child) else 4)
    for path, (z, site_out) in sites.seen.items():
        layer = sites.layers[path]
        if "LayerNorm" in path:
            with torch.no_grad():  # as the forward ran: the fusions take the same (cached) path
                assert_close(site_out, layer.base_layer(reference(block, z, layer)))
    sites.close()
    # row blocks, independently: each slot is what its child gives alone on those rows
    slot = child_block(child, 2 if parent is BatchSplit else 4)
    if parent is Parallel:
        assert_close(out[:4], run(model, slot, input_ids=IDS))
        assert_close(out[4:], run(model, "p3", input_ids=IDS))
    elif parent is BatchSplit:
        assert_close(out[:2], run(model, slot, input_ids=IDS[:2]))
        assert_close(out[2:], run(model, "p3", input_ids=IDS[2:]))
    assert (out[:4] - run(model, None, input_ids=IDS)).abs().max() > 1e-3  # adapters ran


@pytest.mark.parametrize("parent,child", INVALID, ids=lambda b: b.__name__)
def test_invalid_nestings_are_refused_before_any_forward(tiny_bn, parent, child):
    model = copy.deepcopy(tiny_bn)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    ah.set_active_adapters(model, Stack("p1"))
    block = tree(parent, child)
    with pytest.raises(UsageError, match=rf"Parallel cannot nest in {parent.__name__}: the batch is replicated once"):
        ah.set_active_adapters(model, block)
    assert calls == []
    assert ah.active_composition(model) == Stack("p1")  # left as it was


# --- the nesting matrix: LoRA adapters, against weighted deltas -----------------------------------


@pytest.fixture(scope="module")
def tiny_lora():
    model = models.tiny_bert()
    for i, name in enumerate(("l1", "l2", "l3")):
        ah.add_adapter(model, name, ah.LoRAConfig(r=2 + i, target_modules=["query", "value", "dense"], init="none"))
    return model


def lora_rows(block, rows):
    """For each row of the stream: (input row, {adapter: factor of its delta})."""
    if isinstance(block, str):
        return [(r, {block: 1.0}) for r in rows]
    if isinstance(block, (BatchSplit, Parallel)):
        n = len(rows) // len(block.children)
        sizes = block.batch_sizes if isinstance(block, BatchSplit) else [n] * len(block.children)
        out, start = [], 0
        for c, size in zip(block.children, sizes):
            out += lora_rows(c, rows[start : start + size])
            start += size
        return out
    weights = block.effective_weights if isinstance(block, Average) else [1.0] * len(block.children)
    per_child = [lora_rows(c, rows) for c in block.children]
    combined = []
    for i, r in enumerate(rows):
        factors: dict[str, float] = {}
        for w, rows_c in zip(weights, per_child):
            for name, f in rows_c[i][1].items():
                factors[name] = factors.get(name, 0.0) + w * f
        combined.append((r, factors))
    return combined


LORA_VALID = [(p, c) for p, c in VALID if Fuse not in (p, c)]


@pytest.mark.parametrize("parent,child", LORA_VALID, ids=lambda b: b.__name__)
def test_lora_nestings_are_weighted_deltas_per_row(tiny_lora, parent, child):
    block = Block.from_dict(_renamed(tree(parent, child).to_dict(), {"p1": "l1", "p2": "l2", "p3": "l3"}))
    out = run(tiny_lora, block, input_ids=IDS)
    copies = 2 if Parallel in (parent, child) else 1
    groups: dict[tuple, list[tuple[int, int]]] = {}  # rows with the same factors run together
    for i, (r, factors) in enumerate(lora_rows(block, list(range(4)) * copies)):
        groups.setdefault(tuple(sorted(factors.items())), []).append((i, r))
    expected = torch.empty_like(out)
    for factors, rows in groups.items():
        with scaled(tiny_lora, dict(factors)):
            got = run(tiny_lora, [n for n, f in factors if f], input_ids=IDS[[r for _, r in rows]])
        expected[[i for i, _ in rows]] = got
    assert_close(out, expected)


def _renamed(data, names):
    if isinstance(data, str):
        return names[data]
    return {**data, "children": [_renamed(c, names) for c in data["children"]]}


# --- the rules ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed():
    model = models.tiny_bert()
    ah.add_adapter(model, "l1", ah.LoRAConfig(r=2, target_modules=["query"], init="none"))
    ah.add_adapter(model, "p1", ah.BottleneckConfig(style="pfeiffer"))
    ah.add_adapter(model, "p2", ah.BottleneckConfig(style="pfeiffer"))
    ah.add_fusion(model, Fuse("p1", "p2"), activate=False)
    return model


REFUSED = [
    (lambda: Stack("l1", "nope"), NotFoundError, r"unknown adapter\(s\) 'nope'"),
    (lambda: Parallel(Stack("l1", Average("p1", "ghost"))), NotFoundError, "'ghost'"),
    (lambda: Fuse("l1", "p1"), UsageError, "'l1' is a lora adapter"),
    (lambda: Fuse(Stack("p1", "l1"), "p2"), UsageError, "'l1' is a lora adapter"),
    (lambda: Stack("p1,p2"), UsageError, "is a fusion, not an adapter"),
    (lambda: Fuse("p2", "p1"), NotFoundError, "no fusion of these children"),
    (lambda: Fuse("p1", "p2", name="other"), NotFoundError, "no fusion 'other'"),
    (lambda: Stack(Parallel("l1", "p1"), Parallel("p1", "p2")), UsageError, "two Parallel blocks"),
    (
        lambda: Stack(BatchSplit("l1", "p1", batch_sizes=[1, 2]), BatchSplit("l1", "p1", batch_sizes=2)),
        UsageError,
        "into 4 and 3 rows",
    ),
    (
        lambda: BatchSplit(BatchSplit("l1", "p1", batch_sizes=2), "p2", batch_sizes=[3, 1]),
        UsageError,
        "slot has 3 rows",
    ),
    (lambda: "not a block or name", NotFoundError, "unknown adapter"),
    (lambda: 42, UsageError, "expected an adapter name"),
]


@pytest.mark.parametrize("make,error,message", REFUSED)
def test_bad_trees_are_refused_when_activated(mixed, make, error, message):
    with pytest.raises(error, match=message):
        ah.set_active_adapters(mixed, make())


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: Average("a", "b", weights=[1]), "2 children but 1 weights"),
        (lambda: Average("a", "b", weights=[1, math.nan]), "finite numbers"),
        (lambda: Average("a", "b", weights=[1, math.inf]), "finite numbers"),
        (lambda: Average("a", "b", weights=[True, 1]), "finite numbers"),
        (lambda: Average("a", "b", weights="ab"), "a list of numbers"),
        (lambda: Average("a", "b", weights=[1, -1]), "sum to 0"),
        (lambda: BatchSplit("a", "b", batch_sizes=[1, 0]), "positive integers"),
        (lambda: BatchSplit("a", "b", batch_sizes=[2]), "2 children but 1 batch sizes"),
        (lambda: BatchSplit("a", "b", batch_sizes=-1), "positive integers"),
        (lambda: BatchSplit("a", batch_sizes=[1.5]), "positive integers"),
        (lambda: Stack(), "at least one child"),
        (lambda: Stack("a", 3), "adapter names or blocks"),
        (lambda: Parallel(""), "adapter names or blocks"),
        (lambda: Fuse("a", "a"), "appears twice"),
        (lambda: Fuse("a", name="x.y"), "without '.'"),
        (lambda: Block.from_dict({"block": "stack", "children": ["a"], "weights": [1]}), "unexpected fields"),
        (lambda: Block.from_dict({"block": "nope"}), "'block' one of"),
    ],
)
def test_bad_blocks_are_refused_when_built(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def test_negative_weights_without_normalizing_are_a_difference_of_deltas(tiny_lora):
    out = run(tiny_lora, Average("l1", "l2", weights=[1, -1], normalize_weights=False), input_ids=IDS)
    with scaled(tiny_lora, {"l2": -1.0}):
        expected = run(tiny_lora, ["l1", "l2"], input_ids=IDS)
    assert_close(out, expected)


def test_batch_that_does_not_fit_is_refused_at_the_model_input(mixed):
    model = copy.deepcopy(mixed)
    ran = []
    for m in model.modules():
        if isinstance(m, (LoRALayer, BottleneckLayer)):
            m.register_forward_pre_hook(lambda *a: ran.append(1))
    ah.set_active_adapters(model, BatchSplit("l1", "p1", batch_sizes=[1, 2]))
    with pytest.raises(UsageError, match=r"sum to 3, but the batch has 4 rows"):
        run(model, ah.active_composition(model), input_ids=IDS)
    assert ran == []  # refused before any layer ran
    assert run(model, ah.active_composition(model), input_ids=IDS[:3]).shape[0] == 3


# --- living with the rest of the API --------------------------------------------------------------


def test_lists_and_none_still_work_after_a_composition(mixed):
    model = copy.deepcopy(mixed)
    listed = run(model, ["l1", "p1"], input_ids=IDS)
    run(model, Parallel("l1", "p1"), input_ids=IDS)
    assert any(h is input_hook for h in model._forward_pre_hooks.values())
    assert torch.equal(run(model, ["l1", "p1"], input_ids=IDS), listed)
    assert not any(h is input_hook for h in model._forward_pre_hooks.values())  # no replication left behind
    assert ah.active_composition(model) is None
    assert torch.equal(run(model, None, input_ids=IDS), models.hidden(models.tiny_bert(), IDS))


def test_disable_adapters_and_deep_copies_keep_the_composition(mixed):
    model = copy.deepcopy(mixed)
    block = Parallel("l1", Fuse("p1", "p2"))
    out = run(model, block, input_ids=IDS)
    with ah.disable_adapters(model):
        assert models.hidden(model, IDS).shape[0] == 4
    assert ah.active_composition(model) == block
    assert torch.equal(models.hidden(model, IDS), out)
    clone = copy.deepcopy(model)  # the input hook reads the copy's own state
    assert torch.equal(models.hidden(clone, IDS), out)
    ah.set_active_adapters(clone, "l1")
    assert models.hidden(model, IDS).shape[0] == 8


def test_compositions_and_merges_exclude_each_other(mixed):
    model = copy.deepcopy(mixed)
    ah.set_active_adapters(model, Stack("l1"))
    with pytest.raises(UsageError, match="before merging"):
        ah.merge_adapters(model)
    ah.set_active_adapters(model, "l1")
    ah.merge_adapters(model)
    with pytest.raises(UsageError, match="unmerge_adapters"):
        ah.set_active_adapters(model, Stack("l1", "p1"))


def test_adapters_in_the_active_composition_cannot_be_deleted(mixed):
    model = copy.deepcopy(mixed)
    ah.set_active_adapters(model, Average("l1", "p1"))
    with pytest.raises(UsageError, match="part of the active composition"):
        ah.delete_adapter(model, "p1")
    ah.add_adapter(model, "later", ah.LoRAConfig(r=2, target_modules=["key"]), activate=False)
    assert ah.active_composition(model) == Average("l1", "p1")  # a new adapter leaves it running
    ah.set_active_adapters(model, "l1")
    with pytest.raises(UsageError, match="fused by 'p1,p2'"):
        ah.delete_adapter(model, "p1")
    ah.delete_adapter(model, "p1,p2")
    ah.delete_adapter(model, "p1")


def test_module_copies_cannot_run_per_row():
    model = models.bert_classifier()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, target_modules=["query"]))
    ah.add_head(model, "a", ah.ModuleCopy("classifier"))
    ah.add_adapter(model, "b", ah.LoRAConfig(r=2, target_modules=["query"]))
    ah.set_active_adapters(model, Stack("a", "b"))  # one copy for every row: fine
    with pytest.raises(UsageError, match="trained copy of classifier"):
        ah.set_active_adapters(model, Parallel("a", "b"))


def test_dora_in_a_stack_runs_as_in_a_list():
    model = models.tiny_bert()
    ah.add_adapter(model, "l", ah.LoRAConfig(r=2, target_modules=["query", "value"], init="none"))
    ah.add_adapter(model, "d", ah.LoRAConfig(r=2, target_modules=["value"], init="none", dora=True))
    models.randomize_magnitudes(model)
    assert_close(run(model, Stack("l", "d"), input_ids=IDS), run(model, ["l", "d"], input_ids=IDS))
    both = run(model, Parallel("d", Stack("l", "d")), input_ids=IDS)
    assert_close(both[:4], run(model, "d", input_ids=IDS))


def test_blocks_round_trip_through_json():
    block = Stack("a", Parallel(Average("b", "c", weights=[2, 1]), BatchSplit("a", Fuse("b", "c"), batch_sizes=[1, 2])))
    again = Block.from_dict(block.to_dict())
    assert again == block and hash(again) == hash(block)
    assert repr(again) == repr(block)
    assert block.names() == ["a", "b", "c"]
    assert Fuse("b", Stack("c", "a")).fusion_name == "b,Stack(c,a)"


def test_labels_are_replicated_for_a_task_model():
    model = models.bert_classifier()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, target_modules=["query"], init="none"))
    ah.set_active_adapters(model, Parallel("a", Stack("a")))
    out = model(input_ids=IDS, labels=torch.tensor([0, 1, 2, 0]))
    assert out.logits.shape == (8, 3)
    assert torch.isfinite(out.loss)
