"""OCI push and pull against curl and the oras SDK, all in the same run on a loopback registry.

    python benchmarks/bench_oci.py [--rounds N] [--mb 50]

Debian's docker-registry is started on 127.0.0.1 with a config of our own (tests/ociregistry.py); the
package is one 50 MB safetensors-sized file plus a config. Each round pushes into a fresh repository
(so every blob is really uploaded) and pulls into a fresh cache:

- push: ours (`OciClient.push`: HEAD, upload, config, manifest) vs curl doing the same blob upload
  (POST + PUT with the digest) vs `oras` pushing the same files. Target: speed >= 0.8 of curl, >= 1.0
  of oras.
- pull: ours (the verified, resumable downloader, hashing while it streams) vs `curl -o` of the blob vs
  `oras pull`. Same targets.
- second push of the same package under a new tag: blob bytes sent (target: 0).

Speed ratio = peer time / our time (higher is better): the median of the per-round ratios (the medians'
ratio beside it). The order of ours and the peers rotates every round: whatever runs right after a push
competes with that push's disk writeback, which skewed earlier runs against whoever went first.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapterhub_client.manifest import complete_package
from adapterhub_client.net import make_client
from adapterhub_client.registry.oci import OciClient, parse_oci_ref
from adapterhub_client.store.cache import Cache
from adapterhub_client.store.download import Downloader
from benchmarks._util import print_table
from tests.ociregistry import start_registry, stop_registry

ROOT = Path(tempfile.mkdtemp(prefix="bench-oci-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)


def make_package(directory: Path, mb: int) -> dict:
    import json

    directory.mkdir(parents=True)
    (directory / "adapter.safetensors").write_bytes(os.urandom(mb * 1024 * 1024))
    (directory / "notes.json").write_text("{}")
    manifest = {
        "schema_version": 1,
        "name": "bench/big",
        "version": "1.0.0",
        "adapter": {"type": "lora", "config": {"r": 8}},
        "base_model": {"name": None},
        "files": [{"path": "adapter.safetensors"}, {"path": "notes.json"}],
    }
    manifest = complete_package(directory, manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def curl_push(host: str, repo: str, blob: Path, digest: str) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-i", "-X", "POST", f"http://{host}/v2/{repo}/blobs/uploads/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    location = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.lower().startswith("location:"))
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    subprocess.run(
        ["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{blob}", f"{location}{sep}digest=sha256:{digest}"],
        capture_output=True,
        check=True,
    )  # fmt: skip


def curl_pull(host: str, repo: str, digest: str, out: Path) -> None:
    subprocess.run(
        ["curl", "-sS", "-f", "-L", "-o", str(out), f"http://{host}/v2/{repo}/blobs/sha256:{digest}"], check=True
    )


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    import oras.client

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=50)
    args = parser.parse_args()
    registry = start_registry(ROOT / "registry")
    atexit.register(stop_registry, registry)
    pkg = ROOT / "pkg"
    manifest = make_package(pkg, args.mb)
    big = pkg / "adapter.safetensors"
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    client = OciClient(f"http://{registry.host}", http=make_client())
    oras_client = oras.client.OrasClient(insecure=True)
    t: dict[str, list[float]] = {
        k: [] for k in ("ours_push", "curl_push", "oras_push", "ours_pull", "curl_pull", "oras_pull")
    }

    def timed(key: str, run) -> None:
        t0 = time.perf_counter()
        run()
        t[key].append(time.perf_counter() - t0)

    def oras_push(repo: str) -> None:
        cwd = os.getcwd()
        os.chdir(pkg)
        try:
            oras_client.push(target=f"{registry.host}/{repo}/oras:1.0.0", files=["adapter.safetensors", "notes.json"])
        finally:
            os.chdir(cwd)

    for i in range(args.rounds):
        repo = f"bench/r{i}"
        # the order rotates every round: what runs right after a push competes with its writeback
        pushes = [
            ("ours_push", partial(client.push, f"{repo}/ours", pkg, manifest)),
            ("curl_push", partial(curl_push, registry.host, f"{repo}/curl", big, digest)),
            ("oras_push", partial(oras_push, repo)),
        ]
        for key, run in pushes[i % 3 :] + pushes[: i % 3]:
            timed(key, run)
        cache = Cache(ROOT / f"cache-{i}").ensure()
        artifact = client.artifact(parse_oci_ref(f"oci://{registry.host}/{repo}/ours@1.0.0"))
        pulls = [
            ("ours_pull", partial(client.fetch_files, artifact, Downloader(cache, partial(getattr, client, "http")))),
            ("curl_pull", partial(curl_pull, registry.host, f"{repo}/ours", digest, ROOT / f"curl-{i}.bin")),
            (
                "oras_pull",
                partial(oras_client.pull, target=f"{registry.host}/{repo}/oras:1.0.0", outdir=str(ROOT / f"oras-{i}")),
            ),
        ]
        for key, run in pulls[i % 3 :] + pulls[: i % 3]:
            timed(key, run)
        for leftover in (ROOT / f"curl-{i}.bin", ROOT / f"oras-{i}", ROOT / f"cache-{i}"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    again = client.push("bench/r0/ours", pkg, manifest, tag="again")
    mb = args.mb
    rows = []
    for op in ("push", "pull"):
        ours = median(t[f"ours_{op}"])
        for peer in ("curl", "oras"):
            other = median(t[f"{peer}_{op}"])
            paired = median(p / o for p, o in zip(t[f"{peer}_{op}"], t[f"ours_{op}"], strict=True))
            target = ">= 0.8" if peer == "curl" else ">= 1.0"
            rows.append(
                [f"{op} {mb} MB vs {peer}", f"ours {ours * 1e3:.0f} ms ({mb / ours:.0f} MB/s) | {peer} {other * 1e3:.0f} ms",
                 f"{paired:.2f} (medians {other / ours:.2f})", target]
            )  # fmt: skip
    rows.append(["second push, new tag", f"{again.bytes_sent} blob bytes sent, {again.skipped} blobs skipped", "", "0"])
    print_table(
        f"OCI push/pull on loopback docker-registry (median of {args.rounds})",
        rows,
        ["case", "measured", "speed ratio", "target"],
    )


if __name__ == "__main__":
    main()
