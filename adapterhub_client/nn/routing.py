"""Per-sample routing: row ``i`` of a batch runs adapter ``names[i]`` (``None``: the base alone), in one forward.

``with route(model, ["a", "b", None, "a"]): model(**batch)``. Each LoRA / bottleneck layer computes the
base output once for the whole batch and adds each row's own adapter, choosing between two ways:

* ``"bmm"`` (S-LoRA / Punica style): the layer's adapters in the batch are stacked once (``A [k+1, R, in]``,
  ``B [k+1, out, R]`` with the scale folded into ``B``; ranks zero-padded to a power-of-two bucket ``R``;
  slot 0 all zeros for the base rows), gathered per row and applied with two ``torch.bmm``: one batched
  computation whatever the number of adapters. Bottleneck adapters stack their down / up projections
  the same way (widths padded; zero columns contribute nothing whatever the non-linearity).
* ``"segments"``: the rows are stably sorted by adapter and each adapter's contiguous segment runs the
  layer's own single-adapter math (``_adapter_delta`` / the adapter module; plain LoRA on rows already
  contiguous: one fused GEMM into a view of the output) on its rows only, added back with one
  ``index_add``; the base rows cost nothing.

``method="auto"`` picks segments for LoRA layers whose adapters' rows are contiguous, up to
:data:`SEGMENT_MAX_ADAPTERS` of them, and bmm otherwise (measured, see there). DoRA routes too (a per-row
magnitude / norm scale, 1 for plain LoRA rows), as do embedding LoRA and mixed kinds: each layer routes
the adapters it carries and rows whose adapter is elsewhere get that layer's base output.

The stacked tensors are cached per layer and per adapter set, keyed by every tensor's identity, storage
and version counter (``_version``), so an optimizer step or an in-place load invalidates them. With
gradients on and trainable adapter tensors nothing is cached: the stacks are built from the live
parameters each forward, so routed training works (per-row dropout included).

PEFT's spelling, ``model(**batch, adapter_names=[...])`` (``"__base__"`` for the base), works once
:func:`enable_adapter_names` has installed its hook on the model; it routes for that one call (in
training too). Gradient checkpointing re-runs layers in backward, after that call ended: train such a
model inside ``with route(...)`` instead, which keeps the routing until the block ends. ``generate``
rejects unknown keyword arguments: wrap it in ``with route(...)`` (beam search replicates the batch,
which the size check refuses).
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .base import AdapterLayer, adapter_state, check_model
from .bottleneck import Bottleneck, BottleneckLayer
from .heads import ModuleCopyLayer
from .lora import LoRAEmbedding, LoRALayer, LoRALinear
from .model import _check_names, _layers, _merged

__all__ = ["METHODS", "SEGMENT_MAX_ADAPTERS", "Router", "enable_adapter_names", "route"]

METHODS = ("auto", "bmm", "segments")
# "auto" runs segments only where the rows of a layer's adapters are already contiguous (grouped by
# adapter; base rows anywhere outside them) and at most this many distinct adapters share the batch, per
# layer kind; bmm everywhere else. Measured with `python benchmarks/bench_routing.py --only threshold`
# (MiniLM, 32 x 64 tokens, 2 CPU threads, two runs on a quiet machine), whole-forward time bmm /
# segments. LoRA r=8 on query/key/value/dense, grouped rows, 1 (+ base rows), 2, 4, 8, 16 adapters:
# 1.085 1.062 1.055 1.015 0.980 and 1.053 1.054 0.925 1.021 1.010 (segments: the layer's fused GEMM
# into a view of the output); shuffled rows, 1, 2, 4, 8, 16: 1.038 0.728 0.829 0.752 0.840 and 0.962
# 0.716 0.796 0.745 0.633 (gathering the rows costs more than bmm). Houlsby, 1 and 8 adapters, grouped
# 1.001 1.052 and 0.905 0.925, shuffled 0.915 0.901 and 0.857 0.940: bmm at least as fast throughout.
SEGMENT_MAX_ADAPTERS = {LoRALayer.kind: 8, BottleneckLayer.kind: 0}
CACHE_ENTRIES = 4  # adapter sets kept per layer (a serving loop alternating a few sets stays warm)
BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


# --- the plan of one routed batch, per set of adapters a layer carries ---------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where each row goes at layers carrying `adapters`: slot ``i + 1`` is ``adapters[i]``, 0 the base."""

    adapters: tuple[str, ...]
    slots: torch.Tensor  # [rows] int64
    moved: torch.Tensor  # rows with an adapter, stably sorted by slot ([n] int64)
    span: slice | None  # `moved` as a slice when those rows are contiguous and in order
    segments: tuple[tuple[str, int, int], ...]  # (adapter, start, end) within `moved`


