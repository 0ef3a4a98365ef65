"""The one retry loop (net.retrying): Retry-After as a pure computation, then against the loopback server.

Waits are asserted on the delays the client computed and on the server's arrival times, never on
wall-clock thresholds of the test itself."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

from adapterhub_client import net
from adapterhub_client.errors import RegistryError
from adapterhub_client.registry import layout

NOW = 1_700_000_000.0  # a fixed "now" for HTTP-date arithmetic


def http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, timezone.utc), usegmt=True)


@pytest.mark.parametrize(
    "header,expected",
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC delta-seconds, tolerated
        ("3600", net.MAX_RETRY_AFTER),  # capped: never parked for an hour
        ("-5", 0.0),
        (http_date(NOW + 12), 12.0),
        (http_date(NOW - 60), 0.0),  # a date in the past: retry now
        (http_date(NOW + 86400), net.MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00", 0.0),  # no zone: read as GMT, long past
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds(header, expected):
    assert net.retry_after_seconds(header, now=NOW) == expected


def test_retry_after_cap_is_a_parameter():
    assert net.retry_after_seconds("100", cap=5.0) == 5.0
    assert net.retry_after_seconds(http_date(NOW + 100), now=NOW, cap=5.0) == 5.0


def test_retry_delay_prefers_the_header_else_backs_off():
    assert net.retry_delay(0, "4") == 4.0
    assert net.retry_delay(3, "0") == 0.0  # the server's word beats a longer backoff
    for attempt in range(8):
        delay = net.retry_delay(attempt, None)
        assert min(0.1 * 2**attempt, 4.0) / 2 <= delay <= min(0.1 * 2**attempt, 4.0)
        assert net.retry_delay(attempt, "garbage") <= 4.0


@pytest.fixture
def sleeps(monkeypatch):
    """The waits `retrying` asks for, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(net.time, "sleep", waited.append)
    return waited


def test_retrying_honours_retry_after_then_returns(sleeps):
    answers = iter([net.Retry("HTTP 503", "2", 503), net.Retry("HTTP 429", None, 429), "done"])

    def attempt():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert net.retrying("GET x", "http://127.0.0.1/x", attempt) == "done"
    assert sleeps[0] == 2.0 and 0 < sleeps[1] <= 0.2 and len(sleeps) == 2


def test_retrying_gives_up_after_the_last_try_without_a_last_sleep(sleeps):
    calls = []

    def attempt():
        calls.append(1)
        raise httpx.ReadError("connection reset")  # a drop: RETRIES tries (a refused connect gets CONNECT_TRIES)

    with pytest.raises(RegistryError, match="cannot reach http://127.0.0.1/x"):
        net.retrying("GET x", "http://127.0.0.1/x", attempt)
    assert len(calls) == net.RETRIES and len(sleeps) == net.RETRIES - 1

    def status():
        raise net.Retry("HTTP 503", "1", 503)

    with pytest.raises(RegistryError, match="HTTP 503 from"):
        net.retrying("GET x", "http://127.0.0.1/x", status)


def test_other_errors_are_not_retried(sleeps):
    def attempt():
        raise RegistryError("refused for good")

    with pytest.raises(RegistryError, match="for good"):
        net.retrying("GET x", "http://127.0.0.1/x", attempt)
    assert sleeps == []


@pytest.fixture
def served(tmp_path, cli, package, static_server_factory):
    root = tmp_path / "served"
    pkg = package("acme/ra", "1.0.0", size=5000, seed=3)
    assert cli("publish", str(pkg), "--registry", root.as_uri()).code == 0
    server = static_server_factory(root)
    server.weights_sha = hashlib.sha256((pkg / "adapter.safetensors").read_bytes()).hexdigest()
    return server


@pytest.fixture
def delays(monkeypatch):
    """The delays the client computed between tries (the waits still happen)."""
    computed: list[float] = []
    real = net.retry_delay

    def recording(attempt: int, retry_after: str | None = None) -> float:
        computed.append(real(attempt, retry_after))
        return computed[-1]

    monkeypatch.setattr(net, "retry_delay", recording)
    return computed


def test_index_request_waits_out_retry_after(cli, served, delays):
    index = "/" + layout.index_path("acme/ra")
    served.set_faults([{"path": index + "$", "action": "status", "status": 503, "retry_after": "1", "times": 1}])
    r = cli("install", "acme/ra", "--registry", served.url + "/", "--json")
    assert r.code == 0, r.err
    first, second = served.requests_for(index + "$")
    assert (first["status"], second["status"]) == (503, 200)
    assert delays == [1.0]
    assert second["received"] - first["received"] >= 1.0  # the retry came after the header's delay


def test_blob_download_waits_out_retry_after(cli, served, delays):
    served.set_faults([{"path": served.weights_sha, "action": "status", "status": 429, "retry_after": "1", "times": 1}])
    r = cli("install", "acme/ra", "--registry", served.url + "/", "--json")
    assert r.code == 0, r.err
    first, second = served.requests_for(served.weights_sha, method="GET")
    assert (first["status"], second["status"]) == (429, 200)
    assert delays == [1.0]
    assert second["received"] - first["received"] >= 1.0
