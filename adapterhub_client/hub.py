"""The facade over every layer: resolve -> fetch -> check -> install / publish.

`Hub` is what the CLI and Python users call: one object holding the settings, the cache and the
registry connections, with one method per workflow. The workflows themselves live in
`adapterhub_client.operations`; each method here only hands them the shared session.
It imports no torch; the tensor-touching workflows (attach) import it when they run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .config import RegistrySpec, Settings, load_settings
from .operations import attach as _attach
from .operations import for_model as _for_model
from .operations import install as _install
from .operations import lock as _lock
from .operations import publish as _publish
from .operations import query as _query
from .operations import resolution as _resolution
from .operations import verify as _verify
from .operations.resolution import ManifestCheck, RefLike
from .operations.results import (
    AdapterHubOptions,
    AttachCheck,
    AttachReport,
    CheckedAdapter,
    Converted,
    Exported,
    Info,
    Installed,
    InstalledAdapter,
    Locked,
    ModelInstall,
    Packed,
    Published,
    Removed,
    Resolved,
    SearchHit,
    SignatureReport,
    Signed,
    VerifyReport,
    Yanked,
)
from .operations.session import BoundProvider, Session

if TYPE_CHECKING:
    from .basemodel.compat import Verdict
    from .basemodel.fingerprint import LocalModel
    from .refs import Requirement
    from .registry.build import BuildReport
    from .registry.client import IndexEntry, RegistryClient
    from .site import SiteReport
    from .store.cache import Cache
    from .store.download import Downloader

PathLike = str | os.PathLike[str]

__all__ = ["Hub", "Installed", "Resolved"]


class Hub:
    """Settings from flags > environment > config file; close it (or use `with`) to free HTTP connections."""

    def __init__(
        self,
        registry: str | None = None,
        cache_dir: PathLike | None = None,
        offline: bool | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        progress: bool | None = None,
        timeout: float | None = None,
        adapterhub: AdapterHubOptions | None = None,
    ) -> None:
        """`adapterhub`: how `ah:task/subtask@org` identifiers resolve (base model name, architecture,
        version, source "hub" or "archive"); by default the base name comes from the model checked."""
        settings = settings or load_settings(
            registry=registry, cache_dir=cache_dir, offline=offline, token=token, timeout=timeout
        )
        self.session = Session(settings, progress)
        if adapterhub is not None:
            self.session.adapterhub = adapterhub

    # --- what the session holds ----------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.session.settings

    @property
    def cache(self) -> Cache:
        return self.session.cache

    @property
    def downloader(self) -> Downloader:
        return self.session.downloader

    @property
    def offline(self) -> bool:
        return self.session.offline

    @property
    def progress(self) -> bool:
        return self.session.progress

    @progress.setter
    def progress(self, value: bool) -> None:
        self.session.progress = value

    # --- registries ---------------------------------------------------------------------
    def client(self, spec: RegistrySpec) -> RegistryClient:
        return self.session.client(spec)

    def registries(self) -> list[RegistryClient]:
        return self.session.registries()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- resolution ---------------------------------------------------------------------
    def candidates(self, name: str, registry_url: str | None = None) -> list[IndexEntry]:
        """All versions of `name` from the first registry that lists it."""
        return self.session.candidates(name, registry_url)

    def _provider(self, bound: Mapping[str, str | None]) -> BoundProvider:
        return self.session.provider(bound)

    def resolve(self, refs: Sequence[RefLike], pre: bool = False, check: ManifestCheck | None = None) -> list[Resolved]:
        """Pin every reference and its dependencies; fetch and verify their manifests.

        `check` runs on each manifest right after it is fetched, before any other file."""
        return _resolution.resolve(self.session, refs, pre=pre, check=check)

    # --- against a local model ----------------------------------------------------------
    def local_model(self, model: Any) -> LocalModel:
        """A `LocalModel` for a directory or an nn.Module (directory results cached)."""
        return _for_model.local_model(self.session, model)

    def check(self, manifest: dict[str, Any], model: Any, strict: bool = False) -> Verdict:
        """The compatibility verdict of `manifest` against `model`; raises IncompatibleError (exit 5)."""
        return _for_model.check(self.session, manifest, model, strict=strict)

    def select_for_model(self, requirement: Requirement, model: Any, pre: bool = False) -> tuple[IndexEntry, Verdict]:
        """The highest version trained on exactly this model, else the highest architecture-compatible one."""
        return _for_model.select_for_model(self.session, requirement, model, pre=pre)

    def install_for_model(self, ref: str, model: Any, pre: bool = False, strict: bool = False) -> ModelInstall:
        """`adapters install REF --for-model DIR`: pick the version by the model, then install it."""
        return _for_model.install_for_model(self.session, ref, model, pre=pre, strict=strict)

    def search_for_model(self, model: Any) -> list[SearchHit]:
        """Every adapter trained on exactly this model: one reverse-index request per registry."""
        return _for_model.search_for_model(self.session, model)

    def resolve_for_attach(self, refs: Sequence[str], model: Any, strict: bool = False) -> AttachCheck:
        """Resolve `refs` and check every manifest against `model` before any weight is downloaded."""
        return _attach.check_for_attach(self.session, refs, model, strict=strict)

    def attach(
        self, model: Any, ref: str, name: str | None = None, strict: bool = False, allow_pickle: bool = False
    ) -> str:
        """Check `ref` against `model`, install it if needed, attach it; return the adapter's name
        (default: `operations.attach.adapter_name`). An architecture-only match warns (strict: refused).
        Pickled weights (AdapterHub's .bin) load only with `allow_pickle`, then with weights_only=True.
        A recipe or fusion package brings its parts: every part is checked against `model` before any
        weight is fetched, attached under `adapter_name` of its package, and the recipe's composition
        activated (`ah.active_composition(model)` gives the block); the recipe's name is returned."""
        return _attach.attach(self.session, model, ref, name=name, strict=strict, allow_pickle=allow_pickle)

    def attach_dir(
        self,
        refs: Sequence[str],
        model_dir: PathLike,
        *,
        strict: bool = False,
        check_only: bool = False,
        merge_to: PathLike | None = None,
        on_checked: Callable[[list[CheckedAdapter]], None] | None = None,
        allow_pickle: bool = False,
        quantize: str | None = None,
    ) -> AttachReport:
        """`adapters attach`: check, then attach onto the base in `model_dir` or merge into a copy of it.
        `on_checked` receives the verdicts as soon as they are known, before any weight is downloaded.
        `quantize` ("nf4" or "fp4") loads the base's linear layers in 4 bits (QLoRA's settings), checked as
        such: an adapter trained on the base quantized that way is `exact`."""
        return _attach.attach_dir(
            self.session,
            refs,
            model_dir,
            strict=strict,
            check_only=check_only,
            merge_to=merge_to,
            on_checked=on_checked,
            allow_pickle=allow_pickle,
            quantize=quantize,
        )

    # --- install ------------------------------------------------------------------------
    def install(
        self, refs: Sequence[RefLike], pre: bool = False, check: ManifestCheck | None = None, reinstall: bool = False
    ) -> list[Installed]:
        """Install `refs`; `reinstall` re-hashes their cached files, fetches the corrupt ones and rebuilds."""
        return _install.install(self.session, refs, pre=pre, check=check, reinstall=reinstall)

    def install_resolved(self, items: Sequence[Resolved]) -> list[Installed]:
        return _install.install_resolved(self.session, items)

    def uninstall(self, refs: Iterable[str]) -> list[Removed]:
        """Remove installed adapters (all matching versions)."""
        return _install.uninstall(self.session, refs)

    # --- lockfile -----------------------------------------------------------------------
    def lock(self, refs: Sequence[str], path: PathLike | None = None, pre: bool = False) -> Locked:
        return _lock.lock(self.session, refs, path, pre=pre)

    def install_locked(
        self, path: PathLike | None = None, refs: Sequence[str] | None = None, pre: bool = False
    ) -> list[Installed]:
        """`--locked`: resolve again and refuse if the result differs from the lockfile."""
        return _lock.install_locked(self.session, path, refs, pre=pre)

    def install_frozen(self, path: PathLike | None = None) -> list[Installed]:
        """`--frozen`: install exactly the lockfile, without consulting any index."""
        return _lock.install_frozen(self.session, path)

    # --- queries ------------------------------------------------------------------------
    def info(self, ref: str, pre: bool = False) -> Info:
        return _query.info(self.session, ref, pre=pre)

    def search(self, query: str | None = None, pre: bool = False) -> list[SearchHit]:
        """Each adapter whose name, description or tags contain `query`, at the version install picks."""
        return _query.search(self.session, query, pre=pre)

    def search_hub(self, query: str | None = None, model: PathLike | None = None) -> list[SearchHit]:
        """Adapter repos on the Hugging Face Hub (PEFT and AdapterHub) matching `query`; with `model`, only
        those recorded as adapters of its Hub id."""
        return _query.search_hub(self.session, query, model)

    def installed(self) -> list[InstalledAdapter]:
        return _query.installed(self.cache)

    def verify(self, repair: bool = False, signatures: bool = False) -> VerifyReport:
        """Re-hash every installed file and cached blob, quarantining what is corrupt; report problems (the
        CLI exits 4 on any). `repair`: then fetch again and rebuild every broken view. `signatures`: check
        every installed version's signature by the trust policy too."""
        if repair:
            return _verify.repair(self.session)
        return _verify.verify(self.cache, self.session.trust if signatures else None)

    def verify_signature(self, ref: str, keys: Sequence[str] = ()) -> SignatureReport:
        """One version's signature, checked without installing it (an OCI version through its signature
        artifact, no weight blob pulled), by the trust policy or by `keys` (PEM public keys, CA certificates)."""
        return _verify.verify_signature_of(self.session, ref, keys)

    def prune(self, grace_seconds: float = 600.0) -> tuple[int, int]:
        """Remove cached blobs no installed adapter uses and leftovers; (entries removed, bytes freed)."""
        return _verify.prune(self.cache, grace_seconds)

    # --- publishing ---------------------------------------------------------------------
    def publish(
        self,
        path: PathLike | Any,
        registry: str | None = None,
        name: str | None = None,
        version: str | None = None,
        base: PathLike | None = None,
        *,
        adapter: str | None = None,
        base_name: str | None = None,
        description: str | None = None,
        license: str | None = None,
        tags: Sequence[str] = (),
        private: bool = False,
        force: bool = False,
        site: bool = False,
        sign_key: PathLike | None = None,
        sign_cert_chain: Sequence[PathLike] = (),
    ) -> Published:
        """Publish a package (ours, PEFT or AdapterHub), or adapter `adapter` of a model (`path` the model;
        saved on the way, with the base's fingerprint), to `registry` (default: the local one; a registry
        name or URL, or `hf://org/repo` for the Hugging Face Hub, where `private` creates a private repo),
        with a model card (generated, or the package's own README.md with its front matter completed).
        `force` moves an OCI tag that holds other content (refused elsewhere). `site`: then bring a directory
        registry's catalogue site (DIR/site/) up to date (`Published.site`). `sign_key` (a PEM private key;
        with `sign_cert_chain`, its certificate chain) signs what is published (model.sig, docs/SIGNING.md)."""
        sign = _publish.SignWith(sign_key, tuple(sign_cert_chain)) if sign_key is not None else None
        return _publish.publish(
            self.session,
            path,
            registry,
            name=name,
            version=version,
            base=base,
            adapter=adapter,
            base_name=base_name,
            description=description,
            license=license,
            tags=tags,
            private=private,
            force=force,
            site=site,
            sign=sign,
        )

    def sign(
        self,
        path: PathLike,
        key: PathLike | None = None,
        *,
        cert_chain: Sequence[PathLike] = (),
        sigstore: bool = False,
        prepare_only: bool = False,
        name: str | None = None,
        version: str | None = None,
        base: PathLike | None = None,
        base_name: str | None = None,
    ) -> Signed:
        """`adapters sign`: complete the package in `path` as publish would and sign it with `key` (ECDSA or
        Ed25519 PEM; with `cert_chain` as its certificate; `sigstore`: keyless, untested here) into
        path/model.sig. `prepare_only`: complete it, in canonical form, for another tool to sign."""
        with_ = None if prepare_only else _publish.SignWith(key, tuple(cert_chain), sigstore)
        return _publish.sign(self.session, path, with_, name=name, version=version, base=base, base_name=base_name)

    def pack(
        self,
        directory: PathLike,
        output: PathLike,
        *,
        name: str | None = None,
        version: str | None = None,
        base: PathLike | None = None,
    ) -> Packed:
        """`adapters pack`: a PEFT or AdapterHub directory -> a package directory (publishable, loadable)."""
        return _publish.pack(self.session, directory, output, name=name, version=version, base=base)

    def build_registry(self, directory: PathLike, *, repair: bool = True) -> BuildReport:
        """`adapters registry build`: check a directory registry and rewrite what it derives."""
        return _publish.build(directory, repair=repair)

    def build_site(self, directory: PathLike, out: PathLike | None = None) -> SiteReport:
        """`adapters registry site`: write or update the directory registry's catalogue website (default
        `directory/site/`), rewriting only the pages that changed (docs/SITE.md)."""
        return _publish.build_site(directory, out)

    def login(self, host: str, username: str, password: str) -> str:
        """`adapters login HOST`: check the credentials against the OCI registry, then store them (0600)."""
        from .operations import oci_source

        return str(oci_source.login(self.session, host, username, password))

    def logout(self, host: str) -> bool:
        from .operations import oci_source

        return oci_source.logout(self.session, host)

    def convert(self, source: PathLike, output: PathLike, allow_pickle: bool = False) -> Converted:
        """`adapters convert`: pickled adapter weights rewritten as safetensors (needs `allow_pickle`)."""
        return _publish.convert(source, output, allow_pickle=allow_pickle)

    def export(self, package_dir: PathLike, output: PathLike, fmt: str = "peft") -> Exported:
        """`adapters export`: a LoRA package directory -> a PEFT directory (`PeftModel.from_pretrained`)."""
        return _publish.export(package_dir, output, fmt)

    def yank(self, ref: str, registry: str | None = None, undo: bool = False) -> Yanked:
        return _publish.yank(self.session, ref, registry, undo=undo)
