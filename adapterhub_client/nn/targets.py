"""Which modules an adapter attaches to: PEFT's targeting rules, shared by every adapter kind.

Paths are *logical*: the module's path in the plain model, as ``named_modules()`` shows it before
any adapter was attached. A wrapping :class:`~.base.AdapterLayer` keeps its base module under
``base_layer``; logical paths skip that hop, so a path (and the tensor keys built from it) does not
depend on which adapters were attached first.

Rules (as in PEFT's ``check_target_module_exists``):

* ``target_modules`` a list: a path matches if it equals an entry or ends with ``"." + entry``;
* a string: ``re.fullmatch`` against the path; ``"all-linear"``: every ``nn.Linear`` / GPT-2
  ``Conv1D`` except the output embedding (LM head) when the model exposes ``get_output_embeddings``;
* ``exclude_modules``: the same list/regex rule, applied first;
* ``layers_to_transform`` (list targets only): keep paths whose layer index -- the number after
  ``layers_pattern`` (or, without it, the first ``<name>.<index>.`` segment) -- is listed; a path
  equal to a list entry (``"embed_tokens"``) is kept regardless, as PEFT does;
* ``rank_pattern`` / ``alpha_pattern``: the first key ``k`` with ``re.match(rf"(.*\\.)?({k})$", path)``.

It also owns the torch side of module kinds: :func:`kind_of` classifies a live module in the
vocabulary of :mod:`.layout` (the one place that tells Linear, GPT-2 Conv1D and Embedding apart).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .base import AdapterLayer, inner_of
from .layout import CONV1D, EMBEDDING, LINEAR

ALL_LINEAR = "all-linear"


class TargetError(UsageError):
    """A target spec that matches nothing, or matches a module the adapter kind cannot wrap."""


# --- module kinds ----------------------------------------------------------------------------


def is_conv1d(module: nn.Module) -> bool:
    """GPT-2 style ``Conv1D``: ``y = x @ W + b`` with ``W`` stored ``[in, out]`` (fan_in_fan_out).

    Detected by class name and layout so transformers is never imported.
    """
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and weight is not None
        and weight.dim() == 2
        and getattr(module, "nf", weight.shape[1]) == weight.shape[1]
    )


def is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` or GPT-2 ``Conv1D``: what ``"all-linear"`` targets."""
    return kind_of(module) in (LINEAR, CONV1D)


def kind_of(module: nn.Module) -> str | None:
    """How `module` stores its weight (:mod:`.layout`: linear / conv1d / embedding), None for other modules."""
    declared = getattr(type(module), "layout_kind", None)  # a layer storing its weight otherwise (4-bit codes)
    if isinstance(declared, str):
        return declared
    if isinstance(module, nn.Embedding):
        return EMBEDDING
    if is_conv1d(module):
        return CONV1D
    if isinstance(module, nn.Linear):
        return LINEAR
    return None


def base_of(module: nn.Module) -> nn.Module:
    """The plain module under any stack of wrapping adapter layers."""
    while (inner := inner_of(module)) is not None:
        module = inner
    return module


def weight_of(module: nn.Module) -> torch.Tensor | None:
    """A module's ``weight`` tensor, None if it has none."""
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


# --- walking logical paths -------------------------------------------------------------------


