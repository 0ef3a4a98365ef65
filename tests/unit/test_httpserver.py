"""Tests of the test HTTP server itself (tests/httpserver.py), driven with httpx."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest

from tests.httpserver import StaticServer

BLOB = os.urandom(300_000)  # several 64 KiB chunks
CONFIG = b'{"name": "demo-adapter", "rank": 8}\n'
BLOB_PATH = "/blobs/sha256/ab/" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    (root / "config.json").write_bytes(CONFIG)
    (root / "empty.bin").write_bytes(b"")
    blob = root / BLOB_PATH.lstrip("/")
    blob.parent.mkdir(parents=True)
    blob.write_bytes(BLOB)
    with StaticServer(root) as server:
        yield server


@pytest.fixture
def client(srv):
    srv.clear_faults()
    srv.clear_log()
    with httpx.Client(base_url=srv.url, trust_env=False, timeout=5) as c:
        yield c


def test_get_has_etag_and_validators(client):
    r = client.get("/config.json")
    assert r.status_code == 200
    assert r.content == CONFIG
    assert r.headers["content-length"] == str(len(CONFIG))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')
    assert "last-modified" in r.headers
    assert client.get(BLOB_PATH).content == BLOB


def test_conditional_get(client):
    etag = client.get("/config.json").headers["etag"]
    for inm in (etag, f'"nope", W/{etag}', "*"):
        r = client.get("/config.json", headers={"If-None-Match": inm})
        assert r.status_code == 304, inm
        assert r.content == b""
        assert r.headers["etag"] == etag
    r = client.get("/config.json", headers={"If-None-Match": '"something-else"'})
    assert r.status_code == 200 and r.content == CONFIG
    # If-None-Match wins over Range.
    assert client.get("/config.json", headers={"If-None-Match": etag, "Range": "bytes=0-1"}).status_code == 304


def test_range_requests(client):
    n = len(BLOB)
    r = client.get(BLOB_PATH, headers={"Range": "bytes=100000-100009"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100000-100009/{n}"
    assert r.headers["content-length"] == "10"
    assert r.content == BLOB[100000:100010]

    r = client.get(BLOB_PATH, headers={"Range": "bytes=70000-"})  # open-ended, spans chunks
    assert (r.status_code, r.headers["content-range"]) == (206, f"bytes 70000-{n - 1}/{n}")
    assert r.content == BLOB[70000:]

    r = client.get(BLOB_PATH, headers={"Range": "bytes=-5"})  # suffix
    assert (r.status_code, r.content) == (206, BLOB[-5:])

    r = client.get(BLOB_PATH, headers={"Range": f"bytes=0-{n + 100}"})  # last-pos clipped
    assert (r.headers["content-range"], r.content) == (f"bytes 0-{n - 1}/{n}", BLOB)

    r = client.get(BLOB_PATH, headers={"Range": "bytes=0-1,4-5"})
    assert r.status_code == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")


def test_range_edge_statuses(client):
    n = len(BLOB)
    for header in (f"bytes={n}-", "bytes=-0", f"bytes={n + 5}-{n + 9}"):
        r = client.get(BLOB_PATH, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{n}"
    assert client.get("/empty.bin", headers={"Range": "bytes=0-"}).status_code == 416
    # Unsatisfiable parts of a multi-range request are dropped.
    r = client.get(BLOB_PATH, headers={"Range": f"bytes=5-9,{n + 1}-"})
    assert (r.status_code, r.content) == (206, BLOB[5:10])
    # Unknown unit / invalid syntax: the header is ignored (RFC 9110 section 14.2).
    for header in ("items=0-1", "bytes=9-5", "bytes=abc", "bytes"):
        r = client.get("/config.json", headers={"Range": header})
        assert (r.status_code, r.content) == (200, CONFIG), header
    # If-Range: a stale validator gives the whole file, the current one the range.
    etag = client.head("/config.json").headers["etag"]
    r = client.get("/config.json", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert (r.status_code, r.content) == (200, CONFIG)
    r = client.get("/config.json", headers={"Range": "bytes=0-1", "If-Range": etag})
    assert (r.status_code, r.content) == (206, CONFIG[:2])


def test_head_404_405(client):
    r = client.head(BLOB_PATH)
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["content-length"] == str(len(BLOB))
    assert client.get("/missing.json").status_code == 404
    assert client.get("/blobs/sha256").status_code == 404  # directories are not listed
    r = client.put("/config.json", content=b"x")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")


def test_status_fault_expires_after_times(srv, client):
    srv.set_faults([{"path": r"config\.json$", "action": "status", "status": 500, "times": 2}])
    assert [client.get("/config.json").status_code for _ in range(3)] == [500, 500, 200]
    assert client.get(BLOB_PATH).status_code == 200  # other paths untouched
    assert srv.faults() == []
    assert [e["status"] for e in srv.requests_for(r"config\.json")] == [500, 500, 200]


def test_drop_cuts_the_connection_then_range_resumes(srv, client):
    srv.set_faults({"path": "/blobs/", "action": "drop", "after_bytes": 100_000, "times": 1})
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", BLOB_PATH) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    assert bytes(got) == BLOB[:100_000]
    r = client.get(BLOB_PATH, headers={"Range": f"bytes={len(got)}-"})
    assert r.status_code == 206
    assert bytes(got) + r.content == BLOB
    log = srv.requests_for("/blobs/")
    assert [(e["status"], e["bytes_sent"], e["fault"]) for e in log] == [
        (200, 100_000, "drop"),
        (206, len(BLOB) - 100_000, None),
    ]
    assert log[1]["range"] == "bytes=100000-"
    assert srv.stderr_text() == ""  # no traceback logged for the injected drop


def test_drop_before_any_body_byte(srv, client):
    srv.set_faults({"path": "config", "action": "drop", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/config.json")
    assert client.get("/config.json").content == CONFIG


def test_corrupt_keeps_length_changes_bytes(srv, client):
    srv.set_faults([{"path": "/blobs/", "action": "corrupt"}])
    r = client.get(BLOB_PATH)
    assert r.status_code == 200
    assert len(r.content) == len(BLOB) == int(r.headers["content-length"])
    assert r.content != BLOB
    assert hashlib.sha256(r.content).hexdigest() != BLOB_PATH.rsplit("/", 1)[1]
    r = client.get(BLOB_PATH, headers={"Range": "bytes=10-19"})
    assert len(r.content) == 10 and r.content != BLOB[10:20]


def test_delay(srv, client):
    srv.set_faults([{"path": "config", "action": "delay", "seconds": 0.3, "times": 1}])
    t0 = time.monotonic()
    assert client.get("/config.json").content == CONFIG
    assert time.monotonic() - t0 >= 0.3  # a lower bound the pause guarantees, never an upper one
    # Mid-body stall: a client read timeout fires after the first bytes arrived.
    srv.set_faults([{"path": "/blobs/", "action": "delay", "seconds": 2, "after_bytes": 1000, "times": 1}])
    got = bytearray()
    with pytest.raises(httpx.ReadTimeout), client.stream("GET", BLOB_PATH, timeout=httpx.Timeout(5, read=0.3)) as r:
        for chunk in r.iter_raw():
            got += chunk
    assert bytes(got) == BLOB[:1000]


def test_status_fault_with_retry_after(srv, client):
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    srv.set_faults(
        [
            {"path": "config", "action": "status", "status": 503, "retry_after": 2, "times": 1},
            {"path": "/blobs/", "action": "status", "status": 429, "retry_after": date, "times": 1},
        ]
    )
    r = client.get("/config.json")
    assert (r.status_code, r.headers["retry-after"]) == (503, "2")
    r = client.get(BLOB_PATH)
    assert (r.status_code, r.headers["retry-after"]) == (429, date)
    r = client.get("/config.json")
    assert r.status_code == 200 and "retry-after" not in r.headers
    srv.set_faults([{"path": "config", "action": "status", "status": 500}])
    assert "retry-after" not in client.get("/config.json").headers  # only when asked for
    bad_rules = (
        {"path": "x", "action": "drop", "retry_after": 1},
        {"path": "x", "action": "status", "retry_after": "1\nX: y"},
    )
    for bad in bad_rules:
        with pytest.raises(RuntimeError, match="400"):
            srv.set_faults([bad])


def test_method_filter_and_first_rule_wins(srv, client):
    srv.set_faults(
        [
            {"path": "config", "action": "status", "status": 503, "method": "HEAD"},
            {"path": "config", "action": "status", "status": 502, "times": 1},
            {"path": "", "action": "status", "status": 501, "times": 1},
        ]
    )
    assert client.head("/config.json").status_code == 503
    assert client.get("/config.json").status_code == 502
    assert client.get(BLOB_PATH).status_code == 501
    assert client.get("/config.json").status_code == 200


def test_log_and_bad_rules(srv, client):
    client.get("/config.json")
    client.head(BLOB_PATH)
    client.get(BLOB_PATH, headers={"Range": "bytes=0-9"})
    client.get("/nope", headers={"Authorization": "Bearer t"})
    keys = ("method", "path", "status", "range", "bytes_sent", "fault", "authorization")
    log = srv.log()
    assert [{k: e[k] for k in keys} for e in log] == [
        dict(zip(keys, ("GET", "/config.json", 200, None, len(CONFIG), None, None))),
        dict(zip(keys, ("HEAD", BLOB_PATH, 200, None, 0, None, None))),
        dict(zip(keys, ("GET", BLOB_PATH, 206, "bytes=0-9", 10, None, None))),
        dict(zip(keys, ("GET", "/nope", 404, None, 10, None, "Bearer t"))),
    ]
    assert all(set(e) == {*keys, "received"} for e in log)
    received = [e["received"] for e in log]  # sequential requests: arrival times in order
    assert received == sorted(received)
    assert len(srv.requests_for("/blobs/", method="GET")) == 1
    srv.clear_log()
    assert srv.log() == []
    for bad in ({"path": "x", "action": "explode"}, {"path": "(", "action": "drop"}, {"action": "drop", "times": 0}):
        with pytest.raises(RuntimeError, match="400"):
            srv.set_faults([bad])


def test_lifecycle_restart_kill_and_fixture(static_server):
    srv = static_server
    (srv.root / "a.txt").write_text("hello")
    get = lambda: httpx.get(srv.url + "/a.txt", trust_env=False, timeout=2)
    assert get().text == "hello"
    url, pid = srv.url, srv.pid

    srv.kill()  # server down
    assert not srv.running
    with pytest.raises(httpx.ConnectError):
        get()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    srv.start()
    assert srv.running and srv.pid != pid
    assert srv.url == url  # same port, same URL
    assert get().text == "hello"

    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        get()
    srv.restart()
    assert get().text == "hello" and srv.url == url
    assert srv.stderr_text() == ""


def test_required_token(srv, client):
    srv.require_token("s3cret")
    assert client.get("/config.json").status_code == 401
    assert client.get("/config.json", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    srv.require_token(None)
    assert client.get("/config.json").status_code == 200
