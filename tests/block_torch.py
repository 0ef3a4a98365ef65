"""A pytest plugin that makes torch (and transformers, peft) unimportable: the torch-free tier.

    python -m pytest -q -p tests.block_torch tests/unit

Any import of a blocked package, direct or through our code, raises ImportError, so a test that
passes here proves the package-manager half works on a machine without torch."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

BLOCKED = ("torch", "transformers", "peft")


class BlockTorch(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: refuses the blocked top-level packages and everything below them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked by tests.block_torch (the torch-free tier)", name=fullname)
        return None


def _install() -> None:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if loaded:  # too late to block: say so rather than pretend
        raise RuntimeError(f"tests.block_torch: already imported before the plugin loaded: {loaded[:5]}")
    if not any(isinstance(f, BlockTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, BlockTorch())


_install()
