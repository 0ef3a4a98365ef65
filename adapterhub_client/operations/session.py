"""What every workflow shares: settings, the cache, one registry client per URL, pooled HTTP clients
(one per token scope) and the downloader. `Hub` owns one and closes it; workflows receive it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..config import RegistrySpec, Settings
from ..errors import NotFoundError, OfflineMissError
from ..registry.client import IndexEntry, RegistryClient
from ..registry.transport import open_transport
from ..store.cache import Cache
from ..store.download import Downloader

if TYPE_CHECKING:
    import httpx

    from ..refs import OciRef
    from ..registry.hf import HubClient
    from ..registry.oci import OciClient
    from ..signing.policy import TrustPolicy


CREDENTIALS_FILE = "credentials.json"  # registry logins under the home (Docker's `auths` format, mode 0600)


class Session:
    def __init__(self, settings: Settings, progress: bool | None = None) -> None:
        self.settings = settings
        self.cache = Cache(settings.cache_dir)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.downloader = Downloader(self.cache, self.default_http, settings.offline)
        self._clients: dict[str, RegistryClient] = {}
        self._http: dict[str | None, httpx.Client] = {}
        self._hub: HubClient | None = None
        self.hub_base_files: dict[tuple[str, str], dict[str, str] | None] = {}  # base repo -> weight sha256s
        self._oci: dict[str, OciClient] = {}
        self._trust: TrustPolicy | None = None
        from .results import AdapterHubOptions

        self.adapterhub = AdapterHubOptions()  # how `ah:` identifiers resolve (the CLI's --base-name ...)

    @property
    def offline(self) -> bool:
        return self.settings.offline

    @property
    def trust(self) -> TrustPolicy:
        """The `[[trust]]` rules (signing.policy): which signatures installs require and whose they accept."""
        if self._trust is None:
            from ..signing.policy import TrustPolicy

            self._trust = TrustPolicy(self.settings.trust, self.settings.registries)
        return self._trust

    # --- HTTP and registries ------------------------------------------------------------
    def http_client(self, spec: RegistrySpec | None = None) -> httpx.Client:
        """The pooled client for `spec`: its own when it carries a token (scoped to its host), else shared."""
        key = spec.url if spec and spec.token else None
        if key not in self._http:
            from ..net import make_client  # deferred: httpx, only when something is remote

            timeout = self.settings.timeout
            self._http[key] = (
                make_client(spec.token, spec.url, timeout=timeout)
                if spec is not None and key
                else make_client(timeout=timeout)
            )
        return self._http[key]

    def default_http(self) -> httpx.Client:
        return self.http_client(None)

    def hub(self) -> HubClient:
        """The Hugging Face Hub client (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, offline as read now)."""
        if self._hub is None:
            from ..registry.hf import HubClient, hub_settings

            self._hub = HubClient(hub_settings(self.offline), timeout=self.settings.timeout)
        return self._hub

    def oci(self, ref: OciRef) -> OciClient:
        """The OCI client for a registry host (one per host: its auth and token cache), with the
        credentials found for it (ADAPTERS_USERNAME/PASSWORD, our credentials store, the Docker config)."""
        if ref.host not in self._oci:
            from ..net import make_client
            from ..registry.oci import OciClient
            from ..registry.oci_auth import credentials_for

            store = self.settings.home / CREDENTIALS_FILE
            http = make_client(timeout=self.settings.timeout)
            self._http[f"oci:{ref.host}"] = http  # closed with the session's other clients
            self._oci[ref.host] = OciClient(ref.url, credentials=credentials_for(ref.host, store=store), http=http)
        return self._oci[ref.host]

    def client(self, spec: RegistrySpec) -> RegistryClient:
        """The registry client for `spec` (one per URL); an `oci://host/prefix/` registry behind the same
        interface (registry.oci_index)."""
        if spec.url not in self._clients and spec.url.startswith("oci://"):
            from ..registry.oci_index import OciIndex, prefix_ref

            ref, prefix = prefix_ref(spec.url)
            self._clients[spec.url] = OciIndex(spec, self.oci(ref), prefix)  # type: ignore[assignment]
        if spec.url not in self._clients:

            def http() -> httpx.Client:
                self.cache.ensure()  # remote index copies live in the cache: tag it first
                return self.http_client(spec)

            transport = open_transport(spec.url, http, self.cache.root, self.offline)
            self._clients[spec.url] = RegistryClient(spec, transport)
        return self._clients[spec.url]

    def client_for_url(self, url: str) -> RegistryClient:
        """The client for a registry URL, with the configured token when that registry is configured."""
        return self.client(self.settings.spec_for_url(url))

    def registries(self) -> list[RegistryClient]:
        """The configured registries, in search order."""
        return [self.client(spec) for spec in self.settings.registries]

    def candidates(self, name: str, registry_url: str | None = None) -> list[IndexEntry]:
        """All versions of `name` from the first registry that lists it (or from `registry_url` only)."""
        clients = [self.client_for_url(registry_url)] if registry_url else self.registries()
        offline_misses: list[OfflineMissError] = []
        for client in clients:
            try:
                return client.entries(name)
            except OfflineMissError as exc:
                offline_misses.append(exc)
            except NotFoundError:
                continue
            # A RegistryError propagates: skipping an unreachable registry would let a later
            # one serve a name the earlier one may own.
        if offline_misses:
            raise offline_misses[0]
        where = ", ".join(c.name for c in clients)
        raise NotFoundError(f"{name}: no such adapter in {where}")

    def provider(self, bound: Mapping[str, str | None] | None = None) -> BoundProvider:
        """A resolver provider; names in `bound` are looked up only in their registry URL."""
        return BoundProvider(self, dict(bound or {}))

    def close(self) -> None:
        for client in self._http.values():
            client.close()
        self._http.clear()


class BoundProvider:
    """`resolve.Provider` over a session's registries, with per-name registry binding."""

    def __init__(self, session: Session, bound: dict[str, str | None]) -> None:
        self.session = session
        self.bound = bound

    def candidates(self, name: str) -> list[IndexEntry]:
        return self.session.candidates(name, self.bound.get(name))
