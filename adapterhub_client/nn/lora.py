"""LoRA (Hu et al. 2021) with rsLoRA and DoRA, on ``nn.Linear``, GPT-2 ``Conv1D`` and ``nn.Embedding``.

Math and tensor shapes follow PEFT's ``tuners/lora`` so adapters convert by renaming keys:

* ``lora_A`` is ``[r, in]`` and ``lora_B`` ``[out, r]`` (embedding: ``A [r, num_embeddings]``,
  ``B [embedding_dim, r]``); scale ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA;
* forward ``base(x) + s * B(A(dropout(x)))``, summed over the active, unmerged adapters;
* DoRA ``W' = m * (W + sBA) / ||W + sBA||_c`` with the norm per output feature and detached, computed
  as ``(m/n - 1) * (base(x) - bias) + (m/n) * s * B(A(x))``; ``lora_magnitude_vector`` is ``m``. The
  weight math (norm, merge, unmerge) is :mod:`.dora`'s, shared with the streaming checkpoint merge.

Parameters are plain tensors in ``ParameterDict``s keyed by adapter name (no ``nn.Linear`` per
adapter): fewer modules to build when attaching, fewer calls per forward. Under a composition block
(:mod:`.compose`) forward runs the block's tree, each adapter giving its delta (``_adapter_delta``). :class:`LoRAConfig`
validates every field when constructed (:class:`~..errors.AdapterConfigError`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterWeightsError, UsageError
from .base import (
    AdapterConfig,
    AdapterLayer,
    Node,
    check_bool,
    check_choice,
    check_fraction,
    config_error,
    inner_of,
    is_int,
    is_number,
)
from .compose import apply, no_fuse, project, rows_of
from .dora import dora_merge, dora_norm, dora_unmerge
from .layout import CONV1D, EMBEDDING
from .targets import ALL_LINEAR, base_of, kind_of, pattern_value, select_modules, set_module

BIAS_MODES = ("none", "all", "lora_only")
INITS = ("default", "gaussian", "none")


@dataclasses.dataclass
class LoRAConfig(AdapterConfig):
    """A LoRA adapter.

    ``init``: ``"default"`` (A Kaiming-uniform, B zero: a new adapter is an exact no-op),
    ``"gaussian"`` (A ~ N(0, 1/r), B zero) or ``"none"`` (A and B both random, for tests).
    ``bias``: which base biases train with the adapter and are saved with it (PEFT's ``bias``);
    they are written into the base modules, so disabling the adapter does not undo them.
    """

    kind: ClassVar[str] = "lora"

    r: int = 8
    alpha: float = 8
    target_modules: list[str] | str | None = None
    dropout: float = 0.0
    rslora: bool = False
    dora: bool = False
    bias: str = "none"
    init: str | bool = "default"  # True / False: PEFT's spellings of "default" / "none"
    exclude_modules: list[str] | str | None = None
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    rank_pattern: dict[str, int] = dataclasses.field(default_factory=dict)
    alpha_pattern: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (set, frozenset, tuple)):
            self.target_modules = sorted(self.target_modules)
        if not is_int(self.r) or self.r <= 0:
            raise config_error(self, "r", "a positive integer", self.r)
        if not is_number(self.alpha):
            raise config_error(self, "alpha", "a number", self.alpha)
        check_fraction(self, "dropout", self.dropout)
        check_bool(self, "rslora", self.rslora)
        check_bool(self, "dora", self.dora)
        check_choice(self, "bias", self.bias, BIAS_MODES)
        if self.init is True:  # PEFT spellings
            self.init = "default"
        elif self.init is False:
            self.init = "none"
        check_choice(self, "init", self.init, INITS)
        _check_modules(self, "target_modules", self.target_modules)
        _check_modules(self, "exclude_modules", self.exclude_modules)
        _check_indices(self, "layers_to_transform", self.layers_to_transform)
        if not (self.layers_pattern is None or isinstance(self.layers_pattern, str) or _str_list(self.layers_pattern)):
            raise config_error(self, "layers_pattern", "None, a name or a list of names", self.layers_pattern)
        _check_patterns(self, "rank_pattern", self.rank_pattern, lambda v: is_int(v) and v > 0, "positive integers")
        _check_patterns(self, "alpha_pattern", self.alpha_pattern, is_number, "numbers")
        regex_targets = isinstance(self.target_modules, str) and self.target_modules.lower() != ALL_LINEAR
        if regex_targets and self.layers_to_transform not in (None, []):
            raise config_error(
                self, "layers_to_transform", "None with a regex target_modules (PEFT's rule)", self.layers_to_transform
            )

    def scaling(self, r: int, alpha: float) -> float:
        return alpha / math.sqrt(r) if self.rslora else alpha / r

    def for_paths(self, paths: list[str], to_source: Callable[[str], str]) -> LoRAConfig:
        """Rank and alpha patterns re-expressed for this model's paths (see ``AdapterConfig.for_paths``).

        PEFT matches the patterns against the paths of the model the adapter was trained on; a key
        naming a full path there (``model.layers.1.self_attn.q_proj``) matches nothing on the backbone.
        """
        if not self.rank_pattern and not self.alpha_pattern:
            return self
        want = {
            p: (
                pattern_value(self.rank_pattern, to_source(p), self.r),
                pattern_value(self.alpha_pattern, to_source(p), self.alpha),
            )
            for p in paths
        }

        def fits(cfg: LoRAConfig) -> bool:
            return all(
                (pattern_value(cfg.rank_pattern, p, cfg.r), pattern_value(cfg.alpha_pattern, p, cfg.alpha)) == v
                for p, v in want.items()
            )

        if fits(self):
            return self
        # readable first: drop the head the source paths have and ours lack from the pattern keys
        heads = set()
        for p in paths:
            src = to_source(p)
            if src != p and src.endswith("." + p):
                heads.add(src[: -len(p) - 1])
        if len(heads) == 1:
            head = heads.pop()
            lead = (head + ".", re.escape(head) + r"\.")

            def strip(patterns: dict[str, Any]) -> dict[str, Any]:
                out = {}
                for key, value in patterns.items():
                    for h in lead:
                        if key.startswith(h) and len(key) > len(h):
                            key = key[len(h) :]
                            break
                    out[key] = value
                return out

            cand = dataclasses.replace(
                self, rank_pattern=strip(self.rank_pattern), alpha_pattern=strip(self.alpha_pattern)
            )
            if fits(cand):
                return cand
        # exact: one key per module whose rank or alpha is not the default
        return dataclasses.replace(
            self,
            rank_pattern={re.escape(p): r for p, (r, _) in want.items() if r != self.r},
            alpha_pattern={re.escape(p): a for p, (_, a) in want.items() if a != self.alpha},
        )

    def inject(self, model: nn.Module, name: str) -> list[str]:
        targets = select_modules(
            model,
            self.target_modules,
            exclude_modules=self.exclude_modules,
            layers_to_transform=self.layers_to_transform,
            layers_pattern=self.layers_pattern,
            supported=_supported,
            what="LoRA",
        )
        # check everything before changing anything, so a failure leaves the model as it was
        for path, module in targets:
            lora = _find_lora(module)
            if lora is not None and name in lora.adapter_names:
                raise UsageError(f"adapter {name!r} already exists at {path}")
        paths = []
        for path, module in targets:
            r = pattern_value(self.rank_pattern, path, self.r)
            alpha = pattern_value(self.alpha_pattern, path, self.alpha)
            layer = _find_lora(module)
            if layer is None:
                # LoRA goes innermost, right around the base module, so it composes with wrappers of
                # other kinds (a bottleneck around the same Linear sees LoRA's output)
                outer, inner = None, module
                while isinstance(inner, AdapterLayer):
                    outer, inner = inner, inner.base_layer
                layer = (LoRAEmbedding if kind_of(inner) == EMBEDDING else LoRALinear)(inner)
                if outer is None:
                    set_module(model, path, layer)
                else:
                    outer.base_layer = layer
            layer.add(name, r, alpha, self)
            paths.append(path)
        return paths


def _str_list(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _regex_ok(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _check_modules(config: LoRAConfig, field: str, value: object) -> None:
    """None, a list of module names, or one regex (``re.fullmatch`` against paths) / ``"all-linear"``."""
    if value is None or _str_list(value):
        return
    if not isinstance(value, str) or not _regex_ok(value):
        raise config_error(config, field, "None, a list of module names or a valid regex", value)


def _check_indices(config: LoRAConfig, field: str, value: object) -> None:
    items = [value] if is_int(value) else value if isinstance(value, (list, tuple)) else None
    if value is not None and (items is None or not all(is_int(i) and i >= 0 for i in items)):
        raise config_error(config, field, "None, a layer index or a list of layer indices", value)


def _check_patterns(config: LoRAConfig, field: str, value: object, ok: Callable[[Any], bool], what: str) -> None:
    """PEFT's rank/alpha patterns: regex keys (matched as ``(.*\\.)?(key)$``) mapping to `what`."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and _regex_ok(rf"(.*\.)?({k})$") and ok(v) for k, v in value.items()
    ):
        raise config_error(config, field, f"a mapping of regexes to {what}", value)


