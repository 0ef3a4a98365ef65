"""Weighted merging of LoRA adapters into a new, ordinary LoRA adapter: ``merge_weighted``.

The target is always the weighted sum of the adapters' weight changes, per module
``sum_i w_i dW_i`` with ``dW_i = s_i B_i A_i`` (a module an adapter does not touch contributes zero):

* ``exact``: the ranks concatenate, ``A = [A_1; A_2; ...]`` and ``B = [w_1 s_1 B_1, w_2 s_2 B_2, ...]``
  with the new adapter's scale 1 (``alpha == r`` per module), so its delta *is* the target. PEFT's
  ``linear`` combination scales A and B each by ``sqrt(w s)`` and adds cross terms instead;
* ``svd``: that exact delta truncated to ``rank`` (Eckart-Young optimal), computed on the factors
  (QR of the stacked B and A, then the SVD of a small core), never the dense matrix;
* ``ties`` (Yadav et al. 2023) and ``dare`` (Yu et al. 2024): approximations by design, on the dense
  deltas, then SVD back to a LoRA of ``rank``.

Every result carries the relative Frobenius error of the new delta against the target, measured on
the adapter as attached (a :class:`MergeReport`). The merged adapter has a plain :class:`~.lora.LoRAConfig`
(exact paths as ``target_modules``, per-module ranks in ``rank_pattern``/``alpha_pattern``), so it
saves, exports to PEFT and reloads like any other. DoRA is not a low-rank change of the weight:
``exact`` refuses it; the other methods merge its effective change ``W' - W`` and warn. Bottleneck
adapters are not weight changes at all and are refused.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import AdapterWarning, NotFoundError, UsageError
from .base import adapter_state, check_model, is_number
from .dora import dora_merge
from .layout import is_transposed
from .lora import LoRAConfig, LoRALayer
from .model import adapter_layers, attach_weights, list_adapters
from .targets import base_of, iter_modules, kind_of, weight_of

__all__ = ["METHODS", "MergeReport", "ModuleMerge", "dare_combine", "merge_weighted", "ties_combine"]

METHODS = ("exact", "svd", "ties", "dare")
# above this smaller dimension a dense delta is factored by randomized SVD (torch.svd_lowrank)
FULL_SVD_MAX_DIM = 2048
# a target this small against its parts' norms is a cancellation (a - a): its error is measured against the parts
CANCELLED = 1e-6


@dataclasses.dataclass(frozen=True)
class ModuleMerge:
    """One module of a merge: the new adapter's rank there and its relative error (``||new - target||_F /
    ||target||_F``, or against ``sum_i |w_i| ||dW_i||_F`` where the target cancels to zero)."""

    path: str
    rank: int
    error: float
    sources: tuple[str, ...]  # the adapters that touch this module


@dataclasses.dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_weighted` built and how far it is from the weighted sum of the deltas."""

    name: str
    method: str
    weights: tuple[tuple[str, float], ...]
    modules: tuple[ModuleMerge, ...]
    error: float  # over all modules: sqrt(sum ||new - target||^2 / sum ||target||^2)
    notes: tuple[str, ...] = ()
    density: float | None = None
    seed: int | None = None  # dare: the seed used (drawn when none was given), to reproduce it

    @property
    def ranks(self) -> dict[str, int]:
        return {m.path: m.rank for m in self.modules}

    @property
    def max_rank(self) -> int:
        return max((m.rank for m in self.modules), default=0)

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "weights": [[n, w] for n, w in self.weights],
            "error": self.error,
            "max_rank": self.max_rank,
            "modules": [dataclasses.asdict(m) | {"sources": list(m.sources)} for m in self.modules],
            "notes": list(self.notes),
            "density": self.density,
            "seed": self.seed,
        }


