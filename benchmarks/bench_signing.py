"""Signing and verifying a 100 MB adapter against hashing its files with hashlib.sha256, in the same run.

    python benchmarks/bench_signing.py [--rounds N] [--mb 100]

The package is one safetensors-sized file of random bytes plus a small config. Each round times:

- hashlib: sha256 over every file of the package (1 MiB reads): the floor any check of the bytes pays.
- ours, sign: `Hub.sign` (the package completed: every file hashed once; the model card; one ECDSA
  signature over the in-toto statement built from those hashes). Target: about 1x hashing.
- ours, verify a directory: `Hub.verify_signature` on the package directory (its files hashed once
  against the manifest, then the statement checked against it). Target: <= 1.2x hashing.
- ours, verify at install: the trust policy's check of an installed version, whose bytes the downloader
  already hashed while fetching: no pass over the bytes at all.
- model_signing 1.1.1 (the peer): its own `sign` and `verify` of the same directory with the same key.

Each round runs every case once, in turn (a loaded machine slows them alike); time = median over
rounds, ratio = median of each round's time / that round's hashlib time (lower is better), after one
warm-up round.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(tempfile.mkdtemp(prefix="bench-signing-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)
os.environ["ADAPTERS_HOME"] = str(ROOT / "home")  # before the package reads its settings

from adapterhub_client.hub import Hub  # noqa: E402
from adapterhub_client.manifest import read_manifest  # noqa: E402
from adapterhub_client.signing import SIGNATURE_FILE  # noqa: E402
from adapterhub_client.signing.keys import generate_keypair  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests.pkgs import make_package  # noqa: E402


def hash_files(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != SIGNATURE_FILE:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()

    import model_signing

    private, public, _ = generate_keypair(ROOT / "key.pem")
    pkg = make_package(ROOT / "pkg", "bench/signed", "1.0.0", size=16)
    (pkg / "adapter.safetensors").write_bytes(os.urandom(args.mb * 1024 * 1024))
    (ROOT / "home").mkdir()
    (ROOT / "home" / "config.toml").write_text(f'[[trust]]\nmatch = "bench/*"\ntrusted_keys = ["{public}"]\n')

    with Hub() as hub:
        hub.sign(pkg, private)
        hub.publish(pkg)
        installed = hub.install(["bench/signed"])[0]
        from adapterhub_client.operations.install import check_signature
        from adapterhub_client.operations.resolution import resolve

        (item,) = resolve(hub.session, [f"bench/signed@{installed.version}"])
        assert check_signature(hub.session, item) is not None

        theirs = ROOT / "theirs.sig"
        peer_sign = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
        peer_verify = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public)
        ignored = model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE, "manifest.json"])
        peer_sign.set_hashing_config(ignored)

        cases = [
            ("hashlib.sha256 over the files", functools.partial(hash_files, pkg)),
            ("ours: sign (adapters sign)", lambda: hub.sign(pkg, private)),
            ("ours: verify a directory", lambda: hub.verify_signature(str(pkg), [str(public)])),
            ("ours: verify at install (bytes hashed on download)", lambda: check_signature(hub.session, item)),
            ("model_signing: sign", lambda: peer_sign.sign(pkg, theirs)),
            ("model_signing: verify", lambda: peer_verify.verify(pkg, pkg / SIGNATURE_FILE)),
        ]
        samples: dict[str, list[float]] = {label: [] for label, _ in cases}
        for round_ in range(args.rounds + 1):
            for label, fn in cases:
                start = time.perf_counter()
                fn()
                if round_:  # round 0 warms up (imports, page cache)
                    samples[label].append(time.perf_counter() - start)
    assert [f["path"] for f in read_manifest(pkg)["files"]][-1] == SIGNATURE_FILE
    base = samples[cases[0][0]]
    ratios = {label: statistics.median(t / b for t, b in zip(ts, base)) for label, ts in samples.items()}
    rows = [[label, f"{statistics.median(ts) * 1000:.1f} ms", f"{ratios[label]:.2f}x"] for label, ts in samples.items()]
    print_table(
        f"sign / verify a {args.mb} MB adapter vs hashing its files (median of {args.rounds}; 1 CPU thread for ours)",
        rows,
        ["operation", "time", "vs hashlib"],
    )
    print(f"\nverify a directory / hashing = {ratios[cases[2][0]]:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
