"""merge_weighted: a new LoRA adapter whose delta is (exact) or approximates (svd, ties, dare) the weighted
sum of the adapters' deltas. Every reference is computed here from the adapters' tensors, independently
of the merge code: ``W + sum_i w_i s_i B_i A_i`` written into a plain copy of the base."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import adapterhub_client as ah
from adapterhub_client.errors import AdapterWarning, NotFoundError, UsageError
from adapterhub_client.formats import export_peft, load_adapter, save_adapter
from adapterhub_client.nn.merge import dare_combine, ties_combine
from adapterhub_client.nn.model import adapter_tensors
from tests import models

assert_close = models.assert_close
# a: r=4 on query/value; b: r=8, another alpha, rsLoRA, on query/key: ranks, alphas, scales and targets differ
A_CFG = {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}
B_CFG = {"r": 8, "alpha": 4, "rslora": True, "target_modules": ["query", "key"]}


def scale(cfg: dict) -> float:
    return cfg["alpha"] / (math.sqrt(cfg["r"]) if cfg.get("rslora") else cfg["r"])


def add_random(model, name: str, cfg: dict, seed: int, std: float = 0.05) -> None:
    """A LoRA whose B is random too (as after training: not a no-op)."""
    ah.add_adapter(model, name, ah.LoRAConfig(**cfg), activate=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for path, t in adapter_tensors(model, name).items():
            if path.endswith("lora_B"):
                t.copy_(torch.randn(t.shape, generator=g) * std)


def deltas(model, name: str, cfg: dict) -> dict[str, torch.Tensor]:
    """``{path: s B A}`` as ``[out, in]``, from the adapter's own tensors."""
    t = adapter_tensors(model, name)
    paths = [k.removesuffix(".lora_A") for k in t if k.endswith(".lora_A")]
    return {p: scale(cfg) * t[f"{p}.lora_B"] @ t[f"{p}.lora_A"] for p in paths}


def with_delta(plain: nn.Module, terms: list[tuple[float, dict[str, torch.Tensor]]]) -> nn.Module:
    """A copy of the plain base with ``W += sum w dW`` written into its weights."""
    out = copy.deepcopy(plain)
    with torch.no_grad():
        for w, dw in terms:
            for path, d in dw.items():
                module = out.get_submodule(path)
                module.weight += w * (d if isinstance(module, nn.Linear) else d.T)  # Conv1D, Embedding: [in, out]
    return out


def run(model, ids, name=None):
    if name is not None:
        ah.set_active_adapters(model, name)
    return models.hidden(model, ids)


@pytest.fixture(scope="module")
def plain_minilm():
    return models.minilm()


@pytest.fixture(scope="module")
def minilm_ab(plain_minilm):
    model = copy.deepcopy(plain_minilm)
    add_random(model, "a", A_CFG, seed=1)
    add_random(model, "b", B_CFG, seed=2)
    return model


@pytest.fixture
def ab(minilm_ab):
    return copy.deepcopy(minilm_ab)


@pytest.fixture(scope="module")
def ids():
    return models.token_ids(1000, batch=2, seq=12)


@pytest.fixture
def tiny_ab():
    model = models.tiny_bert()
    add_random(model, "a", A_CFG, seed=1, std=0.3)
    add_random(model, "b", B_CFG, seed=2, std=0.3)
    return model


# --- exact, on MiniLM ---------------------------------------------------------------------------


def test_an_adapter_minus_itself_gives_the_base(ab, plain_minilm, ids):
    base = run(plain_minilm, ids)
    assert (run(ab, ids, "a") - base).abs().max() > 1e-2  # the adapter does change the outputs
    report = ah.merge_weighted(ab, [("a", 1.0), ("a", -1.0)], "zero")
    assert_close(run(ab, ids, "zero"), base, 1e-5)
    assert report.error < 1e-6
    assert set(report.ranks.values()) == {8}  # 4 + 4: exact keeps both
    assert any("cancel" in n for n in report.notes)


