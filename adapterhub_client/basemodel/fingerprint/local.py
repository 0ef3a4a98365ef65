"""`LocalModel`: one view of a local base model (a directory or an nn.Module) for compatibility checks.

Owns what compat needs from either kind: every tensor's shape and dtype, the architecture fingerprint,
and the content fingerprint computed on demand (hashing only once the cheap checks pass), memoised
per algorithm. The cache directory for directories is the caller's; None keeps no cache on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ...errors import InvalidPackageError, NotFoundError
from ..safetensors_header import canonical_dtype
from .directory import fingerprint_dir, tensor_digests
from .files import read_headers, read_model_type, weight_files, weights_from_headers
from .module import architecture_module, content_module, untied_architecture
from .quantized import quantized_view
from .spec import ALGORITHMS, TensorSpec, architecture_fingerprint, combine_content, counted, default_algorithm

if TYPE_CHECKING:
    from torch import nn

# What every "local model" argument accepts: a LocalModel, a directory (or .safetensors file) path, a module.
ModelLike: TypeAlias = "LocalModel | str | os.PathLike[str] | nn.Module"


@dataclass
class LocalModel:
    """A local base model as compat sees it: its weights' names/shapes/dtypes, fingerprints on demand."""

    source: str
    weights: dict[str, TensorSpec]  # every tensor: name -> {"shape", "dtype"}
    _architecture: str | Callable[[], str] = field(repr=False)  # computed on first use for a module
    model_type: str | None = None
    _content: Callable[[str], str | None] | None = field(default=None, repr=False)
    _content_memo: dict[str, str] = field(default_factory=dict, repr=False)
    _file_sha256: Callable[[bool], dict[str, str] | None] | None = field(default=None, repr=False)
    # how the model is (or will be, `attach --quantize`) quantized: the manifest's `base_model.quantization`
    # form (nn.quant.Quantization.to_dict(), "modules" left out when not known yet); None: full precision
    quantization: dict[str, Any] | None = None

    @property
    def architecture(self) -> str:
        """The architecture fingerprint (for a module: computed when first asked for)."""
        if callable(self._architecture):
            self._architecture = self._architecture()
        return self._architecture

    @property
    def known_architecture(self) -> str | None:
        """The architecture fingerprint if already computed (free for a directory), else None."""
        return None if callable(self._architecture) else self._architecture

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> LocalModel:
        """From headers now; the content fingerprint later, cached under `cache_dir` if one is given. A 4-bit
        checkpoint (bitsandbytes' layout) is seen as the full-precision base it stands for (`quantized`)."""
        root, files = weight_files(path)
        headers = read_headers(root, files)
        view = quantized_view(root, headers)
        weights = weights_from_headers(headers) if view is None else view.weights

        def content(algorithm: str) -> str | None:
            if view is None:
                result: str = fingerprint_dir(path, cache_dir, algorithm=algorithm, file_digests=False)["content"]
                return result
            stored = tensor_digests(root, files, headers, cache_dir, algorithm)
            digests = [
                stored[name] if name not in view.stored else view.unquantized_digest(name, algorithm)
                for name in counted({name: w["dtype"] for name, w in weights.items()})
            ]
            known = [d for d in digests if d is not None]
            return combine_content(algorithm, known) if len(known) == len(digests) else None

        def file_sha256(may_hash: bool) -> dict[str, str] | None:
            return weight_file_sha256(root, files, cache_dir, may_hash)

        return cls(
            str(path),
            weights,
            architecture_fingerprint(weights),
            read_model_type(root),
            content,
            _file_sha256=file_sha256,
            quantization=None if view is None else view.quantization,
        )

    @classmethod
    def from_module(cls, model: nn.Module) -> LocalModel:
        """From the module's base state dict (adapters left out; 4-bit layers as their unquantized weights);
        content hashed on demand (None for 4-bit layers whose full-precision weights were never seen)."""
        from ...nn.quant import quantization_of

        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        quantization = quantization_of(model)

        def content(algorithm: str) -> str | None:
            try:
                return content_module(model, algorithm)
            except InvalidPackageError:
                if quantization is None:
                    raise
                return None

        return cls(
            f"<{type(model).__name__}>",
            architecture_module(model),
            lambda: architecture_fingerprint(untied_architecture(model)),
            model_type if isinstance(model_type, str) else None,
            content,
            quantization=None if quantization is None else quantization.to_dict(),
        )

    @classmethod
    def of(cls, model: ModelLike, cache_dir: str | os.PathLike[str] | None = None) -> LocalModel:
        """A LocalModel from a LocalModel, a directory path, or an nn.Module (anything with state_dict)."""
        if isinstance(model, LocalModel):
            return model
        if isinstance(model, (str, os.PathLike)):
            return cls.from_dir(model, cache_dir)
        if hasattr(model, "state_dict"):  # duck-typed: torch is not imported to check
            return cls.from_module(model)
        raise TypeError(f"expected a model directory or an nn.Module, got {type(model).__name__}")

    def content(self, algorithm: str | None = None) -> str | None:
        """The content fingerprint with `algorithm`; None when that algorithm is unavailable here."""
        algorithm = algorithm or default_algorithm()
        if algorithm not in ALGORITHMS or (algorithm == "blake3" and default_algorithm() != "blake3"):
            return None
        if algorithm not in self._content_memo and self._content is not None:
            content = self._content(algorithm)
            if content is None:
                return None
            self._content_memo[algorithm] = content
        return self._content_memo.get(algorithm)

    def file_sha256(self, may_hash: bool = False) -> dict[str, str] | None:
        """{weight file: sha256} when known without reading tensors: a Hugging Face cache names an LFS
        blob by its sha256, the fingerprint cache remembers earlier hashes; with `may_hash` the rest are
        hashed (and remembered). None when unknown (a module, or a file we may not hash)."""
        return self._file_sha256(may_hash) if self._file_sha256 is not None else None

    def module_weights(self, module_paths: Iterable[str]) -> dict[str, TensorSpec]:
        """{path: {"shape", "dtype"}} of `<path>.weight` for each path: what a manifest's
        base_model.architecture.modules records. Raises NotFoundError for a path without a weight."""
        out: dict[str, TensorSpec] = {}
        for path in module_paths:
            w = self.weights.get(f"{path}.weight")
            if w is None:
                raise NotFoundError(f"{self.source}: no weight '{path}.weight'")
            out[path] = {"shape": list(w["shape"]), "dtype": canonical_dtype(w["dtype"])}
        return out


_SHA256_NAME = re.compile(r"[0-9a-f]{64}")


def weight_file_sha256(
    root: Path, files: list[str], cache_dir: str | os.PathLike[str] | None, may_hash: bool
) -> dict[str, str] | None:
    """Each weight file's sha256: from a Hugging Face cache blob name (free), the fingerprint cache, or
    (with `may_hash`) by hashing the file, then remembered in the fingerprint cache."""
    from ..._fs import file_digest
    from .cache import FingerprintCache, empty_entry
    from .scan import file_identity

    cache = FingerprintCache(cache_dir) if cache_dir is not None else None
    out: dict[str, str] = {}
    for rel in files:
        path = root / rel
        real = os.path.realpath(path)
        if path.is_symlink() and _SHA256_NAME.fullmatch(os.path.basename(real)):
            out[rel] = os.path.basename(real)
            continue
        identity = file_identity(path)
        entry = cache.get(real, identity) if cache is not None else empty_entry(identity)
        if entry["sha256"]:
            out[rel] = entry["sha256"]
            continue
        if not may_hash:
            return None
        out[rel] = entry["sha256"] = file_digest(path)[0]
        if cache is not None:
            cache.put(real, entry)
    if cache is not None:
        cache.flush()
    return out
