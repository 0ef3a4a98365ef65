"""Turning a directory into a publishable package: a directory -> a completed, validated manifest.

Our own package dirs keep their manifest (name/version may be overridden); a PEFT LoRA directory or an
AdapterHub directory (bottleneck or LoRA) keeps its files as they are (so it still loads in PEFT /
AdapterHub) and its manifest is derived from ``adapter_config.json`` and the safetensors header alone
(``adapter.config.format`` says which reader loads it). Torch-free: PEFT's and AdapterHub's file and
key names come from :mod:`.peft_layout` / :mod:`.adapterhub_layout`, the base-weight layouts from
:mod:`adapterhub_client.nn.layout`, and module paths are matched to a base model's by
:func:`~..modpaths.align_paths`.

The base model is recorded by a Hugging Face Hub id when one is known (:func:`base_metadata`), never by
a path of the publisher's machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from ..errors import InvalidPackageError, NotFoundError
from ..manifest import MANIFEST_FILE, complete_package, is_hub_id, new_manifest
from ..modpaths import align_paths
from ..nn.layout import CONV1D, EMBEDDING, LINEAR, weight_shape
from . import adapterhub_layout, peft_layout
from .files import ADAPTERHUB, PEFT, read_json

# kept importable under their old names
PEFT_CONFIG = peft_layout.CONFIG_FILE
PEFT_WEIGHTS = peft_layout.WEIGHTS_FILE
PEFT_PREFIX = peft_layout.PREFIX


# What a raw PEFT / AdapterHub directory is called when it is installed or attached as it is (no
# manifest, no --name/--version): `local/<directory name>` at this version. A local version label
# (`+local`) would be clearer, but published versions may not carry one, and a raw directory must
# install exactly as its packed form would.
LOCAL_ORG = "local"
LOCAL_VERSION = "0.0.0"
_HF_CACHE_REPO = re.compile(r"models--([A-Za-z0-9][A-Za-z0-9._-]*)--([A-Za-z0-9][A-Za-z0-9._-]*)")
_REVISION = re.compile(r"[0-9a-f]{40}|[A-Za-z0-9._-]{1,100}")


def _read_json(path: Path) -> Any:
    return read_json(path, missing=NotFoundError)


def local_name(directory: Path) -> str:
    """`local/<directory name>`, the name made valid (`My Adapter!` -> `local/My-Adapter`)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name)[:64].strip("._-")
    return f"{LOCAL_ORG}/{stem or 'adapter'}"


def hub_id_of_path(path: str | os.PathLike[str]) -> tuple[str, str | None] | None:
    """`(org/name, revision)` of a Hugging Face cache snapshot (`.../models--org--name/snapshots/<rev>/`)."""
    parts = PurePath(os.fspath(path)).parts
    for i, part in enumerate(parts):
        m = _HF_CACHE_REPO.fullmatch(part)
        if m is not None:
            rev = parts[i + 2] if len(parts) > i + 2 and parts[i + 1] == "snapshots" else None
            return f"{m.group(1)}/{m.group(2)}", rev if rev and _REVISION.fullmatch(rev) else None
    return None


def base_metadata(base_dir: Path) -> dict[str, Any]:
    """`{"name", "revision", "model_type"}` of a local base model directory: its Hub id from a Hugging
    Face cache path, else its config's `_name_or_path` when that is an `org/name` id, else None (a path
    of this machine means nothing elsewhere)."""
    config: Any = {}
    if (base_dir / "config.json").is_file():
        config = _read_json(base_dir / "config.json")
    config = config if isinstance(config, dict) else {}
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    cached = hub_id_of_path(base_dir.resolve())
    if cached is not None:
        return {"name": cached[0], "revision": cached[1], "model_type": model_type}
    named = config.get("_name_or_path")
    return {"name": named if is_hub_id(named) else None, "revision": None, "model_type": model_type}


def portable_base_name(name: object) -> str | None:
    """A recorded base name as other machines can use it: a Hub id (from a Hugging Face cache path
    too), never a path of the publisher's machine."""
    if not isinstance(name, str) or not name:
        return None
    cached = hub_id_of_path(name)
    if cached is not None:
        return cached[0]
    return name if is_hub_id(name) and not Path(name).is_absolute() else None


