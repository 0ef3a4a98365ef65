"""What a signature says: the in-toto statement model_signing signs, with our claims, checked against a manifest.

The manifest cannot list the sha256 of a signature over its own sha256, so the manifest that is signed is
the package's manifest without its `model.sig` entry (`signed_manifest`): model.sig is listed and hashed
like any file (so the index line's manifest sha256 pins the signature too), and the signature covers
everything else in the manifest, byte for byte in its canonical form.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .._fs import sha256_bytes
from ..errors import IntegrityError
from ..manifest import MANIFEST_FILE, dumps_manifest, shown
from ..store.cache import RECORD_FILE

SIGNATURE_FILE = "model.sig"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"  # model_signing 1.x
PAYLOAD_TYPE = "application/vnd.in-toto+json"
CLAIMS_KEY = "adapterhub"  # our predicate field: model_signing's v1.0 verifier ignores fields it does not know
# Left out of the signed files, and recorded so in the statement, so that model_signing's own verifier
# accepts both a package directory and an installed view: the signature itself, the manifest (which lists
# model.sig; our claims carry its sha256 instead) and an installed view's install record.
UNSIGNED_PATHS = (SIGNATURE_FILE, MANIFEST_FILE, RECORD_FILE)


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """Who signed a version and whether that was checked: `verified` is True only when the signature verified
    with a trusted key or certificate (`trusted_by` names it); otherwise `signer` is what the bundle claims."""

    signer: str  # "sha256:<hex>" of the signing public key (PEM SubjectPublicKeyInfo), as model_signing hints it
    kind: str  # "key" | "certificate" | "sigstore"
    verified: bool
    name: str | None = None  # the adapter name, version and base the signature was made for (our claims)
    version: str | None = None
    identity: str | None = None  # a certificate's e-mail, URI or common name
    trusted_by: str | None = None  # the trusted key or CA it verified with
    reason: str | None = None  # why it is not verified (no trust rule, an untrusted key, ...)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """One line for humans: `sha256:ab12…ef (key, verified with acme.pub)`."""
        who = f"{self.identity} " if self.identity else ""
        state = (
            f"verified with {self.trusted_by}" if self.verified else f"not verified: {self.reason or 'no trust rule'}"
        )
        return f"{who}{self.signer} ({self.kind}, {state})"


def signature_entry(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's `model.sig` entry, if it lists one."""
    for entry in manifest.get("files", []):
        if entry.get("path") == SIGNATURE_FILE:
            return entry
    return None


def signed_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as it is signed: without its model.sig entry."""
    return {**manifest, "files": [f for f in manifest["files"] if f.get("path") != SIGNATURE_FILE]}


def signed_manifest_sha256(manifest: dict[str, Any]) -> str:
    return sha256_bytes(dumps_manifest(signed_manifest(manifest)))


def claims(manifest: dict[str, Any]) -> dict[str, str | None]:
    """Our statement's claims, all strings (the statement is a protobuf Struct: numbers would become floats)."""
    base = manifest.get("base_model") or {}
    fingerprint = base.get("fingerprint") or {}
    return {
        "name": manifest["name"],
        "version": manifest["version"],
        "manifest_sha256": signed_manifest_sha256(manifest),
        "base_name": base.get("name"),
        "base_content": fingerprint.get("content"),
        "base_architecture": fingerprint.get("architecture"),
    }


def parse_statement(payload: bytes, where: str) -> dict[str, Any]:
    """The statement of a DSSE payload, with the checks model_signing's verifier makes: its types, one
    subject whose sha256 is that of the resources' digests in order, file serialization."""
    try:
        statement = json.loads(payload)
        if statement.get("_type") != STATEMENT_TYPE:
            raise IntegrityError(f"{where}: not an in-toto v1 statement")
        if statement.get("predicateType") != PREDICATE_TYPE:
            raise IntegrityError(f"{where}: predicate {shown(statement.get('predicateType'))} is not {PREDICATE_TYPE}")
        predicate, subjects = statement["predicate"], statement["subject"]
        resources = predicate["resources"]
        root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
        if len(subjects) != 1 or subjects[0]["digest"]["sha256"] != root:
            raise IntegrityError(f"{where}: the statement's subject digest does not match its resources")
        serialization = predicate["serialization"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(f"{where}: malformed in-toto statement") from None
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise IntegrityError(
            f"{where}: signed with {shown(serialization.get('method'))}/{shown(serialization.get('hash_type'))} "
            "serialization; only per-file sha256 (model_signing's default) is checked without re-hashing"
        )
    if any(r.get("algorithm") != "sha256" or not isinstance(r.get("name"), str) for r in resources):
        raise IntegrityError(f"{where}: a resource of the statement is not a sha256 file digest")
    return statement


def check_statement(
    statement: dict[str, Any], manifest: dict[str, Any], where: str, manifest_file_sha256: str | None = None
) -> dict[str, str | None]:
    """That `statement` was made for this manifest; returns the claims it carries. One IntegrityError naming the
    first difference: another name or version (a copied or relabelled signature), another base, a file added,
    changed or missing, the manifest otherwise edited. A plain model_signing statement (no claims) binds the
    manifest through its manifest.json resource: the canonical signed manifest, or `manifest_file_sha256` (the
    manifest.json of a package directory, as signed there)."""
    signed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    ours = statement["predicate"].get(CLAIMS_KEY)
    expected = claims(manifest)
    label = f"{manifest['name']} {manifest['version']}"
    if isinstance(ours, dict):
        if (ours.get("name"), ours.get("version")) != (expected["name"], expected["version"]):
            raise IntegrityError(
                f"{where}: signed for {shown(ours.get('name'))} {shown(ours.get('version'))}, not {label} "
                "(a signature copied from another adapter or version)"
            )
        for key, what in (("base_content", "content"), ("base_architecture", "architecture"), ("base_name", "name")):
            if ours.get(key) != expected[key]:
                raise IntegrityError(
                    f"{where}: signed for a base model with {what} {shown(ours.get(key))}, but the manifest of "
                    f"{label} names {shown(expected[key])}"
                )
    manifest_digest = signed.pop(MANIFEST_FILE, None)
    listed = {f["path"]: f["sha256"] for f in signed_manifest(manifest)["files"]}
    for path in sorted(listed.keys() - signed.keys()):
        raise IntegrityError(f"{where}: {path} is not covered by the signature (added after signing)")
    for path in sorted(signed.keys() - listed.keys()):
        raise IntegrityError(f"{where}: {path} was signed but is not part of {label} (removed after signing)")
    for path in sorted(listed):
        if listed[path] != signed[path]:
            raise IntegrityError(
                f"{where}: {path} changed after signing (signed sha256 {signed[path][:12]}…, "
                f"the package has {listed[path][:12]}…)"
            )
    if isinstance(ours, dict):
        if ours.get("manifest_sha256") != expected["manifest_sha256"]:
            raise IntegrityError(f"{where}: the manifest of {label} was edited after signing")
        return {k: v if isinstance(v, str) else None for k, v in ours.items()}
    if manifest_digest is None:
        raise IntegrityError(f"{where}: the signature does not cover {MANIFEST_FILE} (name, version and base unsigned)")
    if manifest_digest not in (expected["manifest_sha256"], manifest_file_sha256):
        raise IntegrityError(f"{where}: the manifest of {label} differs from the {MANIFEST_FILE} that was signed")
    return {"name": manifest["name"], "version": manifest["version"]}
