"""Hot-swap: replace an attached LoRA adapter's weights in place, so a compiled model does not recompile.

``torch.compile`` guards on the modules and on the Python values it read while tracing (an adapter's
``scaling`` float, the set of adapters a layer runs), not on the values inside parameters. So
:func:`hotswap` writes only parameter data (``copy_``): a source of lower rank is zero-padded into the
existing ``[r, in]`` / ``[out, r]`` tensors, and a different scale (alpha, rank, rsLoRA) is folded into
``B`` (``B' = B_src * s_src / s_dst``), leaving every float on the layer as it was. No module is
re-wrapped or replaced. What cannot fit is refused before anything is written: a higher rank, other
target modules, other shapes, DoRA against plain LoRA.

:func:`hotswap_metadata` describes an adapter the way a serving system groups adapters for hot-swap
slots and batched routing (vLLM's ``--max-lora-rank``, S-LoRA / Punica rank buckets): target modules,
ranks (max, and per module where they differ), alpha, variant.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._fs import sha256_bytes
from ..errors import UsageError
from .base import AdapterLayer, adapter_state, check_model
from .lora import LoRAConfig, LoRALayer
from .model import adapter_layers, list_adapters
from .targets import base_of, kind_of, pattern_value

__all__ = ["hotswap", "hotswap_metadata"]

FACTORS = ("lora_A", "lora_B")
MAGNITUDE = "lora_magnitude_vector"


def hotswap(
    model: nn.Module,
    name: str,
    source: str | Mapping[str, torch.Tensor],
    *,
    config: LoRAConfig | None = None,
) -> list[str]:
    """Overwrite LoRA adapter `name`'s weights with `source`'s, in place; return the module paths.

    `source`: another LoRA adapter of the model (its name), or its tensors keyed as packages key them
    (``<module path>.lora_A`` / ``.lora_B`` / ``.lora_magnitude_vector``, what ``formats`` readers and
    ``adapter_tensors`` give) with the ``config`` they were saved with (it gives their scale). Both must
    adapt the same modules, with the same variant (DoRA or not) and a rank no higher than `name`'s at
    each module. Outputs then equal `source`'s; `name`'s dropout and other settings stay.
    """
    layers = _lora_layers(model, name, "the adapter to overwrite")
    if isinstance(source, str):
        if source == name:
            raise UsageError(f"adapter {name!r} cannot be hot-swapped with itself")
        incoming = {
            path: _weights_of(layer, source) for path, layer in _lora_layers(model, source, "the source").items()
        }
        what = f"adapter {source!r}"
    elif isinstance(source, Mapping):
        if not isinstance(config, LoRAConfig):
            raise UsageError(
                "hot-swapping from tensors needs config= (the LoRAConfig they were saved with): it gives their scale"
            )
        incoming = _group(source, config)
        what = "the source tensors"
    else:
        raise UsageError(f"expected an adapter name or a mapping of tensors as the source, got {type(source).__name__}")
    plan = _plan(layers, name, incoming, what)
    with torch.no_grad():
        for param, value in plan:
            param.copy_(value)
    return list(layers)


def _lora_layers(model: nn.Module, name: str, role: str) -> dict[str, LoRALayer]:
    check_model(model)
    if not isinstance(name, str):
        raise UsageError(f"expected an adapter name (a string) as {role}, got {name!r}")
    found = adapter_layers(model, name)  # NotFoundError for an unknown name
    config = adapter_state(model).configs[name]
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"adapter {name!r} is a {config.kind} adapter; hot-swap replaces LoRA weights only")
    others = [p for p, layer in found if not isinstance(layer, LoRALayer)]
    if others:
        raise UsageError(f"adapter {name!r} has task heads ({', '.join(others)}); hot-swap replaces LoRA weights only")
    layers = {p: layer for p, layer in found if isinstance(layer, LoRALayer)}
    merged = [p for p, layer in layers.items() if name in layer.merged_adapters]
    if merged:
        raise UsageError(
            f"adapter {name!r} is merged into the base weights ({merged[0]}); unmerge_adapters(model) first"
        )
    return layers


def _weights_of(layer: LoRALayer, name: str) -> dict[str, Any]:
    """What the planner needs of one module: the tensors and the scale."""
    weights: dict[str, Any] = {k: getattr(layer, k)[name].detach() for k in FACTORS}
    if name in layer.lora_magnitude_vector:
        weights[MAGNITUDE] = layer.lora_magnitude_vector[name].detach()
    weights["scale"] = layer.scaling[name]
    return weights


def _group(tensors: Mapping[str, torch.Tensor], config: LoRAConfig) -> dict[str, dict[str, Any]]:
    """Package-keyed tensors -> ``{path: {"lora_A", "lora_B", ["lora_magnitude_vector"], "scale"}}``."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise UsageError(f"the source must map tensor names to tensors; got {key!r}: {type(t).__name__}")
        path, _, param = key.rpartition(".")
        if param not in (*FACTORS, MAGNITUDE) or not path:
            raise UsageError(
                f"source tensor {key!r} is not a LoRA factor (<module path>.lora_A / .lora_B / .{MAGNITUDE}); "
                "hot-swap replaces LoRA weights only"
            )
        grouped.setdefault(path, {})[param] = t
    for path, weights in grouped.items():
        missing = [k for k in FACTORS if k not in weights]
        if missing:
            raise UsageError(f"the source has no {path}.{missing[0]}")
        if (MAGNITUDE in weights) != config.dora:
            raise UsageError(
                f"the source's config says dora={config.dora}, but {path} {'has' if MAGNITUDE in weights else 'lacks'} "
                f"a {MAGNITUDE}"
            )
        A = weights["lora_A"]
        r = A.shape[0] if A.dim() == 2 else config.r  # a bad shape is named by the planner
        weights["scale"] = config.scaling(r, pattern_value(config.alpha_pattern, path, config.alpha))
    return grouped


