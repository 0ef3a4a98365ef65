"""Base-model fingerprints: content, architecture and file digests (definition: registry_schema/FINGERPRINT.md).

- content: which weights, exactly. A digest per counted tensor (the floating-point ones, see
  `counted`) over (dtype, shape, raw little-endian bytes); duplicates dropped; the sorted list hashed. Independent of sharding, tensor
  order, state-dict prefixes and tied copies, so a directory and an in-memory module agree.
- architecture: which shapes. Normalised names, dtypes and shapes of the counted tensors, read
  from safetensors headers only.
- files: sha256 of each weight file, equal to the Hub's LFS sha256.

No torch at import time: `fingerprint_module` imports it when called.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ...errors import AdapterError, InvalidPackageError, NotFoundError
from ..safetensors_header import SafetensorsHeader, canonical_dtype, is_float_dtype, read_header

CONTENT_DOMAIN = b"adapterhub-content-v1\n"
ARCHITECTURE_DOMAIN = b"adapterhub-architecture-v1\n"
ALGORITHMS = ("blake3", "sha256")
ARCHITECTURE_ALGORITHM = "sha256"  # tiny input: one algorithm everywhere keeps it comparable

# Leading state-dict prefixes that wrap the same base model (task heads, PEFT, sentence encoders).
# Stripped, repeatedly, before names enter the architecture fingerprint.
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

SINGLE_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CACHE_FILE = "fingerprints.json"
CACHE_VERSION = 1
CACHE_MAX_ENTRIES = 1024
_SHA256_CHUNK = 8 << 20
_THREADED_TENSOR_BYTES = 4 << 20  # below this, blake3's thread pool costs more than it saves


# --------------------------------------------------------------------------- hashing primitives


def default_algorithm() -> str:
    try:
        import blake3  # noqa: F401
    except ImportError:
        return "sha256"
    return "blake3"


def _new_hasher(algorithm: str, large: bool = False) -> Any:
    if algorithm == "blake3":
        import blake3

        return blake3.blake3(max_threads=blake3.blake3.AUTO if large else 1)
    if algorithm == "sha256":
        return hashlib.sha256()
    raise InvalidPackageError(f"unknown fingerprint algorithm {algorithm!r} (known: blake3, sha256)")


def algorithm_of(fingerprint: str) -> str:
    return fingerprint.split(":", 1)[0]


def tensor_digest(algorithm: str, dtype: str, shape: Iterable[int], data: Any) -> str:
    """Digest of one tensor: H(dtype NUL shape NUL bytes), dtype canonical ("float32"), shape "2,3"."""
    h = _new_hasher(algorithm, large=memoryview(data).nbytes >= _THREADED_TENSOR_BYTES)
    h.update(f"{canonical_dtype(dtype)}\0{','.join(str(int(d)) for d in shape)}\0".encode())
    h.update(data)
    return h.hexdigest()


def combine_content(algorithm: str, digests: Iterable[str]) -> str:
    """The content fingerprint: H(domain, sorted distinct tensor digests one per line)."""
    h = _new_hasher(algorithm)
    h.update(CONTENT_DOMAIN)
    for digest in sorted(set(digests)):
        h.update(digest.encode() + b"\n")
    return f"{algorithm}:{h.hexdigest()}"


def normalize_name(name: str) -> str:
    """Strip wrapper prefixes (`bert.`, `model.`, `base_model.model.`...) so bare and wrapped names agree."""
    changed = True
    while changed:
        changed = False
        for prefix in BASE_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix):]
                changed = True
                break
    return name


def counted(dtypes: dict[str, str]) -> list[str]:
    """Names of the tensors fingerprints count: the floating-point ones (integer and bool tensors are
    index buffers such as position_ids that checkpoints keep or drop by library version); all of
    them in a model with no floating-point tensor at all, so such models do not share one print."""
    floats = [name for name, dtype in dtypes.items() if is_float_dtype(dtype)]
    return floats if floats else list(dtypes)


def architecture_fingerprint(weights: dict[str, dict[str, Any]]) -> str:
    """H(domain, sorted lines "normalised-name TAB dtype TAB d0,d1") over the counted tensors."""
    lines = sorted(
        f"{normalize_name(name)}\t{canonical_dtype(weights[name]['dtype'])}\t"
        f"{','.join(str(int(d)) for d in weights[name]['shape'])}"
        for name in counted({name: w["dtype"] for name, w in weights.items()})
    )
    h = hashlib.sha256(ARCHITECTURE_DOMAIN)
    for line in lines:
        h.update(line.encode() + b"\n")
    return f"{ARCHITECTURE_ALGORITHM}:{h.hexdigest()}"


# --------------------------------------------------------------------------- weight files of a directory


def weight_files(path: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """(root, sorted relative paths of the safetensors weight files), chosen as transformers does:
    `model.safetensors`, else the shards named by `*.safetensors.index.json`, else every top-level
    `*.safetensors`. A path to a single `.safetensors` file is accepted too."""
    root = Path(path)
    if root.is_file() and root.name.endswith(".safetensors"):
        return root.parent, [root.name]
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such model directory")
    if (root / SINGLE_FILE).is_file():
        return root, [SINGLE_FILE]
    indexes = sorted(root.glob("*.safetensors.index.json"))
    if indexes:
        names: set[str] = set()
        for index in indexes:
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                names.update(str(v) for v in weight_map.values())
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InvalidPackageError(f"{index}: malformed safetensors index (no 'weight_map')") from None
        unsafe = sorted(n for n in names if Path(n).is_absolute() or ".." in Path(n).parts)
        if unsafe:
            raise InvalidPackageError(f"{root}: the index names a shard outside the directory ({unsafe[0]!r})")
        missing = sorted(n for n in names if not (root / n).is_file())
        if missing:
            raise NotFoundError(f"{root}: shard {missing[0]} named by the index is missing ({len(missing)} missing)")
        return root, sorted(names)
    found = sorted(p.name for p in root.glob("*.safetensors") if p.is_file())
    if found:
        return root, found
    pickles = sorted(p.name for p in root.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise InvalidPackageError(
            f"{root}: only pickle checkpoints ({pickles[0]}); fingerprints need safetensors "
            "(load it and save_pretrained(..., safe_serialization=True))"
        )
    raise NotFoundError(f"{root}: no *.safetensors weight files")


def read_model_type(root: Path) -> str | None:
    try:
        value = json.loads((root / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _headers(root: Path, files: list[str]) -> dict[str, SafetensorsHeader]:
    headers = {rel: read_header(root / rel) for rel in files}
    seen: dict[str, str] = {}
    for rel, header in headers.items():
        for name in header.tensors:
            if name in seen:
                raise InvalidPackageError(f"{root}: tensor {name!r} is stored twice ({seen[name]} and {rel})")
            seen[name] = rel
    return headers


def architecture_dir(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every tensor of a safetensors model directory: name -> {"shape", "dtype"}; headers only."""
    root, files = weight_files(path)
    return _weights_from_headers(_headers(root, files))


