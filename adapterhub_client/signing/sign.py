"""Signing a manifest with the `model_signing` library (its in-toto payload and Sigstore bundle signers).

The statement is built from the sha256s the manifest already holds (publish and `adapters sign` hashed every
file once to write it), so signing adds one signature and no second pass over the bytes. model_signing is
imported here only, inside the functions: it pulls in sigstore (over a second), and no other command needs it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import AdapterError, UsageError
from .keys import fingerprint, read_private_key
from .statement import CLAIMS_KEY, UNSIGNED_PATHS, claims, signed_manifest

PASSWORD_ENV = "ADAPTERS_KEY_PASSWORD"  # the passphrase of an encrypted private key


def payload(manifest: dict[str, Any]) -> Any:
    """model_signing's in-toto payload for the package's files (model.sig left out), with our claims added
    to its predicate."""
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from in_toto_attestation.v1 import statement  # type: ignore[import-untyped]
    from model_signing import manifest as ms_manifest
    from model_signing._hashing import hashing
    from model_signing._signing import signing

    files = signed_manifest(manifest)["files"]
    items = [
        ms_manifest.FileManifestItem(
            path=PurePosixPath(f["path"]), digest=hashing.Digest("sha256", bytes.fromhex(f["sha256"]))
        )
        for f in files
    ]
    serialization = ms_manifest._FileSerialization("sha256", False, [Path(p) for p in UNSIGNED_PATHS])
    signed = signing.Payload(ms_manifest.Manifest(manifest["name"], items, serialization))
    pb = signed.statement.pb
    predicate = {**json_format.MessageToDict(pb.predicate), CLAIMS_KEY: claims(manifest)}
    signed.statement = statement.Statement(
        subjects=list(pb.subject), predicate_type=pb.predicate_type, predicate=predicate
    )
    return signed


def _key_signer(key: Any) -> Any:
    """model_signing's key signer around a key we read (so that permissions are checked once, here); for
    Ed25519, which model_signing 1.1.1 does not sign with, the same bundle with an Ed25519 signature."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from google.protobuf import json_format
    from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing
    from sigstore_models import intoto
    from sigstore_models.bundle import v1 as bundle_v1

    class KeySigner(sign_ec_key.Signer):
        def __init__(self, private_key: Any) -> None:
            self._private_key = private_key

        def sign(self, payload: signing.Payload) -> signing.Signature:
            if not isinstance(self._private_key, ed25519.Ed25519PrivateKey):
                return super().sign(payload)
            raw = json_format.MessageToJson(payload.statement.pb).encode("utf-8")
            sig = base64.b64encode(self._private_key.sign(sign_sigstore_pb.pae(raw)))
            envelope = intoto.Envelope(
                payload=base64.b64encode(raw),
                payload_type=signing._IN_TOTO_JSON_PAYLOAD_TYPE,
                signatures=[intoto.Signature(sig=sig, keyid="")],
            )
            bundle = bundle_v1.Bundle(
                media_type=sign_sigstore_pb._BUNDLE_MEDIA_TYPE,  # type: ignore[arg-type]
                verification_material=self._get_verification_material(),
                dsse_envelope=envelope,
            )
            return sign_sigstore_pb.Signature(bundle)

    return KeySigner(key)


def _certificate_signer(key: Any, chain_files: Sequence[str | os.PathLike[str]], where: str) -> Any:
    """model_signing's certificate signer: the first certificate of the chain files is the signing
    certificate (its public key must be the key's), the rest lead to a trusted root."""
    from cryptography import x509
    from model_signing._signing import sign_certificate

    certs: list[x509.Certificate] = []
    for path in chain_files:
        try:
            certs.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except OSError as exc:
            raise UsageError(f"--cert-chain {path}: {exc.strerror or exc}") from None
        except ValueError:
            raise UsageError(f"--cert-chain {path}: not PEM certificates") from None
    if not certs or certs[0].public_key() != key.public_key():
        raise UsageError(f"{where}: the first certificate of --cert-chain must be the key's signing certificate")

    class CertificateSigner(sign_certificate.Signer):
        def __init__(self) -> None:
            self._private_key = key
            self._signing_certificate = certs[0]
            self._trust_chain = certs[1:]

    return CertificateSigner()


def sign_manifest(
    manifest: dict[str, Any],
    key: str | os.PathLike[str] | None,
    *,
    cert_chain: Sequence[str | os.PathLike[str]] = (),
    password: str | None = None,
    sigstore: bool = False,
) -> tuple[bytes, str]:
    """The signature (`model.sig` bytes: a Sigstore bundle) of `manifest` and the signer's fingerprint.
    `key`: a PEM private key (ECDSA P-256/384/521 or Ed25519); with `cert_chain` signed as its certificate.
    `sigstore`: keyless signing with the public Sigstore services (needs the network; untested here)."""
    if sigstore:
        return _sign_keyless(manifest)
    if key is None:
        raise UsageError("signing needs --key KEY.pem (or --sigstore for keyless signing)")
    private = read_private_key(key, password if password is not None else os.environ.get(PASSWORD_ENV))
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if cert_chain and isinstance(private, ed25519.Ed25519PrivateKey):
        raise UsageError(f"--key {key}: certificate signing takes an ECDSA key (model_signing verifies only those)")
    signer = _certificate_signer(private, cert_chain, f"--key {key}") if cert_chain else _key_signer(private)
    try:
        bundle = signer.sign(payload(manifest)).bundle.to_json()
    except ValueError as exc:  # model_signing refuses a key or certificate it cannot use
        raise UsageError(f"--key {key}: {exc}") from None
    return bundle.encode(), fingerprint(private.public_key())


def _sign_keyless(manifest: dict[str, Any]) -> tuple[bytes, str]:
    from cryptography import x509
    from model_signing._signing import sign_sigstore

    try:
        bundle: Any = sign_sigstore.Signer().sign(payload(manifest)).bundle
        cert = x509.load_der_x509_certificate(bundle.verification_material.certificate.raw_bytes)
    except Exception as exc:  # the OIDC flow and the Sigstore services fail in many ways: one line
        raise AdapterError(f"--sigstore: keyless signing failed ({type(exc).__name__}: {exc})") from None
    return bundle.to_json().encode(), fingerprint(cert.public_key())