def test_exact_a_plus_b_equals_both_active(ab, ids):
    both = run(ab, ids, ["a", "b"])
    report = ah.merge_weighted(ab, {"a": 1.0, "b": 1.0}, "sum")
    info = next(a for a in ah.list_adapters(ab) if a.name == "sum")
    assert info.kind == "lora" and not info.active  # the selection is left alone until asked
    assert_close(run(ab, ids, "sum"), both, 1e-5)
    assert report.method == "exact" and report.exact and report.error < 1e-6 and not report.notes
    ranks = report.ranks
    assert ranks["encoder.layer.0.attention.self.query"] == 12  # both adapters: 4 + 8
    assert ranks["encoder.layer.0.attention.self.value"] == 4  # a only
    assert ranks["encoder.layer.0.attention.self.key"] == 8  # b only
    assert len(ranks) == 18 and report.max_rank == 12


@pytest.mark.parametrize("wa, wb", [(0.5, 0.5), (0.7, -0.3)])
def test_exact_weighted_merge_equals_the_weighted_deltas(ab, plain_minilm, ids, wa, wb):
    direct = with_delta(plain_minilm, [(wa, deltas(ab, "a", A_CFG)), (wb, deltas(ab, "b", B_CFG))])
    expected = run(direct, ids)
    report = ah.merge_weighted(ab, {"a": wa, "b": wb}, "mix")
    assert_close(run(ab, ids, "mix"), expected, 1e-5)
    assert report.weights == (("a", wa), ("b", wb)) and report.error < 1e-6
    assert all(m.error < 1e-6 for m in report.modules)


def test_merged_adapter_saves_and_reloads_with_the_same_outputs(ab, plain_minilm, ids, tmp_path):
    ah.merge_weighted(ab, {"a": 0.7, "b": -0.3}, "mix")
    expected = run(ab, ids, "mix")
    save_adapter(ab, "mix", tmp_path / "pkg", name="acme/mix", version="1.0.0")
    fresh = copy.deepcopy(plain_minilm)
    load_adapter(fresh, tmp_path / "pkg", "mix")
    assert_close(run(fresh, ids, "mix"), expected, 1e-6)


def test_merged_adapter_exports_to_peft_with_the_same_outputs(ab, plain_minilm, ids, tmp_path):
    peft = pytest.importorskip("peft")
    ah.merge_weighted(ab, {"a": 0.5, "b": 0.5}, "mix")
    expected = run(ab, ids, "mix")
    export_peft(ab, "mix", tmp_path / "peft")
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(plain_minilm), tmp_path / "peft").eval()
    ranks = {n.removesuffix(".lora_A.default.weight"): p.shape[0] for n, p in pm.named_parameters() if "lora_A" in n}
    assert sorted(set(ranks.values())) == [4, 8, 12]  # per-module ranks read back by PEFT
    with torch.no_grad():
        got = pm(input_ids=ids).last_hidden_state
    assert_close(got, expected, 1e-5)


# --- exact on other layouts: GPT-2 Conv1D and embeddings, different target sets ------------------


def test_exact_merge_on_conv1d_and_embedding_modules():
    plain = models.tiny_gpt2()
    model = copy.deepcopy(plain)
    cfg_a = {"r": 2, "alpha": 4, "target_modules": ["c_attn"]}
    cfg_b = {"r": 3, "alpha": 6, "rslora": True, "target_modules": ["c_attn", "c_proj", "wte"]}
    add_random(model, "a", cfg_a, seed=3, std=0.3)
    add_random(model, "b", cfg_b, seed=4, std=0.3)
    ids = models.token_ids(96)
    direct = with_delta(plain, [(0.7, deltas(model, "a", cfg_a)), (-0.3, deltas(model, "b", cfg_b))])
    report = ah.merge_weighted(model, {"a": 0.7, "b": -0.3}, "mix")
    assert_close(run(model, ids, "mix"), run(direct, ids), 1e-5)
    assert report.ranks["wte"] == 3 and report.ranks["h.0.attn.c_attn"] == 5


# --- svd, ties, dare ----------------------------------------------------------------------------


