"""The fingerprint format itself: registry_schema/FINGERPRINT.md as code, section by section, in its order.

Everything here is a published format: changing a constant or a formula changes every fingerprint
ever recorded. Pure functions over names, dtypes, shapes, bytes and digests; no file or network IO,
no torch (reading weight files is `files.py`/`scan.py`, modules are `module.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Protocol, TypedDict

from ...errors import InvalidPackageError
from ..safetensors_header import canonical_dtype, is_float_dtype

# The bytes a digest is taken over: anything exposing the buffer protocol as one of these.
ReadableBuffer = bytes | bytearray | memoryview


class TensorSpec(TypedDict):
    """One tensor as the architecture fingerprint and the manifest's `modules` see it."""

    shape: list[int]
    dtype: str


class Hasher(Protocol):
    """What hashlib's and blake3's hashers share."""

    def update(self, data: ReadableBuffer, /) -> object: ...

    def hexdigest(self) -> str: ...


# --------------------------------------------------------------------------- § Which tensors count
# (Which weight files of a directory: `files.weight_files`.)


def counted(dtypes: Mapping[str, str]) -> list[str]:
    """Names of the tensors fingerprints count: the floating-point ones (integer and bool tensors are
    index buffers such as position_ids that checkpoints keep or drop by library version); all of
    them in a model with no floating-point tensor at all, so such models do not share one print."""
    floats = [name for name, dtype in dtypes.items() if is_float_dtype(dtype)]
    return floats if floats else list(dtypes)


# --------------------------------------------------------------------------- § Content fingerprint

CONTENT_DOMAIN = b"adapterhub-content-v1\n"
ALGORITHMS = ("blake3", "sha256")  # `H`: BLAKE3, else the SHA-256 fallback; never compared across
_THREADED_TENSOR_BYTES = 4 << 20  # below this, blake3's thread pool costs more than it saves


def default_algorithm() -> str:
    """blake3 where the package is installed, else sha256 (the same definition, another prefix)."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        return "sha256"
    return "blake3"


def algorithm_of(fingerprint: str) -> str:
    """The `<alg>` of `"<alg>:<hex>"`: which `H` to recompute a recorded content fingerprint with."""
    return fingerprint.split(":", 1)[0]


def _new_hasher(algorithm: str, large: bool = False) -> Hasher:
    """A fresh `H`; `large` only lets BLAKE3 spread one big input over cores (same digest)."""
    if algorithm == "blake3":
        import blake3

        hasher: Hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if large else 1)
        return hasher
    if algorithm == "sha256":
        return hashlib.sha256()
    raise InvalidPackageError(f"unknown fingerprint algorithm {algorithm!r} (known: blake3, sha256)")


def shape_text(shape: Iterable[int]) -> str:
    """Decimal dimensions joined by "," ("384,384"; "" for a scalar)."""
    return ",".join(str(int(d)) for d in shape)


def tensor_digest(algorithm: str, dtype: str, shape: Iterable[int], data: ReadableBuffer) -> str:
    """Digest of one tensor: H(dtype NUL shape NUL bytes), dtype canonical ("float32"), shape "2,3"."""
    h = _new_hasher(algorithm, large=memoryview(data).nbytes >= _THREADED_TENSOR_BYTES)
    h.update(f"{canonical_dtype(dtype)}\0{shape_text(shape)}\0".encode())
    h.update(data)
    return h.hexdigest()


def combine_content(algorithm: str, digests: Iterable[str]) -> str:
    """The content fingerprint: H(domain, sorted distinct tensor digests one per line)."""
    h = _new_hasher(algorithm)
    h.update(CONTENT_DOMAIN)
    for digest in sorted(set(digests)):
        h.update(digest.encode() + b"\n")
    return f"{algorithm}:{h.hexdigest()}"


# --------------------------------------------------------------------------- § Architecture fingerprint

ARCHITECTURE_DOMAIN = b"adapterhub-architecture-v1\n"
ARCHITECTURE_ALGORITHM = "sha256"  # tiny input: one algorithm everywhere keeps it comparable

# § Name normalisation: leading state-dict prefixes that wrap the same base model (task heads, PEFT,
# sentence encoders), stripped repeatedly. Not `modpaths.align_paths`: that one may evolve, this may not.
BASE_PREFIXES = (
    "base_model.model.",
    "bert.",
    "roberta.",
    "xlm_roberta.",
    "distilbert.",
    "albert.",
    "electra.",
    "deberta.",
    "mpnet.",
    "transformer.",
    "gpt_neox.",
    "model.",
)


def normalize_name(name: str) -> str:
    """Strip wrapper prefixes (`bert.`, `model.`, `base_model.model.`...) so bare and wrapped names agree."""
    changed = True
    while changed:
        changed = False
        for prefix in BASE_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                changed = True
                break
    return name


def architecture_fingerprint(weights: Mapping[str, TensorSpec]) -> str:
    """H(domain, sorted lines "normalised-name TAB dtype TAB d0,d1") over the counted tensors.

    From a module, pass it without tied aliases (`module.untied_architecture`): save_pretrained drops them."""
    lines = sorted(
        f"{normalize_name(name)}\t{canonical_dtype(weights[name]['dtype'])}\t{shape_text(weights[name]['shape'])}"
        for name in counted({name: w["dtype"] for name, w in weights.items()})
    )
    h = hashlib.sha256(ARCHITECTURE_DOMAIN)
    for line in lines:
        h.update(line.encode() + b"\n")
    return f"{ARCHITECTURE_ALGORITHM}:{h.hexdigest()}"


# § File digests: plain sha256 of each weight file (`_fs.sha256_file`, run by `scan.scan_file`).
# § Cache: `cache.FingerprintCache`. § Verdicts: `basemodel/compat.py`.
