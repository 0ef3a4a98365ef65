"""Adapters as OCI artifacts, against Debian's real docker-registry (tests/ociregistry.py) and the `oras` SDK."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from adapterhub_client.errors import IntegrityError, InvalidPackageError, NotFoundError, RegistryError, UsageError
from adapterhub_client.manifest import complete_package
from adapterhub_client.net import make_client
from adapterhub_client.registry.oci import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    OciClient,
    parse_oci_ref,
    pick_version,
)
from adapterhub_client.registry.oci_auth import credentials_for, parse_challenge, store_entry
from adapterhub_client.store.cache import Cache
from adapterhub_client.store.download import Downloader
from tests.pkgs import make_package

if TYPE_CHECKING:
    from tests.ociregistry import OciRegistry

# The real docker-registry fixtures (oci_registry, oci_basic_registry, oci_token_registry).

Log = list[tuple[str, str]]


def completed(directory: Path, name: str = "acme/sent", version: str = "1.0.0", **kw: Any) -> dict[str, Any]:
    make_package(directory, name, version, **kw)
    return complete_package(directory, json.loads((directory / "manifest.json").read_text()))


def recording_client() -> tuple[httpx.Client, Log]:
    """The project's HTTP client with a request log (method, path) of every hop."""
    log: Log = []
    http = make_client()
    http.event_hooks["request"].append(lambda request: log.append((request.method, request.url.path)))
    return http, log


def oci(registry: OciRegistry, **kw: Any) -> tuple[OciClient, Log]:
    http, log = recording_client()
    return OciClient(registry.url, http=http, **kw), log


def pull_bytes(client: OciClient, ref: str, tmp_path: Path) -> dict[str, bytes]:
    artifact = client.artifact(parse_oci_ref(ref))
    paths = client.fetch_files(artifact, Downloader(Cache(tmp_path / "cache").ensure()))
    return {title: path.read_bytes() for title, path in paths.items()}


def package_bytes(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    return {f["path"]: (directory / f["path"]).read_bytes() for f in manifest["files"]}


# --- references ------------------------------------------------------------------------------------
def test_refs_parse_versions_ranges_digests_and_refuse_bad_names() -> None:
    ref = parse_oci_ref("oci://127.0.0.1:5000/team/acme/sent@1.0")
    assert (ref.host, ref.repository, ref.tag, ref.url) == (
        "127.0.0.1:5000",
        "team/acme/sent",
        "1.0",
        "http://127.0.0.1:5000",
    )
    assert parse_oci_ref("oci://Registry.Example.com/a/b").url == "https://registry.example.com"
    ranged = parse_oci_ref("oci://r.example/a/b@>=1,<2")
    assert ranged.specifier == SpecifierSet(">=1,<2") and ranged.tag is None
    digest = "sha256:" + "ab" * 32
    assert parse_oci_ref(f"oci://r.example/a/b@{digest}").digest == digest
    assert parse_oci_ref("oci://r.example/a/b@latest").tag == "latest"
    for bad in (
        "oci://r.example/Acme/b",  # upper case
        "oci://r.example/a//b",
        "oci://r.example/a/b-",
        "oci://r.example/a/b\n",  # fullmatch: no trailing newline
        "oci://r.example/a/b:1.0",
        "oci://r.example/a/b@sha256:abc",
        "oci://user:pw@r.example/a/b",
        "oci://r.example:99999/a/b",
        "oci://r.example",
        "oci://r.example/a/b@",
    ):
        with pytest.raises(UsageError):
            parse_oci_ref(bad)


def test_pick_version_takes_the_highest_and_pre_releases_only_when_named() -> None:
    tags = ["1.0.0", "1.1.0", "1.2.0rc1", "2.0.0.dev1", "latest", "0.9"]
    assert pick_version(tags, None) == (Version("1.1.0"), "1.1.0")
    assert pick_version(tags, SpecifierSet(">=1,<2"))[1] == "1.1.0"  # type: ignore[index]
    assert pick_version(tags, SpecifierSet(">=1.2.0rc1,<2"))[1] == "1.2.0rc1"  # type: ignore[index]
    assert pick_version(tags, SpecifierSet(">=3")) is None


def test_challenges_parse_quoted_params() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }


