"""Base-model fingerprints: content, architecture and file digests (definition: registry_schema/FINGERPRINT.md).

- content: which weights, exactly. A digest per counted tensor (the floating-point ones) over (dtype,
  shape, raw little-endian bytes); duplicates dropped; the sorted list hashed. Independent of sharding,
  tensor order, state-dict prefixes and tied copies, so a directory and an in-memory module agree.
- architecture: which shapes. Normalised names, dtypes and shapes of the counted tensors, read
  from safetensors headers only.
- files: sha256 of each weight file, equal to the Hub's LFS sha256.

The package re-exports its submodules' public names; each submodule owns one concern:

- `spec`: the format (domains, counted tensors, digest formulas, name normalisation); pure, no IO.
- `files`: which files of a directory hold the weights (pickle-only refused), their headers.
- `scan`: reading tensor bytes (mmap) and file sha256s; file identity.
- `cache`: the JSON cache of per-file results, in a directory the caller names.
- `directory`: `fingerprint_dir` / `architecture_dir`, composing the above.
- `module`: fingerprints of an in-memory nn.Module (torch imported only when called).
- `local`: `LocalModel`, what compat checks against.

No torch and no settings at import time: callers pass the cache directory.
"""

from __future__ import annotations

from ..._fs import PICKLE_SUFFIXES
from .cache import CACHE_FILE, CACHE_MAX_ENTRIES, CACHE_VERSION, CacheEntry, FingerprintCache
from .directory import architecture_dir, fingerprint_dir
from .files import SINGLE_FILE, read_headers, read_model_type, weight_files, weights_from_headers
from .local import LocalModel, ModelLike
from .module import (
    ADAPTER_WRAPPER_CHILD,
    architecture_module,
    content_module,
    fingerprint_module,
    record_unquantized,
    tensor_digest_of,
    untied_architecture,
)
from .scan import file_identity, scan_file
from .spec import (
    ALGORITHMS,
    ARCHITECTURE_ALGORITHM,
    ARCHITECTURE_DOMAIN,
    BASE_PREFIXES,
    CONTENT_DOMAIN,
    TensorSpec,
    algorithm_of,
    architecture_fingerprint,
    combine_content,
    counted,
    default_algorithm,
    normalize_name,
    tensor_digest,
)

__all__ = [
    "ADAPTER_WRAPPER_CHILD",
    "ALGORITHMS",
    "ARCHITECTURE_ALGORITHM",
    "ARCHITECTURE_DOMAIN",
    "BASE_PREFIXES",
    "CACHE_FILE",
    "CACHE_MAX_ENTRIES",
    "CACHE_VERSION",
    "CONTENT_DOMAIN",
    "PICKLE_SUFFIXES",
    "SINGLE_FILE",
    "CacheEntry",
    "FingerprintCache",
    "LocalModel",
    "ModelLike",
    "TensorSpec",
    "algorithm_of",
    "architecture_dir",
    "architecture_fingerprint",
    "architecture_module",
    "combine_content",
    "content_module",
    "counted",
    "default_algorithm",
    "file_identity",
    "fingerprint_dir",
    "fingerprint_module",
    "record_unquantized",
    "tensor_digest_of",
    "normalize_name",
    "read_headers",
    "read_model_type",
    "scan_file",
    "tensor_digest",
    "untied_architecture",
    "weight_files",
    "weights_from_headers",
]
