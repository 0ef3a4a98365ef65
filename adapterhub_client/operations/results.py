"""What the workflows return: small typed records, each with `to_json()` giving the machine values
that `--json` prints (the keys are part of the CLI's contract).

Torch-free and cheap to import (`adapters list` uses it): the other layers' types are named for type
checkers only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import UsageError
from ..store.cache import CacheStats

if TYPE_CHECKING:
    from ..basemodel.compat import Verdict
    from ..lockfile import LockData, LockEntry
    from ..registry.client import IndexEntry
    from ..signing import SignatureInfo
    from ..site import SiteReport

__all__ = [
    "AdapterHubOptions",
    "AttachCheck",
    "AttachReport",
    "Attached",
    "CacheStats",
    "CheckedAdapter",
    "Converted",
    "Fingerprinted",
    "HubSource",
    "Exported",
    "Info",
    "Installed",
    "InstalledAdapter",
    "Locked",
    "OciSource",
    "Merged",
    "ModelInstall",
    "Packed",
    "Published",
    "Removed",
    "Resolved",
    "SearchHit",
    "SignatureReport",
    "Signed",
    "VerifyReport",
    "Yanked",
]


def _machine(value: Any) -> Any:
    """A JSON-ready value: paths as strings, tuples as lists, records through their own to_json."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_machine(v) for v in value]
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


class _Record:
    """Default `to_json` for the dataclasses below: every field, as machine values."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _machine(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


ADAPTERHUB_SOURCES = ("hub", "archive")


@dataclasses.dataclass(frozen=True)
class AdapterHubOptions:
    """What an `ah:` identifier is resolved with: the base model's name (as AdapterHub names models,
    e.g. bert-base-uncased), optionally an architecture (pfeiffer, houlsby, seq_bn...) and a version,
    and where the bytes come from: the Hugging Face repo ("hub") or the archived zip ("archive")."""

    base_name: str | None = None
    architecture: str | None = None
    version: str | None = None
    source: str = "hub"

    def __post_init__(self) -> None:
        if self.source not in ADAPTERHUB_SOURCES:
            raise UsageError(f"--source {self.source!r}: expected one of {', '.join(ADAPTERHUB_SOURCES)}")


@dataclasses.dataclass(frozen=True)
class HubSource:
    """Where a package from the Hugging Face Hub lives: a repo at a commit (and a subfolder)."""

    repo: str
    commit: str
    subfolder: str | None
    revision: str  # as asked (branch, tag, sha) or the version tag a range picked


@dataclasses.dataclass(frozen=True)
class OciSource:
    """Where a package from an OCI registry lives: a repository at a manifest digest."""

    host: str
    repository: str
    digest: str  # sha256:<hex> of the image manifest


@dataclasses.dataclass
class Resolved:
    """One pinned version: where it comes from and its (verified) manifest."""

    name: str
    version: str
    source: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    manifest_sha256: str
    entry: IndexEntry | None = None  # set when it comes from a registry index
    local_dir: Path | None = None  # set when it is a package directory on this machine
    hub: HubSource | None = None  # set when it comes from a Hugging Face Hub repo
    oci: OciSource | None = None  # set when it comes from an OCI registry

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclasses.dataclass(frozen=True)
class Installed:
    """One installed view, and whether this call created it."""

    name: str
    version: str
    path: Path
    source: str
    manifest_sha256: str
    already: bool  # was installed before this call

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "source": self.source,
            "manifest_sha256": self.manifest_sha256,
            "already_installed": self.already,
        }


class ModelInstall(NamedTuple):
    """`install --for-model`: what was installed and the verdict that picked the version."""

    installed: list[Installed]
    verdict: Verdict


class AttachCheck(NamedTuple):
    """References resolved and checked against a model; one verdict per resolved item, same order."""

    items: list[Resolved]
    verdicts: list[Verdict]


@dataclasses.dataclass(frozen=True)
class InstalledAdapter(_Record):
    """An installed view as its install record describes it (`adapters list`)."""

    name: str
    version: str
    source: str
    manifest_sha256: str
    installed: str  # UTC timestamp of the install
    path: Path

    @classmethod
    def from_record(cls, record: Mapping[str, Any], path: Path) -> InstalledAdapter:
        return cls(
            str(record.get("name", "")),
            str(record.get("version", "")),
            str(record.get("source", "")),
            str(record.get("manifest_sha256", "")),
            str(record.get("installed", "")),
            path,
        )


@dataclasses.dataclass(frozen=True)
class Removed(_Record):
    name: str
    version: str


@dataclasses.dataclass(frozen=True)
class Info:
    """`adapters info`: the manifest a reference resolves to and every listed version."""

    manifest: dict[str, Any]
    source: str
    versions: list[str]  # ascending, "1.5.0 (yanked)" for yanked ones
    manifest_sha256: str | None = None  # None for a local package directory (not published)
    yanked: bool = False  # the resolved version is yanked (only a pinned reference resolves to one)
    signature: SignatureInfo | None = None  # who signed it (verified when a trust rule covers it)

    @property
    def composition(self) -> str | None:
        """A recipe's block tree with its parts shown as packages (`Stack(acme/a, acme/b)`); else None."""
        from ..formats.recipe_layout import COMPOSITION, PARTS, describe_block

        adapter = self.manifest["adapter"]
        if adapter["type"] != COMPOSITION:
            return None
        return describe_block(adapter["config"].get("block"), adapter.get(PARTS))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "manifest": self.manifest,
            "source": self.source,
            "versions": self.versions,
            "yanked": self.yanked,
        }
        if self.manifest_sha256 is not None:
            data["manifest_sha256"] = self.manifest_sha256
        if self.signature is not None:
            data["signature"] = self.signature.to_json()
        return data


