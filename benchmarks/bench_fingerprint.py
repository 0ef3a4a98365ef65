"""Fingerprint throughput against Python's hashlib.sha256 streaming the same files.

    python benchmarks/bench_fingerprint.py [--mb 500] [--repeat 5] [--shards 1] [--quick]

Generates a float32 safetensors checkpoint of about --mb MB in a temp dir, reads it once so the
page cache is warm, then times, in --repeat interleaved rounds (each round runs every measure once):
  - baseline: hashlib.sha256 over each file, 1 MiB reads (what `manifest.file_digest` does)
  - content fingerprint with blake3, and with the sha256 fallback (no cache, no file digests)
  - fingerprint_dir in full (content + per-file sha256), no cache
  - cached re-check of fingerprint_dir, and the architecture fingerprint from headers
  - the architecture fingerprint of a sparse 64 GiB checkpoint (headers only, whatever the size)
Times are medians over rounds; a ratio is the median over rounds of (our throughput / the baseline's
throughput in the same round), which stays steady on a shared, noisy machine.
The unit tests check the behaviour behind the last three (no file re-read on a cache hit, no tensor
data read for the architecture); the times live here, not in tests. --quick: a one-layer smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adapterhub_client.basemodel import fingerprint as fp
from benchmarks._util import print_table, timed


def make_checkpoint(root: Path, total_mb: int, shards: int) -> int:
    """A transformer-shaped checkpoint: 1024-wide layers (q,k,v,o, two 4096 MLP mats, norms)."""
    rng = np.random.default_rng(0)
    hidden, inter = 1024, 4096
    per_layer = (4 * hidden * hidden + 2 * hidden * inter + 4 * hidden) * 4
    layers = max(1, total_mb * 1_000_000 // per_layer)
    tensors: dict[str, np.ndarray] = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[p + f"attn.{name}.weight"] = rng.standard_normal((hidden, hidden), dtype=np.float32)
        tensors[p + "mlp.up.weight"] = rng.standard_normal((inter, hidden), dtype=np.float32)
        tensors[p + "mlp.down.weight"] = rng.standard_normal((hidden, inter), dtype=np.float32)
        for name in ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"):
            tensors[p + name] = rng.standard_normal(hidden, dtype=np.float32)
    names = list(tensors)
    if shards == 1:
        save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map: dict[str, str] = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s::shards]}
            save_file(part, str(root / fname), metadata={"format": "pt"})
            weight_map.update({n: fname for n in part})
        (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sum(t.nbytes for t in tensors.values())


def sha256_stream(paths: list[Path]) -> None:
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.hexdigest()


def make_sparse_checkpoint(root: Path) -> int:
    """Two 32 GiB float16 tensors in a sparse file: only a header's worth of bytes on disk."""
    shape = [4096, 4096 * 1024]
    size = shape[0] * shape[1] * 2
    header = json.dumps(
        {
            "a.weight": {"dtype": "F16", "shape": shape, "data_offsets": [0, size]},
            "b.weight": {"dtype": "F16", "shape": shape, "data_offsets": [size, 2 * size]},
        }
    ).encode()
    with open(root / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + 2 * size)
    return 2 * size


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=500, help="checkpoint size in MB (default 500)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--shards", type=int, default=1, help="number of shard files (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the smallest checkpoint (one layer, about 50 MB), 2 rounds"
    )
    args = parser.parse_args()
    if args.quick:
        args.mb, args.repeat = 20, 2

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "model"
        root.mkdir()
        cache = Path(tmp) / "cache"
        nbytes = make_checkpoint(root, args.mb, args.shards)
        files = [root / rel for rel in fp.weight_files(root)[1]]
        file_bytes = sum(p.stat().st_size for p in files)
        sha256_stream(files)  # warm the page cache

        measures = [
            ("hashlib.sha256 stream (baseline)", file_bytes, lambda: sha256_stream(files)),
            (
                "content fingerprint (blake3)",
                nbytes,
                lambda: fp.fingerprint_dir(root, algorithm="blake3", file_digests=False, use_cache=False),
            ),
            (
                "content fingerprint (sha256 fallback)",
                nbytes,
                lambda: fp.fingerprint_dir(root, algorithm="sha256", file_digests=False, use_cache=False),
            ),
            (
                "fingerprint_dir: content blake3 + file sha256",
                file_bytes,
                lambda: fp.fingerprint_dir(root, use_cache=False),
            ),
        ]
        rounds = [[once(fn) for _label, _size, fn in measures] for _ in range(args.repeat)]
        rows = []
        for i, (label, size, _fn) in enumerate(measures):
            seconds = statistics.median(r[i] for r in rounds)
            ratio = statistics.median((size / r[i]) / (file_bytes / r[0]) for r in rounds)
            rows.append((label, seconds, size, ratio))

        fp.fingerprint_dir(root, cache)  # fill the cache
        cached = timed(lambda: fp.fingerprint_dir(root, cache), max(args.repeat, 20))
        arch = timed(lambda: fp.architecture_fingerprint(fp.architecture_dir(root)), max(args.repeat, 20))
        sparse = Path(tmp) / "sparse"
        sparse.mkdir()
        sparse_bytes = make_sparse_checkpoint(sparse)
        arch_sparse = timed(lambda: fp.architecture_fingerprint(fp.architecture_dir(sparse)), max(args.repeat, 20))

        print(
            f"checkpoint: {file_bytes / 1e6:.0f} MB in {len(files)} file(s), {nbytes / 1e6:.0f} MB of tensors; "
            f"{args.repeat} interleaved rounds; page cache warm"
        )
        table = [
            [label, f"{seconds * 1000:.1f} ms", f"{size / seconds / 1e9:.2f}", f"{ratio:.2f}x"]
            for label, seconds, size, ratio in rows
        ]
        table += [
            ["cached re-check (fingerprint_dir, cache warm)", f"{cached * 1000:.2f} ms", "", ""],
            ["architecture fingerprint (headers only)", f"{arch * 1000:.2f} ms", "", ""],
            [
                f"architecture fingerprint, {sparse_bytes / 2**30:.0f} GiB sparse file",
                f"{arch_sparse * 1000:.2f} ms",
                "",
                "",
            ],
        ]
        print_table("Fingerprints", table, ["measure", "time", "GB/s", "vs sha256"])


if __name__ == "__main__":
    main()