# --- push and pull, no auth ------------------------------------------------------------------------
def test_push_then_pull_is_byte_identical_and_a_new_tag_sends_no_blob_bytes(
    oci_registry: OciRegistry, tmp_path: Path
) -> None:
    manifest = completed(tmp_path / "pkg", files=2, size=5000)
    client, log = oci(oci_registry)
    pushed = client.push("acme/roundtrip", tmp_path / "pkg", manifest)
    assert pushed.created and pushed.uploaded == 3 and pushed.skipped == 0  # config + 2 files
    artifact = client.artifact(parse_oci_ref(f"oci://{oci_registry.host}/acme/roundtrip@1.0.0"))
    assert artifact.digest == pushed.digest and artifact.artifact_type == ARTIFACT_TYPE
    assert (
        artifact.config.media_type == CONFIG_MEDIA_TYPE
        and artifact.annotations["org.opencontainers.image.version"] == "1.0.0"
    )
    assert client.package_manifest(artifact) == manifest
    assert pull_bytes(client, f"oci://{oci_registry.host}/acme/roundtrip@1.0.0", tmp_path) == package_bytes(
        tmp_path / "pkg", manifest
    )

    log.clear()
    again = client.push("acme/roundtrip", tmp_path / "pkg", manifest, tag="stable")
    assert again.created and again.uploaded == 0 and again.skipped == 3 and again.bytes_sent == 0
    blob_writes = [(m, p) for m, p in log if m in ("POST", "PATCH") or (m == "PUT" and "/blobs/" in p)]
    assert blob_writes == []
    assert [m for m, p in log if "/blobs/" in p] == ["HEAD"] * 3
    assert ("PUT", "/v2/acme/roundtrip/manifests/stable") in log

    log.clear()  # the same tag again: nothing to do
    assert not client.push("acme/roundtrip", tmp_path / "pkg", manifest).created
    assert [m for m, _ in log] == ["GET"]


def test_a_tag_with_other_content_is_refused_unless_forced(oci_registry: OciRegistry, tmp_path: Path) -> None:
    first = completed(tmp_path / "a", seed=1)
    other = completed(tmp_path / "b", seed=2)
    client, _ = oci(oci_registry)
    pushed = client.push("acme/clash", tmp_path / "a", first)
    with pytest.raises(InvalidPackageError, match="already holds other content"):
        client.push("acme/clash", tmp_path / "b", other)
    assert client.get_manifest("acme/clash", "1.0.0").digest == pushed.digest
    forced = client.push("acme/clash", tmp_path / "b", other, force=True)
    assert client.get_manifest("acme/clash", "1.0.0").digest == forced.digest != pushed.digest


