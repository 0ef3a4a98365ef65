"""The model-level API, in memory: attach, switch, merge, train and fill adapters on a plain ``nn.Module``.

Nothing wraps the model: adapter layers replace (or wrap) the targeted modules in place and the
per-model bookkeeping is ``model._ah_state`` (:class:`~.base.AdapterState`). Every function is
generic over adapter kinds; kind-specific work goes through :class:`~.base.AdapterConfig` and
:class:`~.base.AdapterLayer`.

Files are not this module's business: :mod:`adapterhub_client.formats` reads and writes them
(``load_adapter``, ``save_adapter``, ``export_peft``) and hands tensors keyed like the package format
to :func:`attach_weights`, the one strict way tensors get into adapter layers. Every error a caller
can cause is an :class:`~..errors.AdapterError`.

Activation takes a name, a list (outputs add) or a composition block (:mod:`.compose`: Stack,
Parallel, Average, BatchSplit, Fuse), checked whole when activated and recorded as the state's
``composition``; a fusion (:mod:`.fusion`) is an adapter of its own that only its Fuse runs.

Task heads (:mod:`.heads`) belong to an adapter: :func:`add_head` gives adapter ``name`` a trained
copy of one of the model's modules (``ModuleCopy("classifier")``, PEFT's ``modules_to_save``) or a
prediction head for a headless base (``HeadConfig(...)``, AdapterHub's), and ``attach_weights(...,
heads=...)`` loads them with the adapter's other tensors. They are adapter layers of that name, so
activating, deleting, counting (:func:`list_adapters`, :func:`adapter_summary`), training and
:func:`adapter_tensors` cover them; :func:`head_output` runs a prediction head on the model's output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .._text import format_table, human_count
from ..errors import AdapterWarning, AdapterWeightsError, NotFoundError, UsageError
from ..modpaths import PathRewrite, align_paths
from .base import AdapterConfig, AdapterLayer, AdapterState, adapter_state, check_model, inner_of
from .compose import Block, Composition, Fuse, child_from_json, set_input_hook
from .compose import check as check_composition
from .heads import HEADS_PATH, HeadConfig, HeadLayer, HeadSpec, ModuleCopy, ModuleCopyLayer, build_head
from .quant.convert import Quantization, quantization_of, quantize_modules, quantized_layers
from .quant.layer import Linear4bit
from .targets import TargetError, base_of, get_module, iter_modules, set_module, weight_of

__all__ = [
    "AdapterInfo",
    "AdapterWeightsError",
    "TrainableParams",
    "active_composition",
    "adapter_heads",
    "adapter_layers",
    "adapter_parameters",
    "adapter_summary",
    "adapter_tensors",
    "add_adapter",
    "add_head",
    "attach_weights",
    "base_state_dict",
    "delete_adapter",
    "disable_adapters",
    "finish_load",
    "head_output",
    "list_adapters",
    "mark_only_adapters_trainable",
    "merge_adapters",
    "merge_and_unload",
    "set_active_adapters",
    "trainable_parameters",
    "unmerge_adapters",
]


@dataclasses.dataclass(frozen=True)
class AdapterInfo:
    name: str
    kind: str
    params: int  # the task heads' included
    modules: int
    active: bool
    merged: bool
    heads: tuple[str, ...] = ()  # paths of its task heads (a module copy's path, or "heads")


@dataclasses.dataclass(frozen=True)
class TrainableParams:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{human_count(self.trainable)} trainable params: {self.share:.2%} of {human_count(self.total)}"


# --- internals --------------------------------------------------------------------------------


def _layers(model: nn.Module) -> list[tuple[str, AdapterLayer]]:
    # iter_modules gives logical paths and visits stacked wrappers (bottleneck around LoRA, ...)
    check_model(model)
    out = []
    for path, module, _, _ in iter_modules(model):
        layer: nn.Module | None = module
        while isinstance(layer, AdapterLayer):
            out.append((path, layer))
            layer = inner_of(layer)
    return out


def _check_names(model: nn.Module, names: Sequence[str]) -> None:
    known = adapter_state(model).configs
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFoundError(
            f"unknown adapter(s) {', '.join(map(repr, unknown))}; the model has {sorted(known) or 'none'}"
        )


def _selection(model: nn.Module, names: object, default: Sequence[str]) -> list[str]:
    """`names` (one name, a list of names, or None for `default`) as a list of adapters the model has."""
    if names is None:
        selection = list(default)
    elif isinstance(names, str):
        selection = [names]
    elif isinstance(names, Iterable) and not isinstance(names, (bytes, Mapping)):
        selection = list(names)
        if not all(isinstance(n, str) for n in selection):
            raise UsageError(f"expected adapter names (strings), got {selection!r}")
    else:
        raise UsageError(f"expected an adapter name or a list of adapter names, got {names!r}")
    _check_names(model, selection)
    return selection


def _one(model: nn.Module, name: object) -> str:
    """`name`, checked to be one adapter of the model."""
    if not isinstance(name, str):
        raise UsageError(f"expected an adapter name (a string), got {name!r}")
    _check_names(model, [name])
    return name


def _layers_of(model: nn.Module, name: str) -> list[tuple[str, AdapterLayer]]:
    return [(p, layer) for p, layer in _layers(model) if name in layer.adapter_names]


def adapter_layers(model: nn.Module, name: str) -> list[tuple[str, AdapterLayer]]:
    """``(logical path, layer)`` of every adapter layer carrying adapter `name`, in model order.

    Exporters use it to tell how each module stores the adapter (embedding or linear LoRA, ...).
    """
    return _layers_of(model, _one(model, name))


def _merged(model: nn.Module) -> list[str]:
    seen: dict[str, None] = {}
    for _, layer in _layers(model):
        for n in layer.merged_adapters:
            seen[n] = None
    return list(seen)


def _apply_active(model: nn.Module, names: list[str], composition: Composition | None = None) -> None:
    """Make `names` the active list, or run `composition` (then `names` is ignored)."""
    root = composition.root if composition is not None else None
    if composition is not None:
        names = list(composition.adapters)
    for _, layer in _layers(model):
        layer.set_active(names)
        layer.set_composition(root)
    state = adapter_state(model)
    state.active = list(names) if composition is None else [*composition.adapters, *composition.fusions]
    state.composition = composition
    set_input_hook(model, composition is not None and (composition.copies > 1 or composition.batch is not None))


def _fuse_of(state: AdapterState, fusion: str) -> Fuse:
    """The Fuse block fusion `fusion` was made for (activating a fusion by name runs it)."""
    return Fuse(*(child_from_json(c) for c in getattr(state.configs[fusion], "children", [])), name=fusion)


def _is_fusion(state: AdapterState, name: str) -> bool:
    return state.configs[name].kind == "fusion"


def _fused_by(state: AdapterState, name: str) -> list[str]:
    """The fusions whose Fuse holds adapter `name`."""
    return [f for f, cfg in state.configs.items() if cfg.kind == "fusion" and name in _fuse_of(state, f).names()]


# --- attach / detach --------------------------------------------------------------------------


def add_adapter(model: nn.Module, name: str, config: AdapterConfig, *, activate: bool = True) -> list[str]:
    """Attach a new, trainable adapter `name`; return the module paths it touches.

    With ``activate`` (default) the new adapter becomes the only active one.
    """
    check_model(model)
    if not isinstance(name, str) or not name or "." in name:
        raise UsageError(f"invalid adapter name {name!r}: a non-empty string without '.'")
    state = adapter_state(model)
    if name in state.configs:
        raise UsageError(f"adapter {name!r} already exists; delete it first or pick another name")
    if not isinstance(config, AdapterConfig):
        raise UsageError(f"expected an AdapterConfig, got {type(config).__name__}")
    copies = _copy_paths(model)
    paths = config.inject(model, name)
    if not paths:
        raise TargetError(f"adapter {name!r} matched no module")
    state.configs[name] = config
    state.modules[name] = list(paths)
    replaced = [p for p in paths if _under(p, copies)]
    if replaced:  # the copy runs instead of the original: a layer there would never run
        delete_adapter(model, name)
        raise UsageError(
            f"adapter {name!r} targets {', '.join(replaced[:3])}, which a trained module copy replaces "
            f"(modules_to_save of {', '.join(sorted(_copies_at(model, replaced[0])))}); exclude it (exclude_modules)"
        )
    if activate and _is_fusion(state, name):
        _activate_composition(model, _fuse_of(state, name))
    elif activate:
        _apply_active(model, [name])
    else:
        _apply_active(model, state.active, state.composition)  # new layers learn the current selection
    return list(paths)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter `name`; wrappers left with no adapter are replaced by their base module."""
    _one(model, name)
    if name in _merged(model):
        raise UsageError(f"adapter {name!r} is merged; call unmerge_adapters(model) first")
    state = adapter_state(model)
    if state.composition is not None and name in state.active:
        raise UsageError(
            f"adapter {name!r} is part of the active composition {state.composition.block!r}; "
            "activate something else first"
        )
    fused = _fused_by(state, name)
    if fused:
        raise UsageError(f"adapter {name!r} is fused by {', '.join(map(repr, fused))}; delete the fusion first")
    for path, layer in _layers_of(model, name):
        layer.delete_adapter(name)
        if not layer.adapter_names and inner_of(layer) is not None:
            _replace_layer(model, path, layer)
        elif not layer.adapter_names and isinstance(layer, HeadLayer):
            delattr(model, HEADS_PATH)  # the last prediction head: model.heads goes too
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
    """One :class:`AdapterInfo` per adapter, in the order they were attached."""
    state = adapter_state(model)
    merged = set(_merged(model))
    counts: dict[str, int] = {n: 0 for n in state.configs}
    heads: dict[str, list[str]] = {n: [] for n in state.configs}
    for path, layer in _layers(model):
        for n in layer.adapter_names:
            if n in counts:
                counts[n] += sum(t.numel() for t in layer.adapter_state_dict(n).values())
                if isinstance(layer, (ModuleCopyLayer, HeadLayer)):
                    heads[n].append(path)
    return [
        AdapterInfo(
            n, cfg.kind, counts[n], len(state.modules.get(n, [])), n in state.active, n in merged, tuple(heads[n])
        )
        for n, cfg in state.configs.items()
    ]


