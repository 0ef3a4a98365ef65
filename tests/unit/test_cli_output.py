"""Registry-controlled text reaches a terminal escaped (no cursor moves, screen clears, titles or bidi
overrides), while --json keeps the exact strings."""

from __future__ import annotations

import json

HOSTILE = "nice \x1b]0;pwned\x07 adapter \x1b[2J\x9b1m \u202egnp.exe"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _clean(text: str) -> bool:
    return not any(c in text for c in RAW)


def test_safe_escapes_controls_and_bidi_and_keeps_text():
    from adapterhub_client.cli.output import safe

    assert safe("plain é ü 中") == "plain é ü 中"
    assert safe(HOSTILE) == "nice \\x1b]0;pwned\\x07 adapter \\x1b[2J\\x9b1m \\u202egnp.exe"
    assert safe("a\nb\tc\x7f") == "a\\x0ab\\x09c\\x7f"
    # bidi marks and the Unicode line separators move or split text as surely as the overrides do
    assert safe("x\u200ey\u200fz\u061c\u2028\u2029") == "x\\u200ey\\u200fz\\u061c\\u2028\\u2029"


def test_hostile_description_base_and_tags_are_escaped_for_people_exact_in_json(cli, package, home):
    pkg = package(
        "acme/evil",
        extra={"description": HOSTILE, "tags": ["t\x1b[31m"]},
    )
    r = cli("publish", str(pkg))
    assert r.code == 0, r.err
    for args in (("search",), ("search", "nice"), ("info", "acme/evil"), ("install", "acme/evil"), ("list",)):
        r = cli(*args)
        assert r.code == 0, r.err
        assert _clean(r.out) and _clean(r.err), (args, r.out, r.err)
    assert "\\x1b]0;pwned\\x07" in cli("info", "acme/evil").out
    assert "\\x1b[2J" in cli("search").out
    hits = cli("search", "--json").json()["results"]
    assert hits[0]["description"] == HOSTILE and hits[0]["tags"] == ["t\x1b[31m"]
    info = cli("info", "acme/evil", "--json").json()
    assert info["manifest"]["description"] == HOSTILE
    assert json.loads(json.dumps(info))["manifest"]["tags"] == ["t\x1b[31m"]


def test_hostile_index_line_in_search_file_is_escaped(cli, package, home):
    assert cli("publish", str(package("acme/fine"))).code == 0
    search_file = home / "registry" / "search.jsonl"
    assert search_file.is_file()
    line = {
        "name": "acme/fine",
        "version": "1.0.0",
        "description": "\x1b[2J\x1b[H owned",
        "type": "lo\x1bra",
        "base": "org/b\x1b]2;title\x07",
    }
    search_file.write_text(json.dumps(line) + "\n")
    r = cli("search")
    assert r.code == 0 and _clean(r.out), r.out
    assert "\\x1b[2J" in r.out
    hit = cli("search", "--json").json()["results"][0]
    assert (hit["description"], hit["base"]) == ("\x1b[2J\x1b[H owned", "org/b\x1b]2;title\x07")


def test_error_messages_quoting_registry_text_are_escaped(cli):
    r = cli("install", "./no-such\x1b[2J\x1b]0;t\x07")
    assert r.code == 2, r.err
    assert _clean(r.err), r.err
