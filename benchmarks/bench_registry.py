"""Package-manager benchmarks (issue: package manager core).

    python benchmarks/bench_registry.py [--adapters 100000] [--blob-mb 256]

1. Resolution in a generated registry of N adapters served over loopback HTTP: requests per
   resolve and warm time (target: 1 index request, < 20 ms), next to a raw httpx GET of the same
   index file (the floor).
2. Warm install of an already cached adapter, in-process (target < 50 ms).
3. Cold install throughput from the loopback server versus a raw httpx stream of the same bytes
   (target >= 0.8 of raw).
4. `adapters --help` and `adapters list` wall time versus `python -c pass` (target < 0.3 s), and
   whether torch was imported (must not be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import print_table, timed
from tests.httpserver import StaticServer


def generate_registry(root: Path, n: int, blob_mb: int) -> str:
    """N adapters with one version each (index lines only), plus one real package `bench/target`."""
    from adapterhub_client.hub import Hub
    from adapterhub_client.registry import layout
    from adapterhub_client.registry.publish import ensure_registry

    ensure_registry(root)
    fake_manifest = {"sha256": "0" * 64, "size": 100}
    for i in range(n):
        name = f"org{i % 1000}/adapter-{i}"
        path = root / layout.index_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"name": name, "version": "1.0.0", "manifest": fake_manifest, "yanked": False}) + "\n"
        )
    pkg = root.parent / "target-pkg"
    pkg.mkdir()
    with open(pkg / "adapter.safetensors", "wb") as fh:
        header = json.dumps(
            {"w": {"dtype": "U8", "shape": [blob_mb << 20], "data_offsets": [0, blob_mb << 20]}}
        ).encode()
        header += b" " * (-len(header) % 8)
        fh.write(len(header).to_bytes(8, "little") + header)
        chunk = os.urandom(1 << 20)
        for _ in range(blob_mb):
            fh.write(chunk)
    (pkg / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "bench/target",
                "version": "1.0.0",
                "adapter": {"type": "lora", "config": {}},
                "base_model": {"name": "x"},
                "files": [{"path": "adapter.safetensors"}],
            }
        )
    )
    Hub(registry=root.as_uri(), cache_dir=root.parent / "publish-cache").publish(pkg)
    return hashlib.sha256((pkg / "adapter.safetensors").read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=int, default=100_000)
    ap.add_argument("--blob-mb", type=int, default=256)
    args = ap.parse_args()

    import httpx

    from adapterhub_client.hub import Hub
    from adapterhub_client.refs import parse_requirement
    from adapterhub_client.registry import layout
    from adapterhub_client.resolve import Resolver

    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    root = work / "registry"
    t0 = time.perf_counter()
    blob_sha = generate_registry(root, args.adapters, args.blob_mb)
    print(f"generated {args.adapters} adapters in {time.perf_counter() - t0:.1f}s under {root}")
    rows = []
    with StaticServer(root) as server:
        url = server.url + "/"
        cache = work / "cache"
        hub = Hub(registry=url, cache_dir=cache, progress=False)
        target = "org7/adapter-7"

        def resolve() -> None:
            Resolver(hub._provider({})).resolve([parse_requirement(target)])

        resolve()  # cold: config.json + index file
        server.clear_log()
        warm = timed(resolve, repeat=21)
        requests = len(server.log()) / 22
        index_url = url + layout.index_path(target)
        raw_client = httpx.Client()
        raw = timed(lambda: raw_client.get(index_url), repeat=21)
        rows.append(
            [
                "resolve (warm HTTP cache)",
                f"{warm * 1000:.2f} ms",
                f"{raw * 1000:.2f} ms (raw GET)",
                f"{warm / raw:.2f}x raw",
                f"{requests:.0f} request/resolve",
                "< 20 ms, 1 request",
            ]
        )

        # cold install throughput vs a raw stream of the same bytes
        blob_url = url + layout.blob_path(blob_sha)

        def raw_stream() -> None:
            with raw_client.stream("GET", blob_url) as r:
                h = hashlib.sha256()
                for chunk in r.iter_bytes():
                    h.update(chunk)

        def raw_stream_to_file() -> None:
            with raw_client.stream("GET", blob_url) as r, open(work / "raw.out", "wb") as out:
                h = hashlib.sha256()
                for chunk in r.iter_bytes():
                    h.update(chunk)
                    out.write(chunk)

        def cold_install() -> None:
            Hub(registry=url, cache_dir=cache, progress=False).install(["bench/target"])

        import shutil

        size = args.blob_mb << 20
        t_raw, t_file, t_ours = [], [], []
        for _ in range(5):  # paired, interleaved rounds; medians
            t_raw.append(timed(raw_stream, repeat=1, warmup=0))
            t_file.append(timed(raw_stream_to_file, repeat=1, warmup=0))
            shutil.rmtree(cache, ignore_errors=True)
            t_ours.append(timed(cold_install, repeat=1, warmup=0))
        t_raw.sort(), t_file.sort(), t_ours.sort()
        rows.append(
            [
                "cold install throughput",
                f"{size / t_ours[2] / 1e6:.0f} MB/s",
                f"{size / t_raw[2] / 1e6:.0f} MB/s (raw httpx + sha256)",
                f"{t_raw[2] / t_ours[2]:.2f} of raw",
                f"raw to a file: {size / t_file[2] / 1e6:.0f} MB/s ({t_file[2] / t_ours[2]:.2f})",
                ">= 0.8 of raw",
            ]
        )

        warm_install = timed(lambda: hub.install(["bench/target"]), repeat=21)
        rows.append(["warm install (cached)", f"{warm_install * 1000:.2f} ms", "", "", "", "< 50 ms"])
        hub.close()
        raw_client.close()

    env = {**os.environ, "ADAPTERS_HOME": str(work / "home")}

    def run(*cmd: str) -> None:
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)

    base = timed(lambda: run(sys.executable, "-c", "pass"), repeat=7)
    for label, argv in [("adapters --help", ["--help"]), ("adapters list", ["list"])]:
        t = timed(lambda argv=argv: run(sys.executable, "-m", "adapterhub_client", *argv), repeat=7)
        probe = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "adapterhub_client", *argv],
            env=env,
            capture_output=True,
            text=True,
        )
        torch_loaded = any(line.rstrip().endswith("| torch") for line in probe.stderr.splitlines())
        rows.append(
            [
                label,
                f"{t * 1000:.0f} ms",
                f"{base * 1000:.0f} ms (python -c pass)",
                f"{t / base:.2f}x",
                f"torch imported: {torch_loaded}",
                "< 300 ms, no torch",
            ]
        )
    print_table("Package manager", rows, ["what", "ours", "reference", "ratio", "note", "target"])


if __name__ == "__main__":
    main()
