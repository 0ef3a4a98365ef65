"""Read AdapterHub (`adapters` library) adapter directories into our adapter layers.

A directory holds ``adapter_config.json`` (``{name, model_type, hidden_size, config: {...}}``)
and ``adapter.safetensors`` or ``pytorch_adapter.bin``. Supported: the bottleneck family
(SeqBn = Pfeiffer, DoubleSeqBn = Houlsby, ParBn = parallel, with per-layer reduction factors,
leave_out, fixed/learned/channel scaling) and LoRA (``composition_mode="add"``). Anything whose
math we would not reproduce exactly (gating, PHM, invertible adapters, extra LayerNorms, IA3,
DoRA, VeRA, ...) is refused with :class:`IncompatibleError` naming the option.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import IncompatibleError, InvalidPackageError
from ..nn.base import AdapterLayer, iter_adapter_layers
from ..nn.bottleneck import BottleneckConfig, BottleneckLayer
from ..nn.targets import get_module, iter_modules

CONFIG_NAME = "adapter_config.json"
SAFE_WEIGHTS_NAME = "adapter.safetensors"
WEIGHTS_NAME = "pytorch_adapter.bin"

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
    p = Path(path)
    if not (p / CONFIG_NAME).is_file() or not ((p / SAFE_WEIGHTS_NAME).is_file() or (p / WEIGHTS_NAME).is_file()):
        return False
    try:
        data = json.loads((p / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    # PEFT's adapter_config.json is flat with `peft_type`; AdapterHub's nests `config`
    return isinstance(data.get("config"), dict) and "peft_type" not in data


def read_adapterhub(path: str | Path, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (adapter_config.json contents, tensors keyed as AdapterHub saved them).

    AdapterHub's default `pytorch_adapter.bin` is a pickle: refused unless `allow_pickle`, and then
    loaded with `weights_only=True`."""
    p = Path(path)
    try:
        meta = json.loads((p / CONFIG_NAME).read_text())
    except FileNotFoundError as e:
        raise InvalidPackageError(f"{p}: no {CONFIG_NAME}") from e
    except ValueError as e:
        raise InvalidPackageError(f"{p / CONFIG_NAME}: not valid JSON ({e})") from e
    if not isinstance(meta.get("config"), dict):
        raise InvalidPackageError(f"{p / CONFIG_NAME}: no 'config' object; not an AdapterHub adapter")
    if (p / SAFE_WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(p / SAFE_WEIGHTS_NAME))
    elif (p / WEIGHTS_NAME).is_file():
        if not allow_pickle:
            raise InvalidPackageError(
                f"{p}: weights are pickled ({WEIGHTS_NAME}); pass allow_pickle=True to load them (weights_only)"
            )
        # weights_only: a pickle from the internet must not run code
        tensors = torch.load(p / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    else:
        raise InvalidPackageError(f"{p}: neither {SAFE_WEIGHTS_NAME} nor {WEIGHTS_NAME}")
    return meta, tensors


def _check(cfg: dict[str, Any], must_be: dict[str, Any], what: str) -> None:
    bad = {k: cfg[k] for k, v in must_be.items() if k in cfg and cfg[k] != v and not (v is None and not cfg[k])}
    if bad:
        raise IncompatibleError(f"AdapterHub {what} option(s) not supported: {bad}")


def bottleneck_config_from_adapterhub(cfg: dict[str, Any]) -> BottleneckConfig:
    """Map an AdapterHub BnConfig dict (SeqBn / DoubleSeqBn / ParBn) to a BottleneckConfig."""
    _check(cfg, _BN_MUST_BE, "bottleneck")
    mh, out = bool(cfg.get("mh_adapter")), bool(cfg.get("output_adapter"))
    ln_before, res_before = bool(cfg.get("original_ln_before")), cfg.get("residual_before_ln", True)
    if cfg.get("is_parallel"):
        if mh or not out:
            raise IncompatibleError("AdapterHub parallel adapters are supported on the FFN output only (ParBn)")
        style = "parallel"
    elif mh and out and not ln_before and res_before is True:
        style = "houlsby"
    elif out and not mh and ln_before and res_before is True:
        style = "pfeiffer"
    else:
        raise IncompatibleError(
            "AdapterHub bottleneck placement not supported: "
            f"mh_adapter={mh}, output_adapter={out}, original_ln_before={ln_before}, residual_before_ln={res_before}"
        )
    scaling = cfg.get("scaling", 1.0)
    try:
        return BottleneckConfig(
            style=style,
            reduction_factor=cfg.get("reduction_factor", 16),
            non_linearity=cfg.get("non_linearity") or "relu",
            scaling=float(scaling) if isinstance(scaling, (int, float)) else scaling,
            dropout=float(cfg.get("dropout") or 0.0),
            init="zero" if cfg.get("init_weights") == "mam_adapter" else "bert",
            leave_out=list(cfg.get("leave_out") or []),
        )
    except ValueError as exc:  # e.g. an activation we do not implement
        raise IncompatibleError(f"AdapterHub bottleneck config not supported: {exc}") from None


def lora_config_from_adapterhub(cfg: dict[str, Any], modules: list[str]) -> Any:
    """AdapterHub LoRA is ``base(x) + (dropout(x) @ A.T @ B.T) * alpha / r``: our (PEFT-style) LoRA
    with the same r/alpha, on exactly the modules it saved weights for."""
    from ..nn.lora import LoRAConfig  # the other kind's config; imported late

    _check(cfg, _LORA_MUST_BE, "LoRA")
    return LoRAConfig(
        r=int(cfg.get("r", 8)),
        alpha=cfg.get("alpha", 8),
        dropout=float(cfg.get("dropout") or 0.0),
        target_modules=list(modules),
    )


_LAYER_IDX = re.compile(r"(?:^|\.)(\d+)\.")


def _bn_slot(container: str) -> tuple[int, str]:
    """`encoder.layer.3.attention.output` -> (3, "attn"); `encoder.layer.3.output` -> (3, "ffn")."""
    m = _LAYER_IDX.search(container + ".")
    if m is None:
        raise InvalidPackageError(f"AdapterHub key without a layer index: {container!r}")
    after = container[m.end():]
    return int(m.group(1)), "attn" if "att" in after else "ffn"


def _fit(layer: AdapterLayer, name: str, params: dict[str, torch.Tensor], full_key: Any, problems: list[str]) -> None:
    """Load `params` into `layer`, or add to `problems` what does not fit, by full AdapterHub key.

    `full_key(param)` gives the key the file has (or would have) for a layer-relative name."""
    own = layer.adapter_state_dict(name)
    missing = [full_key(k) for k in own if k not in params]
    unexpected = [full_key(k) for k in params if k not in own]
    shapes = [f"{full_key(k)} {tuple(t.shape)} (expected {tuple(own[k].shape)})"
              for k, t in params.items() if k in own and t.shape != own[k].shape]
    problems += [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
    problems += [f"wrong shape {k}" for k in shapes]
    if missing or unexpected or shapes:
        return
    try:
        layer.load_adapter_state_dict(name, params)
    except KeyError as exc:  # whatever else the layer refuses
        problems.append(f"{full_key('')}: {exc.args[0] if exc.args else exc}")


def _weights_error(path: str | Path, problems: list[str]) -> Exception:
    from ..nn.model import AdapterWeightsError  # late: nn.model imports this module lazily

    shown = "; ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
    return AdapterWeightsError(f"{path}: AdapterHub weights do not fit the model: {shown}")


def _load_bottleneck(model: nn.Module, name: str, tensors: dict[str, torch.Tensor], path: str | Path = "") -> None:
    grouped: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    stems: dict[tuple[int, str], str] = {}  # slot -> "<container>.adapters.<saved name>."
    for key, t in tensors.items():
        container, sep, rest = key.partition(".adapters.")
        if not sep:
            raise InvalidPackageError(f"unexpected AdapterHub bottleneck key {key!r}")
        saved, _, param = rest.partition(".")  # drop AdapterHub's adapter name
        slot = _bn_slot(container)
        grouped.setdefault(slot, {})[param] = t
        stems.setdefault(slot, f"{container}.adapters.{saved}.")
    layers = {
        (layer.layer_index, layer.role): layer
        for _, layer in iter_adapter_layers(model)
        if isinstance(layer, BottleneckLayer) and name in layer.adapter_names
    }
    if set(grouped) != set(layers):
        raise IncompatibleError(
            f"AdapterHub adapter {name!r} has weights for (layer, site) {sorted(grouped)} "
            f"but the model placed it at {sorted(layers)}"
        )
    problems: list[str] = []
    for slot, params in grouped.items():
        _fit(layers[slot], name, params, lambda k, stem=stems[slot]: stem + k, problems)
    if problems:
        raise _weights_error(path, problems)


def _resolve_path(paths: set[str], prefix: str, path: str) -> str:
    """Adjust for a head model vs a bare base model (`bert.encoder...` vs `encoder...`)."""
    if path in paths:
        return path
    if prefix and path.startswith(prefix + ".") and path[len(prefix) + 1:] in paths:
        return path[len(prefix) + 1:]
    if prefix and f"{prefix}.{path}" in paths:
        return f"{prefix}.{path}"
    raise IncompatibleError(f"AdapterHub LoRA targets {path!r}, which this model does not have")


def _lora_tensors(
    model: nn.Module, tensors: dict[str, torch.Tensor], stems: dict[str, str] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """{logical module path in `model`: {"lora_A": [r, in], "lora_B": [out, r]}} (same shapes as PEFT).

    `stems`, if given, receives each path's key stem in the file (``<module>.loras.<saved name>.``)."""
    paths = {p for p, _, _, _ in iter_modules(model)}
    prefix = getattr(model, "base_model_prefix", "")
    per_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        module, sep, rest = key.partition(".loras.")
        if not sep:
            raise InvalidPackageError(f"unexpected AdapterHub LoRA key {key!r}")
        path = _resolve_path(paths, prefix, module)
        per_module.setdefault(path, {})[rest.rpartition(".")[2]] = t
        if stems is not None:
            stems.setdefault(path, key[: len(key) - len(rest.rpartition(".")[2])])
    return per_module


def _load_lora(model: nn.Module, name: str, per_module: dict[str, dict[str, torch.Tensor]],
               stems: dict[str, str] | None = None, where: str | Path = "") -> None:
    problems: list[str] = []
    for path, params in per_module.items():
        layer = get_module(model, path)
        # walk down nested wrappers to the one carrying this adapter
        while name not in getattr(layer, "adapter_names", ()) and isinstance(layer, AdapterLayer):
            layer = getattr(layer, "base_layer", None)
        if not isinstance(layer, AdapterLayer):
            raise IncompatibleError(f"LoRA adapter {name!r} was not placed at {path!r}")
        stem = (stems or {}).get(path, f"{path}.loras.{name}.")
        _fit(layer, name, _lora_keys(layer, name, params), lambda k, stem=stem: stem + k, problems)
    if problems:
        raise _weights_error(where, problems)


def _lora_keys(layer: AdapterLayer, name: str, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `lora_A`/`lora_B` to whatever the LoRA layer's own state dict uses."""
    own = list(layer.adapter_state_dict(name))
    out = {}
    for stem, t in params.items():
        match = [k for k in own if k.split(".")[0] == stem]
        if len(match) > 1:
            raise IncompatibleError(f"cannot map AdapterHub {stem} onto LoRA layer keys {own}")
        out[match[0] if match else stem] = t  # an unknown stem is reported as unexpected by _fit
    return out


def config_from_adapterhub(meta: dict[str, Any], lora_modules: list[str] = ()) -> Any:  # type: ignore[assignment]
    cfg = meta["config"]
    arch = cfg.get("architecture") or "bottleneck"
    if arch == "bottleneck":
        return bottleneck_config_from_adapterhub(cfg)
    if arch == "lora":
        return lora_config_from_adapterhub(cfg, list(lora_modules))
    raise IncompatibleError(f"AdapterHub architecture {arch!r} is not supported (bottleneck and lora are)")


def load_adapterhub(
    model: nn.Module, path: str | Path, name: str | None = None, *, trainable: bool = False, activate: bool = True,
    allow_pickle: bool = False,
) -> str:
    """Attach the AdapterHub adapter saved in `path` to `model` (as `name`, default its saved name).

    As ``load_adapter``: frozen unless ``trainable``, and made the only active adapter if ``activate``.
    """
    from ..nn.model import add_adapter, delete_adapter, finish_load  # late: cycle

    meta, tensors = read_adapterhub(path, allow_pickle=allow_pickle)
    name = name or meta.get("name") or Path(path).name
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if meta.get("hidden_size") and hidden and int(meta["hidden_size"]) != int(hidden):
        raise IncompatibleError(f"adapter was trained for hidden size {meta['hidden_size']}, the model has {hidden}")
    is_lora = meta["config"].get("architecture") == "lora"
    stems: dict[str, str] = {}
    lora = _lora_tensors(model, tensors, stems) if is_lora else {}
    config = config_from_adapterhub(meta, sorted(lora))
    add_adapter(model, name, config, activate=False)
    try:
        if is_lora:
            _load_lora(model, name, lora, stems, path)
        else:
            _load_bottleneck(model, name, tensors, path)
    except Exception:
        delete_adapter(model, name)  # don't leave a half-loaded adapter behind
        raise
    return finish_load(model, name, trainable=trainable, activate=activate)