@dataclasses.dataclass
class _Term:
    """One adapter's contribution at one module: ``weight * delta`` with delta ``B @ A`` (scale folded into
    ``B``) or, for DoRA, the dense effective change."""

    name: str
    weight: float
    rank: int  # the adapter's rank here (DoRA's too: the default rank of a merge adds them up)
    B: torch.Tensor | None = None  # [out, r], times the adapter's scale
    A: torch.Tensor | None = None  # [r, in]
    dense: torch.Tensor | None = None  # [out, in], DoRA only

    def delta(self) -> torch.Tensor:
        """``dW`` as ``[out, in]`` (without the weight)."""
        if self.dense is not None:
            return self.dense
        assert self.B is not None and self.A is not None
        return self.B @ self.A

    def norm(self) -> float:
        """``|w| ||dW||_F``."""
        if self.dense is not None:
            return abs(self.weight) * float(torch.linalg.matrix_norm(self.dense.double()))
        assert self.B is not None and self.A is not None
        return abs(self.weight) * _product_norm(self.B, self.A)


@dataclasses.dataclass
class _Module:
    path: str
    out_features: int
    in_features: int
    terms: list[_Term]

    @property
    def low_rank(self) -> bool:
        return all(t.dense is None for t in self.terms)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.name for t in self.terms))

    @property
    def source_rank(self) -> int:
        return sum(t.rank for t in self.terms)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The target as ``B @ A``, ranks concatenated and weights folded into B (low-rank modules)."""
        B = torch.cat([t.weight * t.B for t in self.terms if t.B is not None], dim=1)
        A = torch.cat([t.A for t in self.terms if t.A is not None], dim=0)
        return B, A

    def dense_target(self) -> torch.Tensor:
        deltas = [t.delta().double() for t in self.terms]
        return sum((t.weight * d for t, d in zip(self.terms, deltas)), torch.zeros_like(deltas[0]))


def merge_weighted(
    model: torch.nn.Module,
    weights: Mapping[str, float] | Sequence[tuple[str, float]],
    name: str,
    method: str = "exact",
    rank: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> MergeReport:
    """Attach a new LoRA adapter `name` whose delta is (or approximates) ``sum_i w_i dW_i``.

    `weights` maps adapter names to weights (negative allowed), or lists ``(name, weight)`` pairs (one
    adapter may appear twice). ``rank`` (``svd``, ``ties``, ``dare``): the rank per module, default the
    sum of the merged ranks there, capped by the module's dimensions. ``density`` (``ties``, ``dare``):
    the share of entries each delta keeps; ``seed`` (``dare``): the drop mask's generator seed. The new
    adapter is frozen and inactive (``set_active_adapters(model, name)`` runs it), as a loaded one.
    """
    check_model(model)
    pairs = _pairs(weights)
    _check_options(method, rank, density, seed)
    if not isinstance(name, str):
        raise UsageError(f"expected a name (a string) for the merged adapter, got {name!r}")
    if name in adapter_state(model).configs:
        raise UsageError(f"adapter {name!r} already exists; pick another name for the merged adapter")
    notes = _check_sources(model, pairs, method)
    modules = _collect(model, pairs)
    if method == "dare" and seed is None:
        seed = int(torch.seed() % 2**63)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    capped = 0
    randomized = 0
    for module in modules:
        if method == "exact":
            B, A = module.factors()
        else:
            limit = min(module.out_features, module.in_features)
            if module.low_rank:
                limit = min(limit, module.source_rank)  # beyond it the singular values are zero
            k = min(rank if rank is not None else module.source_rank, limit)
            capped += rank is not None and k < rank
            if method == "svd" and module.low_rank:
                B, A = _truncate_product(*module.factors(), k)
            else:
                combined = _combine(module, method, density, generator)
                randomized += min(combined.shape) > FULL_SVD_MAX_DIM
                B, A = _truncate_dense(combined, k)
        ranks[module.path] = A.shape[0]
        tensors[f"{module.path}.lora_A"] = A
        tensors[f"{module.path}.lora_B"] = B
    attach_weights(model, name, _config(modules, ranks), tensors, activate=False, where=f"merged adapter {name!r}")
    notes += _method_notes(method, rank, density, capped, randomized)
    merged, total, cancelled = _errors(model, name, modules)
    notes += _cancel_notes(cancelled, modules)
    return MergeReport(name, method, tuple(pairs), tuple(merged), total, tuple(notes), density, seed)


# --- arguments ---------------------------------------------------------------------------------


def _pairs(weights: object) -> list[tuple[str, float]]:
    if isinstance(weights, Mapping):
        items = list(weights.items())
    elif isinstance(weights, Sequence) and not isinstance(weights, (str, bytes)):
        items = list(weights)
        if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in items):
            raise UsageError(f"expected (adapter name, weight) pairs, got {weights!r}")
    else:
        raise UsageError(
            f"expected a mapping of adapter names to weights or (name, weight) pairs, got {type(weights).__name__}"
        )
    if not items:
        raise UsageError("no adapters to merge: the weights are empty")
    pairs = []
    for n, w in items:
        if not isinstance(n, str):
            raise UsageError(f"expected an adapter name (a string), got {n!r}")
        if not is_number(w) or not math.isfinite(w):
            raise UsageError(f"the weight of adapter {n!r} must be a finite number, got {w!r}")
        pairs.append((n, float(w)))
    return pairs


def _check_options(method: object, rank: object, density: object, seed: object) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    if rank is not None:
        if method == "exact":
            raise UsageError("method='exact' keeps every rank (their sum); pass rank with method='svd' to truncate")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
            raise UsageError(f"rank must be a positive integer, got {rank!r}")
    if method in ("ties", "dare"):
        if density is None:
            raise UsageError(f"method={method!r} needs density: the share of each delta's entries to keep, in (0, 1]")
        if not is_number(density) or not 0.0 < float(density) <= 1.0:
            raise UsageError(f"density must be a number in (0, 1], got {density!r}")
    elif density is not None:
        raise UsageError(f"density applies to method='ties' and 'dare' only, not {method!r}")
    if seed is not None:
        if method != "dare":
            raise UsageError(f"seed applies to method='dare' only (its random drop), not {method!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {seed!r}")


def _check_sources(model: torch.nn.Module, pairs: list[tuple[str, float]], method: str) -> list[str]:
    """Refuse what cannot be merged (before anything is computed); notes on what is left out."""
    infos = {a.name: a for a in list_adapters(model)}
    unknown = sorted({n for n, _ in pairs if n not in infos})
    if unknown:
        raise NotFoundError(
            f"unknown adapter(s) {', '.join(map(repr, unknown))}; the model has {sorted(infos) or 'none'}"
        )
    configs = adapter_state(model).configs
    notes = []
    for n in dict.fromkeys(n for n, _ in pairs):
        info, config = infos[n], configs[n]
        if not isinstance(config, LoRAConfig):
            raise UsageError(
                f"adapter {n!r} is a {info.kind} adapter: it transforms activations, not weights, so it has no "
                "weight delta to merge (only LoRA adapters merge)"
            )
        if info.merged:
            raise UsageError(f"adapter {n!r} is merged into the base weights; unmerge_adapters(model) first")
        if info.heads:
            raise UsageError(
                f"adapter {n!r} has task heads ({', '.join(info.heads)}), which a weighted merge cannot combine"
            )
        if config.dora:
            if method == "exact":
                raise UsageError(
                    f"adapter {n!r} is DoRA: it rescales each output feature of W + sBA, which is no low-rank "
                    "delta, so an exact merge is impossible; method='svd' merges its effective change W' - W"
                )
            warnings.warn(
                f"adapter {n!r} is DoRA: its effective change W' - W at this base is merged as a dense delta, "
                "approximated by a plain LoRA (see the report's errors)",
                AdapterWarning,
                stacklevel=3,
            )
        if config.bias != "none":
            notes.append(f"adapter {n!r} trains base biases (bias={config.bias!r}); they stay in the base, unmerged")
    return notes


# --- the deltas --------------------------------------------------------------------------------


def _dense_base(layer: LoRALayer) -> torch.Tensor:
    """The base weight as ``[out, in]``."""
    base = base_of(layer)
    weight = weight_of(base)
    kind = kind_of(base)
    assert weight is not None and kind is not None  # a LoRA layer wraps one of the layout kinds
    return weight.T if is_transposed(kind) else weight


def _term(layer: LoRALayer, path: str, name: str, weight: float) -> _Term:
    A, B = layer.lora_A[name].detach(), layer.lora_B[name].detach()
    dtype = torch.promote_types(A.dtype, torch.float32)
    A, B = A.to(dtype), B.to(dtype) * layer.scaling[name]
    if name not in layer.lora_magnitude_vector:
        return _Term(name, weight, A.shape[0], B=B, A=A)
    if layer.merged_adapters:  # DoRA's change depends on the pristine base weight
        raise UsageError(
            f"{path}: adapters {layer.merged_adapters} are merged into the base weight, which DoRA adapter "
            f"{name!r} rescales; unmerge_adapters(model) first"
        )
    W = _dense_base(layer).detach().to(dtype)
    magnitude = layer.lora_magnitude_vector[name].detach().to(dtype)
    new, _ = dora_merge(W, B @ A, magnitude)
    return _Term(name, weight, A.shape[0], dense=new - W)


def _collect(model: torch.nn.Module, pairs: list[tuple[str, float]]) -> list[_Module]:
    """Every module any of the adapters touches, in model order, with each adapter's term there."""
    order = {path: i for i, (path, *_) in enumerate(iter_modules(model))}
    found: dict[str, _Module] = {}
    for n, w in pairs:
        for path, layer in adapter_layers(model, n):
            if not isinstance(layer, LoRALayer):
                continue
            if path not in found:
                out, inp = _dense_base(layer).shape
                found[path] = _Module(path, out, inp, [])
            found[path].terms.append(_term(layer, path, n, w))
    return sorted(found.values(), key=lambda m: order[m.path])


