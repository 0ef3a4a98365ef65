"""Building small but real adapter packages (safetensors weights + manifest.json) for tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file


def make_package(
    directory: Path,
    name: str,
    version: str,
    *,
    size: int = 4096,
    seed: int = 0,
    deps: Iterable[tuple[str, str]] = (),
    files: int = 1,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A package whose weights are `files` safetensors files of about `size` bytes each."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    listed = []
    for i in range(files):
        fname = "adapter.safetensors" if i == 0 else f"adapter-{i}.safetensors"
        n = max(1, size // 4)
        save_file({f"layer.{i}.lora_A": rng.standard_normal(n).astype(np.float32)}, str(directory / fname))
        listed.append({"path": fname})
    manifest = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "description": f"test adapter {name}",
        "tags": ["test"],
        "adapter": {"type": "lora", "config": {"r": 4, "alpha": 8}},
        "base_model": {"name": "test/base"},
        "files": listed,
        "dependencies": [{"name": d, "specifier": s} for d, s in deps],
        **(extra or {}),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def make_toy_base(directory: Path) -> Path:
    """A tiny base model on disk (one 4x4 weight, model_type "toy"): publish --base records its real
    content fingerprint, and search --for-model finds what was published on it."""
    directory.mkdir(parents=True)
    save_file({"layer.weight": np.ones((4, 4), dtype=np.float32)}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "toy"}))
    return directory
