"""Key material: generating key pairs, reading private keys (warning when others can read them), and the
trust anchors a `[[trust]]` rule names (PEM public keys, CA certificates, certificate identities)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AdapterWarning, UsageError

if TYPE_CHECKING:
    from cryptography import x509

KEY_TYPES = ("ecdsa-p256", "ed25519")
IDENTITY_PREFIX = "identity:"
_PEM = "-----BEGIN "


@dataclasses.dataclass(frozen=True)
class TrustedKey:
    label: str  # the path or "inline key" as written in config.toml, for messages
    key: Any  # a cryptography public key
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class Anchors:
    """What one trust rule accepts: public keys, CA certificates (a certificate-signed bundle must chain to one)
    and, when any are given, the identities such a certificate must name."""

    keys: tuple[TrustedKey, ...] = ()
    cas: tuple[tuple[str, x509.Certificate], ...] = ()
    identities: tuple[str, ...] = ()


def fingerprint(public_key: Any) -> str:
    """`sha256:<hex>` of the key's PEM SubjectPublicKeyInfo: the hint model_signing puts into its bundles."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def check_private_key_mode(path: Path) -> None:
    """A private key others may read is no longer private: say so (the signature is still made)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            AdapterWarning(
                f"{path}: private key readable by others (mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
            ),
            stacklevel=3,
        )


def read_private_key(path: str | os.PathLike[str], password: str | None = None) -> Any:
    """The private key at `path` (PEM; ECDSA P-256/384/521 or Ed25519), warning on loose permissions."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--key {path}: cannot read the private key ({exc.strerror or exc})") from None
    check_private_key_mode(path)
    try:
        key = serialization.load_pem_private_key(raw, password.encode() if password else None)
    except TypeError:
        raise UsageError(f"--key {path}: the key is encrypted: set ADAPTERS_KEY_PASSWORD") from None
    except ValueError:
        raise UsageError(f"--key {path}: not a PEM private key (or a wrong password)") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise UsageError(f"--key {path}: {type(key).__name__} keys are not supported: use ECDSA P-256 or Ed25519")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise UsageError(f"--key {path}: curve {key.curve.name} is not supported: use ECDSA P-256 or Ed25519")
    return key


def generate_keypair(out: str | os.PathLike[str], kind: str = "ecdsa-p256") -> tuple[Path, Path, str]:
    """Write a private key to `out` (PEM PKCS#8, mode 0600) and its public key to `out`.pub;
    (private path, public path, fingerprint). An existing file is not overwritten."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from .._fs import atomic_write

    if kind not in KEY_TYPES:
        raise UsageError(f"--type {kind!r}: expected one of {', '.join(KEY_TYPES)}")
    private = Path(out)
    public = private.with_name(private.name + ".pub")
    for path in (private, public):
        if path.exists():
            raise UsageError(f"{path} exists; choose another name (keys are never overwritten)")
    key: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa-p256" else ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write(private, pem, mode=0o600)
    spki = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write(public, spki, mode=0o644)
    return private, public, fingerprint(key.public_key())


def load_anchors(entries: tuple[str, ...] | list[str], base_dir: Path, where: str) -> Anchors:
    """A rule's `trusted_keys`: each a PEM public key or certificate(s), inline or in a file (relative paths
    from `base_dir`, the config file's directory), or `identity:VALUE`; a bad entry is a UsageError."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    keys: list[TrustedKey] = []
    cas: list[tuple[str, x509.Certificate]] = []
    identities: list[str] = []
    for entry in entries:
        if entry.startswith(IDENTITY_PREFIX):
            identities.append(entry[len(IDENTITY_PREFIX) :].strip())
            continue
        if entry.lstrip().startswith(_PEM):
            label, raw = "inline key", entry.strip().encode()
        else:
            path = Path(entry).expanduser()
            label = str(path if path.is_absolute() else base_dir / path)
            try:
                raw = Path(label).read_bytes()
            except OSError as exc:
                raise UsageError(f"{where}: trusted key {label}: {exc.strerror or exc}") from None
        try:
            if b"CERTIFICATE-----" in raw:
                cas.extend((label, cert) for cert in x509.load_pem_x509_certificates(raw))
            else:
                public = serialization.load_pem_public_key(raw)
                keys.append(TrustedKey(label, public, fingerprint(public)))
        except ValueError:
            raise UsageError(f"{where}: trusted key {label}: not a PEM public key or certificate") from None
    return Anchors(tuple(keys), tuple(cas), tuple(identities))


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """A certificate's e-mail addresses, URIs and DNS names (its SAN), then its subject common name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
            names.extend(str(v) for v in san.get_values_for_type(kind))
    except x509.ExtensionNotFound:
        pass
    names.extend(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return names
