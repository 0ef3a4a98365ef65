"""Raw PEFT and AdapterHub directories are accepted wherever a local path is (install, attach, info),
`adapters pack` turns them into package directories and `adapters export --format peft` writes a
package as a directory PEFT loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import adapterhub_client as ah
from tests import models as tiny

FIX = Path(__file__).parents[1] / "fixtures" / "adapterhub"


def hidden(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


@pytest.fixture(scope="module")
def ids():
    return tiny.token_ids(100, batch=2, seq=8)


def test_install_and_info_take_a_raw_peft_directory(cli, models):
    r = cli("install", str(models["lora"]), "--json")
    assert r.code == 0, r.err
    installed = r.json()["installed"][0]
    assert (installed["name"], installed["version"]) == ("local/lora", "0.0.0")
    view = Path(installed["path"])
    assert (view / "adapter_model.safetensors").is_file() and (view / "manifest.json").is_file()
    again = cli("install", str(models["lora"]), "--json").json()["installed"][0]
    assert again["already_installed"] and again["manifest_sha256"] == installed["manifest_sha256"]  # deterministic
    info = cli("info", str(models["lora"]), "--json")
    assert info.code == 0 and info.json()["manifest"]["adapter"]["config"]["format"] == "peft"


def test_attach_takes_a_raw_peft_directory(cli, models):
    r = cli("attach", str(models["lora"]), "--model", str(models["minilm"]), "--json")
    assert r.code == 0, r.err
    attached = r.json()["attached"][0]
    assert attached["adapter"] == "local/lora" and attached["modules"] == 12


def test_attach_takes_a_raw_adapterhub_directory(cli):
    r = cli("attach", str(FIX / "seq_bn_custom"), "--model", str(FIX / "base"), "--json")
    assert r.code == 0, r.err
    attached = r.json()["attached"][0]
    assert attached["adapter"] == "local/seq-bn-custom" and attached["modules"] > 0


def test_a_raw_adapterhub_bottleneck_is_checked_by_the_shapes_it_reads(cli, models):
    """AdapterHub records only a model name; the derived manifest records each site's LayerNorm with the
    width the adapter's down projection reads, so a base of another width is refused before loading."""
    r = cli("attach", str(FIX / "double_seq_bn"), "--model", str(FIX / "base"), "--check", "--json")
    assert r.code == 0, r.err
    verdict = r.json()["adapters"][0]["compatibility"]
    assert verdict["verdict"] == "architecture" and "has the shapes of" in verdict["message"]
    r = cli("attach", str(FIX / "double_seq_bn"), "--model", str(models["minilm"]), "--check")
    assert r.code == 5
    assert "encoder.layer.0.attention.output.LayerNorm: expected [32] (any dtype), found [384]" in r.err


def test_pickle_only_adapterhub_directory_is_refused_with_the_reason(cli):
    r = cli("install", str(FIX / "seq_bn"))
    assert r.code == 7
    assert "pytorch_adapter.bin" in r.err and "manifest.json" not in r.err


def test_pack_adapterhub_bottleneck_loads_like_the_raw_directory(cli, tmp_path, ids):
    from transformers import BertModel

    out = tmp_path / "packed"
    r = cli("pack", str(FIX / "double_seq_bn"), "--output", str(out), "--name", "acme/dsb", "--version", "1.0.0")
    assert r.code == 0, r.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["adapter"]["type"] == "bottleneck" and manifest["base_model"]["architecture"]["model_type"] == "bert"
    )
    raw, packed = (BertModel.from_pretrained(str(FIX / "base"), add_pooling_layer=False).eval() for _ in range(2))
    ah.load_adapter(raw, FIX / "double_seq_bn", "x")
    ah.load_adapter(packed, out, "x")
    tiny.assert_close(hidden(packed, ids), hidden(raw, ids))
    assert cli("publish", str(out)).code == 0
    assert cli("install", "acme/dsb@1.0.0").code == 0


