"""The catalogue site on a registry of 100,000 synthetic adapters (issue 14).

    python benchmarks/bench_site.py [--adapters 100000] [--rounds 5]

1. Generating the site: the first run, a regeneration after one publish (one adapter page and the lists
   that moved, rewritten), and the same regeneration without the state file (every page rendered and
   compared with the file there, none rewritten): the peer is that full re-render, in the same run.
2. In headless Chromium over loopback HTTP: time from typing to the first result visible (the input event
   to the second animation frame after the first result is in the page), for a common word, a word only
   the last entry has, and a name; typed once the index is loaded, and typed the moment the page opens
   (the index still streaming in). The peers, measured in the same page: the browser's own cost of
   fetching and parsing search.jsonl whole, and rendering every match at once instead of the first 50.
   Target: the first result visible within 300 ms of typing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import print_table
from tests.httpserver import StaticServer

WORDS = [
    "sentiment",
    "review",
    "polarity",
    "toxicity",
    "summarise",
    "translate",
    "question",
    "answer",
    "entity",
    "legal",
    "medical",
    "code",
    "finance",
    "news",
    "tweet",
    "emotion",
    "intent",
    "topic",
    "spam",
    "style",
    "formal",
    "casual",
    "dialogue",
    "chat",
    "retrieval",
    "ranking",
    "rerank",
    "paraphrase",
    "grammar",
    "keyword",
    "title",
    "caption",
    "vision",
    "speech",
    "audio",
    "music",
    "math",
    "reasoning",
    "instruct",
]
BASES = [f"org{i}/base-model-{i}" for i in range(40)]
RARE = "zanzibar"  # only in the last adapter's description
CARD = (
    b"# A synthetic adapter\n\nTrained for the benchmark.\n\n| a | b |\n|---|---|\n| *1* | [2](https://example.org) |\n"
)


def _entry_name(i: int) -> str:
    return f"org{i % 500}/adapter-{i}"


def synthetic_registry(root: Path, n: int) -> None:
    """`n` adapters, one version each, as publish would have written them (index lines, manifest blobs,
    search.jsonl, reverse index), written directly: publishing 100,000 packages one by one takes hours."""
    from adapterhub_client._fs import sha256_bytes
    from adapterhub_client.manifest import dumps_manifest
    from adapterhub_client.registry import layout
    from adapterhub_client.registry.publish import ensure_registry, index_entry, jsonl_line, search_line

    ensure_registry(root, "bench")
    made: set[Path] = set()

    def write(path: Path, data: bytes, mode: str = "wb") -> None:
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, mode) as fh:
            fh.write(data)

    with open(root / layout.SEARCH_PATH, "wb") as search:
        for i in range(n):
            name = _entry_name(i)
            words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
            description = f"Adapter {i} for {words}" + (f" from {RARE}" if i == n - 1 else "")
            card = CARD.replace(b"benchmark.", f"benchmark: {description}.".encode())  # one card each
            card_sha = sha256_bytes(card)
            write(root / layout.blob_path(card_sha), card)
            manifest = {
                "schema_version": 1,
                "name": name,
                "version": "1.0.0",
                "description": description,
                "tags": [WORDS[i % len(WORDS)], WORDS[(i // 7) % len(WORDS)]],
                "adapter": {"type": "lora" if i % 4 else "bottleneck", "config": {"r": 8}},
                "base_model": {"name": BASES[i % len(BASES)], "fingerprint": {"content": f"blake3:{i % 40:064x}"}},
                "files": [{"path": "README.md", "sha256": card_sha, "size": len(card)}],
            }
            raw = dumps_manifest(manifest)
            entry = index_entry(manifest, raw)
            write(root / layout.blob_path(entry["manifest"]["sha256"]), raw)
            write(root / layout.index_path(name), jsonl_line(entry), "ab")
            search.write(jsonl_line(search_line(entry, manifest)))


def publish_one_more_version(root: Path, i: int) -> None:
    """Adapter `i` gets version 1.1.0, written as publish writes it."""
    from adapterhub_client.manifest import dumps_manifest
    from adapterhub_client.registry import layout
    from adapterhub_client.registry.publish import index_entry, jsonl_line, search_line

    name = _entry_name(i)
    old = json.loads((root / layout.index_path(name)).read_text().splitlines()[0])
    manifest = json.loads((root / layout.blob_path(old["manifest"]["sha256"])).read_bytes())
    manifest["version"] = "1.1.0"
    raw = dumps_manifest(manifest)
    entry = index_entry(manifest, raw)
    (root / layout.blob_path(entry["manifest"]["sha256"])).write_bytes(raw)
    with open(root / layout.index_path(name), "ab") as fh:
        fh.write(jsonl_line(entry))
    with open(root / layout.SEARCH_PATH, "ab") as fh:
        fh.write(jsonl_line(search_line(entry, manifest)))


def generation(root: Path) -> list[list[str]]:
    from adapterhub_client.site import build_site
    from adapterhub_client.site.generate import STATE_FILE

    def run() -> tuple[float, object]:
        t0 = time.perf_counter()
        report = build_site(root)
        return time.perf_counter() - t0, report

    first_s, first = run()
    publish_one_more_version(root, 12345 % max(1, first.adapters))  # type: ignore[attr-defined]
    incremental_s, incremental = run()
    (root / "site" / STATE_FILE).unlink()
    full_s, full = run()
    size = sum(p.stat().st_size for p in (root / "site").rglob("*") if p.is_file())
    rows = []
    for what, seconds, r in (
        ("first build", first_s, first),
        ("after one publish (state kept)", incremental_s, incremental),
        ("same, without the state (peer)", full_s, full),
    ):
        rows.append(
            [what, f"{seconds:.2f}", str(r.rendered), f"{len(r.written):,}", f"{r.pages:,}", f"{full_s / seconds:.1f}x"]  # type: ignore[attr-defined]
        )
    rows.append(["site size", f"{size / 1e6:.0f} MB", "", "", "", ""])
    return rows


# The measurement runs in the page: the input event, then the second animation frame after the first result
# row is in the DOM (the frame that shows it has been produced by then).
TYPE_AND_WAIT = """
const [query, done] = [arguments[0], arguments[arguments.length - 1]];
const input = document.getElementById("q"), results = document.getElementById("results");
results.textContent = "";
const t0 = performance.now();
const seen = () => results.querySelector("li") !== null;
const finish = () => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
const observer = new MutationObserver(() => { if (seen()) { observer.disconnect(); finish(); } });
observer.observe(results, {childList: true});
input.value = query;
input.dispatchEvent(new Event("input", {bubbles: true}));
if (seen()) { observer.disconnect(); finish(); }
"""

LOADED = """
const status = document.getElementById("search-status").textContent;
return !!document.getElementById("q") && !/Loading|\\+/.test(status) && /Showing|No adapter/.test(status);
"""

FETCH_AND_PARSE = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
fetch(new URL(document.documentElement.getAttribute("data-registry") + "search.jsonl", location.href))
  .then(r => r.text()).then(text => {
    let n = 0;
    for (const line of text.split("\\n")) if (line) { JSON.parse(line); n++; }
    done([performance.now() - t0, n]);
  });
"""