def is_peft_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds a PEFT ``adapter_config.json`` (one naming a ``peft_type``)."""
    cfg = Path(path) / PEFT_CONFIG
    if not cfg.is_file():
        return False
    try:
        return peft_layout.is_peft_config(read_json(cfg))
    except InvalidPackageError:
        return False


def base_fingerprint(base_dir: Path, cache_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fingerprint, architecture table) of a local base model directory; `cache_dir` holds the
    fingerprint cache (None: nothing is cached)."""
    from ..basemodel.fingerprint import architecture_dir, fingerprint_dir

    fp = fingerprint_dir(base_dir, cache_dir=cache_dir)
    return {k: fp[k] for k in ("content", "architecture", "files") if fp.get(k)}, architecture_dir(base_dir)


def _peft_modules(weights: Path, fan_in_fan_out: bool) -> dict[str, dict[str, Any]]:
    """Base weight shape and layout of every module a PEFT LoRA file touches."""
    from ..basemodel.safetensors_header import read_header

    shapes = {key: list(info.shape) for key, info in read_header(weights).tensors.items()}
    return peft_modules_from_shapes(shapes, fan_in_fan_out, str(weights))


def peft_modules_from_shapes(
    shapes: Mapping[str, Sequence[int]], fan_in_fan_out: bool, where: str
) -> dict[str, dict[str, Any]]:
    """The module table from a PEFT file's tensor shapes (its header: local, or read over HTTP)."""
    a_shapes: dict[str, tuple[int, ...]] = {}
    b_shapes: dict[str, tuple[int, ...]] = {}
    embeddings: set[str] = set()
    for key, shape in shapes.items():
        factor = peft_layout.lora_factor(key)
        if factor is None:
            continue
        module, which, embedding = factor
        (a_shapes if which == "A" else b_shapes)[module] = tuple(shape)
        if embedding:
            embeddings.add(module)
    default = CONV1D if fan_in_fan_out else LINEAR
    return _lora_modules(where, a_shapes, b_shapes, lambda m: EMBEDDING if m in embeddings else default, "LoRA tensors")


def _lora_modules(
    weights: str | Path,
    a_shapes: dict[str, tuple[int, ...]],
    b_shapes: dict[str, tuple[int, ...]],
    layer_of: Callable[[str], str],
    what: str,
) -> dict[str, dict[str, Any]]:
    """The manifest's module table from each module's lora_A [r, in] and lora_B [out, r] shapes.

    The adapter file does not tell the base's dtype (PEFT keeps LoRA in fp32 on half bases): unknown
    until --base fills it in."""
    modules: dict[str, dict[str, Any]] = {}
    for module, a in a_shapes.items():
        b = b_shapes.get(module)
        if b is None or len(a) != 2 or len(b) != 2:
            raise InvalidPackageError(f"{weights}: module {module!r} has lora_A without a matching lora_B")
        layer = layer_of(module)
        modules[module] = {
            "shape": weight_shape(layer, out_features=b[0], in_features=a[1]),
            "dtype": None,
            "layer": layer,
        }
    if not modules:
        raise InvalidPackageError(f"{weights}: no {what} found")
    return modules


def _adapterhub_lora_modules(weights: Path) -> dict[str, dict[str, Any]]:
    """Base weight shape of every module an AdapterHub LoRA file touches (`<module>.loras.<name>.lora_A`)."""
    from ..basemodel.safetensors_header import read_header

    shapes = {key: list(info.shape) for key, info in read_header(weights).tensors.items()}
    return adapterhub_lora_modules_from_shapes(shapes, str(weights))


def adapterhub_lora_modules_from_shapes(shapes: Mapping[str, Sequence[int]], where: str) -> dict[str, dict[str, Any]]:
    a_shapes: dict[str, tuple[int, ...]] = {}
    b_shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        module, sep, rest = key.partition(adapterhub_layout.LORA_MARK)
        param = rest.rpartition(".")[2]
        if sep and param in ("lora_A", "lora_B"):
            (a_shapes if param == "lora_A" else b_shapes)[module] = tuple(shape)
    return _lora_modules(
        where, a_shapes, b_shapes, lambda _: LINEAR, "AdapterHub LoRA tensors (<module>.loras.<name>.lora_A)"
    )