def _weights_from_headers(headers: dict[str, SafetensorsHeader]) -> dict[str, dict[str, Any]]:
    return {
        t.name: {"shape": list(t.shape), "dtype": t.dtype} for h in headers.values() for t in h.tensors.values()
    }


# --------------------------------------------------------------------------- hashing one file


def _scan_file(
    path: Path, header: SafetensorsHeader, algorithm: str | None, want_sha256: bool
) -> tuple[dict[str, str], str | None]:
    """Digests of every tensor (none when algorithm is None) and the file's sha256.

    The file is mapped once and tensor byte ranges are hashed in place. Hashers release the GIL, so
    the whole-file sha256 runs on its own thread beside the tensor digests; BLAKE3 spreads a large
    tensor over cores itself, while single-threaded SHA-256 digests run one tensor per thread."""
    tensors = header.in_file_order() if algorithm is not None else []
    workers = 1 if algorithm == "blake3" else max(1, min(len(tensors), os.cpu_count() or 1))
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            with ThreadPoolExecutor(max_workers=workers + want_sha256) as pool:
                sha = pool.submit(_sha256_of_view, view) if want_sha256 else None

                def digest(t: Any) -> str:
                    return tensor_digest(algorithm, t.dtype, t.shape, view[t.start:t.end])

                if workers > 1:
                    digests = dict(zip((t.name for t in tensors), pool.map(digest, tensors)))
                else:
                    digests = {t.name: digest(t) for t in tensors}
                file_sha = sha.result() if sha is not None else None
        finally:
            view.release()
    return digests, file_sha


def _sha256_of_view(view: memoryview) -> str:
    h = hashlib.sha256()
    for offset in range(0, len(view), _SHA256_CHUNK):
        h.update(view[offset:offset + _SHA256_CHUNK])
    return h.hexdigest()