def _shapes(weights: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {tuple(weights[k].shape)}" for k in FACTORS)


def _plan(
    layers: dict[str, LoRALayer], name: str, incoming: dict[str, dict[str, Any]], what: str
) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Every (parameter, new value) to write, after checking all of them: nothing is written on a refusal."""
    extra = [p for p in incoming if p not in layers]
    if extra:
        raise UsageError(
            f"{what} adapts {extra[0]}, which adapter {name!r} does not; hot-swap needs the same target modules"
        )
    plan: list[tuple[nn.Parameter, torch.Tensor]] = []
    for path, layer in layers.items():
        if path not in incoming:
            raise UsageError(
                f"{what} has no weights for {path}, which adapter {name!r} adapts; hot-swap needs the same target modules"
            )
        src, dst = incoming[path], _weights_of(layer, name)
        A_src, B_src, A_dst, B_dst = src["lora_A"], src["lora_B"], dst["lora_A"], dst["lora_B"]
        r_src, r_dst = (A_src.shape[0] if A_src.dim() == 2 else -1), A_dst.shape[0]
        fits = A_src.dim() == 2 and B_src.dim() == 2 and B_src.shape[1] == r_src
        if not fits or A_src.shape[1] != A_dst.shape[1] or B_src.shape[0] != B_dst.shape[0]:
            raise UsageError(f"{path}: {what} has {_shapes(src)}, which do not fit adapter {name!r}'s {_shapes(dst)}")
        if r_src > r_dst:
            raise UsageError(
                f"{path}: {what} has rank {r_src} ({_shapes(src)}), higher than adapter {name!r}'s rank {r_dst} "
                f"({_shapes(dst)}); hot-swap zero-pads lower ranks only"
            )
        if (MAGNITUDE in src) != (MAGNITUDE in dst):
            kinds = ["DoRA" if MAGNITUDE in w else "plain LoRA" for w in (src, dst)]
            raise UsageError(f"{path}: {what} is {kinds[0]} and adapter {name!r} is {kinds[1]}; they cannot swap")
        if dst["scale"] == 0 and src["scale"] != 0:
            raise UsageError(f"{path}: adapter {name!r} has scale 0 (alpha 0), into which no other scale folds")
        ratio = src["scale"] / dst["scale"] if dst["scale"] else 0.0
        A = torch.zeros_like(A_dst)
        A[:r_src] = A_src
        B = torch.zeros_like(B_dst)
        B[:, :r_src] = B_src.to(B.dtype) * ratio
        plan += [(layer.lora_A[name], A), (layer.lora_B[name], B)]
        if MAGNITUDE in src:
            magnitude = layer.lora_magnitude_vector[name]
            if src[MAGNITUDE].shape != magnitude.shape:
                raise UsageError(
                    f"{path}: {what} has {MAGNITUDE} {tuple(src[MAGNITUDE].shape)}, adapter {name!r} "
                    f"{tuple(magnitude.shape)}"
                )
            plan.append((magnitude, src[MAGNITUDE]))
    return plan


# --- metadata for serving ----------------------------------------------------------------------


def _spread(values: dict[str, Any]) -> dict[str, Any]:
    """``{"default": the most common value, "modules": {path: value} where it differs}``."""
    default = collections.Counter(values.values()).most_common(1)[0][0] if values else None
    return {"default": default, "modules": {p: v for p, v in values.items() if v != default}}


def hotswap_metadata(model: nn.Module, name: str) -> dict[str, Any]:
    """What a serving system needs to group adapter `name` with others for hot-swap slots and batched
    routing (JSON values, deterministic).

    ``kind``; ``variant`` (LoRA: ``lora`` | ``rslora`` | ``dora`` | ``dora+rslora``; bottleneck: its
    style); ``target_modules`` (the module names, as PEFT and vLLM target them) and ``layers`` (their
    layout kinds); ``modules`` (how many) and ``modules_sha256`` (of the sorted paths: equal for
    adapters that can swap); ``rank`` (``max``, ``default`` and ``modules``, the paths whose rank
    differs; a bottleneck's width); LoRA's ``alpha`` the same way; ``heads`` (paths of task heads).
    """
    layers = adapter_layers(check_model(model), name)  # NotFoundError for an unknown name
    config = adapter_state(model).configs[name]
    info = next(a for a in list_adapters(model) if a.name == name)
    adapted = [(p, layer) for p, layer in layers if p not in info.heads]
    paths = [p for p, _ in adapted]
    ranks = {p: _width(layer, name) for p, layer in adapted}
    out: dict[str, Any] = {
        "kind": config.kind,
        "variant": _variant(config),
        "target_modules": sorted({p.rpartition(".")[2] for p in paths}),
        "layers": sorted({k for _, layer in adapted if (k := kind_of(base_of(layer))) is not None}),
        "modules": len(paths),
        "modules_sha256": sha256_bytes("\n".join(sorted(paths)).encode()),
        "rank": {"max": max((r for r in ranks.values() if r is not None), default=None), **_spread(ranks)},
        "heads": list(info.heads),
    }
    if isinstance(config, LoRAConfig):
        out["alpha"] = _spread({p: pattern_value(config.alpha_pattern, p, config.alpha) for p in paths})
    return out


def _variant(config: object) -> str:
    if isinstance(config, LoRAConfig):
        return {(False, False): "lora", (False, True): "rslora", (True, False): "dora", (True, True): "dora+rslora"}[
            (config.dora, config.rslora)
        ]
    return str(getattr(config, "style", getattr(config, "kind", "")))


def _width(layer: AdapterLayer, name: str) -> int | None:
    """A LoRA module's rank, a bottleneck's width (the up-projection's input size)."""
    if isinstance(layer, LoRALayer):
        return layer.r[name]
    up = layer.adapter_state_dict(name).get("adapter_up.weight")
    return int(up.shape[1]) if up is not None and up.dim() == 2 else None
