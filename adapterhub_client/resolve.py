"""Version selection and transitive dependency resolution (backtracking, highest first).

Rules (as pip/uv): the highest version allowed by every requirement on that name;
pre-releases only when asked for (`pre=True`) or named by a specifier; yanked versions
only when pinned exactly. The first registry that lists a name provides all its versions
(no mixing across registries, so a later registry cannot shadow an earlier one).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

from .errors import ResolutionError
from .refs import Requirement, parse_requirement
from .registry.client import IndexEntry

MAX_STEPS = 20000


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
    allowed = [
        e for e in entries
        if all(d.requirement.allows(e.version, yanked=e.yanked, pre=pre) for d in demands)
    ]
    return sorted(allowed, key=lambda e: e.version, reverse=True)


class Resolver:
    def __init__(self, provider: Provider, pre: bool = False) -> None:
        self.provider = provider
        self.pre = pre
        self.steps = 0
        self.failure: str | None = None
        self._candidates: dict[str, list[IndexEntry]] = {}

    def entries(self, name: str) -> list[IndexEntry]:
        """Every listed version of `name` (fetched once per resolver)."""
        if name not in self._candidates:
            self._candidates[name] = self.provider.candidates(name)
        return self._candidates[name]

    def resolve(self, requirements: Sequence[Requirement]) -> dict[str, IndexEntry]:
        queue = [Demand(r, "the command line") for r in requirements]
        result = self._solve({}, {}, queue)
        if result is None:
            raise ResolutionError(self.failure or "no versions satisfy the requirements")
        return result

    def _solve(self, chosen: dict[str, IndexEntry], demands: dict[str, list[Demand]],
               queue: list[Demand]) -> dict[str, IndexEntry] | None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ResolutionError("resolution gave up after too many steps; pin some versions")
        if not queue:
            return chosen
        demand, rest = queue[0], queue[1:]
        name = demand.requirement.name
        on_name = [*demands.get(name, []), demand]
        new_demands = {**demands, name: on_name}
        if name in chosen:
            entry = chosen[name]
            if demand.requirement.allows(entry.version, yanked=entry.yanked, pre=self.pre):
                return self._solve(chosen, new_demands, rest)
            self._conflict(name, on_name)
            return None
        entries = self.entries(name)
        options = select(entries, on_name, self.pre)
        if not options:
            self._conflict(name, on_name, entries)
            return None
        for entry in options:
            deps = [Demand(dependency_requirement(d), f"{name} {entry.version}") for d in entry.dependencies]
            found = self._solve({**chosen, name: entry}, new_demands, rest + deps)
            if found is not None:
                return found
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