def adapterhub_bottleneck_modules_from_shapes(
    shapes: Mapping[str, Sequence[int]], model_type: object
) -> dict[str, dict[str, Any]]:
    """The base module each AdapterHub bottleneck sits after, with the shape its down projection reads:
    ``<container>.adapters.<name>.adapter_down.0.weight`` [reduced, hidden] -> ``<container>.LayerNorm``
    [hidden], the site's LayerNorm as our bottleneck records it. Only for the encoder families whose
    containers (``<block>.attention.output``, ``<block>.output``) hold that LayerNorm; {} otherwise."""
    if model_type not in adapterhub_layout.LAYERNORM_SITE_MODEL_TYPES:
        return {}
    modules: dict[str, dict[str, Any]] = {}
    for key, shape in shapes.items():
        container, sep, rest = key.partition(adapterhub_layout.BOTTLENECK_MARK)
        if sep and rest.endswith(".adapter_down.0.weight") and len(shape) == 2:
            modules[f"{container}.LayerNorm"] = {"shape": [int(shape[1])], "dtype": None}
    return modules


def is_adapterhub_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds an AdapterHub ``adapter_config.json`` (one nesting a ``config``)."""
    cfg = Path(path) / adapterhub_layout.CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return adapterhub_layout.is_adapterhub_config(read_json(cfg))
    except InvalidPackageError:
        return False


def adapterhub_manifest(directory: Path, name: str, version: str) -> dict[str, Any]:
    """The manifest of an AdapterHub directory (bottleneck or LoRA), derived without loading a tensor;
    the files stay as AdapterHub wrote them and ``formats.load_adapter`` reads them with its reader."""
    where = directory / adapterhub_layout.CONFIG_FILE
    meta = _read_json(where)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise InvalidPackageError(f"{where}: no 'config' object; not an AdapterHub adapter")
    weights = directory / adapterhub_layout.SAFE_WEIGHTS_FILE
    if not weights.is_file():
        if (directory / adapterhub_layout.PICKLE_FILE).is_file():
            raise InvalidPackageError(
                f"{directory}: only a pickle {adapterhub_layout.PICKLE_FILE} is present; save the adapter "
                f"as {adapterhub_layout.SAFE_WEIGHTS_FILE} (save_adapter(..., use_safetensors=True))"
            )
        raise InvalidPackageError(f"{directory}: no {adapterhub_layout.SAFE_WEIGHTS_FILE}")
    head_pickle = directory / adapterhub_layout.HEAD_PICKLE_FILE
    if head_pickle.is_file() and not (directory / adapterhub_layout.HEAD_SAFE_WEIGHTS_FILE).is_file():
        raise InvalidPackageError(
            f"{directory}: the prediction head is only a pickle ({adapterhub_layout.HEAD_PICKLE_FILE}); "
            "`adapters convert --allow-pickle` rewrites it as safetensors"
        )
    from ..basemodel.safetensors_header import read_header

    shapes = {key: list(info.shape) for key, info in read_header(weights).tensors.items()}
    present = [p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()]
    return adapterhub_manifest_from(meta, shapes, present, name, version, str(where))


def adapterhub_files(present: Sequence[str]) -> list[str]:
    """The files of an AdapterHub adapter a reader needs, of those present: weights (safetensors first),
    config, the prediction head's config and weights, the card."""
    have = set(present)
    weights = adapterhub_layout.SAFE_WEIGHTS_FILE if adapterhub_layout.SAFE_WEIGHTS_FILE in have else None
    if weights is None and adapterhub_layout.PICKLE_FILE in have:
        weights = adapterhub_layout.PICKLE_FILE
    files = [f for f in (weights, adapterhub_layout.CONFIG_FILE) if f]
    head_files = [f for f in adapterhub_layout.HEAD_FILES if f in have]
    head_weights = [f for f in adapterhub_layout.HEAD_WEIGHT_FILES if f in have]  # safetensors first
    return files + head_files + head_weights[:1] + (["README.md"] if "README.md" in have else [])