def _file_identity(path: Path) -> list[int]:
    st = os.stat(path)  # follows symlinks: Hub snapshots point into blobs/
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """`fingerprints/` under the client's cache dir: ADAPTERS_CACHE_DIR, config `cache_dir`,
    ADAPTERS_HOME/cache, else platformdirs' user cache dir (see config.load_settings)."""
    try:
        from ...config import load_settings

        return load_settings().cache_dir / "fingerprints"
    except (ImportError, AdapterError):  # an unreadable config must not block fingerprinting
        pass
    env = os.environ.get("ADAPTERS_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "fingerprints"
    import platformdirs

    return Path(platformdirs.user_cache_dir("adapterhub", appauthor=False)) / "fingerprints"


class FingerprintCache:
    """Per-file results keyed by real path and identity (size, mtime_ns, ctime_ns, inode, device).

    One small JSON file; written atomically (temp file + rename), merged with what is on disk at
    write time, so concurrent writers can lose an entry but never corrupt the file."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / CACHE_FILE
        self._entries = self._load()
        self._dirty: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("files")
        return entries if isinstance(entries, dict) else {}

    def get(self, real_path: str, identity: list[int]) -> dict[str, Any]:
        entry = self._entries.get(real_path)
        if isinstance(entry, dict) and entry.get("id") == identity:
            return entry
        return {"id": identity, "digests": {}, "sha256": None}

    def put(self, real_path: str, entry: dict[str, Any]) -> None:
        entry["used"] = int(time.time())
        self._entries[real_path] = entry
        self._dirty[real_path] = entry

    def flush(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = self._load()
            merged.update(self._dirty)
            if len(merged) > CACHE_MAX_ENTRIES:  # forget the least recently used
                keep = sorted(merged, key=lambda k: merged[k].get("used", 0), reverse=True)[:CACHE_MAX_ENTRIES]
                merged = {k: merged[k] for k in keep}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fingerprints-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": CACHE_VERSION, "files": merged}, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
            self._entries = merged
            self._dirty = {}
        except OSError:
            pass  # a read-only cache only costs speed


# --------------------------------------------------------------------------- directories


def fingerprint_dir(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    algorithm: str | None = None,
    file_digests: bool = True,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Fingerprints of a safetensors model directory (single file or sharded).

    Returns {"content", "architecture", "files": {relpath: sha256}, "model_type", "tensor_count",
    "total_bytes"}; "files" is {} when file_digests=False. Results per file are cached by file
    identity, so a repeated call reads only headers and the cache."""
    algorithm = algorithm or default_algorithm()
    root, files = weight_files(path)
    headers = _headers(root, files)
    cache = FingerprintCache(cache_dir) if use_cache else None
    digests: dict[str, str] = {}
    shas: dict[str, str] = {}
    for rel in files:
        file_path = root / rel
        real = os.path.realpath(file_path)
        identity = _file_identity(file_path)
        entry = cache.get(real, identity) if cache else {"id": identity, "digests": {}, "sha256": None}
        need_digests = algorithm not in entry["digests"]
        need_sha = file_digests and not entry["sha256"]
        if need_digests or need_sha:
            file_digest_map, sha = _scan_file(file_path, headers[rel], algorithm if need_digests else None, need_sha)
            if _file_identity(file_path) != identity:
                raise InvalidPackageError(f"{file_path}: changed while it was being hashed; try again")
            if need_digests:
                entry["digests"][algorithm] = file_digest_map
            if need_sha:
                entry["sha256"] = sha
            if cache:
                cache.put(real, entry)
        digests.update(entry["digests"][algorithm])
        if file_digests:
            shas[Path(rel).as_posix()] = entry["sha256"]
    if cache:
        cache.flush()
    weights = _weights_from_headers(headers)
    names = counted({name: w["dtype"] for name, w in weights.items()})
    by_name = {t.name: t for h in headers.values() for t in h.tensors.values()}
    return {
        "content": combine_content(algorithm, (digests[name] for name in names)),
        "architecture": architecture_fingerprint(weights),
        "files": shas,
        "model_type": read_model_type(root),
        "tensor_count": len(names),
        "total_bytes": sum(by_name[name].nbytes for name in names),
    }


# --------------------------------------------------------------------------- in-memory modules


ADAPTER_WRAPPER_CHILD = "base_layer"


def base_state_dict(model: Any) -> dict[str, Any]:
    """model.state_dict() of the base model alone, with adapters attached or not.

    A module with a child named `base_layer` is an adapter wrapper (ours, or PEFT's LoRA layers):
    only that child's tensors belong to the base, and they are named without the `base_layer` hop,
    so a wrapped model and the plain one give the same names. Merged adapters change the base
    weights themselves: fingerprint with adapters unmerged."""
    state = model.state_dict()
    wrappers = {
        path for path, module in model.named_modules()
        if ADAPTER_WRAPPER_CHILD in dict(module.named_children())
    }
    if not wrappers:
        return state
    base = {}
    for key, tensor in state.items():
        parts = key.split(".")
        kept: list[str] = []
        for i, part in enumerate(parts):
            if ".".join(parts[:i]) in wrappers:
                if part != ADAPTER_WRAPPER_CHILD:
                    break  # an adapter's own tensor
                continue  # drop the hop
            kept.append(part)
        else:
            base[".".join(kept)] = tensor
    return base


def _module_counted_tensors(model: Any) -> list[tuple[str, Any]]:
    """(name, tensor) for the counted entries of the base state dict: parameters and persistent
    buffers (what save_pretrained writes); non-persistent buffers are not in state_dict()."""
    state = base_state_dict(model)
    out = []
    for name in counted({name: canonical_dtype(t.dtype) for name, t in state.items()}):
        tensor = state[name]
        if tensor.device.type == "meta":
            raise InvalidPackageError(f"tensor {name!r} is on the meta device: no weights to fingerprint")
        out.append((name, tensor))
    return out


def architecture_module(model: Any) -> dict[str, dict[str, Any]]:
    """Every base state-dict entry of an nn.Module (tied aliases under each name; adapters left out,
    see base_state_dict): name -> {"shape", "dtype"}."""
    return {
        name: {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)} for name, t in base_state_dict(model).items()
    }


