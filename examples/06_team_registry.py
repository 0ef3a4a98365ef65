"""Host a team registry: sign an adapter, publish it to an OCI registry and to a static directory served over
HTTP, and install it under a policy that requires the team's signature (an unsigned version is refused).

The publisher makes a key pair, signs version 1.0.0 of an adapter (the SMS spam LoRA that ships with
adapterhub-client) and publishes it with an unsigned 1.1.0 next to it, to a directory registry (checked by
`adapters registry build`, then served by any static host: here `python -m http.server` on 127.0.0.1) and,
with `--oci HOST:PORT`, to an OCI registry (GHCR, Harbor, Zot, the CNCF distribution registry, ...). A team
member, with their own ADAPTERS_HOME whose config.toml names the registry and trusts only the team's public
key, installs 1.0.0, and is refused 1.1.0 (exit 4, nothing installed). Everything runs through the
`adapters` CLI, as you would type it; see docs/HOSTING.md and docs/SIGNING.md.

    python examples/06_team_registry.py                        # the static registry only
    python examples/06_team_registry.py --oci 127.0.0.1:5000   # and an OCI registry of yours on that port
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import _shared

NAME = "acme/sms-spam"
SIGNED, UNSIGNED = "1.0.0", "1.1.0"
EXIT_INTEGRITY = 4  # the exit code of a refused signature (README: exit codes)


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m http.server` on a free loopback port; returns once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "config.json", timeout=1).close()
            return server, url
        except OSError:
            time.sleep(0.05)
    server.terminate()
    raise SystemExit(f"python -m http.server did not answer on {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--oci", metavar="HOST:PORT", help="an OCI registry to publish to as well")
    parser.add_argument("--repository", default=NAME, help="the OCI repository (default: the adapter's name)")
    args = parser.parse_args()  # --tiny changes nothing: the shipped adapter is small already
    work = _shared.workdir(args.workdir, "team")

    from adapterhub_client.demo import PACKAGE_DIR  # a real trained LoRA for all-MiniLM-L6-v2

    print("== the publisher: a key pair, a signed 1.0.0 and an unsigned 1.1.0")
    key = work / "keys" / "acme-release"
    key.parent.mkdir()
    _shared.adapters("keygen", str(key))
    for version in (SIGNED, UNSIGNED):
        shutil.copytree(PACKAGE_DIR, work / version)
    _shared.adapters("sign", str(work / SIGNED), "--key", str(key), "--name", NAME, "--version", SIGNED)
    packages = {SIGNED: [str(work / SIGNED)], UNSIGNED: [str(work / UNSIGNED), "--name", NAME, "--version", UNSIGNED]}

    static = work / "static-registry"
    for package in packages.values():
        _shared.adapters("publish", *package, "--registry", static.as_uri())
    _shared.adapters("registry", "build", str(static))  # before every upload: every blob re-hashed
    oci = f"oci://{args.oci}/{args.repository}" if args.oci else None
    if oci:
        for package in packages.values():
            _shared.adapters("publish", *package, "--registry", oci)  # model.sig also as a signature artifact
        _shared.adapters("verify", f"{oci}@{SIGNED}", "--key", f"{key}.pub")  # remote: no blob pulled

    server, url = serve(static)
    try:
        print(f"== a team member: the registry at {url}, trusting only {key.name}.pub")
        member = work / "member"
        member.mkdir()
        (member / "config.toml").write_text(
            f'[[registry]]\nname = "team"\nurl = "{url}"\n\n'
            f'[[trust]]\nmatch = "acme/*"\nrequire_signature = true\ntrusted_keys = ["{key}.pub"]\n'
        )
        print(
            "  config.toml:\n" + "".join(f"    {line}\n" for line in (member / "config.toml").read_text().splitlines())
        )
        as_member = {"ADAPTERS_HOME": str(member)}
        _shared.adapters("install", f"{NAME}@{SIGNED}", env=as_member)
        _shared.adapters("info", f"{NAME}@{SIGNED}", env=as_member)
        _shared.adapters("install", f"{NAME}@{UNSIGNED}", expect=EXIT_INTEGRITY, env=as_member)
        if oci:
            _shared.adapters("install", f"{oci}@{SIGNED}", env=as_member)
            _shared.adapters("install", f"{oci}@{UNSIGNED}", expect=EXIT_INTEGRITY, env=as_member)
        else:
            print("(no --oci HOST:PORT given: the OCI registry part was skipped)")
        _shared.adapters("list", env=as_member)
        _shared.adapters("verify", "--signatures", env=as_member)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
