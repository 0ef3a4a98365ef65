"""AdapterFusion (Pfeiffer et al. 2021): attention, per layer, over bottleneck adapters' outputs.

A fusion is an adapter of its own kind (``"fusion"``): :func:`add_fusion` places an
:class:`AdapterFusion` module in every bottleneck layer that carries one of the fused adapters (in
``BottleneckLayer.fusions``), and the ``Fuse`` block of an active composition (:mod:`.compose`) runs
it. As an adapter it is named, counted, trained (:func:`train_fusion`: the fusion's parameters only,
base and adapters frozen), saved and loaded as its own package that depends on its parts
(``formats/fusion.py``), and deleted; activating its name activates its ``Fuse``.

The math is AdapterHub's ``BertFusion`` (``adapters`` 1.3.0, ``methods/modeling.py``) at each site:
with ``h`` what the fused adapters read there (the module output, ``LN(z)`` at a post-LN norm, the
sublayer input for parallel adapters) and ``d_i`` child ``i``'s output,

    q = Q h,  k_i = K d_i,  p = softmax_i(q . k_i / T),  out = s + sum_i p_i V d_i

(``V`` without bias, initialized near the identity; ``T`` 1, or annealed from 50 with
``temperature=True``). Two exact rewrites make it cheaper than AdapterHub's: ``q . (K d_i + b)``
differs from ``(K^T q) . d_i`` by the same ``q . b`` for every child, which softmax ignores (so one
projection of ``q`` instead of one of every ``d_i``), and ``sum_i p_i V d_i = V sum_i p_i d_i``. While
the score dropout trains, the scores are computed as AdapterHub does (dropout does not commute with
the shift).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterConfigError, NotFoundError, UsageError
from .base import AdapterConfig, adapter_state, check_bool, check_fraction, config_error
from .bottleneck import BottleneckLayer
from .compose import Fuse, FusionLookup, child_from_json, child_to_json
from .model import TrainableParams, adapter_layers, add_adapter, mark_only_adapters_trainable, set_active_adapters

KIND = "fusion"
REGULARIZATION_WEIGHT = 0.01  # AdapterHub's get_fusion_regularization_loss


@dataclasses.dataclass
class FusionConfig(AdapterConfig):
    """An AdapterFusion. The defaults are AdapterHub's ``"dynamic"`` fusion; ``value=False,
    value_initialized=False`` is its ``"static"`` one.

    ``children``: the Fuse's children as JSON (adapter names, or block dicts), filled in by
    :func:`add_fusion`. ``dropout``: on the attention scores; None takes the model's
    ``attention_probs_dropout_prob`` (AdapterHub's default), else 0.
    """

    kind: ClassVar[str] = KIND
    mergeable: ClassVar[bool] = False

    children: list[Any] = dataclasses.field(default_factory=list)
    query: bool = True
    key: bool = True
    value: bool = True
    value_initialized: bool = True
    temperature: bool = False
    dropout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.children, (list, tuple)):
            raise config_error(self, "children", "a list of adapter names or blocks", self.children)
        self.children = list(self.children)
        if self.children:
            try:
                Fuse(*(child_from_json(c) for c in self.children))
            except UsageError as exc:
                raise AdapterConfigError(f"FusionConfig.children: {exc}") from None
        for field in ("query", "key", "value", "value_initialized", "temperature"):
            check_bool(self, field, getattr(self, field))
        if self.dropout is not None:
            check_fraction(self, "dropout", self.dropout)

    def fuse(self, name: str) -> Fuse:
        """The Fuse block this fusion runs as."""
        return Fuse(*(child_from_json(c) for c in self.children), name=name)

    def inject(self, model: nn.Module, name: str) -> list[str]:
        if not self.children:
            raise UsageError(f"fusion {name!r}: no children to fuse; add_fusion(model, Fuse('a', 'b')) fills them in")
        state = adapter_state(model)
        names = self.fuse(name).names()
        missing = [n for n in names if n not in state.configs]
        if missing:
            raise NotFoundError(
                f"fusion {name!r} fuses adapter(s) {', '.join(map(repr, missing))}, which the model does not have "
                f"(it has {sorted(state.configs) or 'none'}); attach them first"
            )
        wrong = [n for n in names if state.configs[n].kind != "bottleneck"]
        if wrong:
            raise UsageError(
                f"fusion {name!r}: {wrong[0]!r} is a {state.configs[wrong[0]].kind} adapter; AdapterFusion attends "
                "over bottleneck adapters' outputs (combine LoRA adapters with Average or a weighted merge)"
            )
        sites: dict[str, tuple[BottleneckLayer, str]] = {}
        for n in names:
            for path, layer in adapter_layers(model, n):
                if isinstance(layer, BottleneckLayer) and n in layer.adapters and path not in sites:
                    sites[path] = (layer, n)
        dropout = self.dropout
        if dropout is None:
            dropout = float(getattr(getattr(model, "config", None), "attention_probs_dropout_prob", 0.0) or 0.0)
        for layer, _ in sites.values():
            if name in layer.adapter_names:
                raise UsageError(f"adapter {name!r} already exists on a module of the fusion")
        for layer, first in sites.values():
            up = layer._adapter(first).adapter_up
            fusion = AdapterFusion(up.out_features, self, dropout).to(device=up.weight.device, dtype=up.weight.dtype)
            fusion.train(layer.training)
            layer.add_fusion(name, fusion)
        return list(sites)


class AdapterFusion(nn.Module):
    """One layer's fusion: ``forward(h, [d_1, ...])`` is what the fused children add (see the module doc)."""

    def __init__(self, dim: int, config: FusionConfig, dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim) if config.query else None
        self.key = nn.Linear(dim, dim) if config.key else None
        self.value = nn.Linear(dim, dim, bias=False) if config.value else None
        self.dropout = nn.Dropout(dropout)
        self.T = 50.0 if config.temperature else 1.0
        self._T_step = self.T / 1000.0
        self._qk: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None  # (stamp, W_q^T W_k, b_q W_k)
        with torch.no_grad():
            for lin in (self.query, self.key, self.value):
                if lin is not None:  # AdapterHub's init_bert_weights
                    lin.weight.normal_(0.0, 0.02)
                    if lin.bias is not None:
                        lin.bias.zero_()
            if self.value is not None and config.value_initialized:
                self.value.weight.fill_(1e-6).fill_diagonal_(1.0)

    def forward(self, h: torch.Tensor, deltas: list[torch.Tensor]) -> torch.Tensor:
        if self.training and self.dropout.p > 0:
            q = self.query(h) if self.query is not None else h
            keys = [self.key(d) if self.key is not None else d for d in deltas]
            scores = self.dropout(torch.stack([torch.linalg.vecdot(k, q) for k in keys], dim=-1))
        else:
            qk = self._query_keys(h)
            scores = torch.stack([torch.linalg.vecdot(d, qk) for d in deltas], dim=-1)
        p = F.softmax(scores / self.T, dim=-1)
        if self.training:
            self.T = max(self.T - self._T_step, 1.0)
        # sum_i p_i d_i without stacking the children: one pass over each
        mixed = deltas[0] * p[..., :1]
        for i in range(1, len(deltas)):
            mixed = mixed.addcmul_(deltas[i], p[..., i : i + 1])
        return self.value(mixed) if self.value is not None else mixed

    def _query_keys(self, h: torch.Tensor) -> torch.Tensor:
        """``K^T (Q h + b_q)``, which scores every child (the key bias shifts all scores alike). Without
        gradients it is one product with ``W_q^T W_k`` (kept until a weight changes) instead of two."""
        query, key = self.query, self.key
        if key is None:
            return query(h) if query is not None else h
        if query is None:
            return h @ key.weight
        if torch.is_grad_enabled():
            return query(h) @ key.weight
        wq, bq, wk = query.weight, query.bias, key.weight
        stamp = (wq._version, bq._version, wk._version, wq.data_ptr(), bq.data_ptr(), wk.data_ptr(), h.dtype)
        if self._qk is None or self._qk[0] != stamp:
            # ordinary tensors (not inference ones), outside any graph: usable in any later no-grad forward
            with torch.inference_mode(False), torch.no_grad():
                self._qk = (stamp, (wq.T @ wk).to(h.dtype), (bq @ wk).to(h.dtype))
        _, qk_weight, qk_bias = self._qk
        return torch.addmm(qk_bias, h.reshape(-1, h.shape[-1]), qk_weight).view(*h.shape[:-1], -1)


def add_fusion(model: nn.Module, fuse: Fuse, config: FusionConfig | None = None, *, activate: bool = True) -> str:
    """Add the fusion parameters of `fuse` (new, trainable); return the fusion's name
    (``fuse.name``, or the children joined by commas). With `activate` the Fuse becomes active."""
    if not isinstance(fuse, Fuse):
        raise UsageError(f"expected a Fuse block, got {type(fuse).__name__}")
    if config is not None and not isinstance(config, FusionConfig):
        raise UsageError(f"expected a FusionConfig, got {type(config).__name__}")
    config = dataclasses.replace(config or FusionConfig(), children=[child_to_json(c) for c in fuse.children])
    name = fuse.fusion_name
    add_adapter(model, name, config, activate=activate)
    return name


def fusion_name(model: nn.Module, fusion: str | Fuse) -> str:
    """The name of the fusion a Fuse block runs (or `fusion` itself, checked to be a fusion)."""
    state = adapter_state(model)
    if isinstance(fusion, Fuse):
        return FusionLookup(state.configs).find(fusion)
    if not isinstance(fusion, str) or fusion not in state.configs or state.configs[fusion].kind != KIND:
        fusions = sorted(n for n, c in state.configs.items() if c.kind == KIND)
        raise NotFoundError(f"no fusion {fusion!r} on the model (fusions: {fusions or 'none'})")
    return fusion


def train_fusion(model: nn.Module, fusion: str | Fuse, *, train_adapters: bool = False) -> TrainableParams:
    """Activate `fusion` and make its parameters the only trainable ones (with `train_adapters`, the
    fused adapters' too); the base stays frozen. Returns the trainable share."""
    name = fusion_name(model, fusion)
    set_active_adapters(model, fusion if isinstance(fusion, Fuse) else name)
    config = adapter_state(model).configs[name]
    assert isinstance(config, FusionConfig)
    names = [name, *config.fuse(name).names()] if train_adapters else [name]
    return mark_only_adapters_trainable(model, names)


def fusion_regularization_loss(model: nn.Module, fusion: str | Fuse) -> torch.Tensor:
    """AdapterHub's regularizer: ``0.01 * sum ||I - V||^2`` over the fusion's layers (add it to the loss
    to keep the value matrices near the identity); 0 for a fusion without values."""
    name = fusion_name(model, fusion)
    total: torch.Tensor | None = None
    for _, layer in adapter_layers(model, name):
        if isinstance(layer, BottleneckLayer) and name in layer.fusions:
            value = cast(AdapterFusion, layer.fusions[name]).value
            if value is not None:
                eye = torch.eye(value.weight.shape[0], device=value.weight.device, dtype=value.weight.dtype)
                term = REGULARIZATION_WEIGHT * (eye - value.weight).pow(2).sum()
                total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


__all__ = [
    "AdapterFusion",
    "FusionConfig",
    "add_fusion",
    "fusion_name",
    "fusion_regularization_loss",
    "train_fusion",
]
