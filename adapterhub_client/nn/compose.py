"""Composition blocks: several adapters combined in one forward pass, each adapter layer doing its part.

``set_active_adapters(model, block)`` takes a block (children are adapter names or blocks, nested):

* ``Stack(a, b, ...)``: in sequence in each layer. LoRA deltas add (DoRA rescales what ran before it,
  as with a list); a bottleneck adapter reads what the one before it produced (AdapterHub's Stack:
  ``LN(z2)`` with ``z1 = z + A(LN z)``, ``z2 = z1 + B(LN z1)`` at a post-LN site, ``y + A(y)`` then
  ``+ B(.)`` at an output site). Parallel-placed bottlenecks read the sublayer input, so in a Stack
  they add like LoRA deltas.
* ``Parallel(a, b, ...)``: the batch of ``n`` rows is replicated once at the model input (a forward
  pre-hook repeats every tensor argument whose first dimension is ``n``: ``input_ids``,
  ``attention_mask``, ``token_type_ids``, ``labels``, ...) and branch ``i`` runs on rows
  ``i*n .. (i+1)*n - 1`` of every layer in the same forward pass; the output holds the branches along
  the batch dimension.
* ``Average(a, b, ..., weights=[...])``: ``s + sum_i w_i * (child_i(s) - s)`` in every layer, i.e. the
  weighted average of the children's outputs when the weights sum to 1 (they are normalized to, unless
  ``normalize_weights=False``); for LoRA that is the weighted sum of the deltas.
* ``BatchSplit(a, b, ..., batch_sizes=[...])``: consecutive rows per child.
* ``Fuse(a, b, ..., name=None)``: AdapterFusion (Pfeiffer et al. 2021, :mod:`.fusion`): per layer,
  attention from the adapters' input over the children's outputs, ``s + sum_i p_i V(d_i)`` with
  ``d_i = child_i(s) - s``. Bottleneck adapters only: LoRA has no per-layer output of its own to
  attend over (use ``Average`` or a weighted merge). Its parameters are a fusion added with
  :func:`.fusion.add_fusion`.

An adapter a layer does not carry is the identity there (a Fuse attends over the children present).

Nesting (parent: children it accepts besides adapter names; checked, with the whole tree, when the
block is activated, before any forward)::

    Stack       Stack Parallel Average BatchSplit Fuse
    Parallel    Stack          Average BatchSplit Fuse
    Average     Stack          Average BatchSplit Fuse
    BatchSplit  Stack          Average BatchSplit Fuse
    Fuse        Stack          Average BatchSplit Fuse

Parallel sits at the top or inside Stacks only, once per tree: the batch is replicated once, at the
model input, so a Parallel inside a row slice (BatchSplit), inside a combination of outputs of the same
rows (Average, Fuse) or inside another Parallel has no rows of its own to run on. A Fuse names each
child once and holds bottleneck adapters only; a fusion is no adapter to nest by name (``Fuse(...)``).
Batch sizes must be positive and, nested in a BatchSplit slot, sum to that slot; those that meet the
model's batch are checked once, at the model input (the pre-hook), not inside a layer. Model-level
consequences: merged adapters and compositions exclude each other, and an adapter with a trained module
copy (``ModuleCopy``) cannot sit under Parallel or BatchSplit (the copy would run for every row).

Layers see the tree as a :class:`Node` tree projected onto their own adapters (:func:`project`) and run
it with :func:`apply`, which holds the blocks' semantics once for every adapter kind; each kind gives
the delta of one adapter (and of a fusion) at a point of the stream.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Union

import torch

from ..errors import NotFoundError, UsageError

Child = Union[str, "Block"]
MAX_DEPTH = 32

LEAF, STACK, PARALLEL, AVERAGE, SPLIT, FUSE = "leaf", "stack", "parallel", "average", "batch_split", "fuse"


def _shown(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


class Block:
    """Base of the composition blocks: frozen, hashable, compared by value."""

    kind: ClassVar[str] = ""
    children: tuple[Child, ...]

    def _set_children(self, children: tuple[object, ...]) -> None:
        name = type(self).__name__
        if not children:
            raise UsageError(f"{name}() needs at least one child (an adapter name or a block)")
        bad = [c for c in children if not ((isinstance(c, str) and c) or isinstance(c, Block))]
        if bad:
            raise UsageError(f"{name}: children are adapter names or blocks, got {_shown(bad[0])}")
        object.__setattr__(self, "children", tuple(children))

    def __iter__(self) -> Iterator[Child]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def names(self) -> list[str]:
        """The adapter names in the tree, in order, each once."""
        seen: dict[str, None] = {}
        for c in self.children:
            for n in [c] if isinstance(c, str) else c.names():
                seen[n] = None
        return list(seen)

    def _extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.children))}{self._extra()})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"block": "stack", "children": [...], ...}`` (names stay strings)."""
        return {"block": self.kind, "children": [c if isinstance(c, str) else c.to_dict() for c in self.children]}

    @staticmethod
    def from_dict(data: object) -> Block:
        """The block a :meth:`to_dict` describes (validated as the constructors validate)."""
        if not isinstance(data, Mapping) or data.get("block") not in BLOCKS:
            raise UsageError(
                f"a composition block is a mapping with 'block' one of {sorted(BLOCKS)}, got {_shown(data)}"
            )
        raw = data.get("children")
        if not isinstance(raw, list):
            raise UsageError(f"{data['block']}: 'children' must be a list, got {_shown(raw)}")
        children = [c if isinstance(c, str) else Block.from_dict(c) for c in raw]
        cls = BLOCKS[data["block"]]
        extra = {k: v for k, v in data.items() if k not in ("block", "children")}
        try:
            return cls(*children, **extra)
        except TypeError:
            raise UsageError(f"{cls.__name__}: unexpected fields {sorted(extra)}") from None