@dataclasses.dataclass(frozen=True)
class SearchHit:
    """One adapter version from a registry's search or reverse (by-base) index."""

    name: str
    version: str
    registry: str
    type: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    base: str | None = None
    base_fingerprint: str | None = None  # set for `search --for-model` hits
    line: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)  # as served
    yanked: bool = False

    @property
    def prerelease(self) -> bool:
        from packaging.version import InvalidVersion, Version

        try:
            return Version(self.version).is_prerelease
        except InvalidVersion:
            return False

    @property
    def marked_version(self) -> str:
        """The version as tables show it: `1.0.0`, `1.1.0 (yanked)`, `2.0.0rc1 (pre-release)`."""
        return self.version + (" (yanked)" if self.yanked else " (pre-release)" if self.prerelease else "")

    @classmethod
    def from_line(
        cls,
        line: Mapping[str, Any],
        registry: str,
        base_fingerprint: str | None = None,
        *,
        version: str | None = None,
        yanked: bool = False,
    ) -> SearchHit:
        """A hit from a served line; `version` (what the index says install picks) overrides the line's."""
        tags = line.get("tags")
        return cls(
            str(line.get("name", "")),
            version if version is not None else str(line.get("version", "")),
            registry,
            str(line.get("type") or ""),
            str(line.get("description") or ""),
            tuple(str(t) for t in tags) if isinstance(tags, list) else (),
            line.get("base") if isinstance(line.get("base"), str) else None,
            base_fingerprint,
            dict(line),
            yanked,
        )

    def to_json(self) -> dict[str, Any]:
        """The index line as the registry served it, plus where it came from and the version's state."""
        data = {**self.line, "registry": self.registry, "version": self.version, "yanked": self.yanked}
        if self.base_fingerprint is not None:
            data["base_fingerprint"] = self.base_fingerprint
        return data


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    checked: int  # installed views re-hashed
    problems: list[str]  # what was found wrong (with --repair: before repairing)
    incomplete_views: list[str]  # leftovers of interrupted installs in tmp/
    quarantined: list[str] = dataclasses.field(default_factory=list)  # where corrupt files were moved
    broken: list[str] = dataclasses.field(default_factory=list)  # "name version" of views that failed
    repaired: list[str] = dataclasses.field(default_factory=list)  # --repair: views fetched and rebuilt
    unrepaired: list[str] = dataclasses.field(default_factory=list)  # --repair: what is still wrong
    repair: bool = False  # whether --repair ran (then ok means: everything repaired)
    # --signatures: (name, version, signature or None when unsigned) of each installed view checked
    signatures: list[tuple[str, str, SignatureInfo | None]] | None = None

    @property
    def ok(self) -> bool:
        return not (self.unrepaired if self.repair else self.problems)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "checked": self.checked,
            "problems": self.problems,
            "incomplete_views": self.incomplete_views,
            "quarantined": self.quarantined,
            "broken": self.broken,
        }
        if self.repair:
            data.update(repaired=self.repaired, unrepaired=self.unrepaired)
        if self.signatures is not None:
            data["signatures"] = [
                {"name": n, "version": v, "signature": None if s is None else s.to_json()}
                for n, v, s in self.signatures
            ]
        return data


