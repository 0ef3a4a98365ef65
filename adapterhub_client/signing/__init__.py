"""Signed adapters in the OpenSSF model signing format (docs/SIGNING.md).

A package's signature is its file `model.sig`: a Sigstore bundle over an in-toto statement listing every
other file's sha256 (model_signing's v1.0 predicate) plus our claims (the adapter's name, version, base
model fingerprints and the manifest's sha256) under the predicate key `adapterhub`, which model_signing's
verifier ignores, so `model_signing verify key` still accepts the package directory.

Torch-free, and `model_signing` is imported only when signing (it pulls in sigstore: over a second):
verification needs only `cryptography` (sign.py signs; verify.py verifies; policy.py applies `[[trust]]`).
"""

from __future__ import annotations

from .statement import SIGNATURE_FILE, SignatureInfo, signature_entry, signed_manifest, signed_manifest_sha256

__all__ = ["SIGNATURE_FILE", "SignatureInfo", "signature_entry", "signed_manifest", "signed_manifest_sha256"]