# --- heads ------------------------------------------------------------------------------------


def _under(path: str, paths: set[str]) -> bool:
    """Whether `path` is one of `paths` or lies inside one of them."""
    return path in paths or _module_of(path, paths) is not None


def _copy_paths(model: nn.Module) -> set[str]:
    """Paths where a module copy (of any adapter) replaces the model's module."""
    return {path for path, layer in _layers(model) if isinstance(layer, ModuleCopyLayer)}


def _copies_at(model: nn.Module, path: str) -> list[str]:
    """The adapters whose module copy replaces `path` or a module above it."""
    return [
        n
        for p, layer in _layers(model)
        if isinstance(layer, ModuleCopyLayer) and (path == p or path.startswith(p + "."))
        for n in layer.adapter_names
    ]


def _head_layers(model: nn.Module, name: str) -> list[tuple[str, AdapterLayer]]:
    return [(p, layer) for p, layer in _layers_of(model, name) if isinstance(layer, (ModuleCopyLayer, HeadLayer))]


def add_head(model: nn.Module, name: str, head: HeadSpec) -> str:
    """Give adapter `name` a task head; return its module path.

    ``ModuleCopy(path)``: a trainable copy of the model's module at `path` runs in its place while
    the adapter is active (PEFT's ``modules_to_save``); the original stays, for the base and the
    other adapters. ``HeadConfig(...)``: a new prediction head at ``model.heads[name]`` (path
    ``heads``) that reads the model's output (AdapterHub's heads; see :func:`head_output`). Either is
    part of the adapter from then on: it trains, saves, counts and goes with it.
    """
    _one(model, name)
    state = adapter_state(model)
    if isinstance(head, ModuleCopy):
        path = _add_copy(model, name, head.path)
    elif isinstance(head, HeadConfig):
        path = _add_prediction_head(model, name, head)
    else:
        raise UsageError(f"expected a ModuleCopy or a HeadConfig, got {type(head).__name__}")
    state.modules[name].append(path)
    layer = get_module(model, path)  # outermost: no adapter layer may wrap a copy (add_adapter refuses)
    if isinstance(layer, AdapterLayer):
        layer.set_active(state.active)
    return path


