"""A hostile or broken registry server: bounded reads, deadlines, credentials in URLs, corrupt partials.

Every server here is real (tests/httpserver.py: the loopback static server with fault injection, and
RawServer for misbehaviour below HTTP). Deadlines are asserted on exit codes, messages and the server's
own records, never on the test's wall clock; pytest-timeout only keeps a regression from hanging CI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from adapterhub_client import net
from adapterhub_client._text import human_size
from adapterhub_client.errors import InvalidPackageError, RegistryError, UsageError
from adapterhub_client.hub import Hub
from adapterhub_client.registry import client as registry_client
from adapterhub_client.registry import layout
from tests.httpserver import RawServer

SECRET = "hunter2pw"


@pytest.fixture
def served(tmp_path, cli, package, static_server_factory):
    """acme/big 1.0.0 (2 MB of weights) published into a directory and served over HTTP."""
    root = tmp_path / "served"
    pkg = package("acme/big", "1.0.0", size=2_000_000, seed=7)
    assert cli("publish", str(pkg), "--registry", root.as_uri()).code == 0
    server = static_server_factory(root)
    server.weights = (pkg / "adapter.safetensors").read_bytes()
    server.weights_sha = hashlib.sha256(server.weights).hexdigest()
    server.registry_url = server.url + "/"
    index = root / layout.index_path("acme/big")
    server.manifest_sha = json.loads(index.read_text().splitlines()[0])["manifest"]["sha256"]
    return server


def blob_gets(server, sha):
    return [e for e in server.log() if e["path"].endswith(sha) and e["method"] == "GET"]


# --- 1. every read is capped while streaming, decompressed bytes counted ------------------------------
LIMITED = [
    ("config", r"/config\.json$", registry_client.MAX_CONFIG_BYTES, lambda c: c.config),
    ("index", r"/index/", registry_client.MAX_INDEX_BYTES, lambda c: c.entries("acme/big")),
    ("search", r"/search\.jsonl$", registry_client.MAX_SEARCH_BYTES, lambda c: c.search_lines()),
    ("by-base", r"/by-base/", registry_client.MAX_BASE_INDEX_BYTES, lambda c: c.by_base("sha256:" + "ab" * 32)),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what,path,limit,read", LIMITED, ids=[x[0] for x in LIMITED])
def test_endless_body_is_cut_at_each_files_limit(served, home, what, path, limit, read):
    served.set_faults([{"path": path, "action": "endless"}])
    with Hub(registry=served.registry_url) as hub:
        client = hub.registries()[0]
        if what != "config":
            served.set_faults([])
            client.config  # noqa: B018 - read it well-formed first
            served.set_faults([{"path": path, "action": "endless"}])
        with pytest.raises(InvalidPackageError) as info:
            read(client)
    message = str(info.value)
    assert "limit" in message and human_size(limit) in message
    sent = [e["bytes_sent"] for e in served.requests_for(path)]
    assert sent and max(sent) < limit + 32 * 1024 * 1024  # the server stopped soon after (socket buffers)


@pytest.mark.timeout(60)
def test_endless_manifest_blob_is_cut_at_its_limit(cli, served):
    served.set_faults([{"path": served.manifest_sha, "action": "endless"}])
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 7, r.err
    assert served.manifest_sha in r.err and "limit" in r.err


@pytest.mark.timeout(60)
def test_endless_config_json_is_exit_7_from_the_cli(cli, served):
    served.set_faults([{"path": r"/config\.json$", "action": "endless"}])
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 7, r.err
    assert "config.json" in r.err and "limit" in r.err


# Peak RSS of this process's own memory (VmHWM: getrusage's ru_maxrss would include the forking parent's).
BOMB_PROBE = """
import json, re, sys
from adapterhub_client.cli.main import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
status = open("/proc/self/status").read()
print(json.dumps({"code": code, "maxrss_kib": int(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1))}))
"""


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS read from /proc (Linux)")
def test_gzip_bomb_index_is_refused_with_memory_bounded(served, home, tmp_path):
    """512 MiB of zeros in 0.5 MB of gzip: before, httpx inflated it whole (RSS past 512 MiB)."""
    bomb = 512 * 1024 * 1024
    served.set_faults([{"path": r"/index/", "action": "gzip_bomb", "size": bomb}])
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, "install", "acme/big", "--registry", served.registry_url],
        capture_output=True,
        text=True,
        timeout=110,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 7, proc.stderr
    assert "index" in proc.stderr and "limit" in proc.stderr
    assert result["maxrss_kib"] * 1024 < 256 * 1024 * 1024, result  # far below the bomb's size


def test_gzip_encoded_answers_from_a_well_behaved_host_still_work(cli, served):
    served.set_faults([{"path": r"/(config\.json|index/.*)$", "action": "gzip"}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--json")
    assert r.code == 0, r.err
    assert (Path(r.json()["installed"][0]["path"]) / "adapter.safetensors").read_bytes() == served.weights
    assert {e["fault"] for e in served.requests_for(r"/(config\.json|index/.*)$")} == {"gzip"}


# --- 2. deadlines: a request waits at most --timeout without progress -----------------------------------
@pytest.mark.timeout(60)
def test_a_server_that_never_answers_fails_within_the_budget(cli, served):
    served.set_faults([{"path": r"/config\.json$", "action": "hang"}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--timeout", "1")
    assert r.code == 6, r.err
    assert "no progress" in r.err and "1s" in r.err and "config.json" in r.err
    assert len(served.requests_for(r"/config\.json$")) == 1  # the budget was spent: no further tries


@pytest.mark.timeout(60)
def test_timeout_from_the_environment(cli, served, monkeypatch):
    served.set_faults([{"path": r"/index/", "action": "hang"}])
    monkeypatch.setenv("ADAPTERS_TIMEOUT", "0.5")
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 6 and "no progress" in r.err, r.err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", RawServer.MODES)
def test_slow_headers_and_no_answer_below_http_fail_within_the_budget(cli, mode):
    """slow_headers sends a byte every 0.1 s: no read ever waits 1 s, only a total deadline stops it."""
    with RawServer(mode, interval=0.1) as raw:
        r = cli("install", "acme/big", "--registry", raw.url + "/", "--timeout", "1")
        assert r.code == 6, r.err
        assert "no progress" in r.err
        assert raw.connections == 1


@pytest.mark.timeout(60)
def test_a_slow_drip_download_fails_and_what_arrived_is_kept(cli, served, home):
    served.set_faults([{"path": served.weights_sha, "action": "drip", "chunk": 1, "seconds": 0.05}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--timeout", "1")
    assert r.code == 6, r.err
    assert "adapter.safetensors" in r.err and "no progress" in r.err
    served.clear_faults()
    assert cli("install", "acme/big", "--registry", served.registry_url).code == 0
    assert blob_gets(served, served.weights_sha)[-1]["range"] is not None  # resumed, not restarted


@pytest.mark.timeout(60)
def test_a_slow_but_progressing_download_completes(cli, served):
    """12 chunks 0.25 s apart take 3 s: three times the --timeout, yet every pause is well within it."""
    chunk = len(served.weights) // 12 + 1
    served.set_faults([{"path": served.weights_sha, "action": "drip", "chunk": chunk, "seconds": 0.25}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--timeout", "1", "--json")
    assert r.code == 0, r.err
    assert (Path(r.json()["installed"][0]["path"]) / "adapter.safetensors").read_bytes() == served.weights
    gets = blob_gets(served, served.weights_sha)
    assert len(gets) == 1 and gets[0]["fault"] == "drip" and gets[0]["bytes_sent"] == len(served.weights)


def test_connect_errors_are_retried_twice_only(monkeypatch):
    monkeypatch.setattr(net.time, "sleep", lambda s: None)
    calls = []

    def attempt():
        calls.append(1)
        raise httpx.ConnectError("refused")

    with pytest.raises(RegistryError, match="cannot reach"):
        net.retrying("GET x", "http://127.0.0.1:9/x", attempt)
    assert len(calls) == net.CONNECT_TRIES == 3


def test_a_dead_registry_fails_with_few_tries(cli, served):
    url = served.registry_url
    served.kill()
    r = cli("install", "acme/big", "--registry", url)
    assert r.code == 6 and "cannot reach" in r.err and "3 tries" in r.err


def test_timeout_must_be_a_positive_number(cli, monkeypatch):
    assert cli("search", "--timeout", "0").code == 2
    monkeypatch.setenv("ADAPTERS_TIMEOUT", "soon")
    r = cli("search")
    assert r.code == 2 and "ADAPTERS_TIMEOUT" in r.err


# --- 3. credentials never inside a registry URL, never printed ------------------------------------------
CREDENTIALED = f"http://user:{SECRET}@127.0.0.1:9/"


def test_redact_removes_user_info():
    assert net.redact(CREDENTIALED + "config.json") == "http://***@127.0.0.1:9/config.json"
    assert net.redact("https://tok@example.com/x") == "https://***@example.com/x"
    assert net.redact("https://example.com/x?a=1") == "https://example.com/x?a=1"
    assert net.redact("not a url") == "not a url"


@pytest.mark.parametrize(
    "how",
    ["--registry", "ADAPTERS_REGISTRY", "registry add", "config.toml", "file url", "reference"],
)
def test_credentials_in_registry_urls_are_refused_and_never_printed(cli, home, monkeypatch, how):
    if how == "--registry":
        r = cli("install", "acme/big", "--registry", CREDENTIALED)
    elif how == "ADAPTERS_REGISTRY":
        monkeypatch.setenv("ADAPTERS_REGISTRY", CREDENTIALED)
        r = cli("install", "acme/big")
    elif how == "registry add":
        r = cli("registry", "add", "team", CREDENTIALED)
    elif how == "config.toml":
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(f'[[registry]]\nname = "team"\nurl = "{CREDENTIALED}"\n')
        r = cli("install", "acme/big")
    elif how == "reference":
        r = cli("install", CREDENTIALED + "acme/big@1.0")
    else:
        r = cli("install", "acme/big", "--registry", f"file://user:{SECRET}@localhost/tmp/reg/")
    assert r.code == 2, (r.code, r.err)
    assert SECRET not in r.out + r.err
    assert "token" in r.err.lower()
    if how == "registry add":
        assert not (home / "config.toml").exists() or SECRET not in (home / "config.toml").read_text()


def test_a_redirect_to_a_credentialed_url_is_refused_without_printing_it():
    with pytest.raises(UsageError) as info:
        net.check_url(CREDENTIALED + "blobs/x")
    assert SECRET not in str(info.value) and "token" in str(info.value)


def test_unreachable_url_in_a_message_is_redacted():
    def attempt():
        raise httpx.ConnectError("no")

    with pytest.raises(RegistryError) as info:
        net.retrying("GET", CREDENTIALED + "x", attempt, tries=1)
    assert SECRET not in str(info.value) and "***@127.0.0.1" in str(info.value)


# --- 13. a corrupt partial download is discarded and fetched again, in the same run ----------------------
@pytest.mark.parametrize("planted", ["part", "whole"])
def test_corrupt_partial_download_is_restarted_from_byte_zero(cli, served, home, planted):
    partial = home / "cache" / "partial" / f"{served.weights_sha}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    size = len(served.weights) if planted == "whole" else 700_000
    partial.write_bytes(bytes(b ^ 0x5A for b in served.weights[:size]))  # right length, wrong bytes
    r = cli("install", "acme/big", "--registry", served.registry_url, "--json")
    assert r.code == 0, r.err
    assert r.json()["downloads"] == 2  # the weights (once, though restarted) and the model card
    assert (Path(r.json()["installed"][0]["path"]) / "adapter.safetensors").read_bytes() == served.weights
    gets = blob_gets(served, served.weights_sha)
    assert gets[-1]["range"] is None and gets[-1]["bytes_sent"] == len(served.weights)  # from byte 0
    if planted == "part":
        assert gets[0]["range"] == "bytes=700000-"  # the resume came first
    assert cli("verify").code == 0
    assert not partial.exists()


def test_a_fresh_download_that_mismatches_is_not_retried_forever(cli, served, home):
    served.set_faults([{"path": served.weights_sha, "action": "corrupt"}])
    r = cli("install", "acme/big", "--registry", served.registry_url)
    assert r.code == 4 and "do not match" in r.err
    assert len(blob_gets(served, served.weights_sha)) == 1  # nothing resumed: no second try


def test_a_retry_after_past_the_timeout_fails_at_once_saying_so(cli, served):
    served.set_faults([{"path": r"/config\.json$", "action": "status", "status": 503, "retry_after": "20"}])
    r = cli("install", "acme/big", "--registry", served.registry_url, "--timeout", "2")
    assert r.code == 6 and "asks to retry in 20s" in r.err and "--timeout" in r.err
    assert len(served.requests_for(r"/config\.json$")) == 1


@pytest.mark.parametrize("password", ["s3cr#et", "s3cr?et", "s3cr/et", "p@ss"])
def test_passwords_with_url_delimiters_are_refused_and_hidden(cli, password):
    """urlsplit ends the host part at the first / ? #: user info is found on the raw text instead."""
    for args in (
        ("install", f"https://user:{password}@example.com/acme/x"),
        ("registry", "add", "x", f"https://user:{password}@example.com/"),
        ("search", "foo", "--registry", f"https://user:{password}@example.com/"),
    ):
        r = cli(*args)
        assert r.code == 2, (args, r.err)
        assert password not in r.out + r.err and "***@" in r.err, (args, r.err)