@pytest.mark.parametrize("meet_at", ["blobs", "manifest"])
def test_two_concurrent_pushes_of_one_new_version_one_wins_the_other_is_refused(
    oci_registry: OciRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meet_at: str
) -> None:
    """Both pushes pass the first tag check. `blobs`: they meet after uploading, so the re-check before
    the manifest PUT decides; `manifest`: both PUT before either reads the tag back (the registry has no
    create-only tag write), so the read-back decides. Either way exactly one wins."""
    repository = f"acme/race-{meet_at}"
    pushes = {"a": completed(tmp_path / "a", seed=1), "b": completed(tmp_path / "b", seed=2)}
    barrier = threading.Barrier(2, timeout=30)
    original_put = OciClient._put_manifest
    original_ensure = OciClient._ensure_blob

    def ensure_then_meet(self: OciClient, repo: str, blob: Any, *args: Any) -> None:
        original_ensure(self, repo, blob, *args)
        if meet_at == "blobs" and blob.path is not None:  # the last blob (one file per package)
            barrier.wait()

    def put_between_meetings(self: OciClient, *args: Any) -> None:
        if meet_at == "manifest":
            barrier.wait()
        original_put(self, *args)
        if meet_at == "manifest":
            barrier.wait()  # both manifests are in before either checks

    monkeypatch.setattr(OciClient, "_ensure_blob", ensure_then_meet)
    monkeypatch.setattr(OciClient, "_put_manifest", put_between_meetings)
    outcome: dict[str, Any] = {}

    def push(key: str) -> None:
        client, _ = oci(oci_registry)
        try:
            outcome[key] = client.push(repository, tmp_path / key, pushes[key])
        except InvalidPackageError as exc:
            outcome[key] = exc

    threads = [threading.Thread(target=push, args=(k,)) for k in pushes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [k for k, v in outcome.items() if not isinstance(v, Exception)]
    lost = [k for k, v in outcome.items() if isinstance(v, InvalidPackageError)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert InvalidPackageError.exit_code == 7
    assert re.search("already holds other content|won the race", str(outcome[lost[0]]))
    client, _ = oci(oci_registry)
    assert client.get_manifest(repository, "1.0.0").digest == outcome[won[0]].digest


def test_push_validates_before_sending_anything(oci_registry: OciRegistry, tmp_path: Path) -> None:
    manifest = completed(tmp_path / "pkg")
    (tmp_path / "pkg" / "adapter.safetensors").write_bytes(b"changed")
    client, log = oci(oci_registry)
    with pytest.raises(InvalidPackageError, match="does not match its size"):
        client.push("acme/changed", tmp_path / "pkg", manifest)
    assert log == []


@pytest.mark.parametrize("chunk_size", [64 * 1024, 16 * 1024 * 1024], ids=["chunked", "one-put"])
def test_a_file_changed_in_place_after_its_manifest_is_refused_by_the_registry_digest(
    oci_registry: OciRegistry, tmp_path: Path, chunk_size: int
) -> None:
    """Push does not hash the files again: the registry hashes what it receives, and its refusal names the file."""
    manifest = completed(tmp_path / "pkg", seed=5, size=200_000)
    weights = tmp_path / "pkg" / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    client, _log = oci(oci_registry, chunk_size=chunk_size)
    with pytest.raises(InvalidPackageError, match=r"adapter.safetensors: does not match its sha256 .*another digest"):
        client.push("acme/changed-in-place", tmp_path / "pkg", manifest)
    with pytest.raises(NotFoundError):  # no manifest was put: the repository has no tag
        client.list_tags("acme/changed-in-place")


class PagedTags(BaseHTTPRequestHandler):
    """The tag list as the distribution spec pages it (`n`, `last`, a Link to the next page): docker-registry
    2.8 ignores `n` on tags/list and sends every tag at once."""

    tags = sorted(["0.9.0", "1.0.0", "1.1.0", "1.2.0rc1", "2.0.0", "latest"])
    seen: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.seen.append(self.path)
        n = int(query.get("n", ["1000"])[0])
        last = query.get("last", [""])[0]
        page = [t for t in self.tags if t > last][:n]
        body = json.dumps({"name": "acme/paged", "tags": page}).encode()
        self.send_response(200)
        if page and page[-1] != self.tags[-1]:
            self.send_header("Link", f'<{url.path}?n={n}&last={page[-1]}>; rel="next"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def paged_tags() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PagedTags)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    PagedTags.seen = []
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tags_page_by_link_and_ranges_resolve_over_them(paged_tags: str) -> None:
    client = OciClient(f"http://{paged_tags}")
    assert client.list_tags("acme/paged", page=2) == PagedTags.tags
    assert len(PagedTags.seen) == 3 and PagedTags.seen[-1].endswith("last=1.2.0rc1")
    assert client.resolve(parse_oci_ref(f"oci://{paged_tags}/acme/paged@>=1,<2")) == "1.1.0"
    assert client.resolve(parse_oci_ref(f"oci://{paged_tags}/acme/paged@>=1.2.0rc1,<2")) == "1.2.0rc1"
    assert client.resolve(parse_oci_ref(f"oci://{paged_tags}/acme/paged")) == "2.0.0"
    with pytest.raises(NotFoundError, match="no version tag matching >=3"):
        client.resolve(parse_oci_ref(f"oci://{paged_tags}/acme/paged@>=3"))


def test_tags_of_the_real_registry(oci_registry: OciRegistry, tmp_path: Path) -> None:
    manifest = completed(tmp_path / "pkg")
    client, _ = oci(oci_registry)
    tags = ["0.9.0", "1.0.0", "1.1.0", "1.2.0rc1"]
    for tag in tags:
        client.push("acme/tagged", tmp_path / "pkg", manifest, tag=tag)
    assert sorted(client.list_tags("acme/tagged", page=2)) == tags
    assert client.resolve(parse_oci_ref(f"oci://{oci_registry.host}/acme/tagged@~=1.0")) == "1.1.0"
    with pytest.raises(NotFoundError):
        client.list_tags("acme/never-pushed")


def test_digest_refs_and_a_corrupt_manifest(oci_registry: OciRegistry, tmp_path: Path) -> None:
    manifest = completed(tmp_path / "pkg", seed=7)
    client, _ = oci(oci_registry)
    pushed = client.push("acme/digest", tmp_path / "pkg", manifest)
    by_digest = client.artifact(parse_oci_ref(f"oci://{oci_registry.host}/acme/digest@{pushed.digest}"))
    assert by_digest.digest == pushed.digest
    with pytest.raises(NotFoundError):
        client.get_manifest("acme/digest", "sha256:" + "0" * 64)
    stored = oci_registry.blob_data(pushed.digest)
    raw = stored.read_bytes()
    stored.write_bytes(raw.replace(b'"1.0.0"', b'"6.6.6"'))  # same length, other bytes
    with pytest.raises(IntegrityError, match="hash to"):
        client.get_manifest("acme/digest", pushed.digest)


def test_a_corrupt_blob_fails_its_digest_and_nothing_becomes_visible(oci_registry: OciRegistry, tmp_path: Path) -> None:
    manifest = completed(tmp_path / "pkg", seed=11, size=20000)
    client, _ = oci(oci_registry)
    client.push("acme/corrupt", tmp_path / "pkg", manifest)
    sha = manifest["files"][0]["sha256"]
    stored = oci_registry.blob_data(f"sha256:{sha}")
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    cache = Cache(tmp_path / "cache").ensure()
    artifact = client.artifact(parse_oci_ref(f"oci://{oci_registry.host}/acme/corrupt@1.0.0"))
    with pytest.raises(IntegrityError, match="do not match"):
        client.fetch_files(artifact, Downloader(cache))
    assert not cache.blob_path(sha).exists()
    assert not cache.partial_path(sha).exists()


def test_large_blobs_go_in_chunks_and_mount_across_repositories(oci_registry: OciRegistry, tmp_path: Path) -> None:
    manifest = completed(tmp_path / "pkg", seed=3, size=200_000)
    client, log = oci(oci_registry, chunk_size=64 * 1024)
    client.push("acme/chunked", tmp_path / "pkg", manifest)
    assert len([m for m, _ in log if m == "PATCH"]) == 4  # 200 kB in 64 KiB chunks
    assert pull_bytes(client, f"oci://{oci_registry.host}/acme/chunked@1.0.0", tmp_path) == package_bytes(
        tmp_path / "pkg", manifest
    )
    log.clear()
    mounted = client.push("acme/mounted", tmp_path / "pkg", manifest, mount_from="acme/chunked")
    assert mounted.mounted == 2 and mounted.uploaded == 0 and mounted.bytes_sent == 0
    assert [m for m, p in log if m in ("PATCH", "PUT") and "/blobs/" in p] == []
    assert pull_bytes(client, f"oci://{oci_registry.host}/acme/mounted@1.0.0", tmp_path / "2") == package_bytes(
        tmp_path / "pkg", manifest
    )


# --- interop with the oras SDK ---------------------------------------------------------------------
def test_what_we_push_oras_pulls_byte_identical(oci_registry: OciRegistry, tmp_path: Path) -> None:
    import oras.client

    manifest = completed(tmp_path / "pkg", files=2, seed=5)
    client, _ = oci(oci_registry)
    client.push("acme/to-oras", tmp_path / "pkg", manifest)
    out = tmp_path / "oras-out"
    oras.client.OrasClient(insecure=True).pull(target=f"{oci_registry.host}/acme/to-oras:1.0.0", outdir=str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == package_bytes(tmp_path / "pkg", manifest)


def test_what_oras_pushes_we_read(oci_registry: OciRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import oras.client

    peft = tmp_path / "peft"
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "target_modules": ["q"]}))
    (peft / "adapter_model.safetensors").write_bytes(os.urandom(3000))
    monkeypatch.chdir(peft)  # oras titles files by the paths given
    oras.client.OrasClient(insecure=True).push(
        target=f"{oci_registry.host}/acme/from-oras:1.0.0", files=["adapter_config.json", "adapter_model.safetensors"]
    )
    client, _ = oci(oci_registry)
    artifact = client.artifact(parse_oci_ref(f"oci://{oci_registry.host}/acme/from-oras@1.0.0"))
    assert not artifact.is_package and client.package_manifest(artifact) is None
    assert sorted(f.title for f in artifact.files) == ["adapter_config.json", "adapter_model.safetensors"]
    assert {f.title: f.size for f in artifact.files} == {p.name: p.stat().st_size for p in peft.iterdir()}
    assert pull_bytes(client, f"oci://{oci_registry.host}/acme/from-oras@1.0.0", tmp_path) == {
        p.name: p.read_bytes() for p in peft.iterdir()
    }


# --- basic auth ------------------------------------------------------------------------------------
def test_basic_auth_right_and_wrong(oci_basic_registry: OciRegistry, tmp_path: Path) -> None:
    user, password = oci_basic_registry.username, oci_basic_registry.password
    assert user and password
    manifest = completed(tmp_path / "pkg", seed=21)
    wrong, _ = oci(oci_basic_registry, credentials=(user, "wrong"))
    with pytest.raises(RegistryError, match=rf"{oci_basic_registry.host}/acme/basic: authentication failed.*check"):
        wrong.push("acme/basic", tmp_path / "pkg", manifest)
    anonymous, _ = oci(oci_basic_registry)
    with pytest.raises(RegistryError, match="log in"):
        anonymous.push("acme/basic", tmp_path / "pkg", manifest)
    assert oci_basic_registry.tags_on_disk("acme/basic") == []

    right, log = oci(oci_basic_registry, credentials=(user, password))
    assert right.push("acme/basic", tmp_path / "pkg", manifest).created
    assert oci_basic_registry.tags_on_disk("acme/basic") == ["1.0.0"]
    assert pull_bytes(right, f"oci://{oci_basic_registry.host}/acme/basic@1.0.0", tmp_path) == package_bytes(
        tmp_path / "pkg", manifest
    )


# --- token auth ------------------------------------------------------------------------------------
def test_token_auth_flow_caches_tokens_per_scope(oci_token_registry: OciRegistry, tmp_path: Path) -> None:
    tokens = oci_token_registry.token_server
    user, password = oci_token_registry.username, oci_token_registry.password
    assert tokens is not None and user and password
    manifest = completed(tmp_path / "pkg", seed=31)
    wrong, _ = oci(oci_token_registry, credentials=(user, "wrong"))
    with pytest.raises(RegistryError, match=rf"{oci_token_registry.host}.*token server.*refused"):
        wrong.push("acme/tokened", tmp_path / "pkg", manifest)
    assert oci_token_registry.tags_on_disk("acme/tokened") == []

    tokens.requests.clear()
    client, _ = oci(oci_token_registry, credentials=(user, password))
    assert client.push("acme/tokened", tmp_path / "pkg", manifest).created
    assert all(r["authorized"] for r in tokens.requests)
    scopes = {
        (s.rpartition(":")[0], frozenset(s.rpartition(":")[2].split(","))) for r in tokens.requests for s in r["scopes"]
    }
    assert ("repository:acme/tokened", frozenset({"pull", "push"})) in scopes
    assert len(tokens.requests) <= 2  # a pull token for the existing-tag check, then one push token
    before = len(tokens.requests)
    assert pull_bytes(client, f"oci://{oci_token_registry.host}/acme/tokened@1.0.0", tmp_path) == package_bytes(
        tmp_path / "pkg", manifest
    )
    assert len(tokens.requests) == before  # the cached tokens served the pull


# --- credential sources ----------------------------------------------------------------------------
def test_credentials_come_from_env_our_store_and_the_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"dock:er-pass").decode()
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"helped\\", \\"Secret\\": \\"for-$host\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (docker / "config.json").write_text(
        json.dumps({"auths": {"https://plain.example:5000": {"auth": auth}}, "credHelpers": {"helped.example": "fake"}})
    )
    env = {"DOCKER_CONFIG": str(docker)}
    assert credentials_for("plain.example:5000", env=env) == ("dock", "er-pass")
    assert credentials_for("helped.example", env=env) == ("helped", "for-helped.example")
    assert credentials_for("other.example", env=env) is None
    store = tmp_path / "ours.json"
    store.write_text(json.dumps({"auths": {"plain.example:5000": store_entry("mine", "pw:with:colons")}}))
    assert credentials_for("plain.example:5000", store=store, env=env) == ("mine", "pw:with:colons")
    env |= {"ADAPTERS_USERNAME": "envuser", "ADAPTERS_PASSWORD": "envpass"}
    assert credentials_for("plain.example:5000", store=store, env=env) == ("envuser", "envpass")