def _build_plan(names: Sequence[str | None], adapters: tuple[str, ...], device: torch.device) -> _Plan:
    slot_of = {n: i + 1 for i, n in enumerate(adapters)}
    slots = [slot_of.get(n, 0) if n is not None else 0 for n in names]
    moved = sorted((i for i, s in enumerate(slots) if s), key=lambda i: slots[i])  # stable
    segments, start = [], 0
    for i, name in enumerate(adapters):
        end = start + slots.count(i + 1)
        segments.append((name, start, end))
        start = end
    contiguous = moved == list(range(moved[0], moved[0] + len(moved)))
    return _Plan(
        adapters=adapters,
        slots=torch.tensor(slots, dtype=torch.long, device=device),
        moved=torch.tensor(moved, dtype=torch.long, device=device),
        span=slice(moved[0], moved[0] + len(moved)) if contiguous else None,
        segments=tuple(segments),
    )


# --- cached stacks -------------------------------------------------------------------------------

_CACHE: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]]]
_CACHE = weakref.WeakKeyDictionary()


def _same(stamp: tuple[tuple[torch.Tensor, int, int], ...], tensors: Sequence[torch.Tensor]) -> bool:
    """Whether `tensors` are the very tensors of `stamp`, with the same storage and version (no write since)."""
    return len(stamp) == len(tensors) and all(
        t is s and t.data_ptr() == ptr and t._version == version for (s, ptr, version), t in zip(stamp, tensors)
    )