def _find_lora(module: nn.Module) -> LoRALayer | None:
    """The LoRA layer in a stack of wrappers at one path, if any."""
    layer: nn.Module | None = module
    while isinstance(layer, AdapterLayer):
        if isinstance(layer, LoRALayer):
            return layer
        layer = inner_of(layer)
    return None


def _supported(module: nn.Module) -> bool:
    return kind_of(module) is not None


def _adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    # half-precision bases get fp32 adapters (PEFT's autocast_adapter_dtype): stable training
    if weight.dtype in (torch.float16, torch.bfloat16) or not weight.dtype.is_floating_point:
        return torch.float32
    return weight.dtype


class LoRALayer(AdapterLayer):
    """Shared bookkeeping of the LoRA wrappers; subclasses define shapes, forward and delta."""

    kind: ClassVar[str] = "lora"

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.lora_magnitude_vector = nn.ParameterDict()  # DoRA only
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.dropout: dict[str, float] = {}
        self._dora_norms: dict[str, torch.Tensor] = {}  # weight norm at merge time, for unmerge
        self._run: list[str] = []  # active and not merged: what forward adds
        self.train(base_layer.training)  # a wrapper put into an eval model must not run its dropout

    def __getattr__(self, name: str) -> Any:
        # model code reads the wrapped module's attributes (`q_proj.weight`, `c_attn.nf`,
        # `in_features`): answer from the base module, as PEFT's layers do
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    # --- shapes ---------------------------------------------------------------------------

    @property
    def _weight(self) -> torch.Tensor:
        """The wrapped module's weight, in its own layout."""
        return cast(torch.Tensor, self.base_layer.weight)

    def _in_out(self) -> tuple[int, int]:
        raise NotImplementedError

    def _dense_weight(self) -> torch.Tensor:
        """The base weight as ``[out, in]`` (a view)."""
        raise NotImplementedError

    def _to_base_layout(self, delta: torch.Tensor) -> torch.Tensor:
        """``[out, in]`` -> the base weight's layout."""
        raise NotImplementedError

    # --- adapters -------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def add(self, name: str, r: int, alpha: float, config: LoRAConfig) -> None:
        weight = self._weight
        fan_in, fan_out = self._in_out()
        device, dtype = weight.device, _adapter_dtype(weight)
        A = torch.empty(r, fan_in, device=device, dtype=dtype)
        B = torch.empty(fan_out, r, device=device, dtype=dtype)
        self._init(A, B, r, str(config.init))  # a str once constructed
        self.lora_A[name] = nn.Parameter(A)
        self.lora_B[name] = nn.Parameter(B)
        self.r[name] = r
        self.scaling[name] = config.scaling(r, alpha)
        self.dropout[name] = float(config.dropout)
        if config.dora:
            with torch.no_grad():
                norm = self._weight_norm(name)
            self.lora_magnitude_vector[name] = nn.Parameter(norm)
        self._refresh()

    def _init(self, A: torch.Tensor, B: torch.Tensor, r: int, init: str) -> None:
        if A.is_meta:
            return  # nothing to draw on the meta device
        nn.init.kaiming_uniform_(A, a=math.sqrt(5)) if init != "gaussian" else nn.init.normal_(A, std=1 / r)
        if init == "none":
            nn.init.kaiming_uniform_(B, a=math.sqrt(5))
        else:
            nn.init.zeros_(B)

    def delete_adapter(self, name: str) -> None:
        if name in self.merged_adapters:
            raise UsageError(f"adapter {name!r} is merged; unmerge it before deleting")
        for store in (self.lora_A, self.lora_B, self.lora_magnitude_vector):
            if name in store:
                del store[name]
        for d in (self.r, self.scaling, self.dropout, self._dora_norms):
            d.pop(name, None)
        self.active_adapters = [n for n in self.active_adapters if n != name]
        self._refresh()

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        out = {"lora_A": self.lora_A[name], "lora_B": self.lora_B[name]}
        if name in self.lora_magnitude_vector:
            out["lora_magnitude_vector"] = self.lora_magnitude_vector[name]
        return {k: v.detach() for k, v in out.items()}

    def load_adapter_state_dict(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        own = {"lora_A": self.lora_A[name], "lora_B": self.lora_B[name]}
        if name in self.lora_magnitude_vector:
            own["lora_magnitude_vector"] = self.lora_magnitude_vector[name]
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise AdapterWeightsError(f"missing {missing}, unexpected {unexpected}")
        bad = [
            f"{k}: {tuple(tensors[k].shape)} != {tuple(p.shape)}"
            for k, p in own.items()
            if not isinstance(tensors[k], torch.Tensor) or tensors[k].shape != p.shape
        ]
        if bad:
            raise AdapterWeightsError(f"shape mismatch ({'; '.join(bad)})")
        with torch.no_grad():
            for k, p in own.items():
                if p.is_meta:
                    own_param = nn.Parameter(tensors[k].to(p.dtype), requires_grad=p.requires_grad)
                    getattr(self, k)[name] = own_param
                else:
                    p.copy_(tensors[k])
        self._dora_norms.pop(name, None)

    def _refresh(self) -> None:
        self._run = [n for n in self.active_adapters if n not in self.merged_adapters]

    def set_composition(self, root: Node | None) -> None:
        self._keep_plan(root, project(root, set(self.lora_A.keys())))

    # --- composition (nn/compose.py) ----------------------------------------------------------
    def _compose(self, plan: Node, x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """The base output with the active composition's deltas (:func:`.compose.apply` holds the blocks)."""
        result = self.base_layer(x, *args, **kwargs)

        def leaf(name: str, s: torch.Tensor, start: int) -> torch.Tensor:
            return self._adapter_delta(name, rows_of(x, s, start), s)

        return apply(plan, result, 0, leaf, no_fuse)

    def _adapter_delta(self, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """What adapter `name` adds to `result` (the output so far for the rows of input `x`)."""
        raise NotImplementedError

    def _dropped_input(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """`x` in the adapter's dtype, through its dropout when training; whether dropout ran."""
        A, p = self.lora_A[name], self.dropout[name]
        xa = x.to(A.dtype) if x.dtype != A.dtype else x
        dropped = bool(p) and self.training
        return (F.dropout(xa, p, True) if dropped else xa), dropped

    # --- math -----------------------------------------------------------------------------
    def _delta(self, name: str) -> torch.Tensor:
        """``s * B @ A`` as ``[out, in]``, in fp32 when the adapter is in half precision."""
        A, B = self.lora_A[name], self.lora_B[name]
        if A.dtype in (torch.float16, torch.bfloat16):
            A, B = A.float(), B.float()
        return (B @ A) * self.scaling[name]

    def _weight_norm(
        self,
        name: str,
        delta: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``||W + sBA||`` per output feature (PEFT: column norm of ``W`` as ``[out, in]``).

        ``W`` is the base weight *without* merged adapters, in forward as in merge: merging other
        adapters first must not change a DoRA adapter's norm.
        """
        W = self._unmerged_dense_weight() if weight is None else weight
        if delta is None:
            delta = self._delta(name).detach()
        return dora_norm(W.to(delta.dtype), delta).to(self.lora_A[name].dtype)

    def _merge_order(self, names: list[str]) -> list[str]:
        """`names` in forward order: the active adapters' order, then inactive ones as given."""
        todo = [n for n in names if n in self.lora_A and n not in self.merged_adapters]
        return [n for n in self.active_adapters if n in todo] + [n for n in todo if n not in self.active_adapters]

    def check_merge(self, names: list[str]) -> None:
        """Forward applies the active adapters in order and DoRA rescales everything before it, so a
        merged weight keeps the outputs only if no unmerged active adapter runs before a merged one
        that does not commute with it (either of the two being DoRA)."""
        merged = set(self.merged_adapters) | set(self._merge_order(names))
        dora = set(self.lora_magnitude_vector.keys())
        for i, first in enumerate(self.active_adapters):
            if first in merged:
                continue
            late = [n for n in self.active_adapters[i + 1 :] if n in merged and (n in dora or first in dora)]
            if late:
                raise UsageError(
                    f"merging {late} while {first!r} stays unmerged would change the outputs: {first!r} runs "
                    f"before {late} and DoRA does not commute with other adapters; merge {first!r} too (or first)"
                )

    def _dense_base(self) -> None:
        """A 4-bit base (nn.quant) has no weight to merge into: swap in a dense copy of its dequantized
        weight; the quantized layer is kept (unmerge restores it exactly)."""
        base = self.base_layer
        dequantize = getattr(base, "dequantize", None)
        if not (getattr(type(base), "layout_kind", None) and callable(dequantize)):
            return
        weight = cast(torch.Tensor, dequantize())  # [out, in] in the weight's own dtype
        dense = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
        dense.weight = nn.Parameter(weight, requires_grad=False)
        dense.bias = cast("nn.Parameter | None", getattr(base, "bias", None))  # type: ignore[assignment]
        object.__setattr__(self, "_quantized_base", base)  # a plain attribute: not in the state dict
        self.base_layer = dense

    def merge(self, names: list[str]) -> None:
        if any(n in self.lora_A and n not in self.merged_adapters for n in names):
            self._dense_base()
        weight = self._weight
        for name in self._merge_order(names):
            if name not in self.lora_A or name in self.merged_adapters:
                continue
            with torch.no_grad():
                delta = self._delta(name)  # fp32 for half-precision bases
                if name in self.lora_magnitude_vector:
                    # the norm comes from the *unmerged* base, as forward computes it
                    norm = dora_norm(self._unmerged_dense_weight().to(delta.dtype), delta)
                    magnitude = self.lora_magnitude_vector[name].to(delta.dtype)
                    new, norm = dora_merge(self._dense_of(weight.to(delta.dtype)), delta, magnitude, norm)
                    self._dora_norms[name] = norm
                    weight.copy_(self._to_base_layout(new))
                elif weight.dtype == delta.dtype:
                    weight.add_(self._to_base_layout(delta))
                else:
                    weight.copy_(weight.to(delta.dtype) + self._to_base_layout(delta))
            # in place: storage is kept (merge_adapters refuses, or unties, weights shared with other modules)
            self.merged_adapters.append(name)
        self._refresh()

    def unmerge(self) -> None:
        weight = self._weight
        with torch.no_grad():
            while self.merged_adapters:
                name = self.merged_adapters.pop()
                delta = self._delta(name)
                if name in self.lora_magnitude_vector:
                    norm = self._dora_norms.pop(name)
                    magnitude = self.lora_magnitude_vector[name].to(delta.dtype)
                    dense = dora_unmerge(self._dense_of(weight.to(delta.dtype)), delta, magnitude, norm)
                    weight.copy_(self._to_base_layout(dense))
                elif weight.dtype == delta.dtype:
                    weight.sub_(self._to_base_layout(delta))
                else:
                    weight.copy_(weight.to(delta.dtype) - self._to_base_layout(delta))
        quantized = getattr(self, "_quantized_base", None)
        if quantized is not None:  # the 4-bit layer merged into a dense copy comes back as it was
            self.base_layer = quantized
            object.__delattr__(self, "_quantized_base")
        self._refresh()

    def _dense_of(self, W: torch.Tensor) -> torch.Tensor:
        """A weight in the base layout -> ``[out, in]``."""
        return self._to_base_layout(W)  # both layouts used here are involutions (identity/transpose)

    def _unmerged_dense_weight(self) -> torch.Tensor:
        """The base weight without any merged adapter, as ``[out, in]`` (replays merges in order)."""
        W = self._dense_weight()
        if not self.merged_adapters:
            return W
        W = W.float()
        # undo in reverse; DoRA merges are undone with their stored norms
        for name in reversed(self.merged_adapters):
            delta = self._delta(name).float()
            if name in self.lora_magnitude_vector:
                W = dora_unmerge(W, delta, self.lora_magnitude_vector[name].float(), self._dora_norms[name].float())
            else:
                W = W - delta
        return W

    def extra_repr(self) -> str:
        return ", ".join(
            f"{n}: r={self.r[n]}" + (" dora" if n in self.lora_magnitude_vector else "") for n in self.adapter_names
        )


class LoRALinear(LoRALayer):
    """LoRA on ``nn.Linear`` (``W [out, in]``) or GPT-2 ``Conv1D`` (``W [in, out]``, fan_in_fan_out)."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.fan_in_fan_out = kind_of(base_of(base_layer)) == CONV1D

    def _in_out(self) -> tuple[int, int]:
        w = self._weight
        return (w.shape[0], w.shape[1]) if self.fan_in_fan_out else (w.shape[1], w.shape[0])

    def _dense_weight(self) -> torch.Tensor:
        w = self._weight
        return w.T if self.fan_in_fan_out else w

    def _to_base_layout(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        route = self._route
        if route is not None:
            return route.lora_forward(self, x, *args, **kwargs)
        plan = self._composition
        if plan is not None:
            return self._compose(plan, x, args, kwargs)
        if not self._run:
            return self.base_layer(x, *args, **kwargs)
        shape = x.shape
        fresh = getattr(type(self.base_layer), "fresh_output", False) and not (
            args or kwargs or _hooked(self.base_layer)
        )
        flat = fresh and x.dim() > 2
        if flat:  # a 2-D output, not a view: the adapters may add into it in place, under autograd too
            x = x.reshape(-1, shape[-1])
        result = self.base_layer(x, *args, **kwargs)
        in_place = result.is_contiguous() and (not torch.is_grad_enabled() or (fresh and not result._is_view()))
        for name in self._run:
            A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
            # _dropped_input, inlined: this loop is the hot path of every unmerged forward
            p = self.dropout[name]
            xa = x.to(A.dtype) if x.dtype != A.dtype else x
            dropped = bool(p) and self.training
            xd = F.dropout(xa, p, True) if dropped else xa
            if name in self.lora_magnitude_vector:
                result = result + self._dora(name, xd, result, dropped).to(result.dtype)
                continue
            h = F.linear(xd, A)
            if result.dtype == h.dtype and result.dim() >= 2:
                # fused s * (h @ B^T) + result in one GEMM; no separate scale or add pass. It adds into the
                # base layer's fresh output where it may (no autograd, or an unhooked base whose 2-D output
                # nothing saved): no new output tensor, no copy of the old one
                out_shape = result.shape
                h2 = h.reshape(-1, h.shape[-1])
                if in_place and B.dtype == result.dtype:  # (under autocast B is not: addmm casts, addmm_ cannot)
                    result.view(-1, out_shape[-1]).addmm_(h2, B.T, alpha=s)
                else:
                    result = torch.addmm(result.reshape(-1, out_shape[-1]), h2, B.T, alpha=s).view(out_shape)
            else:
                result = result + (F.linear(h, B) * s).to(result.dtype)
        return result.view(*shape[:-1], result.shape[-1]) if flat else result

    def _adapter_delta(self, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        xd, dropped = self._dropped_input(name, x)
        if name in self.lora_magnitude_vector:
            return self._dora(name, xd, result, dropped).to(result.dtype)
        A, B = self.lora_A[name], self.lora_B[name]
        return (F.linear(F.linear(xd, A), B) * self.scaling[name]).to(result.dtype)

    def _dora(self, name: str, xd: torch.Tensor, result: torch.Tensor, dropped: bool) -> torch.Tensor:
        A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
        with torch.no_grad():
            norm = self._weight_norm(name)  # detached, as in the paper; from the unmerged base weight
        scale = self.lora_magnitude_vector[name] / norm
        if not dropped:
            base = result.to(A.dtype)
            bias = getattr(self.base_layer, "bias", None)
            if bias is not None:
                base = base - bias.to(A.dtype)
        else:  # dropout on: the base term must see the dropped-out input too (PEFT does the same)
            base = F.linear(xd, self._dense_weight().to(A.dtype))
        return (scale - 1) * base + scale * F.linear(F.linear(xd, A), B) * s


def _hooked(module: nn.Module) -> bool:
    """Whether hooks see `module`'s calls (its own or global ones): they may keep its output or expect the
    input's shape, so its output is not flattened or written in place."""
    from torch.nn.modules import module as hooks

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


class LoRAEmbedding(LoRALayer):
    """LoRA on ``nn.Embedding``: ``E(x) + s * E_A(x) @ B^T`` with ``E_A`` the lookup in ``A^T``."""

    def _in_out(self) -> tuple[int, int]:
        w = self._weight
        return w.shape[0], w.shape[1]

    def _dense_weight(self) -> torch.Tensor:
        return self._weight.T  # [dim, num_embeddings]

    def _to_base_layout(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.T

    def _init(self, A: torch.Tensor, B: torch.Tensor, r: int, init: str) -> None:
        if A.is_meta:
            return
        # PEFT: A zero, B normal, so a new adapter is a no-op; "none" draws both
        nn.init.normal_(A) if init == "none" else nn.init.zeros_(A)
        nn.init.normal_(B)

    def _lookup(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        b = cast(nn.Embedding, self.base_layer)
        return F.embedding(x, table, b.padding_idx, b.max_norm, b.norm_type, b.scale_grad_by_freq, b.sparse)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        route = self._route
        if route is not None:
            return route.lora_forward(self, x, *args, **kwargs)
        plan = self._composition
        if plan is not None:
            return self._compose(plan, x, args, kwargs)
        result = self.base_layer(x, *args, **kwargs)
        for name in self._run:
            result = result + self._adapter_delta(name, x, result)
        return result

    def _adapter_delta(self, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
        out = self._lookup(x, A.T) @ B.T * s
        if name in self.lora_magnitude_vector:
            norm = self._weight_norm(name).detach()
            scale = self.lora_magnitude_vector[name] / norm
            # DoRA: scale * result + scale * out, as what it adds to result
            return ((scale - 1) * result.to(scale.dtype) + scale * out).to(result.dtype)
        return out.to(result.dtype)


__all__: Sequence[str] = ["LoRAConfig", "LoRALayer", "LoRALinear", "LoRAEmbedding"]