def _add_copy(model: nn.Module, name: str, path: str) -> str:
    module = get_module(model, path)  # TargetError when the model has no such module
    layers_under = [p for p, _ in _layers(model) if p == path or p.startswith(path + ".")]
    if not isinstance(module, ModuleCopyLayer) and layers_under:
        raise UsageError(
            f"{path}: a module copy cannot replace a module that carries adapter layers ({layers_under[0]})"
        )
    nested = [p for p in _copy_paths(model) if p != path and (p.startswith(path + ".") or path.startswith(p + "."))]
    if nested:
        raise UsageError(f"{path}: a module copy cannot sit inside or around another one ({nested[0]})")
    if isinstance(module, ModuleCopyLayer):
        if name in module.adapter_names:
            raise UsageError(f"adapter {name!r} already has a copy of {path}")
        layer = module
    else:
        if not path:
            raise UsageError("a module copy replaces one module of the model, not the whole model")
        layer = ModuleCopyLayer(module)
        set_module(model, path, layer)
    layer.add(name)
    return path


def _add_prediction_head(model: nn.Module, name: str, config: HeadConfig) -> str:
    existing = model._modules.get(HEADS_PATH)
    if existing is None and hasattr(model, HEADS_PATH):
        raise UsageError(f"the model has its own attribute {HEADS_PATH!r}; prediction heads cannot be placed there")
    if existing is not None and not isinstance(existing, HeadLayer):
        raise UsageError(f"the model has its own module {HEADS_PATH!r}; prediction heads cannot be placed there")
    head = build_head(config, model)
    layer = existing if isinstance(existing, HeadLayer) else HeadLayer()
    layer.add(name, head)
    if existing is None:
        setattr(model, HEADS_PATH, layer)
    return HEADS_PATH