def adapterhub_manifest_from(
    meta: Mapping[str, Any],
    shapes: Mapping[str, Sequence[int]] | None,
    present: Sequence[str],
    name: str,
    version: str,
    where: str,
) -> dict[str, Any]:
    """The manifest of an AdapterHub adapter from its `adapter_config.json`, its weights' tensor shapes
    (None for a pickle: no modules recorded) and the names of the files present."""
    config = meta.get("config")
    if not isinstance(config, dict):
        raise InvalidPackageError(f"{where}: no 'config' object; not an AdapterHub adapter")
    arch = config.get("architecture") or "bottleneck"
    if arch not in ("bottleneck", "lora"):
        raise InvalidPackageError(f"{where}: AdapterHub architecture {arch!r} is not supported (bottleneck and lora)")
    files = adapterhub_files(present)
    if adapterhub_layout.CONFIG_FILE not in files or len(files) < 2:
        raise InvalidPackageError(
            f"{where}: no {adapterhub_layout.SAFE_WEIGHTS_FILE} or {adapterhub_layout.PICKLE_FILE}"
        )
    model_type = meta.get("model_type")
    modules: dict[str, dict[str, Any]] = {}
    if shapes is not None:
        modules = (
            adapterhub_lora_modules_from_shapes(shapes, where)
            if arch == "lora"
            else adapterhub_bottleneck_modules_from_shapes(shapes, model_type)
        )
    return new_manifest(
        name,
        version,
        "lora" if arch == "lora" else "bottleneck",
        {"format": ADAPTERHUB, **config},
        {
            "name": portable_base_name(meta.get("model_name")),
            "architecture": {"model_type": model_type if isinstance(model_type, str) else None, "modules": modules},
        },
        files,
        tags=[arch, "adapterhub"],
    )


def peft_manifest(directory: Path, name: str, version: str) -> dict[str, Any]:
    """The manifest of a PEFT LoRA directory, derived without loading a tensor."""
    cfg = _read_json(directory / PEFT_CONFIG)
    if not isinstance(cfg, dict):
        raise InvalidPackageError(f"{directory / PEFT_CONFIG}: expected a JSON object")
    check_peft_lora(cfg, str(directory / PEFT_CONFIG))
    weights = directory / PEFT_WEIGHTS
    if not weights.is_file():
        if (directory / peft_layout.PICKLE_FILE).is_file():
            raise InvalidPackageError(
                f"{directory}: only a pickle {peft_layout.PICKLE_FILE} is present; save with safe_serialization=True"
            )
        raise InvalidPackageError(f"{directory}: no {PEFT_WEIGHTS}")
    from ..basemodel.safetensors_header import read_header

    shapes = {key: list(info.shape) for key, info in read_header(weights).tensors.items()}
    present = [PEFT_WEIGHTS, PEFT_CONFIG] + (["README.md"] if (directory / "README.md").is_file() else [])
    return peft_manifest_from(cfg, shapes, present, name, version, str(weights))


def check_peft_lora(cfg: Mapping[str, Any], where: str) -> None:
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise InvalidPackageError(
            f"{where}: field 'peft_type': only LORA adapters can be published, not {cfg.get('peft_type')!r}"
        )


