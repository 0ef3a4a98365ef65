"""Bottleneck adapters (Houlsby, Pfeiffer, parallel) with generic, configurable placement.

One adapter is ``A(h) = dropout(s * W_up f(W_down h))`` (AdapterHub's ``Adapter``; the parameter
names ``adapter_down.0`` / ``adapter_up`` / ``scaling`` are AdapterHub's, which keeps interop a
pure key rename). Where it goes is described by *sites*: a module path relative to a transformer
block (an element of a ``ModuleList``, so the path has a layer index just before it) plus a mode:

* ``"output"``    wrap the module: ``y = M(x); y + A(y)`` (Houlsby, and Pfeiffer on pre-LN models);
* ``"layernorm"`` wrap a post-LN norm: ``LN(z + A(LN(z)))`` (AdapterHub SeqBn / Pfeiffer);
* ``"parallel"``  wrap the module: ``M(x') + A(x)`` where ``x`` is the input of the module named
  by ``input`` (captured with a forward pre-hook) or of ``M`` itself (He et al. 2022 / ParBn).

Presets map a style to sites for BERT/RoBERTa, DistilBERT, GPT-2 and Llama-family names; a new
architecture needs a ``sites=[...]`` list or :func:`register_preset`, not code.

Exactness against AdapterHub (BERT): all three styles are exact in eval mode. In training the
Houlsby/parallel adapters sit before BERT's hidden dropout instead of after it.

:class:`BottleneckConfig` validates every field when constructed (:class:`~..errors.AdapterConfigError`);
placement that does not fit a model raises :class:`~.targets.TargetError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn

from ..errors import AdapterConfigError, AdapterWeightsError, NotFoundError, UsageError
from .base import (
    AdapterConfig,
    AdapterLayer,
    Node,
    check_choice,
    check_fraction,
    config_error,
    is_int,
    is_number,
)
from .compose import apply, fusions_of, project, rows_of
from .layout import CONV1D, LINEAR
from .targets import TargetError, base_of, get_module, iter_modules, kind_of, set_module

STYLES = ("houlsby", "pfeiffer", "parallel")
MODES = ("output", "layernorm", "parallel")
INITS = ("zero", "mam_adapter", "bert")
SCALINGS = ("learned", "channel")
SITE_KEYS = ("target", "mode", "input", "role")


class NotMergeableError(UsageError, NotImplementedError):
    """Bottleneck adapters are nonlinear, so they have no weight delta to merge."""


# --- placement ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Preset:
    """Module names inside one transformer block, relative to the block."""

    attn_out: str  # attention output projection (Houlsby, first site)
    ffn_out: str  # FFN output projection (Houlsby second site; Pfeiffer on pre-LN models)
    ffn_norm: str | None  # post-FFN LayerNorm of post-LN models (Pfeiffer wraps it)
    par_out: str  # module whose output receives the parallel adapter
    par_in: str | None = None  # module whose input the parallel adapter reads (None: par_out's)

    def sites(self, style: str) -> list[dict[str, Any]]:
        if style == "houlsby":
            return [
                {"target": self.attn_out, "mode": "output", "role": "attn"},
                {"target": self.ffn_out, "mode": "output", "role": "ffn"},
            ]
        if style == "pfeiffer":
            if self.ffn_norm:
                return [{"target": self.ffn_norm, "mode": "layernorm", "role": "ffn"}]
            return [{"target": self.ffn_out, "mode": "output", "role": "ffn"}]
        if style == "parallel":
            return [{"target": self.par_out, "mode": "parallel", "role": "ffn", "input": self.par_in}]
        raise AdapterConfigError(f"unknown bottleneck style {style!r}; expected one of {STYLES}")


PRESETS: dict[str, Preset] = {
    # BertSelfOutput/BertOutput: LN(dropout(dense(.)) + x); the FFN input is `intermediate`'s.
    "bert": Preset("attention.output.dense", "output.dense", "output.LayerNorm", "output.dense", "intermediate"),
    "distilbert": Preset("attention.out_lin", "ffn.lin2", "output_layer_norm", "ffn"),
    # pre-LN models: no post-FFN norm, the MLP's own input is the (normed) sublayer input
    "gpt2": Preset("attn.c_proj", "mlp.c_proj", None, "mlp"),
    "llama": Preset("self_attn.o_proj", "mlp.down_proj", None, "mlp"),
}

# config.model_type -> preset
MODEL_TYPES: dict[str, str] = {
    **{t: "bert" for t in ("bert", "roberta", "xlm-roberta", "camembert", "electra", "data2vec-text", "ernie")},
    "distilbert": "distilbert",
    "gpt2": "gpt2",
    **{t: "llama" for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "granite")},
}


def register_preset(name: str, preset: Preset, model_types: list[str] = ()) -> None:  # type: ignore[assignment]
    """Teach placement a new architecture by module names only."""
    PRESETS[name] = preset
    for t in model_types:
        MODEL_TYPES[t] = name


def detect_preset(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise TargetError(
        f"no bottleneck placement preset for model_type {model_type!r}; pass "
        f"BottleneckConfig(architecture=one of {sorted(PRESETS)}) or sites=[{{'target': ..., 'mode': ...}}]"
    )


def _site_regex(target: str) -> re.Pattern[str]:
    # `<anything>.<layer index>.<target>`: the index right before the target stops
    # "output.dense" from also matching "attention.output.dense".
    return re.compile(rf"^(?P<prefix>(?:.*\.)?)(?P<idx>\d+)\.{re.escape(target)}$")


# --- the adapter module -------------------------------------------------------------------


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": nn.LeakyReLU,
    "identity": nn.Identity,
    "linear": nn.Identity,
}


def _activation(name: str | None) -> nn.Module:
    key = (name or "identity").lower() if isinstance(name, str) or name is None else None
    if key not in _ACTIVATIONS:
        raise AdapterConfigError(
            f"BottleneckConfig.non_linearity must be one of {', '.join(sorted(_ACTIVATIONS))}, got {name!r}"
        )
    return _ACTIVATIONS[key]()


class Bottleneck(nn.Module):
    """``dropout(s * W_up f(W_down h))``; parameter names follow AdapterHub's ``Adapter``."""

    def __init__(self, dim: int, width: int, non_linearity: str, scaling: float | str, dropout: float, init: str):
        super().__init__()
        self.adapter_down = nn.Sequential(nn.Linear(dim, width), _activation(non_linearity))
        self.adapter_up = nn.Linear(width, dim)
        if isinstance(scaling, (int, float)) and not isinstance(scaling, bool):
            self.scaling: float | nn.Parameter = float(scaling)
        elif scaling == "learned":
            self.scaling = nn.Parameter(torch.ones(1))
        elif scaling == "channel":
            self.scaling = nn.Parameter(torch.ones(dim))
        else:
            raise AdapterConfigError(
                f"BottleneckConfig.scaling must be a number, 'learned' or 'channel', got {scaling!r}"
            )
        self.dropout = nn.Dropout(dropout)
        self.reset(init)

    @torch.no_grad()
    def reset(self, init: str) -> None:
        down, up = cast(nn.Linear, self.adapter_down[0]), self.adapter_up
        if init in ("zero", "mam_adapter"):
            # nn.Linear's default for the down projection, zero up-projection: an exact no-op
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        elif init == "bert":
            for lin in (down, up):
                lin.weight.normal_(0.0, 0.02)
                lin.bias.zero_()
        else:
            raise AdapterConfigError(
                f"BottleneckConfig.init must be one of {', '.join(map(repr, INITS))}, got {init!r}"
            )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.adapter_up(self.adapter_down(h)) * self.scaling)

    def add_to(self, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``y + A(h)``, with the scale and the add fused into one pass when dropout is off."""
        u = self.adapter_up(self.adapter_down(h))
        if self.training and self.dropout.p > 0:
            return y + self.dropout(u * self.scaling)
        if isinstance(self.scaling, float):
            return torch.add(y, u, alpha=self.scaling)
        return torch.addcmul(y, u, self.scaling)


class BottleneckLayer(AdapterLayer):
    """Wraps one base module and carries named bottleneck adapters, each with its own mode, and the
    AdapterFusion modules (:mod:`.fusion`) of the fusions over them, in ``fusions`` by fusion name.

    A fusion is an adapter of its own (kind ``"fusion"``: named, saved, trained, deleted like one),
    run only by the ``Fuse`` block of an active composition."""

    kind: ClassVar[str] = "bottleneck"
    _input_module: nn.Module | None  # a plain attribute (object.__setattr__), not a submodule

    def __init__(self, base_layer: nn.Module, role: str = "", layer_index: int | None = None):
        super().__init__()
        self.base_layer = base_layer
        self.adapters = nn.ModuleDict()
        self.fusions = nn.ModuleDict()  # fusion name -> the fusion's module at this layer
        self.modes: dict[str, str] = {}
        self.role = role  # "attn" | "ffn": which AdapterHub location this layer stands for
        self.layer_index = layer_index
        # parallel adapters reading another module's input: a plain attribute, not a submodule
        # (that would duplicate its weights in the model's state_dict)
        object.__setattr__(self, "_input_module", None)
        self._captured: torch.Tensor | None = None
        self.train(base_layer.training)  # a wrapper put into an eval model must not run its dropout

    @property
    def adapter_names(self) -> list[str]:
        return [*self.adapters.keys(), *self.fusions.keys()]

    def add_fusion(self, name: str, fusion: nn.Module) -> None:
        if name in self.adapters or name in self.fusions:
            raise UsageError(f"adapter {name!r} already exists on this module")
        self.fusions[name] = fusion

    def _module(self, name: str) -> nn.Module:
        """Adapter or fusion `name`'s module here."""
        return self.fusions[name] if name in self.fusions else self.adapters[name]

    def set_composition(self, root: Node | None) -> None:
        plan = project(root, set(self.adapters.keys()))
        missing = [f for f in fusions_of(plan) if f not in self.fusions]
        if missing:  # add_fusion places a fusion wherever one of its adapters is: a model edited by hand
            raise UsageError(f"fusion {missing[0]!r} has no parameters at a module carrying its adapters")
        self._keep_plan(root, plan)

    def add(self, name: str, adapter: Bottleneck, mode: str, input_module: nn.Module | None = None) -> None:
        problem = self.refuses(name, mode, input_module)
        if problem:
            raise UsageError(problem)
        if input_module is not None and self._input_module is None:
            object.__setattr__(self, "_input_module", input_module)
            # no handle kept: a deep-copied handle would point at the original's hook dict
            input_module.register_forward_pre_hook(self._capture, with_kwargs=True)
        self.adapters[name] = adapter
        self.modes[name] = mode

    def refuses(self, name: str, mode: str, input_module: nn.Module | None) -> str | None:
        """Why adapter `name` in `mode` cannot join this layer, or None (checked before injecting)."""
        if name in self.adapters or name in self.fusions:
            return f"adapter {name!r} already exists on this module"
        if mode not in MODES:
            return f"unknown placement mode {mode!r}; expected one of {MODES}"
        others = set(self.modes.values())
        if others and ((mode == "layernorm") != ("layernorm" in others)):
            return "cannot mix 'layernorm' and other placement modes on one module"
        if input_module is not None and self._input_module not in (None, input_module):
            return "parallel adapters on one module must read the same input module"
        return None

    def _capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._captured = args[0] if args else next(iter(kwargs.values()))

    def delete_adapter(self, name: str) -> None:
        if name in self.fusions:
            del self.fusions[name]
            return
        if name not in self.adapters:
            raise NotFoundError(f"no bottleneck adapter {name!r} on this module")
        del self.adapters[name]
        del self.modes[name]
        self.active_adapters = [n for n in self.active_adapters if n != name]
        if self._input_module is not None and "parallel" not in self.modes.values():
            self._remove_hook()

    def release(self) -> None:
        """Leaving the model: drop the input hook, which would otherwise keep this dead layer capturing."""
        if self._input_module is not None:
            self._remove_hook()

    def _remove_hook(self) -> None:
        m = self._input_module
        if m is None:
            return
        for key, hook in list(m._forward_pre_hooks.items()):
            if getattr(hook, "__self__", None) is self:
                del m._forward_pre_hooks[key]
                m._forward_pre_hooks_with_kwargs.pop(key, None)
        object.__setattr__(self, "_input_module", None)
        self._captured = None

    def adapter_parameters(self, name: str) -> Iterator[nn.Parameter]:
        yield from self._module(name).parameters()

    def _adapter(self, name: str) -> Bottleneck:
        return cast(Bottleneck, self.adapters[name])

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        return dict(self._module(name).state_dict())

    def load_adapter_state_dict(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        adapter = self._module(name)
        expected = set(adapter.state_dict())
        missing, unexpected = expected - set(tensors), set(tensors) - expected
        if missing or unexpected:
            raise AdapterWeightsError(f"missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        own = adapter.state_dict()
        bad = [
            f"{k}: {tuple(getattr(t, 'shape', ()))} != {tuple(own[k].shape)}"
            for k, t in tensors.items()
            if not isinstance(t, torch.Tensor) or t.shape != own[k].shape
        ]
        if bad:
            raise AdapterWeightsError(f"shape mismatch ({'; '.join(bad)})")
        adapter.load_state_dict(tensors, strict=True)

    def merge(self, names: list[str]) -> None:
        raise NotMergeableError(
            "bottleneck adapters cannot be merged into the base weights (W_up f(W_down h) is nonlinear); "
            "keep them unmerged, or use LoRA where merging matters"
        )

    unmerge = merge  # type: ignore[assignment]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        route = self._route
        if route is not None:
            return route.bottleneck_forward(self, *args, **kwargs)
        plan = self._composition
        if plan is not None:
            return self._compose(plan, args, kwargs)
        active = self.active_adapters
        if not active:
            self._captured = None
            return self.base_layer(*args, **kwargs)
        x = args[0] if args else next(iter(kwargs.values()))
        if self.modes[active[0]] == "layernorm":
            # LN(z + A(LN(z))): the pretrained norm is applied twice (AdapterHub SeqBn)
            n = self.base_layer(x)
            for a in active:  # several adapters: LN(z + sum_i A_i(LN(z)))
                x = self._adapter(a).add_to(x, n)
            return self.base_layer(x)
        y = self.base_layer(*args, **kwargs)
        par = [a for a in active if self.modes[a] == "parallel"]
        src: torch.Tensor | None = None
        if par:
            src = x if self._input_module is None else self._captured
            if src is None:
                raise UsageError("parallel adapter: the input module did not run before this module")
        for a in active:  # sequential adapters stack in activation order (AdapterHub Stack)
            if self.modes[a] == "output":
                y = self._adapter(a).add_to(y, y)
        if src is not None:
            for a in par:
                y = self._adapter(a).add_to(y, src)
        self._captured = None  # don't keep activations alive between forwards
        return y

    def _compose(self, plan: Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The active composition (:func:`.compose.apply`). The stream is the sum a post-LN norm reads
        (``layernorm``: each adapter reads ``LN(stream)``, the output is ``LN`` of the result) or the
        module's output (``output`` adapters read the stream, ``parallel`` ones the captured input).
        A Fuse's query is what its last adapter reads (AdapterHub: the last adapter's placement counts)."""
        x = args[0] if args else next(iter(kwargs.values()))
        if "layernorm" in self.modes.values():
            norm = self.base_layer
            last_in: list[torch.Tensor | None] = [None, None]  # LN(s) for the stream s seen last

            def normed(s: torch.Tensor) -> torch.Tensor:
                if last_in[0] is not s:
                    last_in[0], last_in[1] = s, norm(s)
                return cast(torch.Tensor, last_in[1])

            def ln_leaf(name: str, s: torch.Tensor, start: int) -> torch.Tensor:
                return self._adapter(name)(normed(s))

            def ln_fuse(fusion: str, ds: list[torch.Tensor], s: torch.Tensor, start: int, last: str) -> torch.Tensor:
                return self.fusions[fusion](normed(s), ds)

            return norm(apply(plan, x, 0, ln_leaf, ln_fuse))
        y = self.base_layer(*args, **kwargs)
        src = x if self._input_module is None else self._captured
        self._captured = None

        def reads(name: str, s: torch.Tensor, start: int) -> torch.Tensor:
            if self.modes[name] != "parallel":
                return s
            if src is None:
                raise UsageError("parallel adapter: the input module did not run before this module")
            return rows_of(src, s, start)

        def leaf(name: str, s: torch.Tensor, start: int) -> torch.Tensor:
            return self._adapter(name)(reads(name, s, start))

        def fuse(fusion: str, ds: list[torch.Tensor], s: torch.Tensor, start: int, last: str) -> torch.Tensor:
            return self.fusions[fusion](reads(last, s, start), ds)

        return apply(plan, y, 0, leaf, fuse)


# --- config -------------------------------------------------------------------------------


def _per_layer(value: Any, idx: int, what: str) -> Any:
    if isinstance(value, Mapping):
        if str(idx) in value:
            return value[str(idx)]
        if idx in value:
            return value[idx]
        if "default" in value:
            return value["default"]
        raise AdapterConfigError(f"BottleneckConfig.{what} has no entry for layer {idx} and no 'default'")
    return value


def _feature_dim(module: nn.Module, model: nn.Module) -> int:
    kind = kind_of(module)
    if kind == LINEAR:
        return cast(nn.Linear, module).out_features
    if kind == CONV1D:  # transformers Conv1D (GPT-2): weight is [in, out]
        return int(cast(Any, module).nf)
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1:  # RMSNorm and friends
        return int(weight.shape[0])
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if hidden is None:
        raise TargetError(f"cannot tell the feature size of {type(module).__name__}; set config.hidden_size")
    return int(hidden)


@dataclasses.dataclass
class BottleneckConfig(AdapterConfig):
    """A bottleneck adapter. ``reduction_factor``/``bottleneck_size`` may be per layer:
    ``{"0": 8, "default": 16}``. ``sites`` overrides the preset: a list of
    ``{"target": "output.dense", "mode": "output"|"layernorm"|"parallel", "input": None, "role": "ffn"}``."""

    kind: ClassVar[str] = "bottleneck"
    mergeable: ClassVar[bool] = False

    style: str = "pfeiffer"
    reduction_factor: float | dict[str, float] = 16
    bottleneck_size: int | dict[str, int] | None = None
    non_linearity: str = "relu"
    scaling: float | str = 1.0  # number, "learned" (scalar) or "channel" (vector)
    dropout: float = 0.0
    init: str = "zero"  # "zero": exact no-op at start; "bert": N(0, 0.02) both (AdapterHub default)
    leave_out: list[int] = dataclasses.field(default_factory=list)
    architecture: str | None = None  # preset name; None: from model.config.model_type
    sites: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        check_choice(self, "style", self.style, STYLES)
        if self.bottleneck_size is not None:
            _check_per_layer(self, "bottleneck_size", self.bottleneck_size, is_int, "a positive integer")
        if self.reduction_factor is not None or self.bottleneck_size is None:
            _check_per_layer(self, "reduction_factor", self.reduction_factor, is_number, "a positive number")
        _activation(self.non_linearity)  # fail at config time, not at inject time
        if not (is_number(self.scaling) or self.scaling in SCALINGS):
            raise config_error(self, "scaling", "a number, 'learned' or 'channel'", self.scaling)
        check_fraction(self, "dropout", self.dropout)
        check_choice(self, "init", self.init, INITS)
        if not isinstance(self.leave_out, (list, tuple)) or not all(is_int(i) and i >= 0 for i in self.leave_out):
            raise config_error(self, "leave_out", "a list of layer indices", self.leave_out)
        self.leave_out = list(self.leave_out)
        if self.architecture is not None:
            check_choice(self, "architecture", self.architecture, tuple(sorted(PRESETS)))
        if self.sites is not None:
            _check_sites(self, self.sites)

    def resolve_sites(self, model: nn.Module) -> list[dict[str, Any]]:
        if self.sites is not None:
            return [dict(s) for s in self.sites]
        return PRESETS[self.architecture or detect_preset(model)].sites(self.style)

    def width(self, dim: int, idx: int) -> int:
        size = _per_layer(self.bottleneck_size, idx, "bottleneck_size")
        if size is None:
            size = int(dim // _per_layer(self.reduction_factor, idx, "reduction_factor"))
        return max(1, int(size))

    def inject(self, model: nn.Module, name: str) -> list[str]:
        sites = self.resolve_sites(model)
        # logical paths (wrappers' `base_layer` hop skipped), as every adapter kind records them
        modules = [(path, module) for path, module, _, _ in iter_modules(model) if path]
        plan: list[tuple[str, int, dict[str, Any], nn.Module | None]] = []
        for site in sites:
            mode = site.get("mode", "output")
            if mode not in MODES:
                raise UsageError(f"unknown placement mode {mode!r}; expected one of {MODES}")
            pattern = _site_regex(site["target"])
            for path, module in modules:
                m = pattern.match(path)
                if m is None or int(m["idx"]) in self.leave_out:
                    continue
                input_module = None
                if mode == "parallel" and site.get("input"):
                    # hook the plain module: it stays in the graph whatever wraps it later
                    input_module = base_of(get_module(model, f"{m['prefix']}{m['idx']}.{site['input']}"))
                if isinstance(module, BottleneckLayer):
                    problem = module.refuses(name, mode, input_module)
                    if problem:
                        raise UsageError(f"{path}: {problem}")
                plan.append((path, int(m["idx"]), site, input_module))
        if not plan:
            raise TargetError(
                f"bottleneck adapter {name!r}: no module matched the sites "
                f"{[s['target'] for s in sites]} (check `architecture`/`sites`, `leave_out`)"
            )
        for path, idx, _, _ in plan:  # widths and feature sizes too: no half-injected model
            self.width(_feature_dim(base_of(get_module(model, path)), model), idx)
        for path, idx, site, input_module in plan:  # checked everything first
            self._attach(model, path, name, site.get("mode", "output"), site.get("role", "ffn"), idx, input_module)
        return [p for p, _, _, _ in plan]

    def _attach(
        self, model: nn.Module, path: str, name: str, mode: str, role: str, idx: int, input_module: nn.Module | None
    ) -> None:
        module = get_module(model, path)
        if not isinstance(module, BottleneckLayer):
            module = BottleneckLayer(module, role=role, layer_index=idx)
            set_module(model, path, module)
        dim = _feature_dim(base_of(module), model)
        adapter = Bottleneck(dim, self.width(dim, idx), self.non_linearity, self.scaling, self.dropout, self.init)
        ref = next(base_of(module).parameters(), None)
        if ref is not None and ref.device.type != "meta":
            adapter.to(device=ref.device, dtype=ref.dtype)
        adapter.train(module.training)
        module.add(name, adapter, mode, input_module)


def _check_per_layer(
    config: BottleneckConfig, field: str, value: object, kind: Callable[[object], bool], what: str
) -> None:
    """`what` (a positive number of `kind`), or a per-layer mapping of it (``{"0": 8, "default": 16}``)."""
    values = list(value.values()) if isinstance(value, Mapping) else [value]
    keys_ok = not isinstance(value, Mapping) or all(isinstance(k, (str, int)) for k in value)
    if not keys_ok or not values or not all(kind(v) and is_number(v) and v > 0 for v in values):
        raise config_error(config, field, f"{what} or a per-layer mapping of them", value)


def _check_sites(config: BottleneckConfig, sites: object) -> None:
    """A list of ``{"target": str, "mode": one of MODES, "input": str | None, "role": str}``."""
    if not isinstance(sites, list):
        raise config_error(config, "sites", "None or a list of site mappings", sites)
    for site in sites:
        ok = (
            isinstance(site, Mapping)
            and set(site) <= set(SITE_KEYS)
            and isinstance(site.get("target"), str)
            and bool(site["target"])
            and site.get("mode", "output") in MODES
            and (site.get("input") is None or isinstance(site["input"], str))
            and isinstance(site.get("role", "ffn"), str)
        )
        if not ok:
            raise config_error(
                config,
                "sites",
                f"a list of {{'target': str, 'mode': one of {MODES}, 'input': str, 'role': str}}",
                site,
            )