def adapter_heads(model: nn.Module, name: str) -> list[HeadSpec]:
    """The task heads of adapter `name` (what :func:`add_head` was given), in model order."""
    _one(model, name)
    out: list[HeadSpec] = []
    for path, layer in _head_layers(model, name):
        if isinstance(layer, ModuleCopyLayer):
            out.append(ModuleCopy(path))
        elif isinstance(layer, HeadLayer):
            out.append(layer[name].head_config)
    return out


def head_output(model: nn.Module, outputs: object, name: str | None = None) -> torch.Tensor:
    """The prediction head's logits for the base model's `outputs` (what ``model(**batch)`` returned,
    or its ``last_hidden_state``): adapter `name`'s head, or the one active adapter's with a head.

    The model's forward is left as it is; ``model.heads[name](outputs)`` is the same call."""
    heads = check_model(model)._modules.get(HEADS_PATH)
    if not isinstance(heads, HeadLayer):
        raise NotFoundError("the model has no prediction heads (an adapter loaded with one adds model.heads)")
    if name is not None:
        _one(model, name)
        if name not in heads:
            raise NotFoundError(f"adapter {name!r} has no prediction head; heads: {heads.adapter_names}")
    return heads(outputs, name)


def _check_copies_selection(model: nn.Module, selection: Sequence[str]) -> None:
    """Two active adapters cannot each replace the same module with their own copy (PEFT refuses too)."""
    for path, layer in _layers(model):
        if isinstance(layer, ModuleCopyLayer):
            both = [n for n in selection if n in layer.adapter_names]
            if len(both) > 1:
                raise UsageError(f"adapters {both} each replace {path} with their own trained copy; activate one")


# --- activation -------------------------------------------------------------------------------


def set_active_adapters(model: nn.Module, names: str | Sequence[str] | Block | None) -> None:
    """Activate one adapter, several (their outputs add up), a composition block (``Stack``,
    ``Parallel``, ``Average``, ``BatchSplit``, ``Fuse``: :mod:`.compose`), or none (``None`` / ``[]``).

    A block is checked whole here (names, nestings, weights, batch sizes), before any forward; a
    fusion's name activates its ``Fuse``.
    """
    if isinstance(names, Block):
        _activate_composition(model, names)
        return
    selection = _selection(model, names, [])
    state = adapter_state(model)
    fusions = [n for n in selection if _is_fusion(state, n)]
    if fusions and len(selection) == 1:
        _activate_composition(model, _fuse_of(state, fusions[0]))
        return
    if fusions:
        raise UsageError(
            f"{fusions[0]!r} is a fusion: activate it alone, or as {_fuse_of(state, fusions[0])!r} inside a block"
        )
    _check_copies_selection(model, selection)
    merged = _merged(model)
    # the order counts too: DoRA rescales what the adapters before it produced, and merges follow it
    if merged and selection != list(adapter_state(model).active):
        raise UsageError(f"adapters {merged} are merged into the weights; unmerge_adapters(model) before switching")
    _apply_active(model, selection)