def peft_manifest_from(
    cfg: Mapping[str, Any],
    shapes: Mapping[str, Sequence[int]],
    present: Sequence[str],
    name: str,
    version: str,
    where: str,
) -> dict[str, Any]:
    """The manifest of a PEFT LoRA adapter from its config, its weights' tensor shapes and the names of
    the files present (weights, config, card)."""
    check_peft_lora(cfg, where)
    modules = peft_modules_from_shapes(shapes, bool(cfg.get("fan_in_fan_out")), where)
    modules.update(_saved_module_shapes(shapes, cfg.get("modules_to_save") or []))
    config = {
        "format": PEFT,
        "r": cfg.get("r", 8),
        "alpha": cfg.get("lora_alpha", 8),
        "dropout": cfg.get("lora_dropout", 0.0),
        "target_modules": cfg.get("target_modules"),
        "rslora": bool(cfg.get("use_rslora", False)),
        "dora": bool(cfg.get("use_dora", False)),
        "bias": cfg.get("bias", "none"),
        "fan_in_fan_out": bool(cfg.get("fan_in_fan_out", False)),
        "rank_pattern": cfg.get("rank_pattern") or {},
        "alpha_pattern": cfg.get("alpha_pattern") or {},
        "modules_to_save": cfg.get("modules_to_save"),
    }
    files = [PEFT_WEIGHTS, PEFT_CONFIG] + (["README.md"] if "README.md" in present else [])
    return new_manifest(
        name,
        version,
        "lora",
        config,
        {
            "name": portable_base_name(cfg.get("base_model_name_or_path")),
            "revision": cfg.get("revision"),
            "architecture": {"model_type": None, "modules": modules},
        },
        files,
        task=cfg.get("task_type"),
        tags=["lora", "peft"],
    )


