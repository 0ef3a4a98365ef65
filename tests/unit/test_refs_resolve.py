"""Reference parsing and version selection, with hypothesis."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from adapterhub_client.errors import NotFoundError, ResolutionError, UsageError
from adapterhub_client.manifest import canonical_name
from adapterhub_client.refs import HubRef, LocalRef, Requirement, parse_ref, parse_requirement
from adapterhub_client.registry.client import IndexEntry
from adapterhub_client.resolve import Resolver

part = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True)
versions = st.builds(
    lambda major, minor, pre: f"{major}.{minor}" + (f"rc{pre}" if pre is not None else ""),
    st.integers(0, 5),
    st.integers(0, 5),
    st.none() | st.integers(0, 3),
)
operators = st.sampled_from(["==", "!=", ">=", "<=", ">", "<", "~="])


@given(part, part)
def test_canonical_name_is_idempotent_and_lowercase(org, name):
    c = canonical_name(f"{org}/{name}")
    assert c == c.lower() and canonical_name(c) == c
    assert "_" not in c and "." not in c


@given(part, part, versions)
def test_pinned_reference_round_trips(org, name, version):
    ref = parse_ref(f"{org}/{name}@{version}")
    assert isinstance(ref, Requirement)
    assert ref.pinned == Version(version)
    assert ref.name == canonical_name(f"{org}/{name}")
    assert parse_ref(str(ref)) == ref


@given(part, part, st.lists(st.tuples(operators, versions), min_size=1, max_size=3))
def test_specifier_references(org, name, clauses):
    spec = ",".join(op + v for op, v in clauses if not (op == "~=" and "." not in v))
    if not spec:
        return
    ref = parse_ref(f"{org}/{name}@{spec}")
    assert isinstance(ref, Requirement)
    assert str(ref.specifier) and ref.name == canonical_name(f"{org}/{name}")


def test_reference_forms(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "manifest.json").write_text("{}")
    assert parse_ref(str(pkg)) == LocalRef(pkg)
    assert parse_ref("hf://org/repo@main") == HubRef("org/repo", "main")
    r = parse_ref("https://adapters.example.com/reg/org/name@>=1,<2")
    assert r.registry_url == "https://adapters.example.com/reg/" and r.name == "org/name"
    r = parse_ref("file:///srv/registry/org/name")
    assert r.registry_url == "file:///srv/registry/" and r.pinned is None
    for bad in ["", "org", "org/name@", "org/name@>=x!", "ftp://host/a/b", "hf://nope"]:
        with pytest.raises(UsageError):
            parse_ref(bad)


class FakeProvider:
    def __init__(self, table):
        self.table = table  # name -> [(version, yanked, deps)]

    def candidates(self, name):
        if name not in self.table:
            raise NotFoundError(name)
        return [
            IndexEntry(
                {
                    "name": name,
                    "version": v,
                    "yanked": y,
                    "manifest": {"sha256": "0" * 64, "size": 2},
                    "deps": [{"name": d, "specifier": s} for d, s in deps],
                },
                Version(v),
                None,
            )
            for v, y, deps in self.table[name]
        ]


@settings(max_examples=200)
@given(
    st.lists(st.tuples(versions, st.booleans()), min_size=1, max_size=8, unique_by=lambda t: Version(t[0])),
    st.lists(st.tuples(operators, versions), max_size=2),
    st.booleans(),
)
def test_selection_is_the_highest_allowed(listed, clauses, pre):
    spec = ",".join(op + v for op, v in clauses if op != "~=")
    req = parse_requirement(f"acme/x@{spec}" if spec else "acme/x")
    provider = FakeProvider({"acme/x": [(v, y, []) for v, y in listed]})
    allowed = [
        Version(v)
        for v, y in listed
        if not y and req.specifier.contains(Version(v), prereleases=pre or bool(req.specifier.prereleases))
    ]
    if req.pinned is not None:
        allowed = [Version(v) for v, _ in listed if Version(v) == req.pinned]
    try:
        picked = Resolver(provider, pre=pre).resolve([req])["acme/x"]
    except ResolutionError:
        assert not allowed
        return
    assert picked.version == max(allowed)
    assert not picked.yanked or req.pinned is not None
    if not pre and not req.specifier.prereleases and req.pinned is None:
        assert not picked.version.is_prerelease


def solutions(table, roots):
    """Every consistent assignment by brute force: each name gets one version or none; every root is
    chosen and allowed; every dependency of a chosen version is chosen and allowed."""
    names = sorted(table)
    options = {n: [None, *[(Version(v), deps) for v, _, deps in table[n]]] for n in names}
    found = []
    for combo in itertools.product(*(options[n] for n in names)):
        chosen = dict(zip(names, combo))
        if any(chosen[r.name] is None or not r.allows(chosen[r.name][0]) for r in roots):
            continue
        ok = True
        for pick in chosen.values():
            for dep, spec in pick[1] if pick else []:
                target = chosen[dep]
                req = parse_requirement(f"{dep}@{spec}" if spec else dep)
                if target is None or not req.allows(target[0]):
                    ok = False
        if ok:
            found.append(chosen)
    return found


@settings(max_examples=300)
@given(st.data())
def test_resolution_is_sound_and_complete(data):
    names = ["o/a", "o/b", "o/c", "o/d"]
    specs = st.sampled_from(["", ">=2.0", "<2.0", "==1.0", "==3.0"])  # narrow enough that conflicts happen
    table = {}
    for i, name in enumerate(names):
        later = names[i + 1 :]
        if not later:
            table[name] = [(f"{v}.0", False, []) for v in (1, 2, 3)]
            continue
        deps = st.lists(st.tuples(st.sampled_from(later), specs), max_size=2, unique_by=lambda t: t[0])
        table[name] = [(f"{v}.0", False, data.draw(deps)) for v in (1, 2, 3)]
    picked = data.draw(
        st.lists(st.tuples(st.sampled_from(names), specs), min_size=1, max_size=3, unique_by=lambda t: t[0])
    )
    roots = [parse_requirement(f"{n}@{spec}" if spec else n) for n, spec in picked]
    try:
        chosen = Resolver(FakeProvider(table)).resolve(roots)
    except ResolutionError as exc:
        assert "o/" in str(exc)
        assert solutions(table, roots) == []  # complete: it only fails when nothing would do
        return
    for entry in chosen.values():  # sound: every dependency of every chosen version is met
        for dep in entry.dependencies:
            target = chosen[dep["name"]]
            req = parse_requirement(f"{dep['name']}@{dep['specifier']}" if dep["specifier"] else dep["name"])
            assert req.allows(target.version)
    assert all(r.name in chosen and r.allows(chosen[r.name].version) for r in roots)


def test_brute_force_oracle_sees_conflicts():
    table = {"o/a": [("1.0", False, [("o/b", ">=2.0")])], "o/b": [("1.0", False, [])]}
    assert solutions(table, [parse_requirement("o/a")]) == []
    assert len(solutions(table, [parse_requirement("o/b")])) == 1
    with pytest.raises(ResolutionError, match="no version of o/b matches"):
        Resolver(FakeProvider(table)).resolve([parse_requirement("o/a")])


class ChainProvider:
    """An in-memory chain o/p0 -> o/p1 -> ... -> o/p{depth-1}, two versions each; every link asks for
    the older version of the next, so the resolver backtracks at every level it tries first."""

    def __init__(self, depth):
        self.depth = depth
        self.asked = 0

    def candidates(self, name):
        self.asked += 1
        i = int(name.removeprefix("o/p"))
        deps = [{"name": f"o/p{i + 1}", "specifier": "<2"}] if i + 1 < self.depth else []
        return [
            IndexEntry(
                {
                    "name": name,
                    "version": v,
                    "yanked": False,
                    "manifest": {"sha256": "0" * 64, "size": 2},
                    "deps": deps,
                },
                Version(v),
                None,
            )
            for v in ("2.0", "1.0")
        ]


def test_a_1200_deep_dependency_chain_resolves():
    provider = ChainProvider(1200)
    chosen = Resolver(provider).resolve([parse_requirement("o/p0")])
    assert len(chosen) == 1200 and provider.asked == 1200  # each name's versions fetched once
    assert str(chosen["o/p0"].version) == "2.0"  # the root: highest
    assert all(str(chosen[f"o/p{i}"].version) == "1.0" for i in range(1, 1200))  # every link: <2


def test_a_conflict_at_the_end_of_a_deep_chain_backtracks_through_all_of_it():
    provider = ChainProvider(1200)
    resolver = Resolver(provider)
    with pytest.raises(ResolutionError, match="conflicting requirements on o/p1199: o/p1199@<2") as exc:
        resolver.resolve([parse_requirement("o/p0"), parse_requirement("o/p1199@>=2")])
    assert "o/p1198 1.0" in str(exc.value) and "the command line" in str(exc.value)
    assert resolver.steps > 2 * 1200  # both versions of the root tried, each down the whole chain


def test_backtracking_finds_an_older_version():
    # o/a 2.0 needs o/b<2, o/a 1.0 needs nothing; the root also wants o/b>=2 -> pick o/a 1.0
    provider = FakeProvider(
        {
            "o/a": [("2.0", False, [("o/b", "<2")]), ("1.0", False, [])],
            "o/b": [("1.0", False, []), ("2.0", False, [])],
        }
    )
    chosen = Resolver(provider).resolve([parse_requirement("o/a"), parse_requirement("o/b@>=2")])
    assert (str(chosen["o/a"].version), str(chosen["o/b"].version)) == ("1.0", "2.0")