def _activate_composition(model: nn.Module, block: Block) -> None:
    state = adapter_state(model)
    composition = check_composition(block, state.configs)
    merged = _merged(model)
    if merged:
        raise UsageError(
            f"adapters {merged} are merged into the weights, which every row shares; "
            f"unmerge_adapters(model) before activating {block!r}"
        )
    _check_copies_selection(model, composition.adapters)
    for path, layer in _layers(model):
        per_row = sorted(set(layer.adapter_names) & composition.row_adapters)
        if isinstance(layer, ModuleCopyLayer) and per_row:
            raise UsageError(
                f"{block!r}: adapter {per_row[0]!r} has a trained copy of {path}, which would run for every row; "
                "Parallel and BatchSplit cannot give rows their own module copies"
            )
    _apply_active(model, [], composition)


def active_composition(model: nn.Module) -> Block | None:
    """The active composition block (None when a plain list, or nothing, is active)."""
    composition = adapter_state(model).composition
    return composition.block if composition is not None else None


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Run the bare base model inside the block; the previous selection (composition, merges) comes back after."""
    state = adapter_state(model)
    previous, composition, merged = list(state.active), state.composition, _merged(model)
    if merged:
        unmerge_adapters(model)
    _apply_active(model, [])
    try:
        yield model
    finally:
        _apply_active(model, previous, composition)
        if merged:
            merge_adapters(model, merged)


# --- merging ----------------------------------------------------------------------------------


def merge_adapters(
    model: nn.Module,
    names: str | Sequence[str] | None = None,
    *,
    safe: bool = False,
    untie: bool = False,
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
    if state.composition is not None:
        raise UsageError(
            f"the composition {state.composition.block!r} is active and merged weights are shared by every row; "
            "set_active_adapters(model, names) before merging"
        )
    selection = _selection(model, names, state.active)
    configs = state.configs
    fixed = [n for n in selection if not getattr(configs[n], "mergeable", True)]
    if fixed:  # refuse before touching any weight
        raise UsageError(f"adapter(s) {fixed} cannot be merged ({configs[fixed[0]].kind} adapters are not linear)")
    # forward order first, then selected adapters that are not active, in the order given
    order = [n for n in state.active if n in selection] + [n for n in selection if n not in state.active]
    layers = [(p, layer) for p, layer in _layers(model) if any(n in layer.adapter_names for n in order)]
    plan = [
        (p, layer, [n for n in order if n in layer.adapter_names and n not in layer.merged_adapters])
        for p, layer in layers
    ]
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
    untied: list[tuple[nn.Module, str, torch.Tensor]] = []
    for _, _, module, _ in tied:
        old = weight_of(module)
        if old is not None:
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
                raise UsageError(
                    f"merging {order} gives non-finite weights in {', '.join(bad[:5])}; base left unchanged"
                )
    except Exception:
        if safe:
            with torch.no_grad():
                for p, data in snapshot:
                    p.copy_(data)  # in place: keeps storage and ties
            for module, attr, old in untied:
                setattr(module, attr, old)  # tie back what untie split
            for _, layer, _ in plan:
                layer.merged_adapters[:] = saved_merged[id(layer)]
                layer._refresh()
        raise
    config = getattr(model, "config", None)
    if untied and config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False  # a save + reload must not tie the merged weight back


def _tied_weights(
    model: nn.Module,
    plan: list[tuple[str, AdapterLayer, list[str]]],
) -> list[tuple[str, str, nn.Module, list[str]]]:
    """``(path, "weight", base module, other parameter names)`` for each weight to merge whose memory
    overlaps another parameter of the model (tied embeddings / LM head, views of one tensor)."""
    targets: list[tuple[str, nn.Module, torch.Tensor]] = []
    for path, layer, _ in plan:
        module = base_of(layer)
        weight = weight_of(module)
        if weight is not None and not weight.is_meta:
            targets.append((path, module, weight))
    if not targets:
        return []
    by_storage: dict[int, list[tuple[str, tuple[int, int]]]] = {}
    for pname, param in model.named_parameters(remove_duplicate=False):
        if not param.is_meta and param.numel():
            logical = ".".join(part for part in pname.split(".") if part != "base_layer")
            by_storage.setdefault(param.untyped_storage().data_ptr(), []).append((logical, _span(param)))
    out = []
    for path, module, weight in targets:
        lo, hi = _span(weight)
        others = [
            n
            for n, (a, b) in by_storage.get(weight.untyped_storage().data_ptr(), [])
            if a < hi and lo < b and n != f"{path}.weight"
        ]
        if others:
            out.append((path, "weight", module, others))
    return out


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The byte range a tensor's elements occupy (strided views included)."""
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if size)
    start = t.data_ptr()
    return start, start + (last + 1) * t.element_size()


