"""One selection rule for search, info and install: the highest non-yanked version, stable unless
--pre; yanked versions are marked everywhere and installing a pinned one warns."""

from __future__ import annotations

import pytest

from tests.pkgs import make_toy_base

VERSIONS = ["1.0.0", "1.0.2", "1.0.3", "2.0.0rc1", "1.1.0rc1"]


@pytest.fixture
def base_dir(tmp_path):
    """A tiny base model on disk (tests.pkgs.make_toy_base)."""
    return make_toy_base(tmp_path / "base")


@pytest.fixture
def listed(cli, package, base_dir):
    """acme/x in five versions: 1.0.3 and the pre-release 2.0.0rc1 yanked."""
    for i, v in enumerate(VERSIONS):
        r = cli("publish", str(package("acme/x", v, seed=i)), "--base", str(base_dir))
        assert r.code == 0, r.err
    for v in ("1.0.3", "2.0.0rc1"):
        assert cli("yank", f"acme/x@{v}").code == 0
    return base_dir


def test_search_info_and_install_pick_the_same_version(cli, listed):
    hit = cli("search", "--json").json()["results"][0]
    assert (hit["version"], hit["yanked"]) == ("1.0.2", False)
    assert "1.0.2" in cli("search").out.splitlines()[1]
    info = cli("info", "acme/x", "--json").json()
    assert (info["manifest"]["version"], info["yanked"]) == ("1.0.2", False)
    installed = cli("install", "acme/x", "--json").json()["installed"][0]
    assert (installed["version"], installed["yanked"]) == ("1.0.2", False)


def test_pre_shows_the_highest_non_yanked_pre_release(cli, listed):
    hit = cli("search", "--pre", "--json").json()["results"][0]
    assert hit["version"] == "1.1.0rc1"
    assert "1.1.0rc1 (pre-release)" in cli("search", "--pre").out
    assert cli("info", "acme/x", "--pre", "--json").json()["manifest"]["version"] == "1.1.0rc1"


def test_only_yanked_versions_are_shown_marked(cli, package):
    assert cli("publish", str(package("acme/gone", "1.0.0"))).code == 0
    assert cli("yank", "acme/gone@1.0.0").code == 0
    hit = cli("search", "gone", "--json").json()["results"][0]
    assert (hit["version"], hit["yanked"]) == ("1.0.0", True)
    assert "1.0.0 (yanked)" in cli("search", "gone").out


def test_pinned_yanked_version_warns_and_is_marked(cli, listed):
    info = cli("info", "acme/x@1.0.3")
    assert info.code == 0 and "yanked" in info.out.splitlines()[0].lower()
    assert cli("info", "acme/x@1.0.3", "--json").json()["yanked"] is True
    r = cli("install", "acme/x@1.0.3")
    assert r.code == 0 and "warning: acme/x 1.0.3 is yanked" in r.err
    assert "(yanked)" in r.out
    r = cli("install", "acme/x@1.0.3", "--json")
    assert r.json()["installed"][0]["yanked"] is True and "is yanked" in r.err
    quiet = cli("install", "acme/x@1.0.2")
    assert "yanked" not in quiet.err


def test_search_for_model_is_sorted_newest_first_with_yanked_marked(cli, listed):
    hits = cli("search", "--for-model", str(listed), "--json").json()["results"]
    assert [h["version"] for h in hits] == ["2.0.0rc1", "1.1.0rc1", "1.0.3", "1.0.2", "1.0.0"]
    assert [h["yanked"] for h in hits] == [True, False, True, False, False]
    rows = cli("search", "--for-model", str(listed)).out.splitlines()[1:]
    assert rows[0].split()[1:3] == ["2.0.0rc1", "(yanked)"] and rows[2].split()[1:3] == ["1.0.3", "(yanked)"]
