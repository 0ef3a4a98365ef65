"""Signed adapters (issue 13, docs/SIGNING.md): sign, publish, install under a [[trust]] policy; every attack
refused with exit 4 and nothing installed; model_signing's own signer and verifier agree with ours; keys,
certificates, the lockfile's signer. Real model_signing, keys made here with `cryptography`, no network."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapterhub_client.manifest import complete_package, dumps_manifest, read_manifest
from adapterhub_client.registry.publish import publish_directory
from adapterhub_client.signing import SIGNATURE_FILE
from adapterhub_client.signing.keys import generate_keypair

BASE = {"name": "test/base", "fingerprint": {"content": "blake3:" + "a" * 64}}


@pytest.fixture
def keys(tmp_path):
    """Two ECDSA P-256 key pairs: `trusted` (in the policy) and `other`."""
    out = {}
    for label in ("trusted", "other"):
        private, public, fp = generate_keypair(tmp_path / f"{label}.pem")
        out[label] = (private, public, fp)
    return out


@pytest.fixture
def trust(home):
    def write(*public: Path, match: str = "acme/*", extra: str = "") -> None:
        home.mkdir(parents=True, exist_ok=True)
        listed = ", ".join(json.dumps(str(p)) for p in public)
        (home / "config.toml").write_text(f'[[trust]]\nmatch = "{match}"\ntrusted_keys = [{listed}]\n{extra}')

    return write


@pytest.fixture
def signed(cli, package, keys):
    """A package signed with the trusted key (`adapters sign`), not yet published."""

    def build(name: str = "acme/x", version: str = "1.0.0", key: str = "trusted", **kw):
        pkg = package(name, version, extra={"base_model": BASE}, **kw)
        r = cli("sign", str(pkg), "--key", str(keys[key][0]), "--json")
        assert r.code == 0, r.err
        assert r.json()["signer"] == keys[key][2]
        return pkg

    return build


def installed_views(home: Path) -> list[str]:
    root = home / "cache" / "installed"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*/*")) if root.exists() else []


def test_sign_publish_install_under_a_policy_then_info_and_verify_show_the_signer(cli, signed, keys, trust, home):
    pkg = signed()
    listed = [f["path"] for f in read_manifest(pkg)["files"]]
    assert listed == ["adapter.safetensors", "README.md", SIGNATURE_FILE]  # the card written before signing
    assert cli("publish", str(pkg)).code == 0
    trust(keys["trusted"][1])
    r = cli("install", "acme/x", "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    assert (view / SIGNATURE_FILE).read_bytes() == (pkg / SIGNATURE_FILE).read_bytes()
    info = cli("info", "acme/x", "--json").json()["signature"]
    assert info["verified"] is True and info["signer"] == keys["trusted"][2]
    assert info["trusted_by"] == str(keys["trusted"][1]) and (info["name"], info["version"]) == ("acme/x", "1.0.0")
    r = cli("verify", "--signatures", "--json")
    assert r.code == 0, r.err
    assert r.json()["signatures"][0]["signature"]["signer"] == keys["trusted"][2]
    trust(keys["other"][1])  # the policy changed: the installed version no longer passes
    r = cli("verify", "--signatures")
    assert r.code == 4 and "untrusted key" in r.out


def _forge(home: Path, source: Path, tmp: Path, *, edit=None, files=None, signature: Path | None = None) -> None:
    """What an attacker with write access to the registry does: publish a changed copy of a signed package
    straight into the registry (no `adapters publish`, which would refuse it), hashes recomputed."""
    pkg = tmp / "forged"
    shutil.copytree(source, pkg)
    manifest = read_manifest(pkg)
    if files is not None:
        files(pkg, manifest)
    if signature is not None:
        shutil.copyfile(signature, pkg / SIGNATURE_FILE)
    if edit is not None:
        edit(manifest)
    manifest["files"] = [{"path": f["path"]} for f in manifest["files"]]  # hashed anew below
    publish_directory(home / "registry", pkg, complete_package(pkg, manifest))


def _change_weights(pkg: Path, manifest: dict) -> None:
    (pkg / "adapter.safetensors").write_bytes((pkg / "adapter.safetensors").read_bytes()[:-4] + b"evil")


def _add_file(pkg: Path, manifest: dict) -> None:
    (pkg / "extra.safetensors").write_bytes(b"{}")
    manifest["files"].append({"path": "extra.safetensors"})


def _drop_signature(pkg: Path, manifest: dict) -> None:
    (pkg / SIGNATURE_FILE).unlink()
    manifest["files"] = [f for f in manifest["files"] if f["path"] != SIGNATURE_FILE]


ATTACKS = {
    "a file changed after signing": ({"files": _change_weights}, "acme/x@1.0.0", "adapter.safetensors changed after"),
    "a file added": ({"files": _add_file}, "acme/x@1.0.0", "extra.safetensors is not covered by the signature"),
    "renamed": ({"edit": lambda m: m.update(name="acme/evil")}, "acme/evil", "signed for 'acme/x' '1.0.0'"),
    "another version": ({"edit": lambda m: m.update(version="1.0.1")}, "acme/x@1.0.1", "signed for 'acme/x' '1.0.0'"),
    "re-pointed to another base": (
        {"edit": lambda m: m["base_model"]["fingerprint"].update(content="blake3:" + "b" * 64)},
        "acme/x@1.0.0",
        "signed for a base model with content 'blake3:aaaa",
    ),
    "another manifest field edited": (
        {"edit": lambda m: m.update(description="now trustworthy")},
        "acme/x@1.0.0",
        "was edited after signing",
    ),
    "the signature removed": ({"files": _drop_signature}, "acme/x@1.0.0", "acme/x 1.0.0 is unsigned, but trust rule"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_with_exit_4_and_nothing_installed(cli, signed, keys, trust, home, tmp_path, attack):
    forged, ref, reason = ATTACKS[attack]
    source = signed()  # signed, never published: the attacker publishes the forged copy only
    _forge(home, source, tmp_path, **forged)
    trust(keys["trusted"][1])
    r = cli("install", ref)
    assert r.code == 4, (r.code, r.err)
    assert reason in r.err, r.err
    assert installed_views(home) == []
    trust(keys["trusted"][1], extra="require_signature = false\n")  # optional signatures: a broken one still fails
    r = cli("install", ref)
    if attack == "the signature removed":
        assert r.code == 0, r.err  # unsigned is allowed by this rule
    else:
        assert r.code == 4 and reason in r.err and installed_views(home) == []


def test_an_untrusted_key_and_a_signature_copied_from_another_adapter(cli, signed, keys, trust, home, tmp_path):
    trust(keys["trusted"][1])
    assert cli("publish", str(signed("acme/x", key="other"))).code == 0
    r = cli("install", "acme/x")
    assert r.code == 4 and f"signed by an untrusted key {keys['other'][2]}" in r.err and installed_views(home) == []
    trust(keys["trusted"][1], extra="require_signature = false\n")  # optional: an unknown signer only warns
    r = cli("install", "acme/x")
    assert r.code == 0 and "warning:" in r.err and "untrusted key" in r.err
    assert cli("uninstall", "acme/x").code == 0
    trust(keys["trusted"][1])

    donor = signed("acme/y", seed=5)  # a genuine signature by the trusted key, for another adapter
    victim = signed("acme/z", seed=6)
    _forge(home, victim, tmp_path, signature=donor / SIGNATURE_FILE)
    r = cli("install", "acme/z")
    assert r.code == 4 and "signed for 'acme/y'" in r.err and installed_views(home) == []


def test_publish_refuses_what_its_signature_no_longer_signs_and_publish_sign_signs_it(cli, signed, keys, trust, home):
    pkg = signed()
    r = cli("publish", str(pkg), "--version", "2.0.0")  # the version is changed at publish time
    assert r.code == 4 and "broken signature" in r.err
    r = cli("publish", str(pkg), "--version", "2.0.0", "--sign", "--key", str(keys["other"][0]))
    assert r.code == 0, r.err
    trust(keys["other"][1])
    r = cli("install", "acme/x@2.0.0", "--json")
    assert r.code == 0, r.err
    assert cli("info", "acme/x@2.0.0", "--json").json()["signature"]["signer"] == keys["other"][2]
    assert cli("publish", str(pkg), "--key", str(keys["other"][0])).code == 2  # --key without --sign


def test_our_signature_verifies_with_model_signing_on_the_package_and_the_installed_view(
    cli, signed, keys, trust, tmp_path
):
    import model_signing

    pkg = signed()
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys["trusted"][1])
    verifier.verify(pkg, pkg / SIGNATURE_FILE)  # raises on any mismatch
    assert cli("publish", str(pkg)).code == 0
    trust(keys["trusted"][1])
    view = Path(cli("install", "acme/x", "--json").json()["installed"][0]["path"])
    verifier.verify(view, view / SIGNATURE_FILE)
    copy = tmp_path / "tampered"
    shutil.copytree(pkg, copy)
    _change_weights(copy, {})
    with pytest.raises(ValueError, match="Hash mismatch for 'adapter.safetensors'"):
        verifier.verify(copy, copy / SIGNATURE_FILE)


def test_model_signing_cli_signature_of_our_package_verifies_with_us(cli, package, keys, trust, home):
    pkg = package("acme/ext", "1.0.0", extra={"base_model": BASE})
    r = cli("sign", str(pkg), "--prepare", "--json")  # canonical manifest.json and the card, for another signer
    assert r.code == 0 and r.json()["signature"] is None
    signer = Path(sys.executable).with_name("model_signing")
    done = subprocess.run(
        [str(signer), "sign", "key", str(pkg), "--private_key", str(keys["trusted"][0])]
        + ["--signature", str(pkg / SIGNATURE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert cli("verify", str(pkg), "--key", str(keys["trusted"][1])).code == 0
    r = cli("verify", str(pkg), "--key", str(keys["other"][1]))
    assert r.code == 4 and "untrusted key" in r.err
    trust(keys["trusted"][1])
    assert cli("publish", str(pkg)).code == 0  # model.sig, unlisted, is published with the package
    r = cli("install", "acme/ext", "--json")
    assert r.code == 0, r.err
    assert cli("info", "acme/ext", "--json").json()["signature"]["verified"] is True
    (pkg / "README.md").write_text("changed after signing\n")  # and the manifest's hashes brought up to date
    manifest = read_manifest(pkg)
    manifest["files"] = [{"path": f["path"]} for f in manifest["files"]]
    (pkg / "manifest.json").write_bytes(dumps_manifest(complete_package(pkg, manifest)))
    r = cli("verify", str(pkg), "--key", str(keys["trusted"][1]))
    assert r.code == 4 and "README.md changed after signing" in r.err


def test_loose_key_permissions_warn_and_keygen_writes_0600_and_never_overwrites(cli, package, keys, tmp_path):
    private = keys["trusted"][0]
    assert (private.stat().st_mode & 0o777) == 0o600
    assert cli("keygen", str(private)).code == 2  # exists
    r = cli("keygen", str(tmp_path / "ed"), "--type", "ed25519", "--json")
    assert r.code == 0 and r.json()["fingerprint"].startswith("sha256:")
    os.chmod(private, 0o644)
    r = cli("sign", str(package("acme/w", "1.0.0")), "--key", str(private))
    assert r.code == 0 and "warning:" in r.err and "readable by others (mode 0644)" in r.err
    os.chmod(private, 0o600)
    r = cli("sign", str(package("acme/w", "1.0.0")), "--key", str(private))
    assert r.code == 0 and "warning" not in r.err


def test_ed25519_keys_sign_and_verify(cli, package, trust, tmp_path):
    private, public, fp = generate_keypair(tmp_path / "ed", "ed25519")
    pkg = package("acme/ed", "1.0.0")
    assert cli("sign", str(pkg), "--key", str(private)).code == 0
    assert cli("publish", str(pkg)).code == 0
    trust(public)
    assert cli("install", "acme/ed").code == 0
    assert cli("info", "acme/ed", "--json").json()["signature"]["signer"] == fp


def _certificates(tmp_path: Path, email: str) -> tuple[Path, Path, Path]:
    """A CA and a code-signing certificate for `email` issued by it; (CA cert, leaf key, leaf cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme release")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "leaf.key", tmp_path / "leaf.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths[1].write_bytes(pem)
    os.chmod(paths[1], 0o600)
    paths[2].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return paths


def test_certificate_signing_chains_to_a_trusted_ca_and_identities_are_checked(cli, package, trust, home, tmp_path):
    import model_signing

    ca, key, leaf = _certificates(tmp_path, "release@acme.example")
    pkg = package("acme/cert", "1.0.0")
    assert cli("sign", str(pkg), "--key", str(key), "--cert-chain", str(leaf)).code == 0
    model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[ca]).verify(pkg, pkg / SIGNATURE_FILE)
    assert cli("publish", str(pkg)).code == 0
    trust()  # no key at all: a rule requiring signatures is refused when read
    r = cli("install", "acme/cert")
    assert r.code == 2 and "require_signature needs trusted_keys" in r.err
    (home / "config.toml").write_text(
        f'[[trust]]\nmatch = "acme/*"\ntrusted_keys = ["{ca}", "identity:someone@else.example"]\n'
    )
    r = cli("install", "acme/cert")
    assert r.code == 4 and "not a trusted identity" in r.err and installed_views(home) == []
    (home / "config.toml").write_text(
        f'[[trust]]\nmatch = "acme/*"\ntrusted_keys = ["{ca}", "identity:release@acme.example"]\n'
    )
    assert cli("install", "acme/cert").code == 0
    info = cli("info", "acme/cert", "--json").json()["signature"]
    assert info["kind"] == "certificate" and info["identity"] == "release@acme.example"


