"""The model-level API: attach, switch, merge, train, save and load adapters on a plain ``nn.Module``.

Nothing wraps the model: adapter layers replace (or wrap) the targeted modules in place and the
per-model bookkeeping is ``model._ah_state`` (:class:`~.base.AdapterState`). Every function is
generic over adapter kinds; kind-specific work goes through :class:`~.base.AdapterConfig` and
:class:`~.base.AdapterLayer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidPackageError, NotFoundError, UsageError
from .base import AdapterConfig, AdapterLayer, adapter_state
from .targets import base_of, get_module, iter_modules, set_module


class AdapterWeightsError(InvalidPackageError):
    """Adapter tensors that do not fit the model: keys that land nowhere, or modules left without weights."""


@dataclasses.dataclass(frozen=True)
class AdapterInfo:
    name: str
    kind: str
    params: int
    modules: int
    active: bool
    merged: bool


@dataclasses.dataclass(frozen=True)
class TrainableParams:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{_human(self.trainable)} trainable params: {self.share:.2%} of {_human(self.total)}"


def _human(n: int) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


# --- internals --------------------------------------------------------------------------------


def _layers(model: nn.Module) -> list[tuple[str, AdapterLayer]]:
    # iter_modules gives logical paths and visits stacked wrappers (bottleneck around LoRA, ...)
    out = []
    for path, module, _, _ in iter_modules(model):
        while isinstance(module, AdapterLayer):
            out.append((path, module))
            module = getattr(module, "base_layer", None)
    return out


def _check_names(model: nn.Module, names: Sequence[str]) -> None:
    known = adapter_state(model).configs
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFoundError(f"unknown adapter(s) {', '.join(map(repr, unknown))}; the model has {sorted(known) or 'none'}")


def _layers_of(model: nn.Module, name: str) -> list[tuple[str, AdapterLayer]]:
    return [(p, layer) for p, layer in _layers(model) if name in layer.adapter_names]


def _merged(model: nn.Module) -> list[str]:
    seen: dict[str, None] = {}
    for _, layer in _layers(model):
        for n in layer.merged_adapters:
            seen[n] = None
    return list(seen)


def _apply_active(model: nn.Module, names: list[str]) -> None:
    for _, layer in _layers(model):
        layer.set_active(names)
    adapter_state(model).active = list(names)


# --- attach / detach --------------------------------------------------------------------------


def add_adapter(model: nn.Module, name: str, config: AdapterConfig, *, activate: bool = True) -> list[str]:
    """Attach a new, trainable adapter `name`; return the module paths it touches.

    With ``activate`` (default) the new adapter becomes the only active one.
    """
    if not isinstance(name, str) or not name or "." in name:
        raise UsageError(f"invalid adapter name {name!r}: a non-empty string without '.'")
    state = adapter_state(model)
    if name in state.configs:
        raise UsageError(f"adapter {name!r} already exists; delete it first or pick another name")
    if not isinstance(config, AdapterConfig):
        raise UsageError(f"expected an AdapterConfig, got {type(config).__name__}")
    paths = config.inject(model, name)
    if not paths:
        raise UsageError(f"adapter {name!r} matched no module")
    state.configs[name] = config
    state.modules[name] = list(paths)
    if activate:
        _apply_active(model, [name])
    else:
        _apply_active(model, state.active)  # new layers learn the current selection
    return list(paths)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter `name`; wrappers left with no adapter are replaced by their base module."""
    _check_names(model, [name])
    if name in _merged(model):
        raise UsageError(f"adapter {name!r} is merged; call unmerge_adapters(model) first")
    state = adapter_state(model)
    for path, layer in _layers_of(model, name):
        layer.delete_adapter(name)
        if not layer.adapter_names and isinstance(getattr(layer, "base_layer", None), nn.Module):
            _replace_layer(model, path, layer)
    del state.configs[name]
    del state.modules[name]
    state.active = [n for n in state.active if n != name]