@pytest.mark.parametrize(
    ("after_bytes", "sessions"),
    [
        (100, 1),  # cut in the first PATCH's headers: the session is intact, resumed from its Range
        (40_000, 2),  # cut inside the chunk: docker-registry cancels the session, a fresh one starts from 0
    ],
)
def test_a_dropped_chunk_upload_recovers(
    oci_registry: OciRegistry, tmp_path: Path, after_bytes: int, sessions: int
) -> None:
    from tests.ociregistry import CuttingProxy

    manifest = completed(tmp_path / "pkg", seed=after_bytes, size=200_000)
    proxy = CuttingProxy(int(oci_registry.host.rsplit(":", 1)[1]), after_bytes)
    try:
        http, log = recording_client()
        client = OciClient(f"http://{proxy.host}", http=http, chunk_size=64 * 1024)
        repo = f"acme/dropped-{after_bytes}"
        assert client.push(repo, tmp_path / "pkg", manifest).created
        assert proxy.cuts == 1
        assert any(m == "GET" and "/blobs/uploads/" in p for m, p in log)  # asked where the upload stands
        assert len([m for m, _ in log if m == "POST"]) == 1 + sessions  # the config's session, the weights'
        assert pull_bytes(client, f"oci://{proxy.host}/{repo}@1.0.0", tmp_path) == package_bytes(
            tmp_path / "pkg", manifest
        )
    finally:
        proxy.close()