def _cached(layer: nn.Module, key: tuple[Any, ...], tensors: Sequence[torch.Tensor], build: Callable[[], Any]) -> Any:
    """``build()``, reused while none of `tensors` changed; built live when gradients must reach them."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return build()
    if any(t.is_inference() for t in tensors):  # no version counter to watch
        with torch.no_grad():
            return build()
    entries = _CACHE.setdefault(layer, OrderedDict())
    hit = entries.get(key)
    if hit is not None and _same(hit[0], tensors):
        entries.move_to_end(key)
        return hit[1]
    # normal tensors even under inference_mode: a later forward with autograd on may save them
    with torch.inference_mode(False), torch.no_grad():
        value = build()
    # the tensors themselves are kept (not their ids): a freed tensor's id and storage can be reused
    entries[key] = (tuple((t, t.data_ptr(), t._version) for t in tensors), value)
    entries.move_to_end(key)
    while len(entries) > CACHE_ENTRIES:
        entries.popitem(last=False)
    return value


def _bucket(n: int) -> int:
    """The padded size for ranks / widths up to `n`: the next power of two (shapes repeat across sets)."""
    return 1 << max(0, n - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class _LoRAStack:
    A: torch.Tensor  # [k+1, R, in]; embedding: the lookup table [(k+1) * num_embeddings, R]
    B: torch.Tensor  # [k+1, out, R], scale folded in
    scale: torch.Tensor | None  # [k+1, out]: DoRA's m / ||W + sBA|| (1 for plain rows); None without DoRA


def _lora_stack(layer: LoRALayer, adapters: tuple[str, ...]) -> _LoRAStack:
    A0 = layer.lora_A[adapters[0]]
    embedding = isinstance(layer, LoRAEmbedding)
    R = _bucket(max(layer.r[n] for n in adapters))

    def factors() -> tuple[torch.Tensor, torch.Tensor]:
        As, Bs = [], []
        for n in adapters:
            A, B, pad = layer.lora_A[n], layer.lora_B[n], R - layer.r[n]
            As.append(F.pad(A.T, (0, pad)) if embedding else F.pad(A, (0, 0, 0, pad)))
            Bs.append(F.pad(B * layer.scaling[n], (0, pad)))
        A_all = torch.stack([torch.zeros_like(As[0]), *As])
        B_all = torch.stack([torch.zeros_like(Bs[0]), *Bs])
        return (A_all.flatten(0, 1) if embedding else A_all), B_all

    params = [t for n in adapters for t in (layer.lora_A[n], layer.lora_B[n])]
    shape = tuple((layer.r[n], layer.scaling[n]) for n in adapters)  # plain numbers a hot-swap may change
    A, B = _cached(layer, ("lora", adapters, shape), params, factors)
    dora = [n for n in adapters if n in layer.lora_magnitude_vector]
    if not dora:
        return _LoRAStack(A, B, None)
    # m / ||W + sBA||: the norm detached, as in the layer's own forward; the magnitude live when it trains
    weight = cast(torch.Tensor, layer.base_layer.weight)

    def norm(name: str) -> torch.Tensor:
        with torch.no_grad():  # detached, as in the layer's own forward
            return layer._weight_norm(name)

    norm_of = {
        n: _cached(layer, ("dora", n), [layer.lora_A[n], layer.lora_B[n], weight], partial(norm, n)) for n in dora
    }

    def scales() -> torch.Tensor:
        ones = torch.ones(B.shape[1], dtype=A0.dtype, device=A0.device)
        per = [layer.lora_magnitude_vector[n] / norm_of[n] if n in norm_of else ones for n in adapters]
        return torch.stack([ones, *per])

    magnitudes = [layer.lora_magnitude_vector[n] for n in dora]
    return _LoRAStack(A, B, _cached(layer, ("scale", adapters), magnitudes + list(norm_of.values()), scales))


@dataclasses.dataclass(frozen=True)
class _BottleneckStack:
    down: torch.Tensor  # [k+1, W, dim]
    down_bias: torch.Tensor  # [k+1, W]
    up: torch.Tensor  # [k+1, dim, W]
    up_bias: torch.Tensor  # [k+1, dim]
    scale: torch.Tensor  # [k+1, dim]


def _bottleneck_stack(layer: BottleneckLayer, modules: list[Bottleneck], adapters: tuple[str, ...]) -> _BottleneckStack:
    downs = [cast(nn.Linear, m.adapter_down[0]) for m in modules]
    W = _bucket(max(d.out_features for d in downs))

    def build() -> _BottleneckStack:
        parts: list[list[torch.Tensor]] = [[], [], [], [], []]
        for m, d in zip(modules, downs):
            pad = W - d.out_features
            up = m.adapter_up
            s = m.scaling
            scale = (s if isinstance(s, torch.Tensor) else up.bias.new_tensor(s)).expand(up.out_features)
            for part, t in zip(
                parts,
                (F.pad(d.weight, (0, 0, 0, pad)), F.pad(d.bias, (0, pad)), F.pad(up.weight, (0, pad)), up.bias, scale),
            ):
                part.append(t)
        return _BottleneckStack(*(torch.stack([torch.zeros_like(p[0]), *p]) for p in parts))

    params = [p for m in modules for p in m.parameters()]
    scales = tuple(m.scaling for m in modules if isinstance(m.scaling, float))
    return cast(_BottleneckStack, _cached(layer, ("bottleneck", adapters, scales), params, build))


# --- the router ----------------------------------------------------------------------------------


def _per_row(plan: _Plan, values: Sequence[Any], base: Any, like: torch.Tensor) -> torch.Tensor:
    """``values[i]`` for the rows of ``plan.adapters[i]``, `base` for base rows; shaped to broadcast over `like`."""
    per_slot = torch.tensor([base, *values], device=like.device)
    return per_slot.index_select(0, plan.slots).view(-1, *([1] * (like.dim() - 1)))


def _rows_dropout(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Dropout with its own probability per row (`p` broadcasts over `x`); rows with p = 0 pass unchanged."""
    keep = (1 - p).to(x.dtype)
    return x * (torch.rand_like(x) < keep) / keep