def test_svd_error_falls_with_rank_and_is_zero_at_full_rank(tiny_ab):
    dw_a, dw_b = deltas(tiny_ab, "a", A_CFG), deltas(tiny_ab, "b", B_CFG)
    errors = []
    for k in (1, 2, 4, 8, 12):
        report = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, f"s{k}", method="svd", rank=k)
        errors.append(report.error)
        assert report.max_rank == k and report.method == "svd" and report.notes
        # the reported error is the attached adapter's, measured here from its tensors
        got = {p: d for p, d in deltas(tiny_ab, f"s{k}", {"r": 1, "alpha": 1}).items()}
        err_sq = tgt_sq = 0.0
        for p, d in got.items():
            target = 0.5 * dw_a.get(p, 0) + 0.5 * dw_b.get(p, 0)
            err_sq += float((d - target).norm()) ** 2
            tgt_sq += float(torch.as_tensor(target).norm()) ** 2
        assert report.error == pytest.approx(math.sqrt(err_sq / tgt_sq), rel=1e-3, abs=1e-6)
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.1 and errors[-1] < 1e-6  # 12 = 4 + 8: nothing left to lose


def test_svd_rank_above_what_exists_is_capped_and_said(tiny_ab):
    report = ah.merge_weighted(tiny_ab, {"a": 1.0, "b": 1.0}, "s", method="svd", rank=64)
    assert report.ranks["encoder.layer.0.attention.self.query"] == 12  # the exact delta's rank
    assert report.ranks["encoder.layer.0.attention.self.value"] == 4
    assert report.error < 1e-6 and any("capped" in n for n in report.notes)


def test_dare_is_reproducible_with_a_seed_and_differs_with_another(tiny_ab):
    first = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "d1", method="dare", density=0.5, seed=7)
    again = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "d2", method="dare", density=0.5, seed=7)
    other = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "d3", method="dare", density=0.5, seed=8)
    t1, t2, t3 = (adapter_tensors(tiny_ab, n) for n in ("d1", "d2", "d3"))
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    assert not all(torch.equal(t1[k], t3[k]) for k in t1)
    assert first.seed == 7 and first.error == again.error != other.error
    assert 0.05 < first.error < 2 and any("approximation by design" in n for n in first.notes)
    drawn = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "d4", method="dare", density=0.5)
    assert isinstance(drawn.seed, int)  # reported, so the merge can be reproduced


def test_dare_at_density_one_and_full_rank_is_the_exact_sum(tiny_ab):
    report = ah.merge_weighted(tiny_ab, {"a": 0.7, "b": -0.3}, "d", method="dare", density=1.0, seed=0)
    assert report.error < 1e-5


def test_ties_is_deterministic_and_approximates(tiny_ab):
    one = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "t1", method="ties", density=0.3)
    two = ah.merge_weighted(tiny_ab, {"a": 0.5, "b": 0.5}, "t2", method="ties", density=0.3)
    t1, t2 = adapter_tensors(tiny_ab, "t1"), adapter_tensors(tiny_ab, "t2")
    assert all(torch.equal(t1[k], t2[k]) for k in t1) and one.error == two.error
    assert 0.05 < one.error < 2 and any("approximation by design" in n for n in one.notes)


def test_ties_combine_trims_elects_and_averages():
    a = torch.tensor([[4.0, -1.0, 2.0, 0.5]])
    b = torch.tensor([[2.0, 3.0, -6.0, 0.1]])
    # density 0.5 keeps the top 2 of 4: a -> [4, 0, 2, 0], b -> [0, 3, -6, 0]; signs elected by the sum
    # [4, 3, -4, 0] -> [+, +, -, +]; agreeing entries averaged: [4, 3, -6, 0]
    assert torch.equal(ties_combine([a, b], [1.0, 1.0], 0.5), torch.tensor([[4.0, 3.0, -6.0, 0.0]]))
    # weights apply before trimming and electing: 0.5 a and 0.5 b agree on the first entry -> mean
    both = ties_combine([a, a], [0.5, 0.5], 1.0)
    assert torch.equal(both, 0.5 * a)