def _replace_layer(model: nn.Module, path: str, layer: AdapterLayer) -> None:
    """Swap `layer` for its base module wherever it sits in the (possibly stacked) wrappers at `path`.

    The layer is released first (a parallel bottleneck's input hook removed): a layer out of the
    model must leave nothing behind in it.
    """
    layer.release()
    top = get_module(model, path)
    if top is layer:
        set_module(model, path, layer.base_layer)
        return
    outer = top
    while isinstance(outer, AdapterLayer) and outer.base_layer is not layer:
        outer = outer.base_layer
    outer.base_layer = layer.base_layer


def list_adapters(model: nn.Module) -> list[AdapterInfo]:
    state = adapter_state(model)
    merged = set(_merged(model))
    counts: dict[str, int] = {n: 0 for n in state.configs}
    for _, layer in _layers(model):
        for n in layer.adapter_names:
            if n in counts:
                counts[n] += sum(t.numel() for t in layer.adapter_state_dict(n).values())
    return [
        AdapterInfo(n, cfg.kind, counts[n], len(state.modules.get(n, [])), n in state.active, n in merged)
        for n, cfg in state.configs.items()
    ]


# --- activation -------------------------------------------------------------------------------


def set_active_adapters(model: nn.Module, names: str | Sequence[str] | None) -> None:
    """Activate one adapter, several (their outputs add up), or none (``None`` / ``[]``)."""
    selection = [] if names is None else [names] if isinstance(names, str) else list(names)
    _check_names(model, selection)
    merged = _merged(model)
    # the order counts too: DoRA rescales what the adapters before it produced, and merges follow it
    if merged and selection != list(adapter_state(model).active):
        raise UsageError(f"adapters {merged} are merged into the weights; unmerge_adapters(model) before switching")
    _apply_active(model, selection)


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Run the bare base model inside the block; the previous selection (and merges) come back after."""
    state = adapter_state(model)
    previous, merged = list(state.active), _merged(model)
    if merged:
        unmerge_adapters(model)
    _apply_active(model, [])
    try:
        yield model
    finally:
        _apply_active(model, previous)
        if merged:
            merge_adapters(model, merged)


# --- merging ----------------------------------------------------------------------------------


def merge_adapters(
    model: nn.Module, names: str | Sequence[str] | None = None, *, safe: bool = False, untie: bool = False,
) -> None:
    """Fold adapters (default: the active ones) into the base weights; forward then skips them.

    On each layer the adapters are merged in the model's active (forward) order, whatever the order
    of `names`; a partial merge that cannot keep the outputs (a DoRA adapter merged while an adapter
    that runs before it stays unmerged) is refused before any weight changes.

    A weight that shares its storage with another parameter (an input embedding tied to the LM head)
    is refused: merging into it would change the other module too. ``untie=True`` gives each such
    merged module its own copy of the weight first (the other module keeps the original, and
    ``config.tie_word_embeddings`` is cleared so a save/reload does not tie them again).

    ``safe=True`` checks every merged weight is finite and, if one is not, restores the base
    bit for bit (ties included) and raises. Deltas are computed in fp32 for fp16/bf16 bases.
    """
    state = adapter_state(model)
    selection = list(state.active) if names is None else [names] if isinstance(names, str) else list(names)
    _check_names(model, selection)
    configs = state.configs
    fixed = [n for n in selection if not getattr(configs[n], "mergeable", True)]
    if fixed:  # refuse before touching any weight
        raise UsageError(f"adapter(s) {fixed} cannot be merged ({configs[fixed[0]].kind} adapters are not linear)")
    # forward order first, then selected adapters that are not active, in the order given
    order = [n for n in state.active if n in selection] + [n for n in selection if n not in state.active]
    layers = [(p, layer) for p, layer in _layers(model) if any(n in layer.adapter_names for n in order)]
    plan = [(p, layer, [n for n in order if n in layer.adapter_names and n not in layer.merged_adapters])
            for p, layer in layers]
    plan = [(p, layer, todo) for p, layer, todo in plan if todo]
    for path, layer, todo in plan:
        try:
            layer.check_merge(todo)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
    tied = _tied_weights(model, plan)
    if tied and not untie:
        where = "; ".join(f"{p}.{w} is shared with {', '.join(others)}" for p, w, _, others in tied[:5])
        raise UsageError(
            f"cannot merge {order} into tied weights ({where}): the merge would change those modules too. "
            "Pass untie=True to give the merged modules their own copy, or keep the adapters unmerged"
        )
    untied: list[tuple[nn.Module, str, nn.Parameter]] = []
    for _, _, module, _ in tied:
        old = module.weight
        module.weight = nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad)
        untied.append((module, "weight", old))
    snapshot: list[tuple[nn.Parameter, torch.Tensor]] = []
    if safe:
        for _, layer, _ in plan:
            for p in base_of(layer).parameters():
                snapshot.append((p, p.data.clone()))
    saved_merged = {id(layer): list(layer.merged_adapters) for _, layer, _ in plan}
    try:
        for _, layer, todo in plan:
            try:
                layer.merge(todo)
            except NotImplementedError as exc:
                raise UsageError(str(exc)) from None
        if safe:
            bad = [p for p, layer, _ in plan if not all(torch.isfinite(t).all() for t in base_of(layer).parameters())]
            if bad:
                raise UsageError(f"merging {order} gives non-finite weights in {', '.join(bad[:5])}; base left unchanged")
    except Exception:
        if safe:
            with torch.no_grad():
                for p, data in snapshot:
                    p.copy_(data)  # in place: keeps storage and ties
            for module, attr, old in untied:
                setattr(module, attr, old)  # tie back what untie split
            for _, layer, _ in plan:
                layer.merged_adapters[:] = saved_merged[id(layer)]
                if hasattr(layer, "_refresh"):
                    layer._refresh()
        raise
    config = getattr(model, "config", None)
    if untied and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False  # a save + reload must not tie the merged weight back


def _tied_weights(
    model: nn.Module, plan: list[tuple[str, AdapterLayer, list[str]]],
) -> list[tuple[str, str, nn.Module, list[str]]]:
    """``(path, "weight", base module, other parameter names)`` for each weight to merge whose memory
    overlaps another parameter of the model (tied embeddings / LM head, views of one tensor)."""
    targets = [(p, base_of(layer)) for p, layer, _ in plan]
    targets = [(p, m) for p, m in targets if isinstance(getattr(m, "weight", None), torch.Tensor)
               and not m.weight.is_meta]
    if not targets:
        return []
    by_storage: dict[int, list[tuple[str, tuple[int, int]]]] = {}
    for pname, param in model.named_parameters(remove_duplicate=False):
        if not param.is_meta and param.numel():
            logical = ".".join(part for part in pname.split(".") if part != "base_layer")
            by_storage.setdefault(param.untyped_storage().data_ptr(), []).append((logical, _span(param)))
    out = []
    for path, module in targets:
        weight = module.weight
        lo, hi = _span(weight)
        others = [n for n, (a, b) in by_storage.get(weight.untyped_storage().data_ptr(), [])
                  if a < hi and lo < b and n != f"{path}.weight"]
        if others:
            out.append((path, "weight", module, others))
    return out


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The byte range a tensor's elements occupy (strided views included)."""
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if size)
    start = t.data_ptr()
    return start, start + (last + 1) * t.element_size()