def iter_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Module | None, str]]:
    """Yield ``(logical_path, module, parent, attr)`` for every module, root first.

    ``module`` is what sits at the path (possibly a wrapping adapter layer); ``parent``/``attr``
    locate it for replacement. Adapter layers' own submodules (their weights, not the model's) are
    skipped; only their ``base_layer`` is descended into, under the wrapper's logical path.
    """
    stack: list[tuple[str, nn.Module, nn.Module | None, str]] = [("", model, None, "")]
    while stack:
        path, module, parent, attr = stack.pop()
        yield path, module, parent, attr
        inner = module
        if isinstance(module, AdapterLayer):
            wrapped = inner_of(module)
            if wrapped is None:
                continue
            inner = base_of(wrapped)  # the base module's own children, under the wrapper's logical path
        children = list(inner._modules.items())
        for name, child in reversed(children):  # reversed + stack pop = named_modules() order
            if child is not None:
                stack.append((f"{path}.{name}" if path else name, child, inner, name))


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The module at a logical path (a wrapper if one sits there); :class:`TargetError` if none."""
    module = model
    if not path:
        return module
    for part in path.split("."):
        module = base_of(module)
        child = module._modules.get(part)
        if child is None:
            raise TargetError(f"the model has no module {path!r}")
        module = child
    return module


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` at a logical path, replacing what sits there."""
    parent_path, _, attr = path.rpartition(".")
    parent = base_of(get_module(model, parent_path))
    setattr(parent, attr, new)


# --- matching --------------------------------------------------------------------------------


def _name_match(spec: str | Sequence[str], path: str) -> bool:
    if isinstance(spec, str):
        return re.fullmatch(spec, path) is not None
    return any(path == t or path.endswith("." + t) for t in spec)


def layer_index(path: str, layers_pattern: str | Sequence[str] | None = None) -> int | None:
    """The transformer-block index in `path` (the first numbered segment), or None."""
    if not layers_pattern:
        m = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", path)
    else:
        patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern)
        m = None
        for pattern in patterns:
            m = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", path)
            if m:
                break
    return int(m.group("idx")) if m else None


def pattern_value(patterns: Mapping[str, Any] | None, path: str, default: Any) -> Any:
    """PEFT's ``rank_pattern``/``alpha_pattern`` lookup: first key matching the end of `path`."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def _output_embedding(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    if not callable(getter):
        return None
    try:
        return getter()
    except (NotImplementedError, AttributeError):
        return None


def select_modules(
    model: nn.Module,
    target_modules: str | Sequence[str] | None,
    *,
    exclude_modules: str | Sequence[str] | None = None,
    layers_to_transform: int | Sequence[int] | None = None,
    layers_pattern: str | Sequence[str] | None = None,
    supported: Callable[[nn.Module], bool] = is_linear,
    what: str = "adapter",
) -> list[tuple[str, nn.Module]]:
    """Resolve a target spec to ``[(logical_path, module_at_path)]`` in model order.

    A module matched by name but not `supported` (e.g. ``"attention"`` naming a block) raises
    :class:`TargetError`, as PEFT does; so does a spec that matches nothing.
    """
    if target_modules is None:
        raise TargetError(f"{what}: target_modules is required")
    all_linear = isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR
    if isinstance(target_modules, str) and not all_linear and layers_to_transform not in (None, []):
        raise TargetError(f"{what}: layers_to_transform cannot be used with a regex target_modules")
    if isinstance(layers_to_transform, int):
        layers_to_transform = [layers_to_transform]
    skip = _output_embedding(model) if all_linear else None

    found: list[tuple[str, nn.Module]] = []
    unsupported: list[str] = []
    for path, module, _parent, _attr in iter_modules(model):
        if not path:
            continue
        base = base_of(module)
        if all_linear:
            if not is_linear(base) or base is skip:
                continue
        elif not _name_match(target_modules, path):
            continue
        if exclude_modules and _name_match(exclude_modules, path):
            continue
        # PEFT quirk kept for compatibility: an exact full-path entry bypasses the layer filter
        if (
            layers_to_transform
            and (all_linear or path not in target_modules)
            and layer_index(path, layers_pattern) not in layers_to_transform
        ):
            continue
        if not supported(base):
            unsupported.append(f"{path} ({type(base).__name__})")
            continue
        found.append((path, module))
    if unsupported:
        raise TargetError(f"{what}: target modules of an unsupported type: {', '.join(unsupported)}")
    if not found:
        raise TargetError(f"{what}: target_modules {target_modules!r} matched no module of the model")
    return found
