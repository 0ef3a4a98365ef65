"""Read AdapterHub (`adapters` library) adapter directories: their config as ours, their tensors under
package keys, so they attach through the same strict ``nn.model.attach_weights`` as every format.

File and key names: :mod:`.adapterhub_layout`. Supported: the bottleneck family (SeqBn = Pfeiffer,
DoubleSeqBn = Houlsby, ParBn = parallel, with per-layer reduction factors, leave_out,
fixed/learned/channel scaling) and LoRA (``composition_mode="add"``). Anything whose math we would
not reproduce exactly (gating, PHM, invertible adapters, extra LayerNorms, IA3, DoRA, VeRA, ...) is
refused with :class:`~..errors.UnsupportedAdapterError` naming the option; a hidden size or a LoRA
module the model lacks is an :class:`~..errors.IncompatibleError`. Errors about tensors name the
keys as the AdapterHub file has them.

A prediction head saved with the adapter (``head_config.json`` + ``model_head.safetensors``, or the
pickled ``pytorch_model_head.bin``, refused unless ``allow_pickle``) loads as an ``nn.heads``
prediction head of the same adapter at ``model.heads``, strictly like the adapter's own tensors:
classification, multi-label classification, multiple choice (on the encoder models whose
AdapterHub head reads the first token), tagging and question answering. Other head types, a model
class's static head (``config: null``) and activations with parameters are refused naming the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import (
    AdapterConfigError,
    AdapterWeightsError,
    IncompatibleError,
    InvalidPackageError,
    UnsupportedAdapterError,
)
from ..modpaths import align_paths
from ..nn.base import AdapterConfig
from ..nn.bottleneck import BottleneckConfig
from ..nn.heads import HEADS_PATH, MULTIPLE_CHOICE, SEQUENCE_HEADS, HeadConfig, HeadSpec
from ..nn.lora import LoRAConfig
from ..nn.targets import iter_modules
from . import adapterhub_layout as layout
from .files import read_json
from .tensors import load_tensors

# kept importable under their old names
CONFIG_NAME = layout.CONFIG_FILE
SAFE_WEIGHTS_NAME = layout.SAFE_WEIGHTS_FILE
WEIGHTS_NAME = layout.PICKLE_FILE
MAX_HEAD_CONFIG_BYTES = 8 * 1024 * 1024  # label maps can be long; nothing legitimate comes close

# bottleneck options whose non-default value changes the math -> default
_BN_MUST_BE = {
    "ln_before": False,
    "ln_after": False,
    "use_gating": False,
    "phm_layer": False,
    "inv_adapter": None,
    "cross_adapter": False,
    "adapter_residual_before_ln": False,
    "original_ln_after": True,
}
_LORA_MUST_BE = {"composition_mode": "add", "use_gating": False, "use_dora": False, "vera_b": None, "vera_d": None}


def is_adapterhub_dir(path: str | Path) -> bool:
    """An AdapterHub config (:func:`.adapterhub_layout.is_adapterhub_config`) next to its weights."""
    p = Path(path)
    if not (p / CONFIG_NAME).is_file() or not ((p / SAFE_WEIGHTS_NAME).is_file() or (p / WEIGHTS_NAME).is_file()):
        return False
    try:
        return layout.is_adapterhub_config(read_json(p / CONFIG_NAME))
    except InvalidPackageError:
        return False


def read_adapterhub(path: str | Path, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (adapter_config.json contents, tensors keyed as AdapterHub saved them).

    AdapterHub's default `pytorch_adapter.bin` is a pickle: refused unless `allow_pickle`, and then
    loaded with `weights_only=True`."""
    p = Path(path)
    meta = read_json(p / CONFIG_NAME)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise InvalidPackageError(f"{p / CONFIG_NAME}: no 'config' object; not an AdapterHub adapter")
    if (p / SAFE_WEIGHTS_NAME).is_file():
        tensors = load_tensors(p / SAFE_WEIGHTS_NAME)
    elif (p / WEIGHTS_NAME).is_file():
        tensors = load_tensors(p / WEIGHTS_NAME, allow_pickle=allow_pickle)
    else:
        raise InvalidPackageError(f"{p}: neither {SAFE_WEIGHTS_NAME} nor {WEIGHTS_NAME}")
    return meta, tensors


