"""Paths of the registry protocol (REGISTRY.md), relative to a registry's root."""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1
CONFIG_PATH = "config.json"
SEARCH_PATH = "search.jsonl"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FINGERPRINT = re.compile(r"^([a-z0-9]+):([0-9a-f]{16,128})$")


def shard(name: str) -> str:
    """Cargo's sparse-index sharding of one name part."""
    n = len(name)
    if n == 1:
        return "1"
    if n == 2:
        return "2"
    if n == 3:
        return f"3/{name[0]}"
    return f"{name[:2]}/{name[2:4]}"


def index_path(name: str) -> str:
    """`org/sentiment-lora` -> `index/org/se/nt/sentiment-lora` (name must be canonical)."""
    org, base = name.split("/")
    return f"index/{org}/{shard(base)}/{base}"


def blob_path(sha256: str) -> str:
    if not _HEX64.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def base_index_path(fingerprint: str) -> str:
    """Reverse index: every adapter published for one base-model content fingerprint."""
    m = _FINGERPRINT.match(fingerprint)
    if not m:
        raise ValueError(f"not a fingerprint: {fingerprint!r}")
    algo, digest = m.groups()
    return f"by-base/{algo}/{digest[:2]}/{digest}"