def child_to_json(child: Child) -> object:
    return child if isinstance(child, str) else child.to_dict()


def child_from_json(data: object) -> Child:
    return data if isinstance(data, str) and data else Block.from_dict(data)


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Stack(Block):
    """Children in sequence in each layer (LoRA deltas add; bottleneck outputs feed the next)."""

    kind: ClassVar[str] = STACK
    children: tuple[Child, ...]

    def __init__(self, *children: Child) -> None:
        self._set_children(children)


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Parallel(Block):
    """The batch replicated once at the model input; branch i on rows i*n .. (i+1)*n - 1."""

    kind: ClassVar[str] = PARALLEL
    children: tuple[Child, ...]

    def __init__(self, *children: Child) -> None:
        self._set_children(children)


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Average(Block):
    """The weighted average of the children's outputs (equal weights by default)."""

    kind: ClassVar[str] = AVERAGE
    children: tuple[Child, ...]
    weights: tuple[float, ...]
    normalize_weights: bool

    def __init__(self, *children: Child, weights: Sequence[float] | None = None, normalize_weights: bool = True):
        self._set_children(children)
        if weights is None:
            weights = [1.0] * len(children)
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise UsageError(f"{self._head()}: weights must be a list of numbers, got {_shown(weights)}")
        if len(weights) != len(children):
            raise UsageError(f"{self._head()}: {len(children)} children but {len(weights)} weights")
        bad = [w for w in weights if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)]
        if bad:
            raise UsageError(f"{self._head()}: weights must be finite numbers, got {_shown(bad[0])}")
        if not isinstance(normalize_weights, bool):
            raise UsageError(f"{self._head()}: normalize_weights must be True or False, got {normalize_weights!r}")
        if normalize_weights and sum(weights) == 0:
            raise UsageError(f"{self._head()}: the weights sum to 0 and cannot be normalized (normalize_weights=False)")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        object.__setattr__(self, "normalize_weights", normalize_weights)

    def _head(self) -> str:
        return f"Average({', '.join(map(repr, self.children))})"

    @property
    def effective_weights(self) -> tuple[float, ...]:
        """The weights forward uses (normalized to sum 1 unless ``normalize_weights=False``)."""
        if not self.normalize_weights:
            return self.weights
        total = sum(self.weights)
        return tuple(w / total for w in self.weights)

    def _extra(self) -> str:
        return f", weights={list(self.weights)}" + ("" if self.normalize_weights else ", normalize_weights=False")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "weights": list(self.weights), "normalize_weights": self.normalize_weights}


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class BatchSplit(Block):
    """Consecutive rows per child: ``batch_sizes[i]`` rows for child i (an int: the same for each)."""

    kind: ClassVar[str] = SPLIT
    children: tuple[Child, ...]
    batch_sizes: tuple[int, ...]

    def __init__(self, *children: Child, batch_sizes: Sequence[int] | int) -> None:
        self._set_children(children)
        sizes = [batch_sizes] * len(children) if isinstance(batch_sizes, int) else batch_sizes
        head = f"BatchSplit({', '.join(map(repr, self.children))})"
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise UsageError(f"{head}: batch_sizes must be a positive integer or a list of them, got {_shown(sizes)}")
        if len(sizes) != len(children):
            raise UsageError(f"{head}: {len(children)} children but {len(sizes)} batch sizes")
        bad = [s for s in sizes if not _is_int(s) or s <= 0]
        if bad:
            raise UsageError(f"{head}: batch sizes must be positive integers, got {_shown(bad[0])}")
        object.__setattr__(self, "batch_sizes", tuple(int(s) for s in sizes))

    def _extra(self) -> str:
        return f", batch_sizes={list(self.batch_sizes)}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "batch_sizes": list(self.batch_sizes)}


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Fuse(Block):
    """AdapterFusion over the children's outputs; `name` is the fusion's (default: from the children)."""

    kind: ClassVar[str] = FUSE
    children: tuple[Child, ...]
    name: str | None

    def __init__(self, *children: Child, name: str | None = None) -> None:
        self._set_children(children)
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise UsageError(f"Fuse: name must be None or a non-empty string without '.', got {_shown(name)}")
        object.__setattr__(self, "name", name)
        labels = [_label(c) for c in self.children]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise UsageError(f"{self!r}: {twice[0]!r} appears twice; a Fuse attends over distinct children")

    @property
    def fusion_name(self) -> str:
        """The fusion's adapter name: `name`, or the children joined by commas (AdapterHub's rule)."""
        return self.name or ",".join(_label(c) for c in self.children)

    def _extra(self) -> str:
        return "" if self.name is None else f", name={self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "name": self.name}