def read_head(root: str | Path, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(head_config.json contents, head tensors keyed as AdapterHub saved them)``, or None when the
    directory has no head. The pickled ``pytorch_model_head.bin`` loads only with `allow_pickle`."""
    p = Path(root)
    config_path = p / layout.HEAD_CONFIG_FILE
    safe, pickled = p / layout.HEAD_SAFE_WEIGHTS_FILE, p / layout.HEAD_PICKLE_FILE
    weights = safe if safe.is_file() else pickled if pickled.is_file() else None
    if not config_path.is_file():
        if weights is not None:
            raise InvalidPackageError(f"{p}: head weights ({weights.name}) without {layout.HEAD_CONFIG_FILE}")
        return None
    try:
        size = config_path.stat().st_size
    except OSError as exc:
        raise InvalidPackageError(f"{config_path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_HEAD_CONFIG_BYTES:
        raise InvalidPackageError(f"{config_path}: larger than {MAX_HEAD_CONFIG_BYTES} bytes")
    meta = read_json(config_path)
    if not isinstance(meta, dict):
        raise InvalidPackageError(f"{config_path}: expected a JSON object, got {type(meta).__name__}")
    if weights is None:
        raise InvalidPackageError(
            f"{p}: {layout.HEAD_CONFIG_FILE} without the head's weights "
            f"({layout.HEAD_SAFE_WEIGHTS_FILE} or {layout.HEAD_PICKLE_FILE})"
        )
    return meta, load_tensors(weights, allow_pickle=allow_pickle)


def head_config_from_adapterhub(meta: dict[str, Any], where: str, model_type: object = None) -> HeadConfig:
    """Our head config for a ``head_config.json``; `model_type`: the model it goes onto, if known.

    AdapterHub's sequence heads read the first token only on the models of
    :data:`.adapterhub_layout.FIRST_TOKEN_MODEL_TYPES` (others pick an end-of-sequence token)."""
    cfg = meta.get("config")
    if cfg is None:
        raise UnsupportedAdapterError(
            f"{where}: a static head of {meta.get('model_class')!r} (config null) is not supported; "
            "save the head from a flexible-head model (an ...AdapterModel class)"
        )
    if not isinstance(cfg, dict):
        raise InvalidPackageError(f"{where}: 'config' must be an object, got {type(cfg).__name__}")
    head_type = cfg.get("head_type")
    if head_type not in layout.HEAD_DEFAULTS:
        raise UnsupportedAdapterError(
            f"{where}: AdapterHub head type {head_type!r} is not supported ({', '.join(layout.HEAD_DEFAULTS)} are)"
        )
    defaults = layout.HEAD_DEFAULTS[head_type]
    types = sorted({t for t in (meta.get("model_type"), model_type) if isinstance(t, str) and t})
    if head_type in SEQUENCE_HEADS:
        other = [t for t in types if t not in layout.FIRST_TOKEN_MODEL_TYPES]
        if other:
            raise UnsupportedAdapterError(
                f"{where}: a {head_type} head on a {other[0]} model reads an end-of-sequence token, which is not "
                f"supported (heads of {', '.join(sorted(layout.FIRST_TOKEN_MODEL_TYPES))} models are)"
            )
        no_pooler = [t for t in types if t not in layout.POOLER_MODEL_TYPES]
        if cfg.get("use_pooler") and no_pooler:
            raise UnsupportedAdapterError(f"{where}: use_pooler on a {no_pooler[0]} model is not supported")
    count = "num_choices" if head_type == MULTIPLE_CHOICE else "num_labels"
    activation = cfg.get("activation_function", defaults["activation_function"])
    if isinstance(activation, str):  # Activation_Function_Class lowercases; `leakyrelu` is its own spelling
        activation = "leakyrelu" if activation.lower() == "leaky_relu" else activation.lower()
    try:
        return HeadConfig(
            head_type=head_type,
            num_labels=cfg.get(count, defaults[count]),
            layers=cfg.get("layers", defaults["layers"]),
            activation_function=activation,
            use_pooler=bool(cfg.get("use_pooler")) if head_type in SEQUENCE_HEADS else False,
            bias=cfg.get("bias", True),
            dropout=cfg.get("dropout_prob"),
            label2id=cfg.get("label2id"),
        )
    except AdapterConfigError as exc:
        raise UnsupportedAdapterError(f"{where}: AdapterHub head config not supported: {exc}") from None


def _head_tensors(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], Callable[[str], str]]:
    """``heads.<saved name>.<index>.<param>`` -> ``heads.<index>.<param>`` (the package key), and back."""
    saved = meta.get("name")
    if not isinstance(saved, str) or not saved:
        raise InvalidPackageError(f"{where}: {layout.HEAD_CONFIG_FILE} names no head ('name')")
    out: dict[str, torch.Tensor] = {}
    bad = []
    for key, t in tensors.items():
        param = layout.head_param(key, saved)
        if param is None:
            bad.append(key)
        else:
            out[f"{HEADS_PATH}.{param}"] = t
    if bad:
        raise AdapterWeightsError(
            f"{where}: {len(bad)} key(s) are not keys of head {saved!r} "
            f"({layout.HEAD_PREFIX}{saved}.<index>.<param>), e.g. {bad[0]}"
        )
    prefix = f"{HEADS_PATH}."
    return out, lambda key: f"{layout.HEAD_PREFIX}{saved}.{key[len(prefix) :]}"


def _check(cfg: dict[str, Any], must_be: dict[str, Any], what: str) -> None:
    bad = {k: cfg[k] for k, v in must_be.items() if k in cfg and cfg[k] != v and not (v is None and not cfg[k])}
    if bad:
        raise UnsupportedAdapterError(f"AdapterHub {what} option(s) not supported: {bad}")


def bottleneck_config_from_adapterhub(cfg: dict[str, Any]) -> BottleneckConfig:
    """Map an AdapterHub BnConfig dict (SeqBn / DoubleSeqBn / ParBn) to a BottleneckConfig."""
    _check(cfg, _BN_MUST_BE, "bottleneck")
    mh, out = bool(cfg.get("mh_adapter")), bool(cfg.get("output_adapter"))
    ln_before, res_before = bool(cfg.get("original_ln_before")), cfg.get("residual_before_ln", True)
    if cfg.get("is_parallel"):
        if mh or not out:
            raise UnsupportedAdapterError("AdapterHub parallel adapters are supported on the FFN output only (ParBn)")
        style = "parallel"
    elif mh and out and not ln_before and res_before is True:
        style = "houlsby"
    elif out and not mh and ln_before and res_before is True:
        style = "pfeiffer"
    else:
        raise UnsupportedAdapterError(
            "AdapterHub bottleneck placement not supported: "
            f"mh_adapter={mh}, output_adapter={out}, original_ln_before={ln_before}, residual_before_ln={res_before}"
        )
    scaling = cfg.get("scaling", 1.0)
    try:
        return BottleneckConfig(
            style=style,
            reduction_factor=cfg.get("reduction_factor", 16),
            non_linearity=cfg.get("non_linearity") or "relu",
            scaling=float(scaling) if isinstance(scaling, int) and not isinstance(scaling, bool) else scaling,
            dropout=cfg.get("dropout") or 0.0,
            init="zero" if cfg.get("init_weights") == "mam_adapter" else "bert",
            leave_out=cfg.get("leave_out") or [],
        )
    except AdapterConfigError as exc:  # e.g. an activation we do not implement
        raise UnsupportedAdapterError(f"AdapterHub bottleneck config not supported: {exc}") from None


def lora_config_from_adapterhub(cfg: dict[str, Any], modules: list[str]) -> LoRAConfig:
    """AdapterHub LoRA is ``base(x) + (dropout(x) @ A.T @ B.T) * alpha / r``: our (PEFT-style) LoRA
    with the same r/alpha, on exactly the modules it saved weights for."""
    _check(cfg, _LORA_MUST_BE, "LoRA")
    try:
        return LoRAConfig(
            r=cfg.get("r", 8),
            alpha=cfg.get("alpha", 8),
            dropout=cfg.get("dropout") or 0.0,
            target_modules=list(modules),
        )
    except AdapterConfigError as exc:
        raise UnsupportedAdapterError(f"AdapterHub LoRA config not supported: {exc}") from None


def config_from_adapterhub(meta: dict[str, Any], lora_modules: Sequence[str] = ()) -> AdapterConfig:
    """Our config for an AdapterHub ``adapter_config.json`` (LoRA needs the modules it saved weights for)."""
    cfg = meta["config"]
    arch = cfg.get("architecture") or "bottleneck"
    if arch == "bottleneck":
        return bottleneck_config_from_adapterhub(cfg)
    if arch == "lora":
        return lora_config_from_adapterhub(cfg, list(lora_modules))
    raise _unsupported_architecture(arch)


def _unsupported_architecture(arch: object) -> UnsupportedAdapterError:
    return UnsupportedAdapterError(f"AdapterHub architecture {arch!r} is not supported (bottleneck and lora are)")


def _namer(names: Mapping[str, str], stems: Mapping[str, str]) -> Callable[[str], str]:
    """Package key -> the AdapterHub key: as read, or (missing from the file) built from its module's stem."""

    def source(key: str) -> str:
        if key in names:
            return names[key]
        path = key
        while "." in path:
            path = path.rpartition(".")[0]
            if path in stems:
                return stems[path] + key[len(path) + 1 :]
        return key

    return source


def _bottleneck_tensors(
    model: nn.Module,
    config: BottleneckConfig,
    tensors: dict[str, torch.Tensor],
    where: str,
) -> tuple[dict[str, torch.Tensor], Callable[[str], str]]:
    """AdapterHub's ``<block>.<i>.<site container>.adapters.<name>.<param>`` -> ``<block>.<i>.<our
    site module>.<param>``, by which site (attention or FFN output) the container stands for."""
    by_role: dict[str, str] = {}
    for site in config.resolve_sites(model):
        by_role.setdefault(site.get("role", "ffn"), site["target"])
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    stems: dict[str, str] = {}
    bad = []
    for key, t in tensors.items():
        container, sep, rest = key.partition(layout.BOTTLENECK_MARK)
        saved, _, param = rest.partition(".")  # drop AdapterHub's adapter name
        slot = layout.bottleneck_slot(container) if sep and param else None
        if slot is None:
            bad.append(key)
            continue
        block, role = slot
        # a site this config does not place: keep the container, and the strict check names the key
        path = block + by_role[role] if role in by_role else container
        out[f"{path}.{param}"] = t
        names[f"{path}.{param}"] = key
        stems.setdefault(path, f"{container}{layout.BOTTLENECK_MARK}{saved}.")
    if bad:
        raise AdapterWeightsError(
            f"{where}: {len(bad)} key(s) are not AdapterHub bottleneck keys "
            f"(<block>.<index>...adapters.<name>.<param>), e.g. {bad[0]}"
        )
    return out, _namer(names, stems)


def _lora_tensors(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    where: str,
) -> tuple[dict[str, torch.Tensor], Callable[[str], str], list[str]]:
    """AdapterHub's ``<module>.loras.<name>.lora_A`` -> ``<module here>.lora_A`` (same shapes as PEFT),
    the module path re-rooted onto the model (``bert.encoder...`` vs ``encoder...``) by
    :func:`~..modpaths.align_paths`; also returns the modules, in the model's naming."""
    parsed: list[tuple[str, str, str, torch.Tensor]] = []  # (module, saved name, param, tensor)
    bad = []
    for key, t in tensors.items():
        module, sep, rest = key.partition(layout.LORA_MARK)
        saved, _, param = rest.rpartition(".")
        if not sep or not saved or not param:
            bad.append(key)
            continue
        parsed.append((module, saved, param, t))
    if bad:
        raise AdapterWeightsError(
            f"{where}: {len(bad)} key(s) are not AdapterHub LoRA keys (<module>.loras.<name>.<param>), e.g. {bad[0]}"
        )
    local = {p for p, _, _, _ in iter_modules(model)}
    files = sorted({m for m, _, _, _ in parsed})
    rewrite = align_paths(files, local)
    lacking = [m for m in files if rewrite.to_local(m) not in local]
    if lacking:
        raise IncompatibleError(f"{where}: AdapterHub LoRA targets {lacking[0]!r}, which this model does not have")
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    stems: dict[str, str] = {}
    for module, saved, param, t in parsed:
        path = rewrite.to_local(module)
        out[f"{path}.{param}"] = t
        names[f"{path}.{param}"] = f"{module}{layout.LORA_MARK}{saved}.{param}"
        stems.setdefault(path, f"{module}{layout.LORA_MARK}{saved}.")
    return out, _namer(names, stems), sorted(rewrite.to_local(m) for m in files)


def _hidden_size(value: object, where: str) -> int | None:
    if value in (None, 0, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPackageError(f"{where}: hidden_size must be an integer, got {value!r}")
    return value


def read_for_model(
    model: nn.Module,
    root: Path,
    *,
    allow_pickle: bool = False,
) -> tuple[AdapterConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None, list[HeadSpec]]:
    """What ``formats.load_adapter`` attaches: ``(config, package-keyed tensors, name hint, key namer,
    heads)``."""
    meta, tensors = read_adapterhub(root, allow_pickle=allow_pickle)
    head = read_head(root, allow_pickle=allow_pickle)  # every file is read (and refused) before attaching
    where = str(root)
    model_config = getattr(model, "config", None)
    hidden = getattr(model_config, "hidden_size", None)
    sizes = [("adapter", meta, CONFIG_NAME)] + ([("head", head[0], layout.HEAD_CONFIG_FILE)] if head else [])
    for what, data, name in sizes:
        saved = _hidden_size(data.get("hidden_size"), str(root / name))
        if saved and isinstance(hidden, int) and saved != hidden:
            raise IncompatibleError(f"{where}: {what} was trained for hidden size {saved}, the model has {hidden}")
    config: AdapterConfig
    arch = meta["config"].get("architecture") or "bottleneck"
    if arch == "lora":
        package, source, modules = _lora_tensors(model, tensors, where)
        config = lora_config_from_adapterhub(meta["config"], modules)
    elif arch == "bottleneck":
        bottleneck = bottleneck_config_from_adapterhub(meta["config"])
        package, source = _bottleneck_tensors(model, bottleneck, tensors, where)
        config = bottleneck
    else:
        raise _unsupported_architecture(arch)
    heads: list[HeadSpec] = []
    if head is not None:
        head_meta, head_tensors = head
        heads.append(
            head_config_from_adapterhub(
                head_meta, str(root / layout.HEAD_CONFIG_FILE), getattr(model_config, "model_type", None)
            )
        )
        head_package, head_source = _head_tensors(head_meta, head_tensors, where)
        package = {**package, **head_package}
        source = _with_head(source, head_source)
    saved_name = meta.get("name")
    hint = saved_name if isinstance(saved_name, str) and saved_name else root.name
    return config, package, hint, source, heads


def _with_head(source: Callable[[str], str], head_source: Callable[[str], str]) -> Callable[[str], str]:
    prefix = f"{HEADS_PATH}."
    return lambda key: head_source(key) if key.startswith(prefix) else source(key)
