"""What a QLoRA adapter's manifest records (issue 12): the quantization next to the fingerprint of the
*unquantized* base, kept through in-memory quantization, streaming loads and 4-bit checkpoints; and the
verdicts `exact` / `exact (unquantized)` / `architecture` that follow from it."""

from __future__ import annotations

import copy

import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.basemodel import compat
from adapterhub_client.basemodel import fingerprint as fp
from adapterhub_client.bnb_layout import UNQUANTIZED_KEY
from adapterhub_client.errors import IncompatibleError, InvalidPackageError
from adapterhub_client.manifest import read_manifest
from adapterhub_client.nn.model import trainable_parameters
from adapterhub_client.nn.quant import quantization_of
from tests import models


def quantized(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    out = copy.deepcopy(model)
    ah.quantize(out, **kwargs)
    return out


def qlora_manifest(tmp_path, base: torch.nn.Module, targets=("query", "value"), **quantize_kwargs) -> dict:
    """A LoRA on `targets` of `base` quantized with `quantize_kwargs`, saved as a package; its manifest."""
    model = quantized(base, **quantize_kwargs)
    ah.add_adapter(model, "q", ah.LoRAConfig(r=2, target_modules=list(targets)))
    ah.save_adapter(model, "q", tmp_path / "pkg", name="acme/qlora", version="1.0.0")
    return read_manifest(tmp_path / "pkg")


@pytest.mark.parametrize("build", [models.tiny_bert, models.tiny_gpt2], ids=["linear", "conv1d"])
def test_a_quantized_model_keeps_the_fingerprint_of_its_unquantized_base(build):
    base = build()
    model = quantized(base)
    assert fp.fingerprint_module(model) == fp.fingerprint_module(base)
    local = fp.LocalModel.from_module(model)
    assert local.weights == fp.LocalModel.from_module(base).weights  # 4-bit layers seen as their source weights
    assert local.quantization == quantization_of(model).to_dict()
    assert fp.LocalModel.from_module(base).quantization is None


def test_streaming_load_and_4bit_checkpoints_keep_the_unquantized_fingerprint(tmp_path):
    base = models.tiny_bert(pooler=True)  # as the config's BertModel builds it
    base.save_pretrained(tmp_path / "fp32")
    expected = fp.fingerprint_dir(tmp_path / "fp32", use_cache=False)
    streamed = ah.load_quantized(tmp_path / "fp32")
    assert fp.fingerprint_module(streamed) == {k: expected[k] for k in ("content", "architecture")}
    ah.save_quantized(streamed, tmp_path / "nf4")  # the digests travel in the safetensors metadata
    assert fp.fingerprint_module(ah.load_quantized(tmp_path / "nf4")) == fp.fingerprint_module(streamed)


def test_a_4bit_checkpoint_without_the_digests_has_no_content_fingerprint(tmp_path):
    from safetensors.torch import load_file, save_file

    model = quantized(models.tiny_bert(pooler=True))
    ah.save_quantized(model, tmp_path / "nf4")
    weights = tmp_path / "nf4" / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})  # as another tool writes it
    loaded = ah.load_quantized(tmp_path / "nf4")
    assert fp.fingerprint_module(loaded) == {"architecture": fp.fingerprint_module(model)["architecture"]}
    assert fp.LocalModel.from_module(loaded).content() is None
    with pytest.raises(InvalidPackageError, match="full-precision weights were not seen"):
        fp.content_module(loaded)
    save_file(load_file(str(weights)), str(weights), metadata={UNQUANTIZED_KEY: "[1]"})
    with pytest.raises(InvalidPackageError, match="not an object of digests"):
        ah.load_quantized(tmp_path / "nf4")


def test_the_manifest_records_the_quantization_next_to_the_unquantized_fingerprint(tmp_path):
    base = models.tiny_bert()
    manifest = qlora_manifest(tmp_path, base)
    recorded = manifest["base_model"]
    assert recorded["quantization"] == quantization_of(quantized(base)).to_dict()
    assert recorded["quantization"]["type"] == "nf4" and recorded["quantization"]["blocksize"] == 64
    assert recorded["fingerprint"]["content"] == fp.fingerprint_module(base)["content"]
    query = recorded["architecture"]["modules"]["encoder.layer.0.attention.self.query"]
    assert query == {"shape": [32, 32], "dtype": "float32", "layer": "linear"}  # the weight, not its codes


def test_gpt2_conv1d_layers_are_recorded_as_the_base_stores_them(tmp_path):
    base = models.tiny_gpt2()
    recorded = qlora_manifest(tmp_path, base, targets=["c_attn"])["base_model"]
    c_attn = recorded["architecture"]["modules"]["h.0.attn.c_attn"]
    assert c_attn == {"shape": list(base.h[0].attn.c_attn.weight.shape), "dtype": "float32", "layer": "conv1d"}
    assert compat.check_compat(recorded, base).kind == compat.EXACT_UNQUANTIZED


