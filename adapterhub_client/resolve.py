"""Version selection and transitive dependency resolution (backtracking, highest first).

Rules (as pip/uv): the highest version allowed by every requirement on that name;
pre-releases only when asked for (`pre=True`) or named by a specifier; yanked versions
only when pinned exactly (and then a :class:`YankedWarning`). The first registry that lists a
name provides all its versions (no mixing across registries, so a later registry cannot shadow
an earlier one). `search` and `info` show what install would pick through :func:`latest`, the
same rule.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from typing import Protocol

from .errors import OfflineMissError, ResolutionError, YankedWarning
from .refs import Requirement, parse_requirement
from .registry.client import IndexEntry

MAX_STEPS = 20000  # demands met (backtracking included) before giving up


class Provider(Protocol):
    def candidates(self, name: str) -> list[IndexEntry]:
        """Every listed version of `name`, highest first; NotFoundError if no registry has it."""


@dataclasses.dataclass(frozen=True)
class Demand:
    requirement: Requirement
    origin: str  # "the command line" or "org/a 1.0"

    def __str__(self) -> str:
        return f"{self.requirement} (required by {self.origin})"


def dependency_requirement(dep: dict[str, str]) -> Requirement:
    spec = dep.get("specifier", "")
    return parse_requirement(f"{dep['name']}@{spec}" if spec else dep["name"])


def select(entries: Sequence[IndexEntry], demands: Sequence[Demand], pre: bool = False) -> list[IndexEntry]:
    """Entries allowed by every demand, highest version first."""
    allowed = [e for e in entries if all(d.requirement.allows(e.version, yanked=e.yanked, pre=pre) for d in demands)]
    return sorted(allowed, key=lambda e: e.version, reverse=True)


def latest(entries: Sequence[IndexEntry], pre: bool = False) -> IndexEntry | None:
    """What `install org/name` picks among `entries`: the highest non-yanked version, stable unless
    `pre`; None when there is none (only yanked versions, or only pre-releases without `pre`)."""
    name = entries[0].name if entries else ""
    chosen = select(entries, [Demand(Requirement(name), "the command line")], pre)
    return chosen[0] if chosen else None


def newest_first(entries: Sequence[IndexEntry]) -> list[IndexEntry]:
    """Every entry, highest version first (yanked ones included, as listings show them)."""
    return sorted(entries, key=lambda e: e.version, reverse=True)


@dataclasses.dataclass(frozen=True)
class _State:
    """A partial resolution: what is chosen, every demand seen per name, the demands still to meet."""

    chosen: dict[str, IndexEntry]
    demands: dict[str, list[Demand]]
    queue: tuple[Demand, ...]


@dataclasses.dataclass
class _Branch:
    """A choice point: the versions of `name` not tried yet, and the state to extend with each."""

    name: str
    options: Iterator[IndexEntry]
    chosen: dict[str, IndexEntry]
    demands: dict[str, list[Demand]]
    rest: tuple[Demand, ...]


class Resolver:
    """Depth-first search with chronological backtracking, on an explicit stack: demands are met in
    the order they arise (breadth of the command line first, then each choice's dependencies), the
    highest allowed version first. Iterative, so a dependency chain of any depth resolves."""

    def __init__(self, provider: Provider, pre: bool = False) -> None:
        self.provider = provider
        self.pre = pre
        self.steps = 0
        self.failure: str | None = None
        self._candidates: dict[str, list[IndexEntry]] = {}

    def entries(self, name: str) -> list[IndexEntry]:
        """Every listed version of `name` (fetched once per resolver)."""
        if name not in self._candidates:
            try:
                self._candidates[name] = self.provider.candidates(name)
            except OfflineMissError as exc:  # name the adapter, not the registry file that is missing
                raise OfflineMissError(f"offline: {name} is not in the cache ({exc})") from None
        return self._candidates[name]

    def resolve(self, requirements: Sequence[Requirement]) -> dict[str, IndexEntry]:
        state: _State | None = _State({}, {}, tuple(Demand(r, "the command line") for r in requirements))
        stack: list[_Branch] = []
        while True:
            if state is not None:
                outcome = self._advance(state)
                if isinstance(outcome, dict):
                    for name, entry in outcome.items():
                        if entry.yanked:
                            warnings.warn(YankedWarning(name, entry.version), stacklevel=2)
                    return outcome
                if isinstance(outcome, _Branch):
                    stack.append(outcome)
                    state = None
                else:
                    state = outcome  # the next state, or None: a dead end
                continue
            state = self._next_option(stack)
            if state is None:
                raise ResolutionError(self.failure or "no versions satisfy the requirements")

    def _advance(self, state: _State) -> dict[str, IndexEntry] | _Branch | _State | None:
        """Meet the first queued demand: the solution, a choice point, the next state or a dead end."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ResolutionError("resolution gave up after too many steps; pin some versions")
        if not state.queue:
            return state.chosen
        demand, rest = state.queue[0], state.queue[1:]
        name = demand.requirement.name
        on_name = [*state.demands.get(name, []), demand]
        demands = {**state.demands, name: on_name}
        entry = state.chosen.get(name)
        if entry is not None:
            if demand.requirement.allows(entry.version, yanked=entry.yanked, pre=self.pre):
                return _State(state.chosen, demands, rest)
            self._conflict(name, on_name)
            return None
        entries = self.entries(name)
        options = select(entries, on_name, self.pre)
        if not options:
            self._conflict(name, on_name, entries)
            return None
        return _Branch(name, iter(options), state.chosen, demands, rest)

    @staticmethod
    def _next_option(stack: list[_Branch]) -> _State | None:
        """Backtrack: the state for the next untried version of the innermost open choice point."""
        while stack:
            branch = stack[-1]
            entry = next(branch.options, None)
            if entry is None:
                stack.pop()
                continue
            origin = f"{branch.name} {entry.version}"
            deps = tuple(Demand(dependency_requirement(d), origin) for d in entry.dependencies)
            return _State({**branch.chosen, branch.name: entry}, branch.demands, branch.rest + deps)
        return None

    def _conflict(self, name: str, demands: list[Demand], entries: list[IndexEntry] | None = None) -> None:
        if len(demands) > 1:
            # the newest demand cannot be met together with the earlier ones: name both sides
            others = "; ".join(str(d) for d in demands[:-1])
            self.failure = f"conflicting requirements on {name}: {demands[-1]} and {others}"
        else:
            listed = ", ".join(
                f"{e.version}{' (yanked)' if e.yanked else ''}" for e in sorted(entries or [], key=lambda e: e.version)
            )
            self.failure = f"no version of {name} matches {demands[0]} (available: {listed or 'none'})"
