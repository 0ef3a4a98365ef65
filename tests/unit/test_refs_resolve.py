"""Reference parsing and version selection, with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from packaging.version import Version

from adapterhub_client.errors import NotFoundError, ResolutionError, UsageError
from adapterhub_client.manifest import canonical_name
from adapterhub_client.refs import HubRef, LocalRef, Requirement, parse_ref, parse_requirement
from adapterhub_client.registry.client import IndexEntry
from adapterhub_client.resolve import Resolver

part = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True)
versions = st.builds(
    lambda major, minor, pre: f"{major}.{minor}" + (f"rc{pre}" if pre is not None else ""),
    st.integers(0, 5), st.integers(0, 5), st.none() | st.integers(0, 3),
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
            IndexEntry({"name": name, "version": v, "yanked": y, "manifest": {"sha256": "0" * 64, "size": 2},
                        "deps": [{"name": d, "specifier": s} for d, s in deps]}, Version(v), None)
            for v, y, deps in self.table[name]
        ]


@settings(max_examples=200)
@given(st.lists(st.tuples(versions, st.booleans()), min_size=1, max_size=8, unique_by=lambda t: Version(t[0])),
       st.lists(st.tuples(operators, versions), max_size=2), st.booleans())
def test_selection_is_the_highest_allowed(listed, clauses, pre):
    spec = ",".join(op + v for op, v in clauses if op != "~=")
    req = parse_requirement(f"acme/x@{spec}" if spec else "acme/x")
    provider = FakeProvider({"acme/x": [(v, y, []) for v, y in listed]})
    allowed = [
        Version(v) for v, y in listed
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


@settings(max_examples=150)
@given(st.data())
def test_resolution_is_sound(data):
    names = ["o/a", "o/b", "o/c", "o/d"]
    table = {}
    for i, name in enumerate(names):
        later = names[i + 1:]
        table[name] = [
            (f"{v}.0", False, data.draw(st.lists(st.tuples(st.sampled_from(later), st.sampled_from(["", ">=2.0", "<2.0", "==1.0"])),
                                                  max_size=2, unique_by=lambda t: t[0])) if later else [])
            for v in (1, 2, 3)
        ]
    roots = [parse_requirement(n) for n in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))]
    try:
        chosen = Resolver(FakeProvider(table)).resolve(roots)
    except ResolutionError as exc:
        assert "o/" in str(exc)
        return
    for entry in chosen.values():  # every dependency of every chosen version is met
        for dep in entry.dependencies:
            target = chosen[dep["name"]]
            req = parse_requirement(f"{dep['name']}@{dep['specifier']}" if dep["specifier"] else dep["name"])
            assert req.allows(target.version)
    assert all(r.name in chosen for r in roots)


def test_backtracking_finds_an_older_version():
    # o/a 2.0 needs o/b<2, o/a 1.0 needs nothing; the root also wants o/b>=2 -> pick o/a 1.0
    provider = FakeProvider({
        "o/a": [("2.0", False, [("o/b", "<2")]), ("1.0", False, [])],
        "o/b": [("1.0", False, []), ("2.0", False, [])],
    })
    chosen = Resolver(provider).resolve([parse_requirement("o/a"), parse_requirement("o/b@>=2")])
    assert (str(chosen["o/a"].version), str(chosen["o/b"].version)) == ("1.0", "2.0")
