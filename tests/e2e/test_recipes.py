"""Recipes as packages (issue 11): a composition saved with `save_composition` publishes as a package whose
manifest lists its parts as dependencies; `install` pulls and pins every part (the lockfile too),
`Hub.attach(model, "org/recipe")` checks every part against the model before any weight is fetched,
attaches them all and activates the composition with the outputs of the model that saved it, and
`adapters info` shows the tree. On the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.errors import IncompatibleError, UsageError
from adapterhub_client.nn.model import adapter_tensors
from tests import models


def randomize(model, name: str, seed: int) -> None:
    """Trained-looking weights: every tensor of the adapter redrawn (a fresh LoRA's B is zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in adapter_tensors(model, name).values():
            t.copy_(torch.randn(t.shape, generator=g) * 0.05)


@pytest.fixture(scope="module")
def minilm():
    return models.minilm()


@pytest.fixture(scope="module")
def ids():
    return models.token_ids(1000, batch=3, seq=12, seed=3)


def outputs(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


@pytest.fixture
def recipe(minilm, ids, tmp_path, cli):
    """Parts a (LoRA on query/value), b (LoRA on key/dense, rsLoRA) and x, y (bottlenecks) with a fusion of
    x and y, published; the recipe Stack(Fuse(x, y), Average(a, b, weights=[0.3, 0.7])) published over them.
    Returns (expected outputs, recipe block)."""
    import copy

    model = copy.deepcopy(minilm)
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["query", "value"]), activate=False)
    ah.add_adapter(
        model, "b", ah.LoRAConfig(r=8, alpha=4, rslora=True, target_modules=["key", "dense"]), activate=False
    )
    ah.add_adapter(model, "x", ah.BottleneckConfig(), activate=False)
    ah.add_adapter(model, "y", ah.BottleneckConfig(reduction_factor=8), activate=False)
    for i, name in enumerate("abxy"):
        randomize(model, name, seed=i)
    fuse = ah.Fuse("x", "y")
    fusion = ah.add_fusion(model, fuse, activate=False)
    randomize(model, fusion, seed=9)
    parts = {"a": ("acme/part-a", "1.0.0"), "b": ("acme/part-b", "1.2.0"), "x": ("acme/bn-x", "1.0.0")}
    parts["y"] = ("acme/bn-y", "2.0.0")
    for name, (package, version) in parts.items():
        pkg = ah.save_adapter(model, name, tmp_path / name, name=package, version=version)
        assert cli("publish", str(pkg)).code == 0
    fusion_pkg = ah.save_fusion(
        model,
        fuse,
        tmp_path / "fusion",
        name="acme/fusion-xy",
        version="1.0.0",
        parts={"x": "acme/bn-x", "y": "acme/bn-y"},
    )
    assert cli("publish", str(fusion_pkg)).code == 0
    block = ah.Stack(fuse, ah.Average("a", "b", weights=[0.3, 0.7]))
    ah.set_active_adapters(model, block)
    expected = outputs(model, ids)
    with ah.disable_adapters(model):
        assert not torch.allclose(outputs(model, ids), expected, atol=1e-3)  # the recipe does something
    pkg = ah.save_composition(
        model,
        block,
        tmp_path / "recipe",
        name="acme/recipe",
        version="1.0.0",
        parts={
            "a": "acme/part-a",
            "b": {"name": "acme/part-b", "specifier": ">=1.1,<2"},
            "x": "acme/bn-x",
            "y": "acme/bn-y",
            fusion: "acme/fusion-xy",
        },
    )
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["adapter"]["type"] == "composition"
    assert {d["name"] for d in manifest["dependencies"]} == {
        "acme/part-a", "acme/part-b", "acme/bn-x", "acme/bn-y", "acme/fusion-xy"
    }  # fmt: skip
    assert cli("publish", str(pkg)).code == 0
    return expected, block


def test_a_recipe_attaches_all_its_parts_with_the_saved_outputs(recipe, minilm, ids, tmp_path, monkeypatch):
    import copy

    expected, _ = recipe
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh-cache"))
    fresh = copy.deepcopy(minilm)
    with ah.Hub() as hub:
        assert hub.attach(fresh, "acme/recipe") == "acme_recipe"
    models.assert_close(outputs(fresh, ids), expected)
    names = {a.name for a in ah.list_adapters(fresh)}
    assert {"acme_part_a", "acme_part_b", "acme_bn_x", "acme_bn_y", "acme_fusion_xy"} <= names
    active = ah.active_composition(fresh)
    assert active is not None and set(active.names()) == {"acme_part_a", "acme_part_b", "acme_bn_x", "acme_bn_y"}


def test_install_and_lock_pull_and_pin_every_part_and_info_shows_the_tree(recipe, cli, tmp_path, monkeypatch):
    r = cli("install", "acme/recipe", "--json")
    assert r.code == 0, r.err
    assert {i["name"] for i in r.json()["installed"]} == {
        "acme/recipe", "acme/part-a", "acme/part-b", "acme/bn-x", "acme/bn-y", "acme/fusion-xy"
    }  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert cli("lock", "acme/recipe").code == 0
    locked = {e["name"]: e["version"] for e in json.loads((tmp_path / "adapters.lock").read_text())["adapters"]}
    assert locked == {
        "acme/recipe": "1.0.0", "acme/part-a": "1.0.0", "acme/part-b": "1.2.0", "acme/bn-x": "1.0.0",
        "acme/bn-y": "2.0.0", "acme/fusion-xy": "1.0.0",
    }  # fmt: skip
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "frozen-cache"))
    assert cli("install", "--frozen").code == 0
    r = cli("info", "acme/recipe")
    assert r.code == 0, r.err
    assert (
        "recipe:     Stack(Fuse(acme/bn-x, acme/bn-y), Average(acme/part-a, acme/part-b, weights=[0.3, 0.7]))" in r.out
    )


def test_every_part_is_checked_against_the_model_before_any_weight_is_fetched(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "tiny-cache"))
    with ah.Hub() as hub, pytest.raises(IncompatibleError):
        hub.attach(models.tiny_bert(), "acme/recipe", strict=True)
    cached = {p.name for p in (tmp_path / "tiny-cache").rglob("*") if p.is_file()}
    weights = {
        f["sha256"]
        for pkg in Path(tmp_path).glob("[abxy]")
        for f in json.loads((pkg / "manifest.json").read_text())["files"]
    }
    assert not (weights & cached)  # manifests only: no part's weights were downloaded


def test_load_adapter_on_a_recipe_says_to_attach_it_with_its_parts(recipe, minilm, tmp_path):
    with pytest.raises(UsageError, match="recipe of other adapters"):
        ah.load_adapter(models.tiny_bert(), tmp_path / "recipe")