RENDER_ALL = """
const [word, done] = [arguments[0], arguments[arguments.length - 1]];
fetch(new URL(document.documentElement.getAttribute("data-registry") + "search.jsonl", location.href))
  .then(r => r.text()).then(text => {
    const items = text.split("\\n").filter(Boolean).map(l => JSON.parse(l));
    const list = document.createElement("ul");
    document.querySelector("main").appendChild(list);
    const t0 = performance.now();
    let html = "";
    for (const e of items) {
      if ((e.name + " " + e.description + " " + e.tags.join(" ")).toLowerCase().includes(word)) {
        const li = document.createElement("li");
        const a = document.createElement("a"); a.textContent = e.name; a.href = "adapters/" + e.name + ".html";
        const p = document.createElement("p"); p.textContent = e.description;
        li.append(a, p); list.appendChild(li);
      }
    }
    requestAnimationFrame(() => requestAnimationFrame(() => { const ms = performance.now() - t0; list.remove(); done([ms, items.length]); }));
  });
"""


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    options.binary_location = chromium
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.set_script_timeout(120)
    return browser


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def browser_rows(root: Path, rounds: int, n: int) -> list[list[str]]:
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chrome()
    rows = []
    try:
        with StaticServer(root) as server:
            home = f"{server.url}/site/index.html"

            def open_loaded() -> None:
                browser.get(home + "?type=lora")  # a filter: the status line reports when all is scanned
                WebDriverWait(browser, 120).until(lambda d: d.execute_script(LOADED))
                browser.execute_script("document.getElementById('type').value = '';")

            open_loaded()
            floor = [browser.execute_async_script(FETCH_AND_PARSE) for _ in range(rounds)]
            floor_ms = _median([f[0] for f in floor])
            whole = f"fetch + parse all {floor[0][1]:,} lines"

            def row(measure: str, ms: float, peer: str, peer_ms: float) -> None:
                rows.append([measure, f"{ms:.1f}", peer, f"{peer_ms:.0f}", f"{ms / peer_ms:.3f}"])

            queries = [("common word", WORDS[3]), (f"rare word (last of {n:,})", RARE), ("a name", "adapter-99")]
            for label, query in queries:
                warm = [browser.execute_async_script(TYPE_AND_WAIT, query) for _ in range(rounds)]
                row(f"typed after load: {label}", _median(warm), whole, floor_ms)
            cold = []
            for _ in range(rounds):
                browser.get(home)
                WebDriverWait(browser, 60).until(
                    lambda d: d.execute_script("return !document.getElementById('search').hidden")
                )
                cold.append(browser.execute_async_script(TYPE_AND_WAIT, WORDS[3]))
            row("typed as the page opens: common word", _median(cold), whole, floor_ms)
            open_loaded()
            naive = [browser.execute_async_script(RENDER_ALL, WORDS[3])[0] for _ in range(max(1, rounds // 2))]
            warm_common = [browser.execute_async_script(TYPE_AND_WAIT, WORDS[3]) for _ in range(rounds)]
            row("typed after load: common word", _median(warm_common), "every match rendered at once", _median(naive))
    finally:
        browser.quit()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-site-"))
    os.environ["ADAPTERS_HOME"] = str(work / "home")
    try:
        root = work / "registry"
        t0 = time.perf_counter()
        synthetic_registry(root, args.adapters)
        print(f"synthetic registry of {args.adapters:,} adapters written in {time.perf_counter() - t0:.1f} s")
        print_table(
            f"site generation, {args.adapters:,} adapters (ratio: the full re-render's time over this one's)",
            generation(root),
            ["run", "seconds", "pages rendered", "written", "pages", "vs full"],
        )
        print_table(
            f"live search in headless Chromium, {args.adapters:,} entries (median of {args.rounds}; target < 300 ms)",
            browser_rows(root, args.rounds, args.adapters),
            ["first result visible, ms from the input event", "ms", "peer, in the same page", "peer ms", "ratio"],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