def test_verdicts_for_a_qlora_adapter(tmp_path):
    base = models.tiny_bert()
    recorded = qlora_manifest(tmp_path, base)["base_model"]

    same = compat.check_compat(recorded, quantized(base))
    assert same.kind == compat.EXACT and "quantized the same way (nf4 (blocksize 64, double quant))" in same.message

    full = compat.check_compat(recorded, base)
    assert full.kind == compat.EXACT_UNQUANTIZED and full.ok and full.exact
    assert "in full precision" in full.message and "--quantize nf4" in full.message

    other_type = compat.check_compat(recorded, quantized(base, quant_type="fp4"))
    assert other_type.kind == compat.ARCHITECTURE and "type nf4 in training, fp4 here" in other_type.message
    other_blocks = compat.check_compat(recorded, quantized(base, blocksize=128, double_quant=False))
    assert "blocksize 64 in training, 128 here" in other_blocks.message
    assert "double_quant True in training, False here" in other_blocks.message

    skipped = compat.check_compat(recorded, quantized(base, skip=["query"]))
    assert skipped.kind == compat.ARCHITECTURE and "quantized in one and not the other" in skipped.message

    different = compat.check_compat(recorded, quantized(_perturbed(base)))
    assert different.kind == compat.ARCHITECTURE and "weights differ" in different.message

    compute = compat.check_compat(recorded, quantized(base, compute_dtype=torch.float32))
    assert compute.kind == compat.EXACT and "computing in float32 where training used bfloat16" in compute.message

    # strict wants the exact base weights: quantized or not, they are; different weights are refused
    assert compat.ensure_compatible(recorded, base, strict=True).kind == compat.EXACT_UNQUANTIZED
    with pytest.raises(IncompatibleError):
        compat.ensure_compatible(recorded, quantized(base, quant_type="fp4"), strict=True)


def test_a_full_precision_adapter_on_a_quantized_base_is_architecture(tmp_path):
    base = models.tiny_bert()
    ah.add_adapter(base, "f", ah.LoRAConfig(r=2, target_modules=["query"]))
    ah.save_adapter(base, "f", tmp_path / "pkg", name="acme/full", version="1.0.0")
    recorded = read_manifest(tmp_path / "pkg")["base_model"]
    assert recorded["quantization"] is None
    plain = models.tiny_bert()
    assert compat.check_compat(recorded, plain).kind == compat.EXACT
    verdict = compat.check_compat(recorded, quantized(plain))
    assert verdict.kind == compat.ARCHITECTURE and "trained on the full-precision base" in verdict.message


def test_a_directory_to_be_quantized_checks_as_quantized(tmp_path):
    """What `adapters attach --quantize nf4` checks before loading: the directory, with the quantization to come."""
    import dataclasses

    base = models.tiny_bert(pooler=True)  # as the config's BertModel builds it
    base.save_pretrained(tmp_path / "fp32")
    recorded = qlora_manifest(tmp_path, base)["base_model"]
    local = fp.LocalModel.from_dir(tmp_path / "fp32")
    assert compat.check_compat(recorded, local).kind == compat.EXACT_UNQUANTIZED
    planned = dataclasses.replace(local, quantization={"type": "nf4", "blocksize": 64, "double_quant": True})
    assert compat.check_compat(recorded, planned).kind == compat.EXACT


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.encoder.layer[0].attention.self.key.weight[0, 0] += 1.0
    return out


def test_a_4bit_checkpoint_directory_checks_as_the_quantized_base(tmp_path):
    """A directory `save_quantized` wrote is read without torch as the full-precision base it stands for,
    quantized: a QLoRA adapter trained on that quantization is exact on it."""
    base = models.tiny_bert(pooler=True)
    recorded = qlora_manifest(tmp_path, base)["base_model"]
    model = quantized(base)
    ah.save_quantized(model, tmp_path / "nf4")
    local = fp.LocalModel.from_dir(tmp_path / "nf4")
    assert local.weights == fp.LocalModel.from_module(base).weights
    assert local.architecture == fp.fingerprint_module(base)["architecture"]
    assert local.content() == fp.fingerprint_module(base)["content"]
    expected = quantization_of(model).to_dict()
    assert {**local.quantization, "modules": set(local.quantization["modules"])} == {
        **expected,
        "modules": set(expected["modules"]),
    }
    verdict = compat.check_compat(recorded, tmp_path / "nf4")
    assert verdict.kind == compat.EXACT and "quantized the same way" in verdict.message


def test_a_4bit_checkpoint_directory_from_another_tool_has_no_content_fingerprint(tmp_path):
    from safetensors.torch import load_file, save_file

    base = models.tiny_bert(pooler=True)
    recorded = qlora_manifest(tmp_path, base)["base_model"]
    ah.save_quantized(quantized(base), tmp_path / "nf4")
    weights = tmp_path / "nf4" / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})  # no digests of the fp32 weights
    local = fp.LocalModel.from_dir(tmp_path / "nf4")
    assert local.content() is None and local.architecture == fp.fingerprint_module(base)["architecture"]
    verdict = compat.check_compat(recorded, local)
    assert verdict.kind == compat.ARCHITECTURE and "cannot compare weights" in verdict.message


def test_a_4bit_gpt2_directory_fits_an_adapter_recorded_on_conv1d_weights(tmp_path):
    base = models.tiny_gpt2()
    recorded = qlora_manifest(tmp_path, base, targets=["c_attn"])["base_model"]
    ah.save_quantized(quantized(base), tmp_path / "nf4")  # bitsandbytes stores every 4-bit weight [out, in]
    assert compat.check_compat(recorded, tmp_path / "nf4").kind == compat.EXACT


def test_a_4bit_layer_counts_as_the_parameters_it_stands_for():
    """The trainable share of a QLoRA model is of the whole base (4-bit codes are buffers, not parameters)."""
    plain, model = models.tiny_bert(), quantized(models.tiny_bert())
    for m in (plain, model):
        ah.add_adapter(m, "q", ah.LoRAConfig(r=2, target_modules=["query", "value"]))
        ah.mark_only_adapters_trainable(m)
    assert trainable_parameters(model) == trainable_parameters(plain)