def unmerge_adapters(model: nn.Module) -> None:
    """Take every merged adapter out of the base weights again (forward then runs them unmerged)."""
    for _, layer in _layers(model):
        if layer.merged_adapters:
            layer.unmerge()


def merge_and_unload(
    model: nn.Module,
    names: str | Sequence[str] | None = None,
    *,
    safe: bool = False,
    untie: bool = False,
    requantize: bool = False,
) -> nn.Module:
    """Merge `names` (default: active) and remove every adapter layer; returns the plain model (same object).

    Adapters not merged (inactive ones, bottlenecks) are dropped, and every layer is released (no
    hook is left on the base modules). ``safe``/``untie`` as in :func:`merge_adapters`. On a 4-bit base
    (:mod:`.quant`) LoRA merges into a dense copy of the dequantized weight; ``requantize`` quantizes
    those layers again as the rest of the model is, warning with the error that costs.
    """
    layers = list(reversed(_layers(model)))  # innermost first
    heads = [path for path, layer in layers if isinstance(layer, HeadLayer)]
    if heads:  # before merging anything
        raise UsageError(
            f"adapters {_layers_names(model, heads[0])} have prediction heads ({heads[0]}), which unloading "
            "would drop; merge_adapters(model) keeps them"
        )
    stuck = [f"{layer.kind} adapter layer at {path}" for path, layer in layers if inner_of(layer) is None]
    if stuck:  # before merging anything
        raise UsageError(f"{stuck[0]} cannot be unloaded")
    quantization = quantization_of(model) if requantize else None
    if requantize and quantization is None:
        raise UsageError("requantize=True: the model has no 4-bit layers")
    merge_adapters(model, names, safe=safe, untie=untie)
    dense = [path for path, layer in layers if getattr(layer, "_quantized_base", None) is not None]
    for path, layer in layers:
        _replace_layer(model, path, layer)
    if hasattr(model, "_ah_state"):
        object.__delattr__(model, "_ah_state")
    if quantization is not None and dense:
        _requantize(model, dense, quantization)
    return model


def _requantize(model: nn.Module, paths: list[str], quantization: Quantization) -> None:
    """Quantize the merged layers at `paths` again; warn with ``max |W - dequant(quant(W))| / max |W|``."""
    merged = {path: weight_of(get_module(model, path)) for path in paths}
    q = quantization
    quantize_modules(model, paths, q.quant_type, q.blocksize, q.double_quant, q.compute_dtype)
    worst = 0.0
    for path, weight in merged.items():
        assert weight is not None
        layer = get_module(model, path)
        assert isinstance(layer, Linear4bit)
        back = layer.dequantize(weight.dtype)
        worst = max(worst, float((weight - back).abs().max() / weight.abs().max().clamp_min(1e-30)))
    warnings.warn(
        AdapterWarning(
            f"requantized {len(paths)} merged layers to {q.quant_type}: the 4-bit weights differ from the merged "
            f"ones by up to {worst:.3g} of their largest entry (keep requantize=False for the exact merge)"
        ),
        stacklevel=2,
    )


def _layers_names(model: nn.Module, path: str) -> list[str]:
    return [n for p, layer in _layers(model) if p == path for n in layer.adapter_names]


# --- training ---------------------------------------------------------------------------------