def test_versions_after_an_at_sign_are_not_taken_for_credentials():
    for url in ("https://example.com/registry/acme/x@1.0", "https://example.com:8443/r/acme/x@>=1,<2"):
        assert not net.has_credentials(url) and net.redact(url) == url


# --- found by review: broken answers that were internal errors --------------------------------------------
def _file_registry(cli, package, tmp_path) -> Path:
    reg = tmp_path / "reg"
    assert cli("publish", str(package("acme/big", "1.0.0")), "--registry", reg.as_uri()).code == 0
    return reg


@pytest.mark.parametrize("victim", ["index", "search", "config", "lockfile"])
def test_deeply_nested_json_from_a_registry_or_lockfile_is_an_invalid_file(cli, package, tmp_path, victim):
    reg = _file_registry(cli, package, tmp_path)
    deep = "[" * 100_000 + "]" * 100_000 + "\n"
    if victim == "index":
        (reg / layout.index_path("acme/big")).write_text(deep)
        r = cli("install", "acme/big", "--registry", reg.as_uri())
    elif victim == "search":
        (reg / "search.jsonl").write_text(deep)
        r = cli("search", "big", "--registry", reg.as_uri())
    elif victim == "config":
        (reg / "config.json").write_text(deep)
        r = cli("install", "acme/big", "--registry", reg.as_uri())
    else:
        lock = tmp_path / "adapters.lock"
        lock.write_text(deep)
        r = cli("install", "--frozen", "--lockfile", str(lock))
    if victim == "search":  # search skips a registry it cannot read, and says so
        assert r.code == 0 and "warning: search skipped registry" in r.err, r.err
    else:
        assert r.code == 7, (r.code, r.err)
    assert "internal error" not in r.err


def test_a_directory_where_a_blob_should_be_is_a_registry_error(cli, package, tmp_path):
    reg = _file_registry(cli, package, tmp_path)
    blobs = sorted((reg / "blobs").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    weights = blobs[-1]  # the largest file: the weights, not the manifest
    weights.chmod(0o644)
    weights.unlink()
    weights.mkdir()
    r = cli("install", "acme/big", "--registry", reg.as_uri())
    assert r.code == 6 and "internal error" not in r.err, (r.code, r.err)


def test_a_redirect_loop_is_a_registry_error(cli):
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", self.path + "x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = cli("install", "acme/x", "--registry", f"http://127.0.0.1:{server.server_address[1]}/r/")
    finally:
        server.shutdown()
    assert r.code == 6 and "TooManyRedirects" in r.err and "internal error" not in r.err, (r.code, r.err)