def _add_rows(result: torch.Tensor, plan: _Plan, delta: torch.Tensor) -> torch.Tensor:
    """`result` with `delta` (the moved rows, in plan order) added; in place when no gradient is recorded."""
    if torch.is_grad_enabled():
        return result.index_add(0, plan.moved, delta)
    return result.index_add_(0, plan.moved, delta)


def _moved_rows(t: torch.Tensor, plan: _Plan) -> torch.Tensor:
    return t[plan.span] if plan.span is not None else t.index_select(0, plan.moved)


class Router:
    """One routed batch; the layers' forwards call :meth:`lora_forward` / :meth:`bottleneck_forward`."""

    def __init__(self, names: Sequence[str | None], method: str = "auto") -> None:
        self.names = tuple(names)
        self.rows = len(self.names)
        self.method = method
        self._distinct = tuple(dict.fromkeys(n for n in self.names if n is not None))
        self._plans: dict[tuple[tuple[str, ...], torch.device], _Plan] = {}

    def _plan(self, carried: Any, device: torch.device) -> _Plan | None:
        """The plan at a layer carrying `carried` (None when no row uses one of them)."""
        here = tuple(n for n in self._distinct if n in carried)
        if not here:
            return None
        plan = self._plans.get((here, device))
        if plan is None:
            plan = self._plans[(here, device)] = _build_plan(self.names, here, device)
        return plan

    def _segments(self, plan: _Plan, kind: str) -> bool:
        if self.method == "auto":
            return plan.span is not None and len(plan.adapters) <= SEGMENT_MAX_ADAPTERS[kind]
        return self.method == "segments"

    def _rows_of(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`x` with one row per routed row: a batch of 1 (position ids) is broadcast, a wrong size refused."""
        rows = x.shape[0] if x.dim() else 0
        if rows == self.rows:
            return x
        if rows == 1:
            return x.expand(self.rows, *x.shape[1:])
        raise UsageError(
            f"routing {self.rows} rows, but {type(layer).__name__} got an input of shape {tuple(x.shape)} "
            "(per-sample routing needs the batch in the first dimension)"
        )

    # --- LoRA ------------------------------------------------------------------------------------
    def lora_forward(self, layer: LoRALayer, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        plan = self._plan(layer.lora_A, x.device)
        if plan is None:
            return cast(torch.Tensor, layer.base_layer(x, *args, **kwargs))
        x = self._rows_of(layer, x)
        result = cast(torch.Tensor, layer.base_layer(x, *args, **kwargs))
        embedding = isinstance(layer, LoRAEmbedding)
        if self._segments(plan, layer.kind) or (embedding and not _plain_lookup(layer)):
            return _lora_segments(layer, plan, x, result)
        stack = _lora_stack(layer, plan.adapters)
        if embedding:
            return self._embedding_bmm(cast(LoRAEmbedding, layer), plan, stack, x, result)
        return self._linear_bmm(cast(LoRALinear, layer), plan, stack, x, result)

    def _linear_bmm(
        self, layer: LoRALinear, plan: _Plan, stack: _LoRAStack, x: torch.Tensor, result: torch.Tensor
    ) -> torch.Tensor:
        g = plan.slots
        x3 = x.reshape(self.rows, -1, x.shape[-1]).to(stack.A.dtype)
        p = [layer.dropout[n] for n in plan.adapters]
        dropped = layer.training and any(p)
        if dropped:
            x3 = _rows_dropout(x3, _per_row(plan, p, 0.0, x3))
        h = torch.bmm(x3, stack.A.index_select(0, g).transpose(1, 2))  # [rows, L, R]
        B = stack.B.index_select(0, g).transpose(1, 2)  # [rows, R, out]
        r3 = result.reshape(self.rows, -1, result.shape[-1])
        if stack.scale is None:
            if r3.dtype == h.dtype == B.dtype and not torch.is_grad_enabled():  # (autocast: B may differ)
                return r3.baddbmm_(h, B).view(result.shape)
            return (r3 + torch.bmm(h, B).to(r3.dtype)).view(result.shape)
        # DoRA rows: (m/n - 1) * (base(x) - bias) + (m/n) * s * B(A(x)); plain rows have m/n = 1
        scale = stack.scale.index_select(0, g).unsqueeze(1)
        if dropped:  # the base term sees the dropped-out input too, as the layer's own forward
            base = F.linear(x3, layer._dense_weight().to(x3.dtype))
        else:
            base = r3.to(h.dtype)
            bias = getattr(layer.base_layer, "bias", None)
            if bias is not None:
                base = base - bias.to(h.dtype)
        delta = (scale - 1) * base + scale * torch.bmm(h, B)
        return (r3 + delta.to(r3.dtype)).view(result.shape)

    def _embedding_bmm(
        self, layer: LoRAEmbedding, plan: _Plan, stack: _LoRAStack, x: torch.Tensor, result: torch.Tensor
    ) -> torch.Tensor:
        g = plan.slots
        ids = x.reshape(self.rows, -1)
        vocab = cast(nn.Embedding, layer.base_layer).num_embeddings
        h = F.embedding(ids + (g * vocab).unsqueeze(1), stack.A)  # [rows, L, R]
        pad = cast(nn.Embedding, layer.base_layer).padding_idx
        if pad is not None and torch.is_grad_enabled():  # no gradient into the padding entry, as F.embedding
            h = torch.where((ids == pad).unsqueeze(-1), h.detach(), h)
        out = torch.bmm(h, stack.B.index_select(0, g).transpose(1, 2))  # [rows, L, dim]
        r3 = result.reshape(self.rows, -1, result.shape[-1])
        if stack.scale is not None:  # DoRA: scale * result + scale * out
            scale = stack.scale.index_select(0, g).unsqueeze(1)
            return (r3 + ((scale - 1) * r3.to(out.dtype) + scale * out).to(r3.dtype)).view(result.shape)
        return (r3 + out.to(r3.dtype)).view(result.shape)

    # --- bottleneck ------------------------------------------------------------------------------
    def bottleneck_forward(self, layer: BottleneckLayer, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else next(iter(kwargs.values()))
        plan = self._plan(layer.adapters, x.device)
        if plan is None:
            layer._captured = None
            return layer.base_layer(*args, **kwargs)
        modes = {layer.modes[n] for n in plan.adapters}
        if "layernorm" in modes:  # LN(z + A(LN(z))) per row; base rows: LN(z + 0)
            x = self._rows_of(layer, x)
            return layer.base_layer(self._bottleneck_add(layer, plan, x, layer.base_layer(x)))
        y = self._rows_of(layer, layer.base_layer(*args, **kwargs))
        src = None
        if "parallel" in modes:
            src = x if layer._input_module is None else layer._captured
            if src is None:
                raise UsageError("parallel adapter: the input module did not run before this module")
            src = self._rows_of(layer, src)
        layer._captured = None  # don't keep activations alive between forwards
        if src is None:
            h = y
        elif modes == {"parallel"}:
            h = src
        else:  # output and parallel adapters at one module: each row reads its own adapter's input
            parallel = _per_row(plan, [layer.modes[n] == "parallel" for n in plan.adapters], False, y)
            h = torch.where(parallel, src, y)
        return self._bottleneck_add(layer, plan, y, h)

    def _bottleneck_add(self, layer: BottleneckLayer, plan: _Plan, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``y + A_row(h)`` with each row's own adapter ``A_row`` (zero for base rows)."""
        modules = [layer._adapter(n) for n in plan.adapters]
        if self._segments(plan, layer.kind):
            hs = _moved_rows(h, plan)
            parts = [m(hs[a:b]) for m, (_, a, b) in zip(modules, plan.segments)]
            return y.index_add(0, plan.moved, torch.cat(parts) if len(parts) > 1 else parts[0])
        st = _bottleneck_stack(layer, modules, plan.adapters)

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, plan.slots)

        h3 = h.reshape(self.rows, -1, h.shape[-1])
        d = torch.baddbmm(rows(st.down_bias).unsqueeze(1), h3, rows(st.down).transpose(1, 2))  # [rows, L, W]
        d = _activate(d, [m.adapter_down[1] for m in modules], plan)
        u = torch.baddbmm(rows(st.up_bias).unsqueeze(1), d, rows(st.up).transpose(1, 2))  # [rows, L, dim]
        c = u * rows(st.scale).unsqueeze(1)
        p = [m.dropout.p if m.training else 0.0 for m in modules]
        if any(p):
            c = _rows_dropout(c, _per_row(plan, p, 0.0, c))
        return y + c.view(y.shape)


