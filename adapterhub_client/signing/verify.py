"""Verifying `model.sig` against a manifest, with `cryptography` only (and pyOpenSSL for certificate chains).

This follows the format model_signing 1.1.1 writes and checks (a Sigstore v0.3 bundle holding a DSSE
envelope: an ECDSA or Ed25519 signature over the envelope's PAE encoding; a public-key hint, or an X.509
chain), without importing model_signing itself: its import pulls in sigstore and takes over a second, which
every install under a trust policy would pay. The interop tests keep the two verifiers in agreement.

No file is hashed here: an install checks the statement against the manifest, whose sha256s every
downloaded byte was already checked against.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..errors import IntegrityError
from .keys import Anchors, TrustedKey, certificate_identities, fingerprint
from .statement import PAYLOAD_TYPE, SignatureInfo, check_statement, parse_statement

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MAX_SIGNATURE_BYTES = 16 * 1024 * 1024  # a statement lists one digest per file: large packages stay far below


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


class Bundle:
    """A parsed model.sig: the DSSE payload and signature, and what identifies the signer."""

    def __init__(self, raw: bytes, where: str) -> None:
        self.where = where
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise IntegrityError(f"{where}: larger than {MAX_SIGNATURE_BYTES} bytes; not a signature")
        try:
            data = json.loads(raw)
            if data.get("mediaType") != BUNDLE_MEDIA_TYPE:
                raise IntegrityError(f"{where}: not a Sigstore v0.3 bundle (mediaType {data.get('mediaType')!r})")
            envelope = data["dsseEnvelope"]
            self.payload_type: str = envelope["payloadType"]
            self.payload = base64.b64decode(envelope["payload"], validate=True)
            self.signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
            material = data["verificationMaterial"]
            self.hint: str | None = (material.get("publicKey") or {}).get("hint")
            chain = (material.get("x509CertificateChain") or {}).get("certificates") or []
            if material.get("certificate"):  # keyless (Fulcio) bundles carry one certificate
                chain = [material["certificate"]]
            self.chain_der = [base64.b64decode(c["rawBytes"], validate=True) for c in chain]
            self.keyless = bool(material.get("certificate")) or bool(material.get("tlogEntries"))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, binascii.Error):
            raise IntegrityError(f"{where}: not a valid Sigstore bundle") from None
        if self.payload_type != PAYLOAD_TYPE:
            raise IntegrityError(f"{where}: DSSE payload type {self.payload_type!r} is not {PAYLOAD_TYPE}")

    @property
    def kind(self) -> str:
        return "sigstore" if self.keyless else "certificate" if self.chain_der else "key"

    def leaf(self) -> Any:
        from cryptography import x509

        try:
            return x509.load_der_x509_certificate(self.chain_der[0])
        except ValueError:
            raise IntegrityError(f"{self.where}: the signing certificate cannot be read") from None

    def claimed_signer(self) -> tuple[str, str | None]:
        """(fingerprint, identity) the bundle claims, unverified: its key hint, or its certificate's key."""
        if self.chain_der:
            leaf = self.leaf()
            names = certificate_identities(leaf)
            return fingerprint(leaf.public_key()), names[0] if names else None
        return f"sha256:{self.hint}" if self.hint else "sha256:unknown", None


def _signature_valid(public_key: Any, bundle: Bundle) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    message = pae(bundle.payload)
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(bundle.signature, message)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            size = public_key.curve.key_size
            digest = hashes.SHA256() if size == 256 else hashes.SHA384() if size == 384 else hashes.SHA512()
            public_key.verify(bundle.signature, message, ec.ECDSA(digest))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _verify_with_key(bundle: Bundle, keys: tuple[TrustedKey, ...]) -> TrustedKey | None:
    """The trusted key the signature verifies with; None when it names none of them."""
    hinted = [k for k in keys if bundle.hint and k.fingerprint == f"sha256:{bundle.hint}"]
    for key in hinted or ([] if bundle.hint else list(keys)):
        if _signature_valid(key.key, bundle):
            return key
        if hinted:  # the key it names, yet no valid signature: the payload was altered
            raise IntegrityError(f"{bundle.where}: the signature does not verify with {key.label} (altered)")
    return None


