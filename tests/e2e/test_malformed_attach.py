"""Malformed safetensors met by the commands that load weights: `attach --merge` on a base model
whose weight file is crafted, and `load_adapter` on adapter directories whose weights are crafted.
Every case is one line and exit 7 naming the file (never "internal error: SafetensorError")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import adapterhub_client as ah
from adapterhub_client.errors import AdapterError, InvalidPackageError
from adapterhub_client.manifest import complete_package, read_manifest, write_manifest
from tests import models
from tests.basemodel.test_malformed_safetensors import CRAFTED


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny BERT saved as a model directory, a LoRA package, a PEFT and an AdapterHub-like dir for it."""
    root = tmp_path_factory.mktemp("tiny")
    base = models.tiny_bert()
    base.save_pretrained(root / "base")
    model = models.tiny_bert()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, alpha=4, target_modules=["query", "value"], init="none"))
    package = ah.save_adapter(model, "a", root / "package", name="acme/tiny", version="1.0.0")
    ah.export_peft(model, "a", root / "peft")
    return {"base": root / "base", "package": package, "peft": root / "peft"}


def crafted_copy(source: Path, weights_file: str, tmp_path: Path, case: str) -> Path:
    """A copy of the directory `source` with its `weights_file` crafted as `case`."""
    d = tmp_path / f"{source.name}-{case}"
    shutil.copytree(source, d)
    weights = d / weights_file
    weights.write_bytes(CRAFTED[case][0](weights.read_bytes()))
    return d


def crafted_base(tiny: dict[str, Path], tmp_path: Path, case: str) -> Path:
    return crafted_copy(tiny["base"], "model.safetensors", tmp_path, case)


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_attach_merge_onto_a_crafted_base_is_exit_7(cli, tiny, tmp_path, case):
    assert cli("publish", str(tiny["package"])).code == 0
    base = crafted_base(tiny, tmp_path, case)
    r = cli("attach", "acme/tiny@1.0.0", "--model", str(base), "--merge", "--output", str(tmp_path / "out"))
    assert r.code == 7, (r.code, r.err)
    assert str(base / "model.safetensors") in r.err and CRAFTED[case][1] in r.err
    assert "internal error" not in r.err and not (tmp_path / "out").exists()


def test_merge_checkpoint_validates_the_base_itself(tiny, tmp_path):
    """The streaming merge checks headers on its own too (it is public API, called without attach)."""
    from adapterhub_client.formats.checkpoint import merge_checkpoint, read_lora_package

    base = crafted_base(tiny, tmp_path, "overlapping-offsets")
    with pytest.raises(InvalidPackageError, match="overlaps"):
        merge_checkpoint(base, [read_lora_package(tiny["package"])], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _crafted_package(tiny: dict[str, Path], tmp_path: Path, case: str) -> Path:
    """Our package with a crafted adapter.safetensors, the manifest's sha256 updated to match
    (so the loader, not the integrity check, meets the file)."""
    d = crafted_copy(tiny["package"], "adapter.safetensors", tmp_path, case)
    data = read_manifest(d)
    for f in data["files"]:
        f.pop("sha256"), f.pop("size")
    write_manifest(d, complete_package(d, data))
    return d


def _crafted_peft(tiny: dict[str, Path], tmp_path: Path, case: str) -> Path:
    return crafted_copy(tiny["peft"], "adapter_model.safetensors", tmp_path, case)


@pytest.mark.parametrize("make", [_crafted_package, _crafted_peft], ids=["package", "peft"])
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_load_adapter_refuses_crafted_weights_with_an_adapter_error(tiny, tmp_path, case, make):
    d = make(tiny, tmp_path, case)
    model = models.tiny_bert()
    with pytest.raises(AdapterError) as info:
        ah.load_adapter(model, d)
    assert isinstance(info.value, InvalidPackageError) and info.value.exit_code == 7
    assert CRAFTED[case][1] in str(info.value) and "adapter" in str(info.value)
    assert ah.list_adapters(model) == []  # all or nothing


def test_load_adapter_cli_path_names_the_file(cli, tiny, tmp_path):
    """`attach` (no merge) with a crafted local package: exit 7 naming the weight file (of the
    installed copy: a local package is installed like any other)."""
    d = _crafted_package(tiny, tmp_path, "gap")
    r = cli("attach", str(d), "--model", str(tiny["base"]))
    assert r.code == 7, (r.code, r.err)
    assert "adapter.safetensors: not a valid safetensors file: gap of 8 bytes" in r.err


def test_a_valid_tiny_package_still_attaches(cli, tiny):
    r = cli("attach", str(tiny["package"]), "--model", str(tiny["base"]), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["attached"][0]["modules"] == 4


def _pickled_package(tiny: dict[str, Path], tmp_path: Path, payload: bytes | None = None) -> Path:
    """Our package with its weights as `adapter.BIN` (a torch.save pickle, or `payload`), listed in the
    manifest by hand: publishing refuses pickles, but a directory on disk may hold one."""
    import torch
    from safetensors.torch import load_file

    from adapterhub_client._fs import file_digest

    d = tmp_path / "pickled"
    shutil.copytree(tiny["package"], d)
    weights = d / "adapter.safetensors"
    if payload is None:
        torch.save(load_file(str(weights)), d / "adapter.BIN")
    else:
        (d / "adapter.BIN").write_bytes(payload)
    weights.unlink()
    data = read_manifest(d)
    sha, size = file_digest(d / "adapter.BIN")
    data["files"] = [{"path": "adapter.BIN", "sha256": sha, "size": size}]
    (d / "manifest.json").write_text(json.dumps(data))
    return d


def test_a_package_with_only_adapter_BIN_loads_only_with_allow_pickle(tiny, tmp_path):
    d = _pickled_package(tiny, tmp_path)
    model = models.tiny_bert()
    with pytest.raises(InvalidPackageError, match=r"pickled \(adapter.BIN\).*allow_pickle"):
        ah.load_adapter(model, d)
    assert ah.list_adapters(model) == []
    name = ah.load_adapter(model, d, allow_pickle=True)  # as torch.load(weights_only=True)
    assert [a.name for a in ah.list_adapters(model)] == [name]


def test_an_unreadable_allowed_pickle_is_an_invalid_package(tiny, tmp_path):
    d = _pickled_package(tiny, tmp_path, payload=b"\x80\x04not a pickle at all")
    with pytest.raises(InvalidPackageError, match="adapter.BIN: cannot read the pickled weights"):
        ah.load_adapter(models.tiny_bert(), d, allow_pickle=True)