def _config(modules: list[_Module], ranks: dict[str, int]) -> LoRAConfig:
    """A plain LoRA on exactly these paths with scale 1 everywhere (``alpha == r``, no rsLoRA)."""
    default = collections.Counter(ranks.values()).most_common(1)[0][0]
    other = {re.escape(p): r for p, r in ranks.items() if r != default}
    return LoRAConfig(
        r=default,
        alpha=default,
        target_modules=[m.path for m in modules],
        rank_pattern=other,
        alpha_pattern={k: float(r) for k, r in other.items()},
    )


# --- factorizations ----------------------------------------------------------------------------


def _split(
    U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, k: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``B = U_k sqrt(S_k)``, ``A = sqrt(S_k) Vh_k``: balanced factors (neither carries the scale)."""
    root = S[:k].sqrt()
    return (U[:, :k] * root).to(dtype), (root[:, None] * Vh[:k]).to(dtype)


def _truncate_product(B: torch.Tensor, A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-`k` approximation of ``B @ A`` from the factors: with ``B = Qb Rb`` and
    ``A^T = Qa Ra``, ``B A = Qb (Rb Ra^T) Qa^T`` and only the small core needs an SVD."""
    Qb, Rb = torch.linalg.qr(B.double())
    Qa, Ra = torch.linalg.qr(A.double().T)
    U, S, Vh = torch.linalg.svd(Rb @ Ra.T)
    return _split(Qb @ U, S, Vh @ Qa.T, k, B.dtype)


def _truncate_dense(delta: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if min(delta.shape) > FULL_SVD_MAX_DIM:
        U, S, V = torch.svd_lowrank(delta, q=min(k + 8, min(delta.shape)), niter=4)
        return _split(U, S, V.T, k, delta.dtype)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    return _split(U, S, Vh, k, delta.dtype)


def _combine(module: _Module, method: str, density: float | None, generator: torch.Generator | None) -> torch.Tensor:
    """The dense delta a method makes of the module's terms (``svd``: their weighted sum)."""
    deltas = [t.delta() for t in module.terms]
    weights = [t.weight for t in module.terms]
    if method == "ties":
        assert density is not None
        return ties_combine(deltas, weights, density)
    if method == "dare":
        assert density is not None and generator is not None
        return dare_combine(deltas, weights, density, generator)
    return sum((w * d for w, d in zip(weights, deltas)), torch.zeros_like(deltas[0]))


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """`delta` with all but its top-`density` share of entries (by magnitude) zeroed."""
    keep = int(round(density * delta.numel()))
    if keep >= delta.numel():
        return delta
    mask = torch.zeros(delta.numel(), dtype=torch.bool, device=delta.device)
    if keep:
        mask[delta.abs().flatten().topk(keep).indices] = True
    return delta * mask.view_as(delta)


def ties_combine(deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float) -> torch.Tensor:
    """TIES-merging (Yadav et al. 2023) of the weighted task deltas ``w_i dW_i``: trim each to its top
    `density` share by magnitude, elect each entry's sign by the sum, and average the entries that agree
    with it (zeros take no part). Disjoint entries keep their value; agreeing ones are averaged, not summed."""
    trimmed = torch.stack([_trim(w * d, density) for d, w in zip(deltas, weights)])
    elected = torch.where(trimmed.sum(dim=0) >= 0, 1.0, -1.0).to(trimmed.dtype)
    agree = (trimmed.sign() == elected) & (trimmed != 0)
    count = agree.sum(dim=0).clamp(min=1)
    return (trimmed * agree).sum(dim=0) / count


def dare_combine(
    deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float, generator: torch.Generator
) -> torch.Tensor:
    """DARE (Yu et al. 2024): drop each entry of each delta with probability ``1 - density`` (masks drawn
    from `generator`, in order), rescale the rest by ``1 / density``, then the weighted sum."""
    total = torch.zeros_like(deltas[0])
    for d, w in zip(deltas, weights):
        keep = torch.rand(d.shape, generator=generator) < density
        total += d * keep.to(d.device) * (w / density)
    return total


# --- errors ------------------------------------------------------------------------------------


def _product_norm(B: torch.Tensor, A: torch.Tensor) -> float:
    """``||B @ A||_F`` without the product: ``||Qb Rb Ra^T Qa^T|| = ||Rb Ra^T||``, in float64."""
    if B.shape[1] == 0:
        return 0.0
    Rb = torch.linalg.qr(B.double(), mode="r").R
    Ra = torch.linalg.qr(A.double().T, mode="r").R
    return float(torch.linalg.matrix_norm(Rb @ Ra.T))


def _errors(model: torch.nn.Module, name: str, modules: list[_Module]) -> tuple[list[ModuleMerge], float, list[str]]:
    """Per-module and total relative errors of adapter `name` as attached (its own tensors and scale), and
    the modules where the target cancels to zero."""
    layers = {p: layer for p, layer in adapter_layers(model, name) if isinstance(layer, LoRALayer)}
    out, cancelled = [], []
    err_sq = scale_sq = 0.0
    for module in modules:
        layer = layers[module.path]
        A = layer.lora_A[name].detach()
        B = layer.lora_B[name].detach() * layer.scaling[name]
        if module.low_rank:
            TB, TA = module.factors()
            err = _product_norm(torch.cat([B.to(TB.dtype), -TB], dim=1), torch.cat([A.to(TA.dtype), TA]))
            target = _product_norm(TB, TA)
        else:
            dense = module.dense_target()
            err = float(torch.linalg.matrix_norm(B.double() @ A.double() - dense))
            target = float(torch.linalg.matrix_norm(dense))
        parts = sum(t.norm() for t in module.terms)
        if target <= CANCELLED * parts:
            cancelled.append(module.path)
            target = parts
        out.append(ModuleMerge(module.path, A.shape[0], err / target if target else 0.0, module.sources))
        err_sq += err**2
        scale_sq += target**2
    return out, math.sqrt(err_sq / scale_sq) if scale_sq else 0.0, cancelled


def _cancel_notes(cancelled: list[str], modules: list[_Module]) -> list[str]:
    if not cancelled:
        return []
    return [
        f"the weighted deltas cancel to zero in {len(cancelled)} of {len(modules)} modules ({cancelled[0]}, ...); "
        "errors there are relative to sum |w_i| ||dW_i||"
    ]


def _method_notes(method: str, rank: int | None, density: float | None, capped: int, randomized: int) -> list[str]:
    notes = []
    if method == "svd":
        notes.append("svd: the exact weighted delta truncated by SVD; the errors are what the truncation lost")
    elif method in ("ties", "dare"):
        what = (
            "trimmed to the top-density entries, signs elected, agreeing entries averaged"
            if method == "ties"
            else "entries dropped at random with probability 1 - density and rescaled by 1/density"
        )
        notes.append(
            f"{method}: an approximation by design ({what}; density {density}), then SVD back to a LoRA; "
            "the errors are against the exact weighted sum"
        )
    if capped:
        notes.append(f"rank {rank} capped in {capped} modules (by their dimensions or the sum of the merged ranks)")
    if randomized:
        notes.append(f"randomized SVD (torch.svd_lowrank) in {randomized} modules larger than {FULL_SVD_MAX_DIM}")
    return notes