def test_pack_adapterhub_lora_records_its_modules(cli, tmp_path, ids):
    from safetensors.torch import save_file
    from transformers import BertModel

    src = tmp_path / "ah-lora"
    src.mkdir()
    shutil.copy(FIX / "lora" / "adapter_config.json", src)
    tensors = torch.load(FIX / "lora" / "pytorch_adapter.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(src / "adapter.safetensors"))
    r = cli("pack", str(src), "--output", str(tmp_path / "out"), "--base", str(FIX / "base"), "--json")
    assert r.code == 0, r.err
    assert r.json()["type"] == "lora" and r.json()["format"] == "adapterhub"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    modules = manifest["base_model"]["architecture"]["modules"]
    assert modules["encoder.layer.0.attention.self.key"] == {"shape": [32, 32], "dtype": "float32", "layer": "linear"}
    assert modules["encoder.layer.0.intermediate.dense"]["shape"] == [64, 32]
    raw, packed = (BertModel.from_pretrained(str(FIX / "base"), add_pooling_layer=False).eval() for _ in range(2))
    ah.load_adapter(raw, src, "x")
    ah.load_adapter(packed, tmp_path / "out", "x")
    tiny.assert_close(hidden(packed, ids), hidden(raw, ids))
    check = cli("attach", str(tmp_path / "out"), "--model", str(FIX / "base"), "--check", "--json")
    assert check.json()["adapters"][0]["compatibility"]["verdict"] == "exact"


def test_pack_peft_directory_then_publish_and_install(cli, models, tmp_path):
    out = tmp_path / "pkg"
    r = cli("pack", str(models["lora"]), "-o", str(out), "--name", "acme/p", "--version", "1.0.0")
    assert r.code == 0, r.err
    assert {"adapter_config.json", "adapter_model.safetensors", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert cli("publish", str(out)).code == 0
    assert cli("install", "acme/p@1.0.0").code == 0
    assert cli("pack", str(models["lora"]), "-o", str(out)).code == 2  # not an empty directory
    assert cli("pack", str(out), "-o", str(tmp_path / "again")).code == 2  # already a package


def test_export_peft_loads_in_peft_with_our_outputs(cli, tmp_path):
    import peft

    ids = tiny.token_ids(96, batch=2, seq=8)
    model = tiny.minilm()
    ah.add_adapter(
        model, "mine", ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value", "word_embeddings"], init="none")
    )
    expected = tiny.hidden(model, ids)
    pkg = ah.save_adapter(model, "mine", tmp_path / "pkg", name="acme/mine", version="1.0.0")
    r = cli("export", str(pkg), "--format", "peft", "--output", str(tmp_path / "peft"), "--json")
    assert r.code == 0, r.err
    pm = peft.PeftModel.from_pretrained(tiny.minilm(), tmp_path / "peft").eval()
    tiny.assert_close(tiny.hidden(pm, ids), expected)


def test_export_refuses_a_bottleneck_package(cli, tmp_path):
    model = tiny.tiny_bert()
    ah.add_adapter(model, "b", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    pkg = ah.save_adapter(model, "b", tmp_path / "pkg", name="acme/b", version="1.0.0")
    r = cli("export", str(pkg), "--format", "peft", "--output", str(tmp_path / "peft"))
    assert r.code == 2 and "LoRA only" in r.err


def test_attach_output_is_clean_and_json_has_machine_values(cli, published):
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]), "--json")
    assert r.code == 0, r.err
    assert "Loading" not in r.err and "%|" not in r.err and "it/s" not in r.err, r.err
    attached = r.json()["attached"][0]  # stdout is one JSON document
    assert "parameters_share" not in attached
    total = attached["total_parameters"]
    assert isinstance(total, int) and total > 22_000_000
    assert attached["parameters_fraction"] == pytest.approx(attached["parameters"] / total)
    human = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]))
    assert "Loading" not in human.err and "% of 22.7M" in human.out


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_merged_outputs_respect_the_umask(umask, tmp_path):
    import os
    import stat

    import numpy as np
    from safetensors.numpy import save_file

    from adapterhub_client.formats.checkpoint import merge_checkpoint

    base = tmp_path / "base"
    base.mkdir()
    save_file({"w.weight": np.ones((2, 2), dtype=np.float32)}, str(base / "model.safetensors"))
    (base / "config.json").write_text("{}")
    old = os.umask(umask)
    try:
        merge_checkpoint(base, [], tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
