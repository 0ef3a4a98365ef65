"""Malformed safetensors files: each crafted header is refused with exit 7 naming the file and the
reason, by `adapters fingerprint` and by `read_header`, before any tensor byte is read.

`CRAFTED` turns a valid file into a broken one; the e2e tier reuses it on a real base model and a
real adapter package (tests/e2e/test_malformed_attach.py)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from adapterhub_client.basemodel.safetensors_header import read_header
from adapterhub_client.errors import InvalidPackageError

Header = dict[str, Any]


def split(blob: bytes) -> tuple[Header, bytes]:
    """(header JSON object, data section) of a valid safetensors file."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: Header | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def in_order(header: Header) -> list[str]:
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _edit(change: Callable[[Header, bytes], tuple[Header | bytes, bytes]]) -> Callable[[bytes], bytes]:
    def craft(blob: bytes) -> bytes:
        return join(*change(*split(blob)))

    return craft


def _set(key: str, value: Callable[[dict[str, Any]], Any], which: int = 0) -> Callable[[bytes], bytes]:
    """Set one field of the `which`-th tensor in file order."""

    def change(header: Header, data: bytes) -> tuple[Header, bytes]:
        entry = header[in_order(header)[which]]
        entry[key] = value(entry)
        return header, data

    return _edit(change)


def _overlap(header: Header, data: bytes) -> tuple[Header, bytes]:
    first, second = (header[k] for k in in_order(header)[:2])
    size = second["data_offsets"][1] - second["data_offsets"][0]
    begin = first["data_offsets"][0] + 4
    second["data_offsets"] = [begin, begin + size]
    return header, data


def _gap(header: Header, data: bytes) -> tuple[Header, bytes]:
    names = in_order(header)
    cut = header[names[1]]["data_offsets"][0]
    for name in names[1:]:
        header[name]["data_offsets"] = [x + 8 for x in header[name]["data_offsets"]]
    return header, data[:cut] + b"\0" * 8 + data[cut:]


def _inf_shape(header: Header, data: bytes) -> tuple[bytes, bytes]:
    header[in_order(header)[0]]["shape"] = ["INF", 2]
    return json.dumps(header).replace('"INF"', "1e999").encode(), data


def _non_utf8(header: Header, data: bytes) -> tuple[bytes, bytes]:
    name = in_order(header)[0]
    raw = json.dumps(header).encode()
    return raw.replace(f'"{name}"'.encode(), b'"\xff\xfe' + name.encode() + b'"', 1), data


def _whole(change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return change


CRAFTED: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "length-2^63": (_whole(lambda b: struct.pack("<Q", 2**63) + b[8:]), "header length"),
    "length-past-end": (_whole(lambda b: struct.pack("<Q", len(b)) + b[8:]), "past the end of the file"),
    "overlapping-offsets": (_edit(_overlap), "overlaps"),
    "negative-offset": (_set("data_offsets", lambda e: [-8, e["data_offsets"][1]]), "data_offsets"),
    "size-mismatch": (
        _set("data_offsets", lambda e: [e["data_offsets"][0], e["data_offsets"][1] - 4]),
        "do not match dtype and shape",
    ),
    "unknown-dtype": (_set("dtype", lambda e: "Q7"), "unknown dtype 'Q7'"),
    "shape-1e999": (_edit(_inf_shape), "shape"),
    "deep-nesting": (
        _edit(lambda h, d: (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", d)),
        "nested too deeply",
    ),
    "non-utf8": (_edit(_non_utf8), "UTF-8"),
    "json-array": (_edit(lambda h, d: (b"[]", d)), "not a JSON object"),
    "huge-shape-product": (_set("shape", lambda e: [2**40, 2**40, 2**40]), "larger than any file"),
    "gap": (_edit(_gap), "gap"),
    "tensor-past-end": (_whole(lambda b: b[:-4]), "past the end of the file"),
    # beyond the 13: what safetensors itself refuses too
    "trailing-bytes": (_whole(lambda b: b + b"\0" * 16), "after the last tensor"),
    "metadata-not-strings": (_edit(lambda h, d: ({**h, "__metadata__": {"format": 1}}, d)), "__metadata__"),
    "duplicate-name": (
        _edit(lambda h, d: (json.dumps(h).encode()[:-1] + b', "' + in_order(h)[0].encode() + b'": {}}', d)),
        "twice",
    ),
    "entry-not-object": (_edit(lambda h, d: ({**h, in_order(h)[0]: [1, 2]}, d)), "malformed header entry"),
}


def valid_file(path: Path) -> Path:
    """A small valid safetensors file with three tensors of two dtypes."""
    save_file(
        {
            "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
            "b.weight": np.arange(4, dtype=np.float16),
            "c.bias": np.arange(3, dtype=np.int64),
        },
        str(path),
        metadata={"format": "pt"},
    )
    return path


@pytest.fixture
def crafted(tmp_path: Path) -> Callable[[str], Path]:
    """crafted(case) -> a model directory whose model.safetensors is broken that way."""
    good = valid_file(tmp_path / "good.safetensors").read_bytes()

    def make(case: str) -> Path:
        d = tmp_path / case
        d.mkdir()
        (d / "model.safetensors").write_bytes(CRAFTED[case][0](good))
        return d

    return make


def test_the_crafted_cases_start_from_a_valid_file(tmp_path):
    header = read_header(valid_file(tmp_path / "m.safetensors"))
    assert sorted(header.tensors) == ["a.weight", "b.weight", "c.bias"]
    assert header.metadata == {"format": "pt"}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_read_header_names_the_file_and_the_reason(crafted, case):
    path = crafted(case) / "model.safetensors"
    with pytest.raises(InvalidPackageError) as info:
        read_header(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert CRAFTED[case][1] in message


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_fingerprint_refuses_each_crafted_file_with_exit_7(cli, crafted, case):
    d = crafted(case)
    r = cli("fingerprint", str(d))
    assert r.code == 7, (r.code, r.err)
    assert str(d / "model.safetensors") in r.err and CRAFTED[case][1] in r.err
    assert "internal error" not in r.err


def test_huge_header_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{" + b" " * 100)
    with pytest.raises(InvalidPackageError, match="header length"):
        read_header(path)


def test_zero_sized_tensors_and_an_empty_file_are_valid(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"empty": np.zeros((0, 4), dtype=np.float32), "x": np.ones(2, dtype=np.float32)}, str(path))
    assert {t.name: t.nbytes for t in read_header(path).tensors.values()} == {"empty": 0, "x": 8}
    save_file({}, str(path))
    assert read_header(path).tensors == {}


def test_a_deeply_nested_index_or_config_is_not_a_crash(cli, tmp_path):
    d = tmp_path / "sharded"
    d.mkdir()
    valid_file(d / "model-1.safetensors")
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)  # only shown: model_type unknown
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": "model-1.safetensors"}}))
    r = cli("fingerprint", str(d), "--json")
    assert r.code == 0, r.err
    (d / "model.safetensors.index.json").write_text("[" * 100_000 + "]" * 100_000)
    r = cli("fingerprint", str(d))
    assert r.code == 7 and "malformed safetensors index" in r.err, r.err