def _verify_chain(bundle: Bundle, anchors: Anchors) -> tuple[Any, str | None, str] | str:
    """(leaf public key, identity, trust anchor label) of a certificate-signed bundle, as model_signing checks
    it: the chain up to a trusted CA at the signing certificate's issue time, a certificate for signing;
    or why its signer is not trusted."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from OpenSSL import crypto

    leaf = bundle.leaf()
    signer = fingerprint(leaf.public_key())
    if not anchors.cas:
        return f"signed by a certificate for key {signer}, and no CA is trusted"
    store = crypto.X509Store()
    for _, ca in anchors.cas:
        store.add_cert(crypto.X509.from_cryptography(ca))
    store.set_time(leaf.not_valid_before_utc)
    try:
        chain = [crypto.X509.from_cryptography(x509.load_der_x509_certificate(d)) for d in bundle.chain_der[1:]]
        context = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf), chain)
        verified = context.get_verified_chain()
    except (crypto.X509StoreContextError, ValueError):
        return "the signing certificate does not chain to a trusted CA"
    root = verified[-1].to_cryptography()
    label = next(label for label, ca in anchors.cas if ca == root)
    try:
        usage_ok = leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    except x509.ExtensionNotFound:
        usage_ok = False
    if not usage_ok:
        try:
            usage_ok = (
                ExtendedKeyUsageOID.CODE_SIGNING in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            )
        except x509.ExtensionNotFound:
            usage_ok = False
    if not usage_ok:
        raise IntegrityError(f"{bundle.where}: the signing certificate is not for digital signatures")
    names = certificate_identities(leaf)
    if anchors.identities and not set(names) & set(anchors.identities):
        return (
            f"the signing certificate names {', '.join(names) or 'no identity'}, "
            f"not a trusted identity ({', '.join(anchors.identities)})"
        )
    return leaf.public_key(), names[0] if names else None, label


def verify_signature(
    raw: bytes,
    manifest: dict[str, Any],
    anchors: Anchors,
    where: str,
    manifest_file_sha256: str | None = None,
) -> SignatureInfo:
    """Verify `raw` (model.sig) with the trusted `anchors`, then its statement against `manifest`. A
    well-formed signature by a signer the anchors do not name comes back unverified, with the reason; a
    signature that fails any other check (altered, or made for other files or another manifest) raises
    IntegrityError."""
    bundle = Bundle(raw, where)
    statement = parse_statement(bundle.payload, where)
    said = check_statement(statement, manifest, where, manifest_file_sha256)
    claimed, identity = bundle.claimed_signer()

    def unverified(reason: str) -> SignatureInfo:
        return SignatureInfo(claimed, bundle.kind, False, said.get("name"), said.get("version"), identity, None, reason)

    if bundle.keyless:
        return unverified("a Sigstore keyless signature: verifying those is not supported yet")
    if bundle.chain_der:
        checked = _verify_chain(bundle, anchors)
        if isinstance(checked, str):
            return unverified(checked)
        public, identity, trusted_by = checked
        if not _signature_valid(public, bundle):
            raise IntegrityError(f"{where}: the signature does not verify with its signing certificate (altered)")
        signer = claimed
    else:
        key = _verify_with_key(bundle, anchors.keys)
        if key is None:
            return unverified(f"signed by an untrusted key {claimed}")
        signer, trusted_by = key.fingerprint, key.label
    return SignatureInfo(signer, bundle.kind, True, said.get("name"), said.get("version"), identity, trusted_by)


def inspect_signature(raw: bytes, manifest: dict[str, Any], where: str) -> SignatureInfo:
    """What model.sig claims, checked against `manifest` but not verified (there is no trusted key to verify
    it with): a signature that cannot be this package's is refused whoever made it."""
    return verify_signature(raw, manifest, Anchors(), where)