def test_lockfile_records_the_signer_and_frozen_refuses_another(cli, signed, keys, trust, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("publish", str(signed())).code == 0
    trust(keys["trusted"][1])
    assert cli("lock", "acme/x").code == 0
    lock = json.loads((tmp_path / "adapters.lock").read_text())
    assert lock["adapters"][0]["signer"] == keys["trusted"][2]
    assert cli("install", "--frozen").code == 0
    lock["adapters"][0]["signer"] = keys["other"][2]
    (tmp_path / "adapters.lock").write_text(json.dumps(lock))
    r = cli("install", "--frozen")
    assert r.code == 4 and f"the lockfile records {keys['other'][2]}" in r.err

    local = signed("acme/local", seed=9)  # a package directory, locked by its path, then re-signed
    (home / "config.toml").unlink()  # no policy: the lockfile's signer alone is checked
    assert cli("lock", str(local)).code == 0
    assert cli("sign", str(local), "--key", str(keys["other"][0])).code == 0
    r = cli("install", "--frozen")
    assert r.code == 4 and f"signed by {keys['other'][2]}, but the lockfile records {keys['trusted'][2]}" in r.err


@pytest.mark.parametrize(
    "table, message",
    [
        ('[[trust]]\ntrusted_keys = ["k.pub"]\n', "'match' must be a non-empty name pattern"),
        ('[[trust]]\nmatch = "acme/*"\nrequire_signature = "yes"\ntrusted_keys = ["k"]\n', "true or false"),
        ('[[trust]]\nmatch = "acme/*"\ntrusted_keys = "k.pub"\n', "'trusted_keys' must be an array"),
        ('[[trust]]\nmatch = "acme/*"\ntrusted_keys = ["missing.pub"]\n', "missing.pub"),
    ],
)
def test_trust_tables_are_checked_with_one_line_errors(cli, signed, home, table, message):
    assert cli("publish", str(signed())).code == 0
    (home / "config.toml").write_text(table)
    r = cli("install", "acme/x")
    assert r.code == 2 and message in r.err and installed_views(home) == []


def test_verifying_at_install_never_imports_model_signing(cli, signed, keys, trust, home):
    """model_signing pulls in sigstore (over a second): installs under a policy verify with cryptography only."""
    assert cli("publish", str(signed())).code == 0
    trust(keys["trusted"][1])
    code = (
        "import sys\n"
        "from adapterhub_client.cli.main import main\n"
        "try:\n    main(['install', 'acme/x'])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('model_signing', 'sigstore', 'torch'))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert installed_views(home) == ["acme/x/1.0.0"]
