"""The contract every adapter kind implements; `nn/model.py` builds the public API on it.

An adapter kind (LoRA, bottleneck, ...) provides:

* a config dataclass subclassing :class:`AdapterConfig` (``kind``, ``to_dict``/``from_dict``,
  and ``inject(model, name)`` which wraps or hooks the modules it targets and returns their paths),
  validated when constructed (``__post_init__`` raises :class:`~..errors.AdapterConfigError` naming
  the field and what it accepts; the ``check_*`` helpers here phrase those messages);
* layer modules subclassing :class:`AdapterLayer`, placed in the model by ``inject``.

The model stays a plain ``nn.Module``: per-model bookkeeping lives in ``model._ah_state``
(an :class:`AdapterState`), never in a wrapper class. In memory only: no files here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeGuard

import torch
from torch import nn

from ..errors import AdapterConfigError, UnsupportedAdapterError, UsageError
from .compose import Composition, Node, leaves


class AdapterConfig:
    """Base of every adapter config. Subclasses are dataclasses."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[AdapterConfig]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            AdapterConfig.registry[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        """The config a ``to_dict`` (plus ``type``/``kind`` on the base class) describes; keys that are
        not fields are ignored, values are validated as in the constructor. On the base class the
        kind must be registered (its module imported: ``nn.lora``, ``nn.bottleneck``)."""
        if not isinstance(data, Mapping):
            raise AdapterConfigError(f"an adapter config must be a mapping, got {type(data).__name__}")
        if cls is AdapterConfig:
            kind = data.get("type") or data.get("kind")
            if not isinstance(kind, str) or kind not in AdapterConfig.registry:
                raise UnsupportedAdapterError(
                    f"unknown adapter type {kind!r}; the known types are {sorted(AdapterConfig.registry)}"
                )
            return AdapterConfig.registry[kind].from_dict(data)
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in fields})

    def inject(self, model: nn.Module, name: str) -> list[str]:
        """Attach a new adapter `name` to `model`; return the module paths touched."""
        raise NotImplementedError

    def for_paths(self, paths: list[str], to_source: Callable[[str], str]) -> AdapterConfig:
        """This config for a model whose module paths differ from the model it was written for.

        `paths` are the modules it attached to here; ``to_source(path)`` is the same module's path
        in the original model (a task model vs its backbone: ``model.layers.0...`` vs ``layers.0...``).
        Return a config that gives every path here what the original gave its source path (``self``
        when nothing in the config depends on paths beyond targeting).
        """
        return self


class AdapterLayer(nn.Module):
    """A module carrying one or more named adapters of a single kind.

    Subclasses keep per-adapter parameters in ``nn.ModuleDict``/``nn.ParameterDict`` keyed by
    adapter name, so ``state_dict`` keys contain the name and the model's own keys move under
    ``base_layer.`` only where a layer wraps a base module.

    What forward runs, in this order (the first that applies wins):

    1. ``_route`` (per-sample routing, set by ``nn/routing.py``; a plain object, never an
       ``nn.Module``, which would register as a submodule): when not None, the layer's forward is
       exactly ``return self._route.lora_forward(self, x, *args, **kwargs)`` in ``LoRALinear`` and
       ``LoRAEmbedding``, and ``return self._route.bottleneck_forward(self, *args, **kwargs)`` in
       ``BottleneckLayer`` (the layer's own call arguments, untouched). This contract is stable.
    2. ``_composition`` (a :class:`~.compose.Plan` projected onto this layer's adapters by
       ``set_composition``): the composition blocks of :mod:`.compose`.
    3. ``active_adapters`` minus ``merged_adapters``: today's list semantics (outputs add).
    """

    kind: ClassVar[str] = ""
    base_layer: nn.Module  # the module a wrapping layer wraps (see inner_of); not every layer wraps one
    # class-level defaults: a read costs one attribute lookup on the fast path of every forward
    _route: Any = None
    _composition: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []

    # --- to implement -------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        raise NotImplementedError

    def delete_adapter(self, name: str) -> None:
        raise NotImplementedError

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """Tensors of adapter `name`, keyed relative to this layer, without the adapter name."""
        raise NotImplementedError

    def load_adapter_state_dict(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`adapter_state_dict`; raises :class:`~..errors.AdapterWeightsError` naming
        missing, unexpected or mis-shaped keys (relative to this layer) and loads nothing then."""
        raise NotImplementedError

    def check_merge(self, names: list[str]) -> None:
        """Raise :class:`~..errors.UsageError` if merging `names` here would change the outputs.

        Called on every layer before any weight is touched, so a refused merge changes nothing.
        """

    def merge(self, names: list[str]) -> None:
        raise NotImplementedError(f"{self.kind} adapters cannot be merged into the base weights")

    def unmerge(self) -> None:
        raise NotImplementedError(f"{self.kind} adapters cannot be merged into the base weights")

    def release(self) -> None:
        """Undo whatever this layer did to modules outside itself (hooks on other modules, ...).

        Called when the layer leaves the model (``merge_and_unload``, or replaced by its base module
        after its last adapter is deleted); the default has nothing to undo.
        """

    # --- shared -------------------------------------------------------------------
    def adapter_parameters(self, name: str) -> Iterator[nn.Parameter]:
        """The live parameters of adapter `name` (for freezing, optimizers, counting).

        Default: the entry `name` of each ``ModuleDict``/``ParameterDict`` child (``base_layer``
        aside), which is the keyed-by-name convention above. Only the adapter-name slot is
        compared, so an adapter called ``lora_B`` does not claim other adapters' ``lora_B.<name>``.
        """
        for attr, child in self.named_children():
            if attr == "base_layer" or not isinstance(child, (nn.ModuleDict, nn.ParameterDict)) or name not in child:
                continue
            entry = child[name]
            if isinstance(entry, nn.Parameter):
                yield entry
            else:
                yield from entry.parameters()

    def set_active(self, names: list[str]) -> None:
        self.active_adapters = [n for n in names if n in self.adapter_names]
        self._refresh()

    def set_composition(self, root: Node | None) -> None:
        """Take the active composition's tree (None: none is active). Kinds that run compositions keep
        it projected onto their adapters (``compose.project``) as ``_composition``; the default layer
        (task heads) only follows ``active_adapters``."""

    def _keep_plan(self, root: Node | None, plan: Node | None) -> None:
        """Run `plan` (this layer's part of `root`); under a composition only what the plan runs is active
        here, so a layer the plan leaves out runs nothing (rather than its adapters as a list)."""
        self._composition = plan
        if root is not None:
            self.active_adapters = list(dict.fromkeys(leaves(plan)))
            self._refresh()

    def _refresh(self) -> None:
        """Recompute what forward runs after ``active_adapters``/``merged_adapters`` changed (default: nothing)."""


def inner_of(module: nn.Module) -> nn.Module | None:
    """The module an adapter layer wraps (its ``base_layer``); None for other modules and non-wrapping layers."""
    inner = getattr(module, "base_layer", None) if isinstance(module, AdapterLayer) else None
    return inner if isinstance(inner, nn.Module) else None


@dataclasses.dataclass
class AdapterState:
    """Per-model bookkeeping, stored as ``model._ah_state``."""

    configs: dict[str, AdapterConfig] = dataclasses.field(default_factory=dict)
    modules: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # name -> paths
    active: list[str] = dataclasses.field(default_factory=list)
    # the active composition block, checked (None: `active` is a plain list whose outputs add)
    composition: Composition | None = None
    # "<4-bit layer path>.weight" -> "<algorithm>:<tensor digest>" of the full-precision weight it was
    # quantized from: the codes no longer show it, so whoever quantized records it (formats.quantized), and
    # the base's fingerprint stays that of the unquantized model
    unquantized_digests: dict[str, str] = dataclasses.field(default_factory=dict)


def check_model(model: Any) -> nn.Module:
    """`model` itself if it is an ``nn.Module``; every public entry point starts here."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"expected a torch nn.Module as the model, got {type(model).__name__}")
    return model


def adapter_state(model: nn.Module) -> AdapterState:
    """The model's adapter bookkeeping, created empty on first use."""
    state = getattr(check_model(model), "_ah_state", None)
    if state is None:
        state = AdapterState()
        object.__setattr__(model, "_ah_state", state)  # a plain attribute, not a submodule
    return state


def iter_adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    for path, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield path, module


# --- config validation: one wording for every config's one-line errors -----------------------


def config_error(config: object, field: str, expected: str, value: object) -> AdapterConfigError:
    """``LoRAConfig.r must be a positive integer, got -1``."""
    return AdapterConfigError(f"{type(config).__name__}.{field} must be {expected}, got {value!r}")


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (``True`` is no rank)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_choice(config: object, field: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise config_error(config, field, f"one of {', '.join(map(repr, choices))}", value)


def check_bool(config: object, field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise config_error(config, field, "True or False", value)


def check_fraction(config: object, field: str, value: object) -> None:
    """A dropout probability: a number in [0, 1)."""
    if not is_number(value) or not 0.0 <= float(value) < 1.0:
        raise config_error(config, field, "a number in [0, 1)", value)
