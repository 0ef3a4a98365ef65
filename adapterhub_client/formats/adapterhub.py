"""Read AdapterHub (`adapters` library) adapter directories: their config as ours, their tensors under
package keys, so they attach through the same strict ``nn.model.attach_weights`` as every format.

File and key names: :mod:`.adapterhub_layout`. Supported: the bottleneck family (SeqBn = Pfeiffer,
DoubleSeqBn = Houlsby, ParBn = parallel, with per-layer reduction factors, leave_out,
fixed/learned/channel scaling) and LoRA (``composition_mode="add"``). Anything whose math we would
not reproduce exactly (gating, PHM, invertible adapters, extra LayerNorms, IA3, DoRA, VeRA, ...) is
refused with :class:`~..errors.UnsupportedAdapterError` naming the option; a hidden size or a LoRA
module the model lacks is an :class:`~..errors.IncompatibleError`. Errors about tensors name the
keys as the AdapterHub file has them.
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
from ..nn.lora import LoRAConfig
from ..nn.targets import iter_modules
from . import adapterhub_layout as layout
from .files import read_json
from .tensors import load_tensors

# kept importable under their old names
CONFIG_NAME = layout.CONFIG_FILE
SAFE_WEIGHTS_NAME = layout.SAFE_WEIGHTS_FILE
WEIGHTS_NAME = layout.PICKLE_FILE

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
) -> tuple[AdapterConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None]:
    """What ``formats.load_adapter`` attaches: ``(config, package-keyed tensors, name hint, key namer)``."""
    meta, tensors = read_adapterhub(root, allow_pickle=allow_pickle)
    where = str(root)
    saved = _hidden_size(meta.get("hidden_size"), str(root / CONFIG_NAME))
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if saved and isinstance(hidden, int) and saved != hidden:
        raise IncompatibleError(f"{where}: adapter was trained for hidden size {saved}, the model has {hidden}")
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
    saved_name = meta.get("name")
    hint = saved_name if isinstance(saved_name, str) and saved_name else root.name
    return config, package, hint, source
