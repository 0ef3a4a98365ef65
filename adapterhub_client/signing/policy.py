"""The trust policy: `[[trust]]` rules from config.toml (first match wins) applied to one package version."""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import RegistrySpec, TrustRule
from ..errors import AdapterWarning, IntegrityError
from .keys import Anchors, load_anchors
from .statement import SIGNATURE_FILE, SignatureInfo
from .verify import verify_signature


class TrustPolicy:
    """The rules, and the configured registries (a rule's `registry` may name one by name or URL)."""

    def __init__(self, rules: Sequence[TrustRule], registries: Sequence[RegistrySpec] = ()) -> None:
        self.rules = list(rules)
        self.registries = list(registries)
        self._anchors: dict[int, Anchors] = {}

    def registry_names(self, url: str | None) -> set[str]:
        """What a rule's `registry` may say to mean the registry at `url`: its URL, and its name if configured."""
        if not url:
            return set()
        names = {url, url.rstrip("/")}
        names.update(s.name for s in self.registries if s.url.rstrip("/") == url.rstrip("/"))
        return names

    def rule_for(self, name: str, registry_url: str | None = None) -> TrustRule | None:
        """The first rule whose pattern matches the (canonical) name and whose registry, if any, is this one."""
        names = self.registry_names(registry_url)
        for rule in self.rules:
            if not fnmatch.fnmatchcase(name, rule.match.lower()):
                continue
            if rule.registry is None or rule.registry in names or rule.registry.rstrip("/") in names:
                return rule
        return None

    def anchors(self, rule: TrustRule) -> Anchors:
        key = id(rule)
        if key not in self._anchors:
            where = f"{rule.where}: [[trust]] {rule.match!r}"
            self._anchors[key] = load_anchors(rule.trusted_keys, Path(rule.where).parent, where)
        return self._anchors[key]

    def check(
        self,
        manifest: dict[str, Any],
        read_signature: Callable[[], bytes | None],
        registry_url: str | None = None,
        expected_signer: str | None = None,
        manifest_file_sha256: str | None = None,
    ) -> SignatureInfo | None:
        """Apply the policy to one version (its manifest already checked against its registry): the signature
        (`read_signature` gives model.sig's bytes, already checked against the manifest's sha256, or a signature
        attached elsewhere such as an OCI referrer; None: unsigned) is verified when a rule covers the name,
        otherwise only checked to fit the manifest. IntegrityError (exit 4, nothing installed) when a
        required signature is missing, by a signer not trusted, or not made for exactly this manifest; or when
        `expected_signer` (the lockfile's) is not who signed. `manifest_file_sha256`: a package directory's
        manifest.json as on disk, which a plain model_signing signature of that directory signed."""
        name, version = manifest["name"], manifest["version"]
        label = f"{name} {version}"
        rule = self.rule_for(name, registry_url)
        rule_label = f"trust rule {rule.match!r} ({rule.where})" if rule is not None else ""
        raw = read_signature()
        if raw is None:
            if rule is not None and rule.require_signature:
                raise IntegrityError(f"{label} is unsigned, but {rule_label} requires a signature")
            if expected_signer is not None:
                raise IntegrityError(f"{label} is unsigned, but the lockfile records signer {expected_signer}")
            return None
        where = f"{label}: {SIGNATURE_FILE}"
        anchors = Anchors() if rule is None else self.anchors(rule)
        info = verify_signature(raw, manifest, anchors, where, manifest_file_sha256)
        if rule is None:
            info = dataclasses.replace(info, reason=f"no trust rule covers {name}")
        elif not info.verified:
            if rule.require_signature:
                raise IntegrityError(f"{where}: {info.reason}; {rule_label} requires a trusted signer")
            warnings.warn(AdapterWarning(f"{where}: {info.reason} (not required by {rule_label})"), stacklevel=2)
        if expected_signer is not None and info.signer != expected_signer:
            raise IntegrityError(
                f"{label} is signed by {info.signer}, but the lockfile records {expected_signer}; "
                "run `adapters lock` again if the new signer is intended"
            )
        return info