def unmerge_adapters(model: nn.Module) -> None:
    for _, layer in _layers(model):
        if layer.merged_adapters:
            layer.unmerge()


def merge_and_unload(
    model: nn.Module, names: str | Sequence[str] | None = None, *, safe: bool = False, untie: bool = False,
) -> nn.Module:
    """Merge `names` (default: active) and remove every adapter layer; returns the plain model (same object).

    Adapters not merged (inactive ones, bottlenecks) are dropped, and every layer is released (no
    hook is left on the base modules). ``safe``/``untie`` as in :func:`merge_adapters`.
    """
    layers = list(reversed(_layers(model)))  # innermost first
    stuck = [f"{layer.kind} adapter layer at {path}" for path, layer in layers
             if not isinstance(getattr(layer, "base_layer", None), nn.Module)]
    if stuck:  # before merging anything
        raise UsageError(f"{stuck[0]} cannot be unloaded")
    merge_adapters(model, names, safe=safe, untie=untie)
    for path, layer in layers:
        _replace_layer(model, path, layer)
    if hasattr(model, "_ah_state"):
        object.__delattr__(model, "_ah_state")
    return model


# --- training ---------------------------------------------------------------------------------


def _bias_params(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Base biases that train with adapter `name` (LoRA's ``bias`` = ``all`` | ``lora_only``)."""
    return [b for _, b in _named_bias(model, name)]


def adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    _check_names(model, [name])
    return [p for _, layer in _layers_of(model, name) for p in layer.adapter_parameters(name)]


def mark_only_adapters_trainable(model: nn.Module, names: str | Sequence[str] | None = None) -> TrainableParams:
    """Freeze everything but the adapters' parameters (default: every adapter); return the share."""
    state = adapter_state(model)
    selection = list(state.configs) if names is None else [names] if isinstance(names, str) else list(names)
    _check_names(model, selection)
    for p in model.parameters():
        p.requires_grad_(False)
    for n in selection:
        for p in adapter_parameters(model, n) + _bias_params(model, n):
            p.requires_grad_(True)
    return trainable_parameters(model)


def trainable_parameters(model: nn.Module) -> TrainableParams:
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return TrainableParams(trainable, total)


def adapter_summary(model: nn.Module) -> str:
    """A table of the adapters (name, kind, params, modules, active, merged) and the trainable share."""
    rows = [("name", "kind", "params", "modules", "active", "merged")]
    for a in list_adapters(model):
        rows.append((a.name, a.kind, f"{a.params:,}", str(a.modules), "yes" if a.active else "", "yes" if a.merged else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(str(trainable_parameters(model)))
    return "\n".join(lines)


# --- weights in and out -----------------------------------------------------------------------


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's ``state_dict()``: no adapter tensors, no ``base_layer`` hops.

    With merged adapters the weights hold the merge; callers that need the pristine base check
    ``list_adapters`` first.
    """
    out: dict[str, torch.Tensor] = {}
    for path, module, _, _ in iter_modules(model):
        base = base_of(module)
        prefix = f"{path}." if path else ""
        for k, p in base._parameters.items():
            if p is not None:
                out[prefix + k] = p.detach()
        for k, b in base._buffers.items():
            if b is not None and k not in base._non_persistent_buffers_set:
                out[prefix + k] = b.detach()
    return out



def adapter_tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors keyed ``<logical module path>.<param>`` (the package format's keys)."""
    _check_names(model, [name])
    out: dict[str, torch.Tensor] = {}
    for path, layer in _layers_of(model, name):
        for k, t in layer.adapter_state_dict(name).items():
            out[f"{path}.{k}"] = t
    for path, p in _named_bias(model, name):
        out[path] = p.detach()
    return out


def _named_bias(model: nn.Module, name: str) -> list[tuple[str, nn.Parameter]]:
    """``(logical path + ".bias", parameter)`` of the base biases adapter `name` trains and saves."""
    mode = getattr(adapter_state(model).configs[name], "bias", "none")
    if mode == "none":
        return []
    own = set(adapter_state(model).modules[name]) if mode == "lora_only" else None
    out, seen = [], set()
    for path, module, _, _ in iter_modules(model):  # base modules only: adapter internals are skipped
        bias = getattr(base_of(module), "bias", None)
        if not isinstance(bias, nn.Parameter) or id(bias) in seen or (own is not None and path not in own):
            continue
        seen.add(id(bias))
        out.append((f"{path}.bias", bias))
    return out


def attach_weights(
    model: nn.Module, name: str, config: AdapterConfig, tensors: dict[str, torch.Tensor], *,
    trainable: bool = False, activate: bool = True, where: str = "adapter",
) -> str:
    """Attach adapter `name` from `config` and fill it with `tensors` (package keys); strict.

    Raises :class:`AdapterWeightsError` naming the keys when a tensor lands on no module or a module
    is left without its weights; the model is left as it was.
    """
    paths = add_adapter(model, name, config, activate=False)
    try:
        shift = _prefix_shift(model, paths, tensors)
        if shift is not None:
            to_model, to_source = shift
            tensors = {to_model(k): t for k, t in tensors.items()}
            # path-dependent options (LoRA rank/alpha patterns) were matched against our paths, but
            # written for the source model's: re-attach with them re-expressed if that changes anything
            rebased = config.for_paths(paths, to_source)
            if rebased is not config:
                delete_adapter(model, name)
                paths = add_adapter(model, name, rebased, activate=False)
        _fill(model, name, paths, tensors, where)
    except Exception:
        if name in adapter_state(model).configs:
            delete_adapter(model, name)
        raise
    return finish_load(model, name, trainable=trainable, activate=activate)


def finish_load(model: nn.Module, name: str, *, trainable: bool, activate: bool) -> str:
    """The last step of every loader: freeze (unless trainable) and make it the only active one."""
    for p in adapter_parameters(model, name):
        p.requires_grad_(trainable)
    if activate:
        set_active_adapters(model, [name])
    return name


def _prefix_shift(
    model: nn.Module, paths: list[str], tensors: dict[str, torch.Tensor],
) -> tuple[Callable[[str], str], Callable[[str], str]] | None:
    """Re-root keys saved from a model with (or without) a task head around the same backbone.

    An adapter trained on ``LlamaForCausalLM`` has ``model.layers...`` keys; given a ``LlamaModel``
    the paths are ``layers...`` (and the other way round). Only a shift that makes *every* key
    land on an adapted module is returned, as ``(key -> our key, our module path -> source path)``;
    otherwise None, and the keys are left for the strict check.
    """
    targets = set(paths)

    def lands(keys: list[str]) -> bool:
        return all(k.rpartition(".")[0] in targets or k.rsplit(".", 2)[0] in targets or k.endswith(".bias")
                   for k in keys)

    keys = list(tensors)
    if not keys or lands(keys):
        return None
    candidates: list[tuple[Callable[[str], str], Callable[[str], str]]] = []
    heads = {k.split(".", 1)[0] for k in keys}
    if len(heads) == 1 and all("." in k for k in keys):
        head = heads.pop()
        candidates.append((lambda k: k[len(head) + 1:], lambda p: f"{head}.{p}"))
    prefix = getattr(model, "base_model_prefix", "")
    if isinstance(prefix, str) and prefix and hasattr(model, prefix):
        candidates.append((lambda k: f"{prefix}.{k}",
                           lambda p: p[len(prefix) + 1:] if p.startswith(prefix + ".") else p))
    for to_model, to_source in candidates:
        moved = [to_model(k) for k in keys]
        if lands([m for m in moved if not m.endswith(".bias")]) and any(m.rpartition(".")[0] in targets for m in moved):
            return to_model, to_source
    return None


def _fill(model: nn.Module, name: str, paths: list[str], tensors: dict[str, torch.Tensor], where: str) -> None:
    layers = {p: layer for p, layer in _layers_of(model, name)}
    grouped: dict[str, dict[str, torch.Tensor]] = {p: {} for p in layers}
    biases = dict(_named_bias(model, name))
    stray: list[str] = []
    for key, t in tensors.items():
        if key in biases:
            continue
        prefix, rel = key, ""
        while "." in prefix:  # longest module path that is a prefix of the key
            prefix, _, last = prefix.rpartition(".")
            rel = f"{last}.{rel}" if rel else last
            if prefix in grouped:
                grouped[prefix][rel] = t
                break
        else:
            stray.append(key)
    if stray:
        raise AdapterWeightsError(f"{where}: {len(stray)} tensor(s) match no adapted module: {_few(stray)}")
    problems = []
    for path, layer in layers.items():
        if not grouped[path]:
            problems.append(f"{path}: no weights")
            continue
        try:
            layer.load_adapter_state_dict(name, grouped[path])
        except KeyError as exc:
            problems.append(f"{path}: {exc.args[0] if exc.args else exc}")
    if problems:
        raise AdapterWeightsError(f"{where}: weights do not fit the model: {_few(problems)}")
    missing = [k for k in biases if k not in tensors]
    if missing:
        raise AdapterWeightsError(f"{where}: bias tensors missing: {_few(missing)}")
    with torch.no_grad():
        for k, b in biases.items():
            b.copy_(tensors[k])


def _few(items: Sequence[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _default_name(model: nn.Module, hint: str) -> str:
    base = hint.rsplit("/", 1)[-1].replace(".", "_") or "adapter"
    name, i = base, 1
    while name in adapter_state(model).configs:
        i += 1
        name = f"{base}_{i}"
    return name


def _peft_subfolder(root: Path, name: str | None) -> Path:
    """PEFT saves a non-default adapter under ``<dir>/<adapter name>/``: find it when `root` has no config."""
    if (root / "manifest.json").is_file() or (root / "adapter_config.json").is_file():
        return root
    if name and (root / name / "adapter_config.json").is_file():
        return root / name
    subdirs = [d for d in root.iterdir() if (d / "adapter_config.json").is_file()]
    return subdirs[0] if len(subdirs) == 1 else root


def load_adapter(
    model: nn.Module, path: str | os.PathLike[str], name: str | None = None, *,
    trainable: bool = False, activate: bool = True, allow_pickle: bool = False,
) -> str:
    """Load an adapter from our package dir, a PEFT dir or an AdapterHub dir; return its name.

    The format is detected from the files: ``manifest.json`` (package), ``adapter_config.json``
    with ``peft_type`` (PEFT) or with ``config`` and ``model_class``/``model_name`` (AdapterHub).
    """
    root = Path(path)
    if not root.is_dir():
        raise NotFoundError(f"{root}: not an adapter directory")
    root = _peft_subfolder(root, name)
    if (root / "manifest.json").is_file():
        from ..formats.package import read_package

        config, tensors, hint = read_package(root, allow_pickle=allow_pickle)
    elif (root / "adapter_config.json").is_file():
        try:
            meta = json.loads((root / "adapter_config.json").read_text())
        except ValueError as exc:
            raise InvalidPackageError(f"{root / 'adapter_config.json'}: not valid JSON ({exc})") from None
        if isinstance(meta, dict) and "config" in meta and ("model_class" in meta or "model_name" in meta):
            from ..formats.adapterhub import load_adapterhub  # written with the bottleneck adapters

            return load_adapterhub(model, root, name, trainable=trainable, activate=activate, allow_pickle=allow_pickle)
        from ..formats.peft import read_peft

        config, tensors = read_peft(root, allow_pickle=allow_pickle)
        hint = root.name
    else:
        raise InvalidPackageError(f"{root}: neither manifest.json nor adapter_config.json found")
    from ..formats.peft import drop_saved_base_weights

    tensors = drop_saved_base_weights(model, tensors, str(root))
    name = name or _default_name(model, hint)
    return attach_weights(model, name, config, tensors, trainable=trainable, activate=activate, where=str(root))


def save_adapter(
    model: nn.Module, adapter: str, out_dir: str | os.PathLike[str], /, *,
    name: str | None = None, version: str = "0.1.0", **manifest_fields: object,
) -> Path:
    """Write adapter `adapter` as a publishable package dir (``manifest.json`` + ``adapter.safetensors``)."""
    from ..formats.package import save_package

    return save_package(model, adapter, out_dir, name=name or f"local/{adapter}", version=version, **manifest_fields)


def export_peft(model: nn.Module, adapter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write a LoRA adapter in PEFT's format (loads with ``PeftModel.from_pretrained``)."""
    from ..formats.peft import write_peft

    return write_peft(model, adapter, out_dir)