def _lora_segments(layer: LoRALayer, plan: _Plan, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """Each adapter's rows through the layer's own single-adapter math, added back to `result`."""
    xs, rs = _moved_rows(x, plan), _moved_rows(result, plan)
    if plan.span is None or torch.is_grad_enabled():
        deltas = [layer._adapter_delta(n, xs[a:b], rs[a:b]) for n, a, b in plan.segments]
        return _add_rows(result, plan, torch.cat(deltas) if len(deltas) > 1 else deltas[0])
    for n, a, b in plan.segments:  # contiguous rows, no autograd: add into the views of `result`
        r = rs[a:b]
        A, B = layer.lora_A[n], layer.lora_B[n]
        plain = isinstance(layer, LoRALinear) and n not in layer.lora_magnitude_vector
        if plain and r.dtype == A.dtype and not (layer.training and layer.dropout[n]) and r.is_contiguous():
            # s * (x A^T) B^T added by one GEMM, as the layer's own forward does
            h = F.linear(xs[a:b].to(A.dtype), A)
            r.view(-1, r.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]), B.T, alpha=layer.scaling[n])
        else:
            r.add_(layer._adapter_delta(n, xs[a:b], r))
    return result


def _activate(d: torch.Tensor, activations: list[nn.Module], plan: _Plan) -> torch.Tensor:
    """Each row through its adapter's non-linearity (one call when they all share one; base rows are 0)."""
    kinds = {repr(a): a for a in activations}
    if len(kinds) == 1:
        return cast(torch.Tensor, activations[0](d))
    out = d
    for key, act in kinds.items():
        out = torch.where(_per_row(plan, [repr(a) == key for a in activations], False, d), act(d), out)
    return out


