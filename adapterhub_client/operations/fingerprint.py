"""`adapters fingerprint DIR`: base-model fingerprints, cached where every other command caches them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..config import load_settings
from ..errors import AdapterError
from ..store.cache import Cache
from .results import Fingerprinted


def fingerprint_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """`fingerprints/` under the cache root (`cache_dir`, else from the settings); None, meaning no
    persistent cache, when the settings cannot be read: a broken config must not block fingerprinting."""
    try:
        root = load_settings(cache_dir=cache_dir).cache_dir
    except AdapterError:
        if cache_dir is None or not str(cache_dir).strip():
            return None
        root = Path(cache_dir)
    return Cache(root).fingerprints_dir


def fingerprint(
    directory: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True
) -> Fingerprinted:
    """Content, architecture and file fingerprints of a safetensors model directory, timed."""
    from ..basemodel.fingerprint import fingerprint_dir

    start = time.perf_counter()
    folder = fingerprint_cache_dir(cache_dir) if use_cache else None
    result = fingerprint_dir(directory, folder, use_cache=use_cache and folder is not None)
    return Fingerprinted(str(directory), result, time.perf_counter() - start)
