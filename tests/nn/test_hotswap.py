"""hotswap: an attached LoRA adapter's weights replaced in place (lower ranks zero-padded, scales folded into
B), so nothing a compiled graph guards on changes; hotswap_metadata: what serving groups adapters by."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch._dynamo.utils import counters

import adapterhub_client as ah
from adapterhub_client.errors import NotFoundError, UsageError
from adapterhub_client.formats import save_adapter
from adapterhub_client.formats.package import read_package
from adapterhub_client.nn.lora import LoRALayer
from adapterhub_client.nn.model import adapter_tensors
from tests import models

assert_close = models.assert_close
QV = ["query", "value"]


def add_random(model, name: str, config: ah.LoRAConfig, seed: int, std: float = 0.3) -> None:
    """A LoRA whose B is random too (as after training: not a no-op); DoRA magnitudes perturbed."""
    ah.add_adapter(model, name, config, activate=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in adapter_tensors(model, name).items():
            if key.endswith("lora_B"):
                t.copy_(torch.randn(t.shape, generator=g) * std)
            elif key.endswith("lora_magnitude_vector"):
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=g))


def run(model, ids, name):
    ah.set_active_adapters(model, name)
    return models.hidden(model, ids)


def snapshot(model) -> dict[str, object]:
    """What must not change: the modules and parameter objects (and their storage), and every float on the
    LoRA layers."""
    lora = [m for m in model.modules() if isinstance(m, LoRALayer)]
    return {
        "modules": [id(m) for m in model.modules()],
        "params": [(id(p), p.data_ptr()) for p in model.parameters()],
        "floats": [(dict(m.scaling), dict(m.dropout), dict(m.r)) for m in lora],
    }


@pytest.fixture
def tiny():
    model = models.tiny_bert()
    add_random(model, "a", ah.LoRAConfig(r=8, alpha=16, target_modules=QV), seed=1)
    add_random(model, "b", ah.LoRAConfig(r=4, alpha=3, rslora=True, target_modules=QV), seed=2)
    add_random(model, "big", ah.LoRAConfig(r=16, target_modules=QV), seed=3)
    add_random(model, "q", ah.LoRAConfig(r=4, target_modules=["query"]), seed=4)
    add_random(model, "d", ah.LoRAConfig(r=8, dora=True, target_modules=QV), seed=5)
    add_random(model, "d2", ah.LoRAConfig(r=2, alpha=5, dora=True, target_modules=QV), seed=6)
    return model


@pytest.fixture(scope="module")
def ids():
    return models.token_ids(96)


def test_lower_rank_from_another_adapter_is_padded_in_place(tiny, ids):
    expected = run(tiny, ids, "b")
    assert (run(tiny, ids, "a") - expected).abs().max() > 1e-2  # the two differ before the swap
    before = snapshot(tiny)
    paths = ah.hotswap(tiny, "a", "b")
    assert len(paths) == 4 and snapshot(tiny) == before
    assert_close(run(tiny, ids, "a"), expected, 1e-5)
    layer = next(m for m in tiny.modules() if isinstance(m, LoRALayer))
    assert layer.r["a"] == 8 and torch.count_nonzero(layer.lora_A["a"][4:]) == 0  # zero-padded rows
    assert torch.count_nonzero(layer.lora_B["a"][:, 4:]) == 0


def test_minilm_swap_from_a_saved_package(tmp_path):
    model = models.minilm()
    ids = models.token_ids(1000, batch=2, seq=12)
    add_random(model, "slot", ah.LoRAConfig(r=8, alpha=8, target_modules=QV), seed=1, std=0.05)
    add_random(model, "new", ah.LoRAConfig(r=4, alpha=16, target_modules=QV), seed=2, std=0.05)
    expected = run(model, ids, "new")
    save_adapter(model, "new", tmp_path / "pkg", name="acme/new", version="1.0.0")
    ah.delete_adapter(model, "new")
    config, tensors, _ = read_package(tmp_path / "pkg")
    before = snapshot(model)
    ah.hotswap(model, "slot", tensors, config=config)
    assert snapshot(model) == before
    assert_close(run(model, ids, "slot"), expected, 1e-5)


def test_dora_swaps_with_dora_and_its_magnitudes(tiny, ids):
    expected = run(tiny, ids, "d2")
    ah.hotswap(tiny, "d", "d2")
    assert_close(run(tiny, ids, "d"), expected, 1e-5)


def test_under_torch_compile_a_swap_does_not_recompile(tiny, ids):
    expected = run(copy.deepcopy(tiny), ids, "b")
    ah.set_active_adapters(tiny, "a")
    eager_a = models.hidden(tiny, ids)
    torch._dynamo.reset()
    compiled = torch.compile(tiny, backend="eager")
    with torch.no_grad():
        assert_close(compiled(input_ids=ids).last_hidden_state, eager_a, 1e-5)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1
        ah.hotswap(tiny, "a", "b")
        assert_close(compiled(input_ids=ids).last_hidden_state, expected, 1e-5)
        assert counters["stats"]["unique_graphs"] == graphs  # the same graph ran the new weights
        # what the swap avoids: a changed float on a layer is guarded on, and recompiles
        next(m for m in tiny.modules() if isinstance(m, LoRALayer)).scaling["a"] *= 2
        compiled(input_ids=ids)
        assert counters["stats"]["unique_graphs"] > graphs
    torch._dynamo.reset()


# --- refusals: checked before anything is written ------------------------------------------------


@pytest.mark.parametrize(
    "target, source, error, match",
    [
        ("a", "big", UsageError, r"rank 16 \(lora_A \(16, 32\), lora_B \(32, 16\)\), higher than adapter 'a'.s rank 8"),
        ("a", "q", UsageError, "no weights for encoder.layer.0.attention.self.value"),
        ("q", "a", UsageError, "adapts encoder.layer.0.attention.self.value, which adapter 'q' does not"),
        ("a", "d2", UsageError, "DoRA and adapter 'a' is plain LoRA"),
        ("d", "b", UsageError, "plain LoRA and adapter 'd' is DoRA"),
        ("a", "a", UsageError, "itself"),
        ("a", "nope", NotFoundError, "'nope'"),
        ("nope", "a", NotFoundError, "'nope'"),
    ],
)
def test_what_does_not_fit_is_refused_and_nothing_changes(tiny, target, source, error, match):
    before = {n: {k: t.clone() for k, t in adapter_tensors(tiny, n).items()} for n in ("a", "q", "d")}
    with pytest.raises(error, match=match):
        ah.hotswap(tiny, target, source)
    for n, tensors in before.items():
        assert all(torch.equal(t, adapter_tensors(tiny, n)[k]) for k, t in tensors.items())


def test_tensor_sources_need_their_config_and_lora_keys_only(tiny):
    tensors = adapter_tensors(tiny, "b")
    with pytest.raises(UsageError, match="config="):
        ah.hotswap(tiny, "a", tensors)
    config = ah.LoRAConfig(r=4, alpha=3, rslora=True, target_modules=QV)
    extra = dict(tensors) | {"encoder.layer.0.attention.self.query.bias": torch.zeros(32)}
    with pytest.raises(UsageError, match="not a LoRA factor"):
        ah.hotswap(tiny, "a", extra, config=config)
    other = dict(tensors) | {"encoder.layer.0.attention.self.key.lora_A": torch.zeros(4, 32)}
    other["encoder.layer.0.attention.self.key.lora_B"] = torch.zeros(32, 4)
    with pytest.raises(UsageError, match="adapts encoder.layer.0.attention.self.key, which adapter 'a' does not"):
        ah.hotswap(tiny, "a", other, config=config)
    wrong = dict(tensors) | {"encoder.layer.0.attention.self.query.lora_A": torch.zeros(4, 16)}
    with pytest.raises(UsageError, match=r"lora_A \(4, 16\).*do not fit"):
        ah.hotswap(tiny, "a", wrong, config=config)


def test_merged_and_bottleneck_adapters_are_refused(tiny):
    ah.add_adapter(tiny, "bn", ah.BottleneckConfig(), activate=False)
    with pytest.raises(UsageError, match="bottleneck adapter"):
        ah.hotswap(tiny, "bn", "a")
    ah.set_active_adapters(tiny, "a")
    ah.merge_adapters(tiny)
    with pytest.raises(UsageError, match="'a' is merged"):
        ah.hotswap(tiny, "a", "b")


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_groups_adapters_for_serving(tiny):
    ah.add_adapter(
        tiny,
        "p",
        ah.LoRAConfig(r=8, alpha=16, rslora=True, target_modules=QV, rank_pattern={"value": 2}),
        activate=False,
    )
    ah.add_adapter(tiny, "bn", ah.BottleneckConfig(), activate=False)
    meta = ah.hotswap_metadata(tiny, "p")
    value_paths = {f"encoder.layer.{i}.attention.self.value": 2 for i in (0, 1)}
    assert meta["kind"] == "lora" and meta["variant"] == "rslora"
    assert meta["target_modules"] == ["query", "value"] and meta["layers"] == ["linear"] and meta["modules"] == 4
    assert meta["rank"] == {"max": 8, "default": 8, "modules": value_paths}
    assert meta["alpha"] == {"default": 16, "modules": {}}
    assert meta["heads"] == []
    assert ah.hotswap_metadata(tiny, "d")["variant"] == "dora"
    assert ah.hotswap_metadata(tiny, "a")["rank"] == {"max": 8, "default": 8, "modules": {}}
    # same modules, same digest; another target set, another one
    assert meta["modules_sha256"] == ah.hotswap_metadata(tiny, "a")["modules_sha256"]
    assert meta["modules_sha256"] != ah.hotswap_metadata(tiny, "q")["modules_sha256"]
    bn = ah.hotswap_metadata(tiny, "bn")
    assert bn["kind"] == "bottleneck" and bn["variant"] == "pfeiffer" and "alpha" not in bn
    assert bn["rank"]["max"] == 2  # hidden 32 // reduction 16
    with pytest.raises(NotFoundError):
        ah.hotswap_metadata(tiny, "nope")


def test_the_manifest_records_the_serving_metadata_and_info_shows_it(tiny, tmp_path, cli):
    pkg = save_adapter(tiny, "b", tmp_path / "pkg", name="acme/serve", version="1.0.0")
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["adapter"]["serving"] == ah.hotswap_metadata(tiny, "b")
    assert cli("publish", str(pkg)).code == 0
    r = cli("info", "acme/serve")
    assert r.code == 0, r.err
    assert "serving:    rslora, rank 4, 4 modules (query, value)" in r.out