def _bias_params(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Base biases that train with adapter `name` (LoRA's ``bias`` = ``all`` | ``lora_only``)."""
    return [b for _, b in _named_bias(model, name)]


def adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The live parameters of adapter `name` (for optimizers and freezing)."""
    _one(model, name)
    return [p for _, layer in _layers_of(model, name) for p in layer.adapter_parameters(name)]


def mark_only_adapters_trainable(model: nn.Module, names: str | Sequence[str] | None = None) -> TrainableParams:
    """Freeze everything but the adapters' parameters (default: every adapter); return the share."""
    state = adapter_state(model)
    selection = _selection(model, names, list(state.configs))
    for p in model.parameters():
        p.requires_grad_(False)
    for n in selection:
        for p in adapter_parameters(model, n) + _bias_params(model, n):
            p.requires_grad_(True)
    return trainable_parameters(model)


def parameter_count(model: nn.Module) -> int:
    """Every parameter of `model`, a 4-bit layer's weight counted as the ``out x in`` values it stands for
    (its codes are buffers, not parameters)."""
    check_model(model)
    quantized = sum(layer.out_features * layer.in_features for _, layer in quantized_layers(model))
    return sum(p.numel() for p in model.parameters()) + quantized


def trainable_parameters(model: nn.Module) -> TrainableParams:
    """How many parameters train (``requires_grad``) out of all of them (`parameter_count`)."""
    trainable = sum(p.numel() for p in check_model(model).parameters() if p.requires_grad)
    return TrainableParams(trainable, parameter_count(model))


def adapter_summary(model: nn.Module) -> str:
    """A table of the adapters (name, kind, params with the heads', modules, heads, active, merged) and
    the trainable share."""
    rows = [
        (
            a.name,
            a.kind,
            f"{a.params:,}",
            a.modules,
            ", ".join(a.heads),
            "yes" if a.active else "",
            "yes" if a.merged else "",
        )
        for a in list_adapters(model)
    ]
    table = format_table(rows, ("name", "kind", "params", "modules", "heads", "active", "merged"))
    return f"{table}\n{trainable_parameters(model)}"


# --- weights in and out -----------------------------------------------------------------------


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's ``state_dict()``: no adapter tensors, no ``base_layer`` hops.

    With merged adapters the weights hold the merge; callers that need the pristine base check
    ``list_adapters`` first.
    """
    out: dict[str, torch.Tensor] = {}
    for path, module, _, _ in iter_modules(check_model(model)):
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
    return _tensors(model, _one(model, name))


def _tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
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
    copies = _copy_paths(model)  # a copy's bias is the copy's; the original under it does not run
    out, seen = [], set()
    for path, module, _, _ in iter_modules(model):  # base modules only: adapter internals are skipped
        bias = getattr(base_of(module), "bias", None)
        if not isinstance(bias, nn.Parameter) or id(bias) in seen or (own is not None and path not in own):
            continue
        if _under(path, copies):
            continue
        seen.add(id(bias))
        out.append((f"{path}.bias", bias))
    return out


def attach_weights(
    model: nn.Module,
    name: str,
    config: AdapterConfig,
    tensors: Mapping[str, torch.Tensor],
    *,
    trainable: bool = False,
    activate: bool = True,
    where: str = "adapter",
    source_key: Callable[[str], str] | None = None,
    heads: Sequence[HeadSpec] = (),
) -> str:
    """Attach adapter `name` from `config` and fill it with `tensors` (package keys); strict.

    Every reader (our package format, PEFT, AdapterHub) ends here. Keys saved from a model with (or
    without) a task head around the same backbone are re-rooted first (:func:`_prefix_shift`).
    Raises :class:`AdapterWeightsError` naming the keys when a tensor lands on no module, a module is
    left without its weights or a shape differs; the model is left as it was. ``source_key`` tells
    how the file names a package key, so messages name what the user can find in the file.
    ``heads`` (:func:`add_head`) are attached with the adapter and filled from `tensors` as strictly
    (their keys: ``<module path>.<param>`` of a copy, ``heads.<index>.<param>`` of a prediction head);
    their paths are the model's own, so they take no part in re-rooting.
    """
    check_model(model)
    if not isinstance(tensors, Mapping):
        raise UsageError(f"expected a mapping of names to tensors, got {type(tensors).__name__}")
    bad = [repr(k) for k, t in tensors.items() if not isinstance(k, str) or not isinstance(t, torch.Tensor)]
    if bad:
        raise AdapterWeightsError(f"{where}: not a tensor under a string key: {_few(bad)}")
    source = source_key or (lambda key: key)
    heads = list(heads)
    paths = add_adapter(model, name, config, activate=False)
    try:
        for head in heads:
            add_head(model, name, head)
        head_paths = {p for p, _ in _head_layers(model, name)}
        own = {k: t for k, t in tensors.items() if _module_of(k, head_paths) is None}
        rewrite = _prefix_shift(model, name, own)
        if rewrite is not None:
            tensors = {(rewrite.to_local(k) if k in own else k): t for k, t in tensors.items()}
            source = _composed(source, rewrite, head_paths)
            # path-dependent options (LoRA rank/alpha patterns) were matched against our paths, but
            # written for the source model's: re-attach with them re-expressed if that changes anything
            rebased = config.for_paths(paths, rewrite.to_source)
            if rebased is not config:
                delete_adapter(model, name)
                paths = add_adapter(model, name, rebased, activate=False)
                for head in heads:
                    add_head(model, name, head)
        _fill(model, name, tensors, where, source)
    except Exception:
        if name in adapter_state(model).configs:
            delete_adapter(model, name)
        raise
    return finish_load(model, name, trainable=trainable, activate=activate)


def _composed(source: Callable[[str], str], rewrite: PathRewrite, heads: set[str]) -> Callable[[str], str]:
    """The file's name of a re-rooted key; keys of the heads at `heads` were not re-rooted."""
    return lambda key: source(key if _module_of(key, heads) is not None else rewrite.to_source(key))


def finish_load(model: nn.Module, name: str, *, trainable: bool, activate: bool) -> str:
    """The last step of every load: freeze (unless trainable) and make it the only active one."""
    for p in adapter_parameters(model, name):
        p.requires_grad_(trainable)
    if activate:
        set_active_adapters(model, [name])
    return name


def _module_of(key: str, paths: Mapping[str, object] | set[str]) -> str | None:
    """The longest module path in `paths` that `key` lies under (``<path>.<param>``), or None."""
    prefix = key
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        if prefix in paths:
            return prefix
    return None


def _prefix_shift(model: nn.Module, name: str, tensors: Mapping[str, torch.Tensor]) -> PathRewrite | None:
    """Re-root keys saved from a model with (or without) a task head around the same backbone.

    An adapter trained on ``LlamaForCausalLM`` has ``model.layers...`` keys; given a ``LlamaModel``
    the paths are ``layers...`` (and the other way round). The rewrite is
    :func:`~..modpaths.align_paths`' (the one rule for module-path prefixes), and it is used only
    if it makes *every* key land on a module adapter `name` was attached to; otherwise None, and the
    keys are left for the strict check.
    """
    expected = _tensors(model, name)
    targets = {p for p, _ in _layers_of(model, name)}

    def lands(key: str) -> bool:
        return key in expected or _module_of(key, targets) is not None

    keys = list(tensors)
    if not keys or all(lands(k) for k in keys):
        return None
    rewrite = align_paths(keys, expected)
    if rewrite.identity or not all(lands(rewrite.to_local(k)) for k in keys):
        return None
    return rewrite


def _fill(
    model: nn.Module, name: str, tensors: Mapping[str, torch.Tensor], where: str, source: Callable[[str], str]
) -> None:
    """Check every key and shape against adapter `name`'s layers, then load; all or nothing."""
    layers = dict(_layers_of(model, name))
    grouped: dict[str, dict[str, torch.Tensor]] = {p: {} for p in layers}
    biases = dict(_named_bias(model, name))
    problems: list[str] = []
    for key, t in tensors.items():
        if key in biases:
            continue
        path = _module_of(key, grouped)
        if path is None:
            problems.append(f"unexpected {source(key)} (matches no adapted module)")
        else:
            grouped[path][key[len(path) + 1 :]] = t
    for path, layer in layers.items():
        own, got = layer.adapter_state_dict(name), grouped[path]
        problems += [f"missing {source(f'{path}.{k}')}" for k in own if k not in got]
        problems += [f"unexpected {source(f'{path}.{k}')}" for k in got if k not in own]
        problems += [
            f"wrong shape {source(f'{path}.{k}')} {tuple(t.shape)} (expected {tuple(own[k].shape)})"
            for k, t in got.items()
            if k in own and t.shape != own[k].shape
        ]
    for key, bias in biases.items():
        if key not in tensors:
            problems.append(f"missing {source(key)}")
        elif tensors[key].shape != bias.shape:
            problems.append(f"wrong shape {source(key)} {tuple(tensors[key].shape)} (expected {tuple(bias.shape)})")
    if problems:
        raise AdapterWeightsError(f"{where}: weights do not fit the model: {_few(problems)}")
    for path, layer in layers.items():
        try:
            layer.load_adapter_state_dict(name, grouped[path])
        except AdapterWeightsError as exc:  # whatever else a layer refuses
            raise AdapterWeightsError(f"{where}: {path}: {exc}") from None
    with torch.no_grad():
        for k, b in biases.items():
            b.copy_(tensors[k])


def _few(items: Sequence[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