BLOCKS: dict[str, type[Block]] = {b.kind: b for b in (Stack, Parallel, Average, BatchSplit, Fuse)}

# parent -> block types it accepts as children (adapter names are accepted everywhere)
ALLOWED: dict[type[Block], tuple[type[Block], ...]] = {
    Stack: (Stack, Parallel, Average, BatchSplit, Fuse),
    Parallel: (Stack, Average, BatchSplit, Fuse),
    Average: (Stack, Average, BatchSplit, Fuse),
    BatchSplit: (Stack, Average, BatchSplit, Fuse),
    Fuse: (Stack, Average, BatchSplit, Fuse),
}
REFUSED: dict[type[Block], str] = {
    Parallel: "the batch is replicated once, at the model input: Parallel goes at the top or inside Stacks only",
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(child: Child) -> str:
    """A child's part of a default fusion name (no '.', which adapter names cannot hold)."""
    if isinstance(child, str):
        return child
    return f"{type(child).__name__}({','.join(_label(c) for c in child.children)})"


# --- the checked tree ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Node:
    """One block (or adapter) of a checked tree; ``None`` children are the identity (absent here)."""

    kind: str
    name: str | None = None  # leaf: the adapter; fuse: the fusion
    children: tuple[Node | None, ...] = ()
    weights: tuple[float, ...] = ()  # average: the effective weights
    sizes: tuple[int, ...] = ()  # batch_split
    last: str | None = None  # fuse: its last adapter, whose placement gives the query


Plan = Node


@dataclasses.dataclass(frozen=True)
class Composition:
    """A block checked against a model: what activation records and the model input hook reads."""

    block: Block
    root: Node
    adapters: tuple[str, ...]  # every adapter name in the tree, in order
    fusions: tuple[str, ...]  # the fusions its Fuse blocks run
    copies: int  # Parallel branches: how many times the input batch is replicated (1: none)
    batch: int | None  # the batch size BatchSplit needs at the model input, if any
    row_adapters: frozenset[str]  # adapters under Parallel or BatchSplit


class FusionLookup:
    """How :func:`check` finds a Fuse's fusion among the model's adapter configs.

    A fusion config has ``kind == "fusion"`` and ``children``: the JSON of the Fuse it was made for.
    """

    def __init__(self, configs: Mapping[str, Any]) -> None:
        self.configs = configs

    def kind(self, name: str) -> str:
        return str(getattr(self.configs[name], "kind", ""))

    def find(self, fuse: Fuse) -> str:
        want = [child_to_json(c) for c in fuse.children]
        fusions = {n: c for n, c in self.configs.items() if getattr(c, "kind", "") == "fusion"}
        if fuse.name is not None:
            if fuse.name not in fusions:
                raise NotFoundError(
                    f"{fuse!r}: the model has no fusion {fuse.name!r}; add_fusion(model, {fuse!r}) adds one "
                    f"(fusions: {sorted(fusions) or 'none'})"
                )
            if list(getattr(fusions[fuse.name], "children", [])) != want:
                made = [child_from_json(c) for c in fusions[fuse.name].children]
                raise UsageError(f"{fuse!r}: fusion {fuse.name!r} was made for Fuse({', '.join(map(repr, made))})")
            return fuse.name
        default = fuse.fusion_name
        if default in fusions and list(fusions[default].children) == want:
            return default
        matches = [n for n, c in fusions.items() if list(getattr(c, "children", [])) == want]
        if len(matches) > 1:
            raise UsageError(
                f"{fuse!r}: fusions {sorted(matches)} all fuse these children; name one (Fuse(..., name=))"
            )
        if not matches:
            raise NotFoundError(
                f"{fuse!r}: the model has no fusion of these children; add_fusion(model, {fuse!r}) adds one"
            )
        return matches[0]


def check(block: object, configs: Mapping[str, Any]) -> Composition:
    """The whole tree checked against the model's adapter configs (name -> config with a ``kind``).

    Raises :class:`NotFoundError` for adapters (or fusions) the model lacks and :class:`UsageError`
    naming the block and the reason for anything else; see the module docstring for the rules.
    """
    if not isinstance(block, Block):
        raise UsageError(
            f"expected a composition block (Stack, Parallel, Average, BatchSplit, Fuse), got {_shown(block)}"
        )
    unknown = [n for n in block.names() if n not in configs]
    if unknown:
        raise NotFoundError(
            f"{_shown(block)}: unknown adapter(s) {', '.join(map(repr, unknown))}; the model has "
            f"{sorted(configs) or 'none'}"
        )
    return _Checker(FusionLookup(configs), block).run()


class _Checker:
    def __init__(self, lookup: FusionLookup, block: Block) -> None:
        self.lookup, self.block = lookup, block
        self.fusions: dict[str, None] = {}
        self.parallel: Parallel | None = None
        self.batch: tuple[int, BatchSplit] | None = None
        self.row_adapters: set[str] = set()

    def run(self) -> Composition:
        root = self.node(self.block, (), None)
        assert root is not None
        return Composition(
            self.block,
            root,
            tuple(self.block.names()),
            tuple(self.fusions),
            len(self.parallel) if self.parallel is not None else 1,
            self.batch[0] if self.batch is not None else None,
            frozenset(self.row_adapters),
        )

    def node(self, child: Child, parents: tuple[Block, ...], rows: int | None) -> Node:
        """`child` checked under `parents`; `rows`: the rows of its slot (None: the model's batch)."""
        if isinstance(child, str):
            return self.leaf(child, parents)
        if len(parents) >= MAX_DEPTH:
            raise UsageError(f"{_shown(self.block)}: blocks nested deeper than {MAX_DEPTH} levels")
        if parents:
            parent = parents[-1]
            if not isinstance(child, ALLOWED[type(parent)]):
                raise UsageError(
                    f"{_shown(parent)}: {type(child).__name__} cannot nest in {type(parent).__name__}: "
                    f"{REFUSED.get(type(child), 'not a meaningful nesting')}"
                )
        inner = (*parents, child)
        if isinstance(child, Parallel):
            if any(not isinstance(p, Stack) for p in parents):
                raise UsageError(f"{_shown(child)} inside {_shown(parents[0])}: {REFUSED[Parallel]}")
            if self.parallel is not None:
                raise UsageError(
                    f"{_shown(self.block)}: two Parallel blocks; the batch is replicated once, at the model input"
                )
            self.parallel = child
            self.row_adapters.update(child.names())
            return Node(PARALLEL, children=tuple(self.node(c, inner, rows) for c in child.children))
        if isinstance(child, BatchSplit):
            total = sum(child.batch_sizes)
            if rows is not None and total != rows:
                raise UsageError(f"{_shown(child)}: batch sizes sum to {total}, but its slot has {rows} rows")
            if rows is None:
                if self.batch is not None and self.batch[0] != total:
                    raise UsageError(
                        f"{_shown(child)} and {_shown(self.batch[1])}: both split the model's batch, "
                        f"into {total} and {self.batch[0]} rows"
                    )
                self.batch = (total, child)
            self.row_adapters.update(child.names())
            kids = tuple(self.node(c, inner, size) for c, size in zip(child.children, child.batch_sizes))
            return Node(SPLIT, children=kids, sizes=child.batch_sizes)
        if isinstance(child, Average):
            kids = tuple(self.node(c, inner, rows) for c in child.children)
            return Node(AVERAGE, children=kids, weights=child.effective_weights)
        if isinstance(child, Fuse):
            kids = tuple(self.node(c, inner, rows) for c in child.children)
            name = self.lookup.find(child)
            self.fusions[name] = None
            return Node(FUSE, name=name, children=kids, last=child.names()[-1])
        return Node(STACK, children=tuple(self.node(c, inner, rows) for c in child.children))

    def leaf(self, name: str, parents: tuple[Block, ...]) -> Node:
        kind = self.lookup.kind(name)
        where = _shown(parents[-1]) if parents else repr(name)
        if kind == "fusion":
            raise UsageError(f"{where}: {name!r} is a fusion, not an adapter; it runs as a Fuse(...) of its children")
        fuse = next((p for p in reversed(parents) if isinstance(p, Fuse)), None)
        if fuse is not None and kind != "bottleneck":
            raise UsageError(
                f"{_shown(fuse)}: {name!r} is a {kind} adapter; Fuse (AdapterFusion) attends over bottleneck "
                "adapters' outputs (combine LoRA adapters with Average, Stack or a weighted merge)"
            )
        return Node(LEAF, name=name)


# --- per layer ---------------------------------------------------------------------------------


def project(node: Node | None, present: Collection[str]) -> Node | None:
    """`node` as a layer carrying the adapters `present` runs it (None: the identity, nothing to run).

    Absent adapters drop out (an Average keeps the others' weights: an absent child adds nothing), a
    Stack or Average of one child with weight 1 is that child, row blocks keep their slots.
    """
    if node is None:
        return None
    if node.kind == LEAF:
        return node if node.name in present else None
    kids = tuple(project(c, present) for c in node.children)
    if node.kind in (PARALLEL, SPLIT):
        return None if all(k is None for k in kids) else dataclasses.replace(node, children=kids)
    if node.kind == AVERAGE:
        pairs = [(k, w) for k, w in zip(kids, node.weights) if k is not None and w != 0.0]
        if not pairs:
            return None
        if len(pairs) == 1 and pairs[0][1] == 1.0:
            return pairs[0][0]
        return dataclasses.replace(node, children=tuple(k for k, _ in pairs), weights=tuple(w for _, w in pairs))
    live = tuple(k for k in kids if k is not None)
    if not live:
        return None
    if node.kind == FUSE:
        return dataclasses.replace(node, children=live, last=_last_leaf(live[-1]))
    return live[0] if len(live) == 1 else dataclasses.replace(node, children=live)


def _last_leaf(node: Node | None) -> str | None:
    if node is None:
        return None
    if node.kind == LEAF:
        return node.name
    for child in reversed(node.children):
        name = _last_leaf(child)
        if name is not None:
            return name
    return None


def leaves(node: Node | None) -> list[str]:
    """The adapter names a (projected) tree runs, in order."""
    if node is None:
        return []
    if node.kind == LEAF:
        return [str(node.name)]
    return [n for c in node.children for n in leaves(c)]


def fusions_of(node: Node | None) -> list[str]:
    if node is None or node.kind == LEAF:
        return []
    own = [str(node.name)] if node.kind == FUSE else []
    return own + [n for c in node.children for n in fusions_of(c)]


# Leaf(name, stream rows, first row) -> the adapter's delta on those rows
LeafFn = Callable[[str, torch.Tensor, int], torch.Tensor]
# Fuse(fusion, children's deltas, stream rows, first row, last adapter) -> the fused delta
FuseFn = Callable[[str, list[torch.Tensor], torch.Tensor, int, str], torch.Tensor]


def apply(node: Node, s: torch.Tensor, start: int, leaf: LeafFn, fuse: FuseFn) -> torch.Tensor:
    """The stream `s` (rows ``start ..`` of the layer's batch) after `node`: the blocks' semantics, once.

    The stream is what the layer's adapters modify: a LoRA layer's output, a bottleneck's sublayer
    output or the sum a post-LN norm reads.
    """
    kind = node.kind
    if kind == STACK:
        for child in node.children:
            if child is not None:
                s = apply(child, s, start, leaf, fuse)
        return s
    if kind in (PARALLEL, SPLIT):
        rows = s.shape[0]
        if kind == PARALLEL:
            n, extra = divmod(rows, len(node.children))
            sizes: Sequence[int] = [n] * len(node.children)
        else:
            sizes, extra = node.sizes, rows - sum(node.sizes)
        if extra:
            raise UsageError(
                f"{'Parallel' if kind == PARALLEL else 'BatchSplit'}: a layer got {rows} rows, which do not split "
                f"into {list(sizes)} (row blocks need batch-first inputs, replicated at the model's own input)"
            )
        parts, offset = [], 0
        for child, size in zip(node.children, sizes):
            part = s.narrow(0, offset, size)
            parts.append(part if child is None else apply(child, part, start + offset, leaf, fuse))
            offset += size
        return torch.cat(parts)
    return s + delta(node, s, start, leaf, fuse)


def delta(node: Node, s: torch.Tensor, start: int, leaf: LeafFn, fuse: FuseFn) -> torch.Tensor:
    """What `node` adds to the stream `s` (see :func:`apply`)."""
    kind = node.kind
    if kind == LEAF:
        return leaf(str(node.name), s, start)
    if kind == AVERAGE:
        total: torch.Tensor | None = None
        for child, w in zip(node.children, node.weights):
            if child is None:
                continue
            d = delta(child, s, start, leaf, fuse)
            total = d * w if total is None else torch.add(total, d, alpha=w)
        return total if total is not None else torch.zeros_like(s)
    if kind == FUSE:
        ds = [delta(c, s, start, leaf, fuse) for c in node.children if c is not None]
        return fuse(str(node.name), ds, s, start, str(node.last))
    return apply(node, s, start, leaf, fuse) - s


def rows_of(x: torch.Tensor, s: torch.Tensor, start: int) -> torch.Tensor:
    """The rows of a layer input `x` that the stream piece `s` (from row `start`) belongs to."""
    if start == 0 and x.shape[0] == s.shape[0]:
        return x
    return x.narrow(0, start, s.shape[0])


def no_fuse(name: str, ds: list[torch.Tensor], s: torch.Tensor, start: int, last: str) -> torch.Tensor:
    raise UsageError(f"fusion {name!r} reached a layer without fusion parameters")  # check() keeps this out


# --- the model input ------------------------------------------------------------------------------


def input_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Forward pre-hook of a model with an active composition: BatchSplit's sizes checked against the
    batch, and the batch replicated for Parallel, once, before any layer runs.

    A plain function reading ``module._ah_state`` when called, so a deep copy of the model keeps a
    working hook (a bound method would point at the original).
    """
    comp = getattr(getattr(module, "_ah_state", None), "composition", None)
    if not isinstance(comp, Composition) or (comp.copies == 1 and comp.batch is None):
        return None
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is None:
        preferred = [kwargs.get("input_ids"), kwargs.get("inputs_embeds"), *kwargs.values()]
        first = next((t for t in preferred if isinstance(t, torch.Tensor) and t.dim() > 0), None)
    if first is None or first.dim() == 0:
        raise UsageError(f"{_shown(comp.block)}: the model was called without a batch-first tensor input")
    n = first.shape[0]
    if comp.batch is not None and n != comp.batch:
        raise UsageError(f"{_shown(comp.block)}: the batch sizes sum to {comp.batch}, but the batch has {n} rows")
    if comp.copies == 1:
        return None

    def rep(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            return value.repeat(comp.copies, *([1] * (value.dim() - 1)))
        return value

    return tuple(rep(a) for a in args), {k: rep(v) for k, v in kwargs.items()}


def set_input_hook(model: torch.nn.Module, on: bool) -> None:
    """Install (once) or remove :func:`input_hook` on `model`."""
    hooks = model._forward_pre_hooks
    present = [k for k, h in hooks.items() if h is input_hook]
    if on and not present:
        model.register_forward_pre_hook(input_hook, with_kwargs=True)
    elif not on:
        for key in present:
            del hooks[key]
            model._forward_pre_hooks_with_kwargs.pop(key, None)


__all__ = [
    "ALLOWED",
    "Average",
    "BatchSplit",
    "Block",
    "Composition",
    "Fuse",
    "Node",
    "Parallel",
    "Stack",
    "apply",
    "check",
    "project",
]