@dataclasses.dataclass(frozen=True)
class Published(_Record):
    name: str
    version: str
    registry: str  # its name in the settings
    url: str
    manifest_sha256: str
    created: bool  # False: the identical content was already published
    site: SiteReport | None = None  # `--site`: the catalogue site brought up to date after publishing


@dataclasses.dataclass(frozen=True)
class Signed(_Record):
    """`adapters sign`: the package completed (name, card) and signed; `--prepare`: completed only."""

    name: str
    version: str
    path: Path
    signer: str | None  # sha256:<hex> of the signing public key
    signature: Path | None  # DIR/model.sig


@dataclasses.dataclass(frozen=True)
class SignatureReport:
    """`adapters verify --signatures REF`: one version's signature, checked without installing it."""

    name: str
    version: str
    source: str
    signature: SignatureInfo | None  # None: unsigned

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "signature": None if self.signature is None else self.signature.to_json(),
        }


@dataclasses.dataclass(frozen=True)
class Packed(_Record):
    """`adapters pack`: a PEFT or AdapterHub directory written as a package directory."""

    name: str
    version: str
    output: Path
    format: str  # the files it keeps as they are: peft | adapterhub
    type: str  # lora | bottleneck
    files: list[str]


@dataclasses.dataclass(frozen=True)
class Converted(_Record):
    """`adapters convert`: an adapter directory with its pickled weights rewritten as safetensors."""

    source: Path
    output: Path
    files: list[str]  # what the output holds


@dataclasses.dataclass(frozen=True)
class Exported(_Record):
    """`adapters export`: a package written in another library's format."""

    name: str
    version: str
    output: Path
    format: str  # peft


@dataclasses.dataclass(frozen=True)
class Yanked(_Record):
    name: str
    version: str
    yanked: bool  # the new state (False after --undo)


@dataclasses.dataclass(frozen=True)
class Locked:
    """A lockfile written: where, and its content."""

    path: Path
    lock: LockData

    @property
    def adapters(self) -> list[LockEntry]:
        return self.lock["adapters"]

    def to_json(self) -> LockData:
        return self.lock


@dataclasses.dataclass(frozen=True)
class CheckedAdapter:
    """One resolved adapter and its compatibility verdict against the local model."""

    name: str
    version: str
    type: str  # lora | bottleneck | ...
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "type": self.type, "compatibility": self.verdict.to_json()}


@dataclasses.dataclass(frozen=True)
class Attached:
    """One adapter loaded onto the base model: proof that every weight landed."""

    adapter: str  # the package name, org/name
    name: str  # its name on the model (see operations.attach.adapter_name)
    modules: int
    parameters: int
    total_parameters: int  # of the base model, without adapters
    examples: tuple[str, ...]  # a few adapted module paths

    @property
    def parameters_share(self) -> str:
        total = self.total_parameters
        return f"{100 * self.parameters / total:.2f}% of {total / 1e6:.1f}M"

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "name": self.name,
            "modules": self.modules,
            "parameters": self.parameters,
            "total_parameters": self.total_parameters,
            "parameters_fraction": self.parameters / self.total_parameters if self.total_parameters else 0.0,
            "examples": list(self.examples),
        }


@dataclasses.dataclass(frozen=True)
class Merged(_Record):
    """A checkpoint written with LoRA adapters merged into its weights."""

    output: Path
    files: list[str]
    merged_tensors: int
    largest_tensor_bytes: int  # the peak one tensor cost in memory

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> Merged:
        return cls(
            Path(report["output"]),
            [str(f) for f in report["files"]],
            int(report["merged_tensors"]),
            int(report["largest_tensor_bytes"]),
        )


@dataclasses.dataclass(frozen=True)
class AttachReport:
    """`adapters attach`: the verdicts, then what was attached or merged (neither with --check)."""

    model: str
    adapters: list[CheckedAdapter]
    attached: list[Attached] | None = None
    merged: Merged | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "adapters": [a.to_json() for a in self.adapters]}
        if self.attached is not None:
            data["attached"] = [a.to_json() for a in self.attached]
        if self.merged is not None:
            data["merged"] = self.merged.to_json()
        data["seconds"] = self.seconds
        return data


@dataclasses.dataclass(frozen=True)
class Fingerprinted:
    """`adapters fingerprint`: a model directory's fingerprints (see basemodel.fingerprint) and the time taken."""

    path: str
    fingerprint: dict[str, Any]  # content, architecture, files, model_type, tensor_count, total_bytes
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, **self.fingerprint, "seconds": round(self.seconds, 4)}
