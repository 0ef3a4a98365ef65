"""The catalogue site (`adapters registry site`): what each page shows, that a registry's text cannot inject
markup or script, that every link lands on a page, and that regenerating rewrites only what changed.
Torch-free; the browser-side behaviour is tests/e2e/test_site_browser.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapterhub_client.errors import NotFoundError, UsageError
from adapterhub_client.hub import Hub
from adapterhub_client.manifest import complete_package
from adapterhub_client.registry import layout
from adapterhub_client.registry.publish import publish_directory
from adapterhub_client.site import SiteReport, build_site, generate
from adapterhub_client.site.pages import GROUP, group_path
from tests.pkgs import make_package

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BERT = "google-bert/bert-base-uncased"
MINILM_FP = "blake3:" + "ab" * 32
BERT_FP = "blake3:" + "cd" * 32
ARCH_FP = "sha256:" + "ef" * 32
MODULES = {
    "encoder.layer.0.attention.self.query": {"shape": [8, 8], "dtype": "float32", "layer": "linear"},
    "encoder.layer.0.attention.self.value": {"shape": [8, 8], "dtype": "float32", "layer": "linear"},
}
EVIL_CARD = """# Totally harmless

<script>alert('card script')</script>

<img src=x onerror="alert('img')">

[click me](javascript:alert('link')) and [data link](data:text/html,<script>alert(1)</script>)
and <javascript:alert('autolink')> and [fine link](https://example.org/docs).

| column | other |
|---:|---|
| 1 | 2 |
"""


def _base(name: str, content: str) -> dict[str, Any]:
    return {
        "name": name,
        "fingerprint": {"content": content, "architecture": ARCH_FP},
        "architecture": {"model_type": "bert", "modules": MODULES},
    }


def publish(root: Path, pkg: Path) -> None:
    with Hub(registry=root.as_uri()) as hub:
        hub.publish(pkg)


def catalogue_registry(root: Path, work: Path) -> Path:
    """A small registry with what every page has to show: acme/sentiment 1.0.0 (yanked) and 1.1.0 on MiniLM
    depending on acme/helper, a card holding script, an adapter on another base (BERT) and a bottleneck one
    depending on a name the registry lacks. Published through the Hub, as `adapters publish` does."""

    def pkg(name: str, version: str, seed: int, **extra: Any) -> Path:
        deps = extra.pop("deps", ())
        return make_package(
            work / f"{name.replace('/', '-')}-{version}", name, version, seed=seed, deps=deps, extra=extra
        )

    publish(
        root,
        pkg(
            "acme/helper",
            "1.0.0",
            1,
            description="Tokenizer helper",
            tags=["utility"],
            base_model=_base(MINILM, MINILM_FP),
        ),
    )
    for version, seed in (("1.0.0", 2), ("1.1.0", 3)):
        sentiment = pkg(
            "acme/sentiment",
            version,
            seed,
            description="Movie review polarity on MiniLM",
            tags=["sentiment", "reviews"],
            task="text-classification",
            base_model=_base(MINILM, MINILM_FP),
            adapter={"type": "lora", "config": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}},
            deps=[("acme/helper", ">=1")],
        )
        publish(root, sentiment)
    with Hub(registry=root.as_uri()) as hub:
        hub.yank("acme/sentiment@1.0.0", root.as_uri())
    publish(
        root,
        pkg(
            "bert/ner", "0.3.0", 4, description="Named entities for BERT", tags=["ner"], base_model=_base(BERT, BERT_FP)
        ),
    )
    publish(
        root,
        pkg(
            "acme/style",
            "2.0.0",
            5,
            description="Formal <b>style</b> & tone",
            tags=["style"],
            base_model=_base(BERT, BERT_FP),
            adapter={"type": "bottleneck", "config": {"reduction_factor": 16}, "trainable_parameters": 12345},
            deps=[("other/missing", "")],
        ),
    )
    evil = pkg(
        "evil/card",
        "1.0.0",
        6,
        description="A card that tries things",
        tags=["test"],
        base_model=_base(MINILM, MINILM_FP),
    )
    (evil / "README.md").write_text(EVIL_CARD)
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["files"].append({"path": "README.md"})
    (evil / "manifest.json").write_text(json.dumps(manifest))
    publish(root, evil)
    return root


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return catalogue_registry(tmp_path / "registry", tmp_path / "packages")


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text, of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> _Page:
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def text_of(path: Path) -> str:
    return " ".join(" ".join(parse(path).text).split())


def site_pages(site: Path) -> Iterator[Path]:
    return (p for p in sorted(site.rglob("*.html")))


# --- what the pages show ------------------------------------------------------------------------------


def test_adapter_page_shows_versions_install_lines_base_files_and_dependencies(registry: Path):
    report = build_site(registry)
    assert report.ok, report.problems
    assert (report.adapters, report.versions) == (5, 6)
    site = registry / generate.DEFAULT_SITE_DIR
    page = site / "adapters/acme/sentiment.html"
    text = text_of(page)
    assert "adapters install acme/sentiment@1.1.0" in text  # the version install picks, pinned
    assert f"model = AutoModel.from_pretrained('{MINILM}')" in text
    assert "name = hub.attach(model, 'acme/sentiment@1.1.0')" in text
    html = page.read_text()
    assert re.search(r'<tr id="v1\.0\.0" class=yanked>.*?<span class="badge yanked">yanked</span>', html)
    assert (
        re.search(r'<tr id="v1\.1\.0">.*?shown', html)
        and "yanked" not in html.split('id="v1.1.0"')[1].split("</tr>")[0]
    )
    assert MINILM_FP in text and ARCH_FP in text
    assert "trainable parameters 128 (128)" in text  # LoRA: r·(in + out) = 4·16 for each of the two modules
    assert "encoder.layer.0.attention.self.query" in text and "8×8" in text
    manifest = _manifest(registry, "acme/sentiment", "1.1.0")
    for f in manifest["files"]:  # every file with its sha256 and exact size
        assert f["sha256"] in text and f"{f['size']:,} bytes" in text
    links = [a["href"] for tag, a in parse(page).tags if tag == "a"]
    assert "../../adapters/acme/helper.html" in links
    assert "other/missing (not in this registry)" in text_of(site / "adapters/acme/style.html")
    assert "Unsigned" in text
    assert "text-classification" in text and "reviews" in text
    # a recorded count wins over the derived one
    assert "trainable parameters 12,345 (12.3K)" in text_of(site / "adapters/acme/style.html")


def _manifest(root: Path, name: str, version: str) -> dict[str, Any]:
    index = root / layout.index_path(name)
    for line in index.read_text().splitlines():
        entry = json.loads(line)
        if entry["version"] == version:
            return json.loads((root / layout.blob_path(entry["manifest"]["sha256"])).read_bytes())
    raise AssertionError(f"{name} {version} not published")


def test_listing_pages_group_by_base_type_tag_and_task(registry: Path):
    build_site(registry)
    site = registry / "site"

    def names(rel: str) -> list[str]:
        return re.findall(r'class="entry-head"><a href="[^"]+">([^<]+)</a>', (site / rel).read_text())

    assert names(group_path(GROUP["base"], MINILM)) == ["acme/helper", "acme/sentiment", "evil/card"]
    assert names(group_path(GROUP["base"], BERT)) == ["acme/style", "bert/ner"]
    assert MINILM_FP in text_of(site / group_path(GROUP["base"], MINILM))
    assert names(group_path(GROUP["type"], "bottleneck")) == ["acme/style"]
    assert names(group_path(GROUP["tag"], "sentiment")) == ["acme/sentiment"]
    assert names(group_path(GROUP["task"], "text-classification")) == ["acme/sentiment"]
    assert names("all/index.html") == ["acme/helper", "acme/sentiment", "acme/style", "bert/ner", "evil/card"]
    home = text_of(site / "index.html")
    assert "5 adapters 6 versions 2 base models 2 adapter types" in home
    assert f"{MINILM} (3)" in home and f"{BERT} (2)" in home  # the base filter's options, most used first
    options = [a.get("value") for tag, a in parse(site / "index.html").tags if tag == "option"]
    assert options[:3] == ["", MINILM, BERT]
    # the site's own search over the registry's search.jsonl, one folder up
    assert 'data-registry="../"' in (site / "index.html").read_text()


def test_every_link_lands_on_a_page_or_a_registry_file(registry: Path):
    build_site(registry)
    site = registry / "site"
    checked = 0
    for page in site_pages(site):
        for tag, attrs in parse(page).tags:
            href = attrs.get("href") if tag in ("a", "link") else attrs.get("src") if tag == "script" else None
            if not href or href.startswith("#") or urlsplit(href).scheme:
                continue
            target = (page.parent / urlsplit(href).path).resolve()
            assert target.is_file(), f"{page.relative_to(site)} links to missing {href}"
            checked += 1
    assert checked > 100


def test_registry_text_cannot_inject_markup_or_script(registry: Path):
    build_site(registry)
    site = registry / "site"
    for page in site_pages(site):
        for tag, attrs in parse(page).tags:
            assert not [k for k in attrs if k.startswith("on")], f"{page}: event handler on <{tag}>"
            if tag == "script":
                assert re.fullmatch(r"(\.\./)*site\.js\?v=[0-9a-f]+", attrs.get("src", "")), page
            for key in ("href", "src"):
                assert not attrs.get(key, "").lower().startswith(("javascript:", "data:", "vbscript:")), page
            assert tag not in ("iframe", "object", "embed", "b")  # the description's <b> stays text
    card = site / "adapters/evil/card.html"
    html = card.read_text()
    assert "<p>&lt;script&gt;alert('card script')&lt;/script&gt;</p>" in html  # shown as text
    assert "<p>&lt;img src=x onerror=&quot;alert('img')&quot;&gt;</p>" in html
    assert "[click me](javascript:alert('link'))" in html and "&lt;javascript:alert('autolink')&gt;" in html
    assert '<a href="https://example.org/docs" rel="nofollow noopener noreferrer">fine link</a>' in html
    assert '<th class="align-right">column</th>' in html  # alignment as a class: the page policy forbids style=
    assert "<h3>Totally harmless</h3>" in html  # the card's headings sit under the page's "Model card"
    assert "Formal &lt;b&gt;style&lt;/b&gt; &amp; tone" in (site / "all/index.html").read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "script-src 'self'" in csp.group(1) and "unsafe-inline" not in csp.group(1)


# --- signatures ---------------------------------------------------------------------------------------


def _publish_raw(root: Path, pkg: Path, manifest: dict[str, Any]) -> None:
    publish_directory(root, pkg, complete_package(pkg, manifest))


def test_signature_status_names_the_signer_or_why_the_file_is_not_a_signature(tmp_path: Path):
    from adapterhub_client.signing.keys import generate_keypair
    from adapterhub_client.signing.sign import sign_manifest

    root = tmp_path / "registry"
    signed = make_package(tmp_path / "signed", "acme/signed", "1.0.0", seed=1)
    manifest = complete_package(signed, json.loads((signed / "manifest.json").read_text()))
    private, _public, _ = generate_keypair(tmp_path / "keys")
    signature, signer = sign_manifest(manifest, private)
    (signed / "model.sig").write_bytes(signature)
    _publish_raw(root, signed, {**manifest, "files": [*manifest["files"], {"path": "model.sig"}]})
    forged = make_package(tmp_path / "forged", "acme/forged", "1.0.0", seed=2)
    (forged / "model.sig").write_bytes(signature)  # acme/signed's signature, copied
    data = json.loads((forged / "manifest.json").read_text())
    _publish_raw(root, forged, {**data, "files": [*data["files"], {"path": "model.sig"}]})

    report = build_site(root)
    assert report.ok, report.problems
    shown = text_of(root / "site/adapters/acme/signed.html")
    assert f"Signed with a key: signer {signer}" in shown
    forged_text = text_of(root / "site/adapters/acme/forged.html")
    assert "Not a valid signature of this version" in forged_text and "acme/signed" in forged_text


# --- incremental regeneration -------------------------------------------------------------------------


def _stamps(site: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(site).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in site.rglob("*.html")}


def test_regeneration_renders_and_rewrites_only_what_changed(registry: Path, tmp_path: Path):
    first = build_site(registry)
    site = registry / "site"
    assert first.rendered == 5 and len(first.written) == first.pages
    before = _stamps(site)

    again = build_site(registry)
    assert (again.rendered, again.written, again.removed) == (0, [], [])
    assert _stamps(site) == before

    # a new version of one adapter: its page, and the lists showing its row (its version badge changed)
    pkg = make_package(
        tmp_path / "sentiment-1.2.0", "acme/sentiment", "1.2.0", seed=7, deps=[("acme/helper", ">=1"), ("other/missing", "")],
        extra={"description": "Movie review polarity on MiniLM", "tags": ["sentiment", "reviews"],
               "task": "text-classification", "base_model": _base(MINILM, MINILM_FP)},
    )  # fmt: skip
    publish(registry, pkg)
    after = build_site(registry)
    assert after.rendered == 1
    lists = [group_path(GROUP[k], v) for k, v in (("base", MINILM), ("type", "lora"), ("tag", "sentiment"),
                                                  ("tag", "reviews"), ("task", "text-classification"))]  # fmt: skip
    assert sorted(after.written) == sorted(["adapters/acme/sentiment.html", "index.html", "all/index.html", *lists])
    assert "adapters install acme/sentiment@1.2.0" in text_of(site / "adapters/acme/sentiment.html")
    untouched = {rel: stamp for rel, stamp in _stamps(site).items() if rel not in after.written}
    assert untouched == {rel: before[rel] for rel in untouched}

    # a dependency that appears: pages linking to it are rendered again (and get the link)
    publish(
        registry,
        make_package(
            tmp_path / "missing", "other/missing", "1.0.0", seed=8, extra={"base_model": _base(BERT, BERT_FP)}
        ),
    )
    assert build_site(registry).rendered == 3  # other/missing, and acme/sentiment and acme/style, which name it
    assert (
        '<a href="../../adapters/other/missing.html">other/missing</a>'
        in (site / "adapters/acme/sentiment.html").read_text()
    )

    # a yank rewrites the index file in place: that adapter's page changes
    with Hub(registry=registry.as_uri()) as hub:
        hub.yank("acme/helper@1.0.0", registry.as_uri())
    yanked = build_site(registry)
    assert yanked.rendered == 1 and "adapters/acme/helper.html" in yanked.written
    assert "Every version is yanked" in text_of(site / "adapters/acme/helper.html")

    # without the state file nothing is rewritten either: pages are compared with the files there
    (site / generate.STATE_FILE).unlink()
    stamps = _stamps(site)
    fresh = build_site(registry)
    assert fresh.rendered == 6 and fresh.written == [] and _stamps(site) == stamps

    # a page deleted by hand comes back
    (site / "adapters/acme/style.html").unlink()
    assert build_site(registry).written == ["adapters/acme/style.html"]


def test_pages_no_longer_produced_are_removed(registry: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(generate, "PAGE_SIZE", 2)
    build_site(registry)
    site = registry / "site"
    assert [p for p in ("all/index.html", "all/2.html", "all/3.html", "all/4.html") if (site / p).exists()] == [
        "all/index.html", "all/2.html", "all/3.html",
    ]  # fmt: skip
    assert 'rel="next" href="../all/2.html"' in (site / "all/index.html").read_text()
    paged = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    (site / "all" / "notes.txt").write_text("mine")  # not the generator's: never removed
    monkeypatch.setattr(generate, "PAGE_SIZE", 100)
    again = build_site(registry)
    now = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"all/2.html", "all/3.html"} <= set(again.removed)
    assert set(again.removed) == paged - now and now <= paged
    assert (site / "all/notes.txt").read_text() == "mine"


# --- where the site goes, the CLI, and what it refuses ------------------------------------------------


def test_site_folder_defaults_beside_the_registry_and_refuses_protocol_places(registry: Path, tmp_path: Path):
    report = build_site(registry)
    assert report.out == registry / "site" and (registry / "site/index.html").is_file()
    elsewhere = build_site(registry, tmp_path / "public" / "catalogue")
    prefix = re.search(r'data-registry="([^"]+)"', (elsewhere.out / "index.html").read_text())
    assert prefix and (elsewhere.out / prefix.group(1)).resolve() == registry.resolve()
    for out in (registry, registry / "index", registry / "blobs" / "site", tmp_path):
        with pytest.raises(UsageError):
            build_site(registry, out)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        build_site(registry, tmp_path / "a-file")
    with pytest.raises(NotFoundError, match="not a directory registry"):
        build_site(tmp_path / "public")
    with pytest.raises(NotFoundError, match="not a directory"):
        build_site(tmp_path / "nowhere")


def test_cli_registry_site_build_site_and_publish_site(cli, package, home: Path, tmp_path: Path):
    root = tmp_path / "team"
    assert cli("publish", str(package("acme/one", "1.0.0", seed=1)), "--registry", root.as_uri()).code == 0
    r = cli("registry", "site", str(root), "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["ok"] and data["adapters"] == 1 and data["unchanged"] == 0 and "index.html" in data["written"]
    r = cli("registry", "site", str(root))
    assert r.code == 0 and re.search(r"site .*: 1 adapter, \d+ pages \(0 written, \d+ unchanged, 0 removed\)", r.out)

    assert cli("publish", str(package("acme/two", "1.0.0", seed=2)), "--registry", root.as_uri()).code == 0
    r = cli("registry", "build", str(root), "--site", "--json")
    assert r.code == 0, r.err
    assert r.json()["site"]["rendered"] == 1 and "adapters/acme/two.html" in r.json()["site"]["written"]
    assert cli("registry", "build", str(root), "--site", "--check").code == 2

    # publish --site: the local registry (the default target) keeps its site current
    r = cli("publish", str(package("acme/three", "1.0.0", seed=3)), "--site")
    assert r.code == 0, r.err
    assert "published acme/three 1.0.0" in r.out and "1 adapter" in r.out
    assert (home / "registry/site/adapters/acme/three.html").is_file()
    r = cli("publish", str(package("acme/four", "1.0.0", seed=4)), "--site", "--json")
    assert r.json()["site"]["adapters"] == 2
    r = cli("publish", str(package("acme/five", "1.0.0", seed=5)), "--site", "--registry", "hf://acme/five")
    assert r.code == 2 and "--site applies to directory registries" in r.err

    r = cli("registry", "site", str(tmp_path / "nothing-here"))
    assert r.code == 3 and "not a directory" in r.err


def test_an_adapter_that_cannot_be_read_is_left_off_and_named(registry: Path, cli):
    index = registry / layout.index_path("bert/ner")
    index.write_text(index.read_text() + "{not json\n")
    stray = registry / "index/acme/zz"
    stray.write_text("{}\n")
    report: SiteReport = build_site(registry)
    assert report.adapters == 4 and report.problem_count == 2
    assert any("bert/ner" in p and "malformed" in p for p in report.problems)
    assert any("index/acme/zz" in p for p in report.problems)
    listed = (registry / "site/all/index.html").read_text()
    assert "acme/sentiment" in listed and "bert/ner" not in listed
    assert not (registry / "site/adapters/bert/ner.html").exists()
    r = cli("registry", "site", str(registry))
    assert r.code == 7 and "left off the site" in r.err and "warning: site:" in r.err
