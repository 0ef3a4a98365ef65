"""Module paths across wrappers: the one rule that reconciles a checkpoint's names with a model's.

An adapter trained on ``LlamaForCausalLM`` names ``model.layers.0.self_attn.q_proj``; the same
module in a bare ``LlamaModel`` is ``layers.0.self_attn.q_proj``; a PEFT file adds
``base_model.model.``. Every place that maps names between two such models (compatibility checks,
streaming merges, loading adapters onto a model, filling dtypes from a base) uses
:func:`align_paths`: one prefix rewrite, chosen by how many paths it maps. Torch-free.

(The architecture fingerprint's name canonicalisation, ``fingerprint.spec.normalize_name``, is a
different thing: it is part of a published hash format and must never change.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class PathRewrite(NamedTuple):
    """``source path -> add + path[len(strip):]`` for paths that start with ``strip``."""

    strip: str = ""
    add: str = ""

    def to_local(self, path: str) -> str:
        return self.add + path[len(self.strip) :] if path.startswith(self.strip) else path

    def to_source(self, path: str) -> str:
        return self.strip + path[len(self.add) :] if path.startswith(self.add) else path

    @property
    def identity(self) -> bool:
        return self.strip == self.add


def align_paths(expected: Iterable[str], local: Iterable[str]) -> PathRewrite:
    """The single prefix rewrite that maps the most `expected` (source) paths onto `local` ones.

    Candidates come from pairs where one path is a dot-boundary suffix of the other (or both end in
    a common dotted suffix); the rewrite matching the most paths wins, ties broken by the shortest
    total prefix, then alphabetically. ``PathRewrite("", "")`` when none helps.
    """
    expected = list(expected)
    local_set = set(local)
    if all(p in local_set for p in expected):  # the common case, and the rule's own answer for it
        return PathRewrite()

    def score(rewrite: tuple[str, str]) -> int:
        strip, add = rewrite
        return sum(1 for p in expected if p.startswith(strip) and add + p[len(strip) :] in local_set)

    candidates = {("", "")}
    by_last: dict[str, list[str]] = {}
    for path in local_set:
        by_last.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    for p in expected[:64]:  # a few paths are enough to find the rewrite
        for q in by_last.get(p.rsplit(".", 1)[-1], ()):
            if q.endswith("." + p):
                candidates.add(("", q[: -len(p)]))
            elif p.endswith("." + q):
                candidates.add((p[: -len(q)], ""))
            else:  # both prefixed differently: strip p's prefix, add q's, on the longest common suffix
                common = _common_suffix(p, q)
                if common:
                    candidates.add((p[: -len(common)], q[: -len(common)]))
    best = max(sorted(candidates), key=lambda r: (score(r), -len(r[0]) - len(r[1])))
    return PathRewrite(*best)


def _common_suffix(a: str, b: str) -> str:
    parts_a, parts_b = a.split("."), b.split(".")
    n = 0
    while n < min(len(parts_a), len(parts_b)) and parts_a[-1 - n] == parts_b[-1 - n]:
        n += 1
    if n == 0 or n == len(parts_a) or n == len(parts_b):
        return ""
    return ".".join(parts_a[-n:])