def _saved_module_shapes(shapes: Mapping[str, Sequence[int]], saved: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The base modules a PEFT adapter replaces with trained copies (`modules_to_save`, e.g. a classifier):
    their weights' shapes are the base's, so the compatibility check covers them too."""
    out: dict[str, dict[str, Any]] = {}
    for key, shape in shapes.items():
        if peft_layout.lora_factor(key) is not None or not key.endswith(".weight") or len(shape) != 2:
            continue
        path = key[len(peft_layout.PREFIX) :] if key.startswith(peft_layout.PREFIX) else key
        module = path[: -len(".weight")]
        if any(module == m or module.endswith("." + m) for m in saved if isinstance(m, str)):
            out[module] = {"shape": list(shape), "dtype": None, "layer": LINEAR}
    return out


def raw_format(directory: Path) -> str | None:
    """`peft` or `adapterhub` for a directory without a manifest that holds one of those, else None."""
    if (directory / MANIFEST_FILE).is_file():
        return None
    if is_peft_dir(directory):
        return PEFT
    if is_adapterhub_dir(directory):
        return ADAPTERHUB
    return None


def prepare_package(
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    base: str | os.PathLike[str] | None = None,
    fingerprint_cache: Path | None = None,
    raw_defaults: bool = False,
    fields: Mapping[str, Any] | None = None,
    base_name: str | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Validate a package directory (ours, PEFT or AdapterHub) and return its completed manifest.

    With `base` (a local base model directory) the manifest records its fingerprint, its Hub id and
    model_type when known, and the base's dtype of every touched module; `fingerprint_cache` is the
    directory holding the fingerprint cache (None: nothing is cached). `raw_defaults`: a PEFT or
    AdapterHub directory without `name`/`version` gets `local/<dir name>` and :data:`LOCAL_VERSION` (what
    install and attach of such a directory use). `fields` (description, license) and `tags` override
    the manifest's; `base_name` names the base model (a Hub id).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFoundError(f"{directory}: no such directory")
    fmt = raw_format(directory)
    if (directory / MANIFEST_FILE).is_file():
        data = _read_json(directory / MANIFEST_FILE)
        if not isinstance(data, dict):
            raise InvalidPackageError(f"{directory / MANIFEST_FILE}: expected a JSON object")
        if name:
            data["name"] = name
        if version:
            data["version"] = version
    elif fmt is not None:
        what = "a PEFT" if fmt == PEFT else "an AdapterHub"
        if raw_defaults:
            name, version = name or local_name(directory), version or LOCAL_VERSION
        if not name or not version:
            raise InvalidPackageError(
                f"{directory}: {what} adapter needs a name and a version: --name org/name --version 1.0.0 "
                "(org and name: letters, digits, '.', '_' or '-')"
            )
        data = (peft_manifest if fmt == PEFT else adapterhub_manifest)(directory, name, version)
        if raw_defaults:
            data.pop("created", None)  # derived on every use: the same directory gives the same manifest
    else:
        raise InvalidPackageError(
            f"{directory}: not an adapter package: neither {MANIFEST_FILE} nor a PEFT or AdapterHub {PEFT_CONFIG} found"
        )
    if not isinstance(data.get("base_model"), dict):
        data["base_model"] = {"name": None}
    base_model = data["base_model"]
    base_model["name"] = portable_base_name(base_model.get("name"))
    if base is not None:
        fingerprint, arch = base_fingerprint(Path(base), fingerprint_cache)
        known = base_metadata(Path(base))
        base_model["fingerprint"] = fingerprint
        if known["name"] and (hub_id_of_path(Path(base).resolve()) or not base_model["name"]):
            base_model["name"], base_model["revision"] = known["name"], known["revision"]
        architecture = base_model.get("architecture")
        if not isinstance(architecture, dict):
            architecture = base_model["architecture"] = {"model_type": None, "modules": {}}
        if not architecture.get("model_type"):
            architecture["model_type"] = known["model_type"]
        _fill_dtypes_from_base(architecture.get("modules") or {}, arch)
    if base_name is not None:
        if not is_hub_id(base_name):
            raise InvalidPackageError(f"--base-name {base_name!r}: expected a Hugging Face Hub id such as org/name")
        base_model["name"] = base_name
    for key, value in (fields or {}).items():
        if value is not None:
            data[key] = value
    if tags:
        data["tags"] = list(dict.fromkeys(tags))
    check_name(data.get("name"), "--name" if name else str(directory / MANIFEST_FILE))
    return complete_package(directory, data)


_NAME_RULE = (
    "expected org/name, each part 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter "
    "or digit (e.g. acme/sentiment)"
)


def check_name(name: object, where: str) -> None:
    """A package name, with a message saying what a valid one looks like (not the schema's regex)."""
    from ..manifest import canonical_name

    if not isinstance(name, str):
        raise InvalidPackageError(f"{where}: no adapter name: {_NAME_RULE}")
    try:
        canonical_name(name)
    except InvalidPackageError:
        raise InvalidPackageError(f"{where}: invalid adapter name {name!r}: {_NAME_RULE}") from None


def _fill_dtypes_from_base(modules: dict[str, dict[str, Any]], arch: dict[str, dict[str, Any]]) -> None:
    """Record the base's own dtype for each touched module (PEFT files only know the adapter's)."""
    by_module = {key[: -len(".weight")]: t for key, t in arch.items() if key.endswith(".weight")}
    rewrite = align_paths(modules, by_module)
    for module, info in modules.items():
        found = by_module.get(rewrite.to_local(module))
        if found is not None:
            info["dtype"] = found["dtype"]


def pack_directory(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    base: str | os.PathLike[str] | None = None,
    fingerprint_cache: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """`adapters pack`: a PEFT or AdapterHub directory -> a package directory in `output` (its files as
    they are, plus ``manifest.json``), which ``load_adapter`` loads and ``publish`` publishes. Without
    `name` / `version` it is `local/<dir name>` :data:`LOCAL_VERSION`, as install of the raw directory."""
    import shutil

    from ..errors import UsageError
    from ..manifest import write_manifest
    from .files import output_dir

    src = Path(directory)
    if not src.is_dir():
        raise NotFoundError(f"{src}: no such directory")
    if raw_format(src) is None:
        if (src / MANIFEST_FILE).is_file():
            raise UsageError(f"{src}: already a package directory ({MANIFEST_FILE}); publish or install it as it is")
        raise InvalidPackageError(f"{src}: neither a PEFT nor an AdapterHub adapter directory ({PEFT_CONFIG})")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty directory")
    if out.resolve() == src.resolve():
        raise UsageError(f"{out}: the output must be another directory than {src}")
    manifest = prepare_package(
        src, name=name, version=version, base=base, fingerprint_cache=fingerprint_cache, raw_defaults=True
    )
    out = output_dir(out)
    try:
        for entry in manifest["files"]:
            target = out / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / entry["path"], target)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the package ({exc.strerror or exc})") from None
    write_manifest(out, complete_package(out, manifest))
    return out, manifest