def _plain_lookup(layer: LoRALayer) -> bool:
    """The stacked lookup reproduces F.embedding unless it renormalizes rows or scales gradients."""
    b = cast(nn.Embedding, layer.base_layer)
    return b.max_norm is None and not b.scale_grad_by_freq and not b.sparse


# --- the public API ------------------------------------------------------------------------------


def _checked_names(model: nn.Module, names: object, base: tuple[str, ...] = ()) -> list[str | None]:
    """`names` as a list of adapter names or None, checked against `model` before any forward."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise UsageError(f"expected one adapter name (or None) per row, got {names!r}")
    if not names:
        raise UsageError("expected one adapter name (or None) per row, got an empty list")
    rows: list[str | None] = [None if n is None or (isinstance(n, str) and n in base) else n for n in names]
    odd = [n for n in rows if n is not None and not isinstance(n, str)]
    if odd:
        raise UsageError(f"expected adapter names (strings) or None per row, got {odd[0]!r}")
    distinct = list(dict.fromkeys(n for n in rows if n is not None))
    _check_names(model, distinct)
    state = adapter_state(model)
    kinds = {n: state.configs[n].kind for n in distinct}
    other = [n for n, k in kinds.items() if k not in (LoRALayer.kind, BottleneckLayer.kind)]
    if other:
        raise UsageError(
            f"adapter {other[0]!r} is a {kinds[other[0]]} adapter; per-sample routing runs LoRA and bottleneck adapters"
        )
    merged = _merged(model)
    if merged:
        raise UsageError(
            f"adapters {merged} are merged into the weights, which every row shares; unmerge_adapters(model) first"
        )
    composition = state.composition
    if composition is not None and (composition.copies > 1 or composition.batch is not None):
        raise UsageError(
            f"the active composition {composition.block!r} replicates or splits the batch; "
            "set_active_adapters(model, None) before routing"
        )
    for path, layer in _layers(model):
        if isinstance(layer, ModuleCopyLayer):
            routed = [n for n in distinct if n in layer.adapter_names]
            running = [n for n in layer.active_adapters if n in layer.adapter_names]
            if routed or running:
                raise UsageError(
                    f"adapter {(routed or running)[0]!r} has a trained copy of {path}, which would run for every row; "
                    "per-sample routing cannot give rows their own module copies"
                )
    return rows


def _batch_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The batch size of the model's input: ``input_ids`` / ``inputs_embeds``, else the first tensor."""
    for key in ("input_ids", "inputs_embeds"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return int(kwargs[key].shape[0])
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim():
            return int(value.shape[0])
    return None


def _routed_layers(model: nn.Module) -> list[AdapterLayer]:
    return [layer for _, layer in _layers(model) if isinstance(layer, (LoRALayer, BottleneckLayer))]


@contextlib.contextmanager
def _routing(model: nn.Module, rows: list[str | None], method: str, check_input: bool) -> Iterator[nn.Module]:
    router = Router(rows, method)
    layers = _routed_layers(model)
    previous = [layer._route for layer in layers]
    handle = None
    if check_input:

        def check(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            n = _batch_size(args, kwargs)
            if n is not None and n != router.rows:
                raise UsageError(f"route() got {router.rows} adapter names for a batch of {n} rows")

        handle = model.register_forward_pre_hook(check, with_kwargs=True)
    for layer in layers:
        layer._route = router
    try:
        yield model
    finally:
        for layer, before in zip(layers, previous):
            layer._route = before
        if handle is not None:
            handle.remove()


def route(
    model: nn.Module, names: Sequence[str | None], *, method: str = "auto"
) -> contextlib.AbstractContextManager[nn.Module]:
    """Inside the block, row ``i`` of every forward of `model` runs adapter ``names[i]`` (None: the base).

    Checked here, before any forward: every name is a LoRA or bottleneck adapter of the model, nothing
    is merged, no module copy would run for every row. ``len(names)`` is checked against each forward's
    batch. `method`: ``"auto"`` (measured choice per layer), ``"bmm"`` or ``"segments"``. The active
    selection (or composition) is ignored inside and back in force after, also after an exception.
    """
    check_model(model)
    if method not in METHODS:
        raise UsageError(f"unknown routing method {method!r}; expected one of {', '.join(METHODS)}")
    return _routing(model, _checked_names(model, names), method, check_input=True)


def _adapter_names_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = kwargs.pop("adapter_names", None)
    if names is None:
        return args, kwargs
    rows = _checked_names(module, names, base=(BASE,))
    n = _batch_size(args, kwargs)
    if n is not None and n != len(rows):
        raise UsageError(f"adapter_names has {len(rows)} names for a batch of {n} rows")
    context = _routing(module, rows, "auto", check_input=False)
    context.__enter__()
    module.__dict__.setdefault("_ah_adapter_names", []).append(context)
    return args, kwargs


def _adapter_names_done(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
    contexts = module.__dict__.get("_ah_adapter_names")
    if contexts:
        contexts.pop().__exit__(None, None, None)


def enable_adapter_names(model: nn.Module) -> nn.Module:
    """Let `model`'s forward take PEFT's ``adapter_names=[...]`` (one per row, ``"__base__"`` or None for
    the base): that call is routed as inside :func:`route`. Installed once; returns `model`."""
    check_model(model)
    if not any(h is _adapter_names_hook for h in model._forward_pre_hooks.values()):
        model.register_forward_pre_hook(_adapter_names_hook, with_kwargs=True)
        model.register_forward_hook(_adapter_names_done, with_kwargs=True, always_call=True)
    return model
