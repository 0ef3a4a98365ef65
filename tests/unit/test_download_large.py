"""Blobs large enough to be hashed in a second thread while they stream (store/download.py): a dropped
connection resumes from the bytes on disk with a Range request and the result is still verified; a
corrupted stream never becomes visible."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from adapterhub_client.errors import IntegrityError
from adapterhub_client.net import make_client
from adapterhub_client.store.cache import Cache
from adapterhub_client.store.download import THREADED_HASH_BYTES, Downloader

SIZE = THREADED_HASH_BYTES + 3 * 1024 * 1024 + 17  # over the threshold, not a multiple of any chunk


@pytest.fixture
def big(static_server) -> tuple[str, str, bytes]:
    data = os.urandom(SIZE)
    (Path(static_server.root) / "big.bin").write_bytes(data)
    return f"{static_server.url}/big.bin", hashlib.sha256(data).hexdigest(), data


def test_a_drop_mid_stream_resumes_from_the_bytes_on_disk_and_verifies(static_server, big, tmp_path) -> None:
    url, sha256, data = big
    cut = 5 * 1024 * 1024 + 1
    static_server.set_faults({"path": "big.bin", "action": "drop", "after_bytes": cut, "times": 1})
    seen: list[int] = []
    downloader = Downloader(Cache(tmp_path / "cache").ensure(), make_client)
    path = downloader.fetch(url, sha256, SIZE, "big", progress=seen.append)
    assert path.read_bytes() == data and sum(seen) == SIZE
    ranges = [entry["range"] for entry in static_server.log() if entry["path"].endswith("big.bin")]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut  # what arrived before the drop was kept and hashed, not fetched again


def test_a_corrupted_large_stream_fails_its_hash_and_nothing_is_visible(static_server, big, tmp_path) -> None:
    url, sha256, _ = big
    static_server.set_faults({"path": "big.bin", "action": "corrupt"})
    cache = Cache(tmp_path / "cache").ensure()
    with pytest.raises(IntegrityError):
        Downloader(cache, make_client).fetch(url, sha256, SIZE, "big")
    assert not cache.blob_path(sha256).exists() and not cache.partial_path(sha256).exists()