def _untied(model: Any) -> dict[str, dict[str, Any]]:
    """architecture_module() without tied aliases: the first name of each shared storage wins,
    as in save_pretrained, which keeps the input embedding and drops lm_head."""
    seen: set[tuple[Any, ...]] = set()
    weights = {}
    for name, t in base_state_dict(model).items():
        storage = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset())
        key = (*storage, tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        weights[name] = {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)}
    return weights


def content_module(model: Any, algorithm: str | None = None) -> str:
    algorithm = algorithm or default_algorithm()
    if sys.byteorder != "little":
        raise InvalidPackageError("fingerprints of in-memory modules need a little-endian machine")
    import torch

    digests = []
    with torch.no_grad():
        for _name, tensor in _module_counted_tensors(model):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            data = flat.view(torch.uint8).numpy() if flat.numel() else b""
            digests.append(tensor_digest(algorithm, canonical_dtype(tensor.dtype), tensor.shape, data))
    return combine_content(algorithm, digests)


def fingerprint_module(model: Any, *, algorithm: str | None = None) -> dict[str, Any]:
    """{"content", "architecture"} of an in-memory nn.Module; equal to fingerprint_dir() of its
    save_pretrained() output."""
    return {"content": content_module(model, algorithm), "architecture": architecture_fingerprint(_untied(model))}


# --------------------------------------------------------------------------- one view for compat


@dataclass
class LocalModel:
    """A local base model as compat sees it: its weights' names/shapes/dtypes, fingerprints on demand."""

    source: str
    weights: dict[str, dict[str, Any]]  # every tensor: name -> {"shape", "dtype"}
    architecture: str
    model_type: str | None = None
    _content: Callable[[str], str] | None = field(default=None, repr=False)
    _content_memo: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> "LocalModel":
        root, files = weight_files(path)
        weights = _weights_from_headers(_headers(root, files))

        def content(algorithm: str) -> str:
            return fingerprint_dir(path, cache_dir, algorithm=algorithm, file_digests=False)["content"]

        return cls(str(path), weights, architecture_fingerprint(weights), read_model_type(root), content)

    @classmethod
    def from_module(cls, model: Any) -> "LocalModel":
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        return cls(
            f"<{type(model).__name__}>",
            architecture_module(model),
            architecture_fingerprint(_untied(model)),
            model_type if isinstance(model_type, str) else None,
            lambda algorithm: content_module(model, algorithm),
        )

    @classmethod
    def of(cls, model: Any, cache_dir: str | os.PathLike[str] | None = None) -> "LocalModel":
        """A LocalModel from a LocalModel, a directory path, or an nn.Module."""
        if isinstance(model, LocalModel):
            return model
        if isinstance(model, (str, os.PathLike)):
            return cls.from_dir(model, cache_dir)
        if hasattr(model, "state_dict"):
            return cls.from_module(model)
        raise TypeError(f"expected a model directory or an nn.Module, got {type(model).__name__}")

    def content(self, algorithm: str | None = None) -> str | None:
        """The content fingerprint with `algorithm`; None when that algorithm is unavailable here."""
        algorithm = algorithm or default_algorithm()
        if algorithm not in ALGORITHMS or (algorithm == "blake3" and default_algorithm() != "blake3"):
            return None
        if algorithm not in self._content_memo and self._content is not None:
            self._content_memo[algorithm] = self._content(algorithm)
        return self._content_memo.get(algorithm)

    def module_weights(self, module_paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        """{path: {"shape", "dtype"}} of `<path>.weight` for each path: what a manifest's
        base_model.architecture.modules records. Raises NotFoundError for a path without a weight."""
        out = {}
        for path in module_paths:
            w = self.weights.get(f"{path}.weight")
            if w is None:
                raise NotFoundError(f"{self.source}: no weight '{path}.weight'")
            out[path] = {"shape": list(w["shape"]), "dtype": canonical_dtype(w["dtype"])}
        return out
