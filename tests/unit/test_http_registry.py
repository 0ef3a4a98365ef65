"""Installing from a registry served by a real HTTP server on loopback (Range, ETag, faults).

Every fault case asserts the exit code and that nothing half-installed is visible.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapterhub_client.net import ScopedToken
from adapterhub_client.registry import layout
from tests.conftest import run_adapters


@pytest.fixture
def served(tmp_path, cli, package, static_server_factory):
    """A registry with acme/big 1.0.0 (2 MB of weights) published into a directory and served over HTTP."""
    root = tmp_path / "served"
    pkg = package("acme/big", "1.0.0", size=2_000_000, seed=7)
    assert cli("publish", str(pkg), "--registry", root.as_uri()).code == 0
    server = static_server_factory(root)
    server.weights = (pkg / "adapter.safetensors").read_bytes()
    server.registry_url = server.url + "/"
    server.weights_sha = hashlib.sha256(server.weights).hexdigest()
    return server


def installed_names(cli):
    return [(i["name"], i["version"]) for i in cli("list", "--json").json()["installed"]]


def assert_nothing_visible(cli, home):
    assert installed_names(cli) == []
    views = home / "cache" / "installed"
    assert not views.exists() or not any(views.rglob("manifest.json"))


def weights_blob_requests(server):
    return [e for e in server.log() if e["path"].endswith(server.weights_sha) and e["method"] == "GET"]


def test_install_over_http_and_etag_revalidation(cli, served, home):
    r = cli("install", "acme/big", "--registry", served.registry_url, "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    assert (view / "adapter.safetensors").read_bytes() == served.weights
    index_path = "/" + layout.index_path("acme/big")
    assert [e["status"] for e in served.requests_for(index_path + "$")] == [200]
    served.clear_log()
    assert cli("install", "acme/big", "--registry", served.registry_url).code == 0
    # warm: one conditional index request answered 304, no blob traffic
    assert [e["status"] for e in served.log()] == [304]


def test_corrupted_blob_is_refused(cli, served, home):
    served.set_faults([{"path": served.weights_sha, "action": "corrupt"}])
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 4, r.err
    assert "do not match" in r.err
    assert_nothing_visible(cli, home)
    assert not list((home / "cache" / "partial").glob("*.part"))  # bad bytes are not kept
    served.clear_faults()
    assert cli("install", "acme/big", "--registry", served.registry_url).code == 0


def test_dropped_connection_is_resumed_with_range(cli, served, home):
    served.set_faults([{"path": served.weights_sha, "action": "drop", "after_bytes": 700_000, "times": 1}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--json")
    assert r.code == 0, r.err
    assert (Path(r.json()["installed"][0]["path"]) / "adapter.safetensors").read_bytes() == served.weights
    gets = weights_blob_requests(served)
    assert len(gets) == 2 and gets[0]["fault"] == "drop"
    assert gets[1]["range"] and gets[1]["range"].startswith("bytes=") and gets[1]["status"] == 206
    assert int(gets[1]["range"].split("=")[1].rstrip("-")) > 0


def test_server_errors_are_retried(cli, served):
    served.set_faults(
        [
            {"path": served.weights_sha, "action": "status", "status": 500, "times": 2},
            {"path": "/index/", "action": "status", "status": 503, "times": 1},
        ]
    )
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 0, r.err
    assert [e["status"] for e in weights_blob_requests(served)] == [500, 500, 200]


def test_server_down(cli, served, home):
    url = served.registry_url
    served.kill()
    r = cli("install", "acme/big", "--registry", url)
    assert r.code == 6 and "cannot reach" in r.err
    assert_nothing_visible(cli, home)


def test_offline_serves_from_cache_and_names_what_is_missing(cli, served, home):
    url = served.registry_url
    assert cli("install", "acme/big", "--registry", url).code == 0
    served.kill()
    assert cli("install", "acme/big", "--registry", url, "--offline").code == 0
    cli("cache", "clean", "--yes")
    r = cli("install", "acme/big", "--registry", url, "--offline")
    assert r.code == 3 and "offline" in r.err and "is not in the cache" in r.err and url in r.err


def _serve_tampered_manifest(root: Path, mutate) -> None:
    """Rewrite the manifest blob of acme/big in place (and its index line) with `mutate` applied."""
    index = root / layout.index_path("acme/big")
    entry = json.loads(index.read_text())
    manifest = json.loads((root / layout.blob_path(entry["manifest"]["sha256"])).read_bytes())
    mutate(manifest)
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    sha = hashlib.sha256(raw).hexdigest()
    blob = root / layout.blob_path(sha)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(raw)
    entry["manifest"] = {"sha256": sha, "size": len(raw)}
    index.write_text(json.dumps(entry) + "\n")


@pytest.mark.parametrize("bad", ["../../outside.safetensors", "/tmp/abs.safetensors"])
def test_manifest_with_escaping_path_is_refused(cli, served, home, bad):
    _serve_tampered_manifest(served.root, lambda m: m["files"][0].update(path=bad))
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 7 and "files/0/path" in r.err
    assert_nothing_visible(cli, home)
    assert weights_blob_requests(served) == []  # refused before any download


def test_manifest_not_matching_its_index_hash(cli, served, home):
    index = served.root / layout.index_path("acme/big")
    entry = json.loads(index.read_text())
    entry["manifest"]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    blob = served.root / layout.blob_path(entry["manifest"]["sha256"])
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b'{"not": "the manifest"}')
    index.write_text(json.dumps(entry) + "\n")
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 4
    assert_nothing_visible(cli, home)


def test_malformed_index_line_over_http(cli, served, home):
    index = served.root / layout.index_path("acme/big")
    index.write_text(index.read_text() + '{"name": "acme/big", "version": \n')
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 7 and "line 2" in r.err
    assert_nothing_visible(cli, home)


def test_https_is_required_except_loopback(cli):
    r = cli("install", "acme/big", "--registry", "http://adapters.example.com/")
    assert r.code == 2 and "https" in r.err


def test_token_goes_only_to_its_host():
    auth = ScopedToken("s3cret", "https://reg.example.com/registry/")
    same = next(auth.auth_flow(httpx.Request("GET", "https://reg.example.com/registry/index/a/b")))
    other = next(auth.auth_flow(httpx.Request("GET", "https://cdn.example.net/blobs/sha256/ab/abc")))
    port = next(auth.auth_flow(httpx.Request("GET", "https://reg.example.com:8443/x")))
    assert same.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in other.headers and "Authorization" not in port.headers


def test_eight_concurrent_installs_download_once(served, home):
    env = {"ADAPTERS_HOME": str(home), "ADAPTERS_REGISTRY": served.registry_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "adapterhub_client", "install", "acme/big", "--json"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    paths = {json.loads(out)["installed"][0]["path"] for _, out, _ in results}
    assert len(paths) == 1
    assert len(weights_blob_requests(served)) == 1
    assert (Path(paths.pop()) / "adapter.safetensors").read_bytes() == served.weights


def test_killed_mid_download_then_resumed(served, home):
    env = {"ADAPTERS_HOME": str(home), "ADAPTERS_REGISTRY": served.registry_url}
    served.set_faults(
        [{"path": served.weights_sha, "action": "delay", "after_bytes": 1_000_000, "seconds": 60, "times": 1}]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapterhub_client", "install", "acme/big"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial_dir = home / "cache" / "partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
        if parts and parts[0].stat().st_size >= 1_000_000:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the download never reached the delay point")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = run_adapters("list", "--json", env=env)
    assert json.loads(listed.stdout)["installed"] == []  # nothing half-installed is visible
    served.clear_faults()
    served.clear_log()
    done = run_adapters("install", "acme/big", "--json", env=env)
    assert done.returncode == 0, done.stderr
    gets = weights_blob_requests(served)
    assert len(gets) == 1 and gets[0]["range"] == "bytes=1000000-" and gets[0]["status"] == 206
    verify = run_adapters("verify", "--json", env=env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["problems"] == []


def test_private_registry_token_reaches_every_request_of_its_host_only(cli, served, home, monkeypatch, tmp_path):
    served.require_token("s3cret")
    monkeypatch.setenv("ADAPTERS_REGISTRY", served.registry_url)
    monkeypatch.setenv("ADAPTERS_TOKEN", "s3cret")
    r = cli("install", "acme/big", "--json")
    assert r.code == 0, r.err
    assert {e["authorization"] for e in served.log()} == {"Bearer s3cret"}  # index, manifest and weights
    # the lockfile's registry URL gets the same token back for --frozen
    monkeypatch.chdir(tmp_path)
    assert cli("lock", "acme/big").code == 0
    cli("cache", "clean", "--yes")
    r = cli("install", "--frozen")
    assert r.code == 0, r.err


def test_environment_token_is_not_sent_to_a_url_typed_once(cli, served, monkeypatch):
    monkeypatch.setenv("ADAPTERS_TOKEN", "s3cret")
    assert cli("install", "acme/big", "--registry", served.registry_url).code == 0
    assert {e["authorization"] for e in served.log()} == {None}


def test_unreachable_registry_is_not_skipped(cli, served, package, tmp_path):
    public = tmp_path / "public"
    assert cli("publish", str(package("acme/big", "9.0.0")), "--registry", public.as_uri()).code == 0
    url = served.registry_url
    served.kill()
    assert cli("registry", "add", "team", url).code == 0
    assert cli("registry", "add", "public", public.as_uri()).code == 0
    r = cli("install", "acme/big")
    assert r.code == 6  # not silently served by the later registry


def test_offline_works_with_hosts_that_send_no_etag(cli, served):
    served.set_faults([{"path": r"/(config\.json|index/.*)$", "action": "no_validators"}])  # neither header
    assert cli("install", "acme/big", "--registry", served.registry_url).code == 0
    assert all(e["fault"] == "no_validators" for e in served.requests_for(r"/(config\.json|index/.*)$"))
    served.kill()
    assert cli("install", "acme/big", "--registry", served.registry_url, "--offline").code == 0


def test_remote_registry_cannot_point_blobs_at_local_files(cli, served, home):
    (served.root / "config.json").write_text(json.dumps({"protocol": 1, "blobs": "file:///etc/"}))
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 7 and "'blobs' must be an http(s) URL" in r.err


def test_a_configured_registry_without_config_json_stops_resolution(cli, served, package, tmp_path):
    public = tmp_path / "public"
    assert cli("publish", str(package("acme/big", "9.0.0")), "--registry", public.as_uri()).code == 0
    assert cli("registry", "add", "wrong", served.registry_url + "nope/").code == 0
    assert cli("registry", "add", "public", public.as_uri()).code == 0
    r = cli("install", "acme/big")
    assert r.code == 6 and "not an adapter registry" in r.err


def test_info_is_one_index_request(cli, served):
    assert cli("info", "acme/big", "--registry", served.registry_url).code == 0
    served.clear_log()
    assert cli("info", "acme/big", "--registry", served.registry_url).code == 0
    assert [e["path"] for e in served.log()] == ["/index/acme/3/b/big"]