def test_dare_combine_drops_and_rescales():
    d = torch.ones(200, 50)
    out = dare_combine([d], [2.0], 0.25, torch.Generator().manual_seed(0))
    values = set(out.unique().tolist())
    assert values == {0.0, 8.0}  # kept entries: 2 * 1 / 0.25
    assert 0.2 < (out != 0).float().mean().item() < 0.3


# --- DoRA and bottleneck -------------------------------------------------------------------------


def test_dora_is_refused_exact_and_merged_by_its_effective_change_with_svd():
    model = models.tiny_bert()
    ids = models.token_ids(96)
    add_random(model, "d", {"r": 4, "alpha": 8, "dora": True, "target_modules": ["query", "value"]}, seed=5, std=0.3)
    models.randomize_magnitudes(model)
    dora_out = run(model, ids, "d")
    with pytest.raises(UsageError, match="'d' is DoRA"):
        ah.merge_weighted(model, {"d": 1.0}, "x")
    with pytest.warns(AdapterWarning, match="DoRA"):
        full = ah.merge_weighted(model, {"d": 1.0}, "full", method="svd", rank=32)  # 32 = hidden: full rank
    assert full.error < 1e-5
    assert_close(run(model, ids, "full"), dora_out, 1e-4)
    with pytest.warns(AdapterWarning):
        low = ah.merge_weighted(model, {"d": 1.0}, "low", method="svd")  # default rank 4: an approximation
    assert low.error > 0.1


def test_bottleneck_adapters_are_refused():
    model = models.tiny_bert()
    ah.add_adapter(model, "bn", ah.BottleneckConfig())
    add_random(model, "a", A_CFG, seed=1)
    for method in ("exact", "svd"):
        with pytest.raises(UsageError, match="'bn' is a bottleneck adapter"):
            ah.merge_weighted(model, {"a": 1.0, "bn": 1.0}, "x", method=method)
    assert [a.name for a in ah.list_adapters(model)] == ["bn", "a"]


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, kwargs, error, match",
    [
        ({}, {}, UsageError, "empty"),
        ({"nope": 1.0}, {}, NotFoundError, "'nope'"),
        ({"a": float("nan")}, {}, UsageError, "finite"),
        ({"a": "1"}, {}, UsageError, "finite number"),
        ("a", {}, UsageError, "pairs"),
        ({"a": 1.0}, {"method": "mean"}, UsageError, "unknown merge method"),
        ({"a": 1.0}, {"rank": 4}, UsageError, "exact"),
        ({"a": 1.0}, {"method": "svd", "rank": 0}, UsageError, "positive integer"),
        ({"a": 1.0}, {"method": "ties"}, UsageError, "needs density"),
        ({"a": 1.0}, {"method": "dare", "density": 1.5}, UsageError, r"\(0, 1\]"),
        ({"a": 1.0}, {"method": "svd", "density": 0.5}, UsageError, "density applies"),
        ({"a": 1.0}, {"method": "ties", "density": 0.5, "seed": 1}, UsageError, "seed applies"),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(tiny_ab, weights, kwargs, error, match):
    with pytest.raises(error, match=match):
        ah.merge_weighted(tiny_ab, weights, "x", **kwargs)
    assert [a.name for a in ah.list_adapters(tiny_ab)] == ["a", "b"]


def test_merged_adapters_and_taken_names_are_refused(tiny_ab):
    with pytest.raises(UsageError, match="already exists"):
        ah.merge_weighted(tiny_ab, {"a": 1.0}, "b")
    ah.set_active_adapters(tiny_ab, "a")
    ah.merge_adapters(tiny_ab)
    with pytest.raises(UsageError, match="'a' is merged"):
        ah.merge_weighted(tiny_ab, {"a": 1.0, "b": 1.0}, "x")


def test_adapters_with_task_heads_are_refused():
    model = models.bert_classifier()
    add_random(model, "a", A_CFG, seed=1)
    ah.add_head(model, "a", ah.ModuleCopy("classifier"))
    with pytest.raises(UsageError, match="task heads"):
        ah.merge_weighted(model, {"a": 1.0}, "x")
