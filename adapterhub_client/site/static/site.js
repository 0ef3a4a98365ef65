/* The catalogue's live search over the registry's own search.jsonl, and copy buttons.
   Everything else on the site works without this file. Text from the registry is only ever set
   with textContent, never parsed as HTML. */
(function () {
  "use strict";
  var doc = document;
  var html = doc.documentElement;
  var siteRoot = html.getAttribute("data-root") || "";
  var registryRoot = html.getAttribute("data-registry") || "../";
  var NAME = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\/[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
  var PAGE = 50; // results rendered at once; "Show more" renders the next ones
  var SLICE_MS = 8; // counting the remaining matches yields to the browser this often

  function el(tag, cls, text) {
    var node = doc.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function str(value) {
    return typeof value === "string" ? value : value == null ? "" : String(value);
  }

  /* Release numbers first, then a plain release above its pre-releases: enough to pick the line
     to show among one adapter's publishes (its page lists every version exactly). */
  function newer(a, b) {
    var ra = /^(\d+(?:\.\d+)*)(.*)$/.exec(a) || ["", "0", a];
    var rb = /^(\d+(?:\.\d+)*)(.*)$/.exec(b) || ["", "0", b];
    var na = ra[1].split(".").map(Number);
    var nb = rb[1].split(".").map(Number);
    for (var i = 0; i < Math.max(na.length, nb.length); i++) {
      var x = na[i] || 0;
      var y = nb[i] || 0;
      if (x !== y) return x > y;
    }
    if (!ra[2] !== !rb[2]) return !ra[2];
    return ra[2] >= rb[2];
  }

  function copyButtons() {
    var blocks = doc.querySelectorAll("pre[data-copy]");
    for (var i = 0; i < blocks.length; i++) {
      (function (pre) {
        if (!navigator.clipboard) return;
        var button = el("button", "copy", "Copy");
        button.type = "button";
        button.setAttribute("aria-label", "Copy " + (pre.getAttribute("data-copy") || "command"));
        button.addEventListener("click", function () {
          navigator.clipboard.writeText(pre.textContent).then(function () {
            button.textContent = "Copied";
            setTimeout(function () { button.textContent = "Copy"; }, 1500);
          });
        });
        pre.parentNode.insertBefore(button, pre.nextSibling);
      })(blocks[i]);
    }
  }

  /* Adapter pages: `adapters registry add` with the address this registry is served from. */
  function registryURL() {
    var holders = doc.querySelectorAll("pre[data-registry-add]");
    if (!holders.length) return;
    var root = new URL(registryRoot, location.href);
    if (!/^(https?|file):$/.test(root.protocol)) return;
    var url = root.href;
    if (!/^[A-Za-z0-9_.~:\/%@=+,-]+$/.test(url)) url = "'" + url.replace(/'/g, "'\\''") + "'";
    for (var i = 0; i < holders.length; i++) {
      holders[i].querySelector("code").textContent =
        "adapters registry add " + holders[i].getAttribute("data-registry-add") + " " + url;
    }
    var hints = doc.querySelectorAll("[data-registry-hint]");
    for (var j = 0; j < hints.length; j++) hints[j].hidden = true;
  }

  function liveSearch() {
    var form = doc.getElementById("search");
    if (!form) return;
    var input = form.elements.q;
    var baseSelect = form.elements.base;
    var typeSelect = form.elements.type;
    var results = doc.getElementById("results");
    var status = doc.getElementById("search-status");
    var more = doc.getElementById("more");
    var browse = doc.getElementById("browse");
    var entries = [];
    var position = new Map(); // name -> index in entries
    var loaded = false;
    var failed = null;
    var current = null; // the query being answered
    var timer = 0;

    function add(line) {
      if (!line) return;
      var item;
      try { item = JSON.parse(line); } catch (e) { return; }
      if (!item || typeof item !== "object" || typeof item.name !== "string" || !NAME.test(item.name)) return;
      var tags = Array.isArray(item.tags) ? item.tags.filter(function (t) { return typeof t === "string"; }) : [];
      var entry = {
        name: item.name,
        version: str(item.version),
        description: str(item.description),
        type: str(item.type),
        base: str(item.base),
        tags: tags,
        text: (item.name + "\n" + str(item.description) + "\n" + tags.join("\n")).toLowerCase()
      };
      var at = position.get(entry.name);
      if (at === undefined) {
        position.set(entry.name, entries.length);
        entries.push(entry);
      } else if (newer(entry.version, entries[at].version)) {
        entries[at] = entry;
      }
    }

    function load() {
      var url = new URL(registryRoot + "search.jsonl", location.href).href;
      fetch(url, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        if (!response.body || !window.TextDecoder) {
          return response.text().then(function (text) { text.split("\n").forEach(add); });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var rest = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              add(rest + decoder.decode());
              return null;
            }
            var lines = (rest + decoder.decode(chunk.value, { stream: true })).split("\n");
            rest = lines.pop();
            for (var i = 0; i < lines.length; i++) add(lines[i]);
            advance(); // results appear while the file still streams in
            return pump();
          });
        }
        return pump();
      }).then(function () {
        loaded = true;
        advance();
      }, function (error) {
        failed = error;
        loaded = true;
        advance();
      });
    }

    function matches(entry, query) {
      if (query.base && entry.base !== query.base) return false;
      if (query.type && entry.type !== query.type) return false;
      for (var i = 0; i < query.words.length; i++) {
        if (entry.text.indexOf(query.words[i]) < 0) return false;
      }
      return true;
    }

    function row(entry) {
      var li = el("li");
      var head = el("div", "entry-head");
      var link = el("a", "", entry.name);
      link.href = siteRoot + "adapters/" + entry.name + ".html";
      head.appendChild(link);
      if (entry.version) head.appendChild(el("span", "badge", entry.version));
      if (entry.type) head.appendChild(el("span", "badge", entry.type));
      li.appendChild(head);
      if (entry.description) li.appendChild(el("p", "", entry.description));
      if (entry.base) li.appendChild(el("p", "muted", "base model: " + entry.base));
      return li;
    }

    function show(query) {
      var fragment = doc.createDocumentFragment();
      while (query.shown < query.limit && query.shown < query.found.length) {
        fragment.appendChild(row(entries[query.found[query.shown]]));
        query.shown++;
      }
      results.appendChild(fragment);
    }

    function report(query) {
      var n = query.found.length;
      var counting = query.scanned < entries.length || !loaded;
      var text;
      if (failed) text = "The search index could not be loaded (" + failed.message + "); browse the lists below.";
      else if (!n && counting) text = loaded ? "Searching…" : "Loading the index… (" + entries.length.toLocaleString() + " adapters so far)";
      else if (!n) text = "No adapter matches.";
      else text = "Showing " + query.shown.toLocaleString() + " of " + n.toLocaleString() + (counting ? "+" : "") +
        (n === 1 ? " adapter" : " adapters") + ".";
      status.textContent = text;
      more.hidden = query.shown >= n;
      if (failed) browse.hidden = false;
    }

    /* Scan on from where the query stopped: render as soon as a page of results is found, then
       count the rest in short slices so typing never waits for 100,000 entries. */
    function advance() {
      var query = current;
      if (!query) return;
      clearTimeout(timer);
      var deadline = performance.now() + SLICE_MS;
      while (query.scanned < entries.length) {
        if (matches(entries[query.scanned], query)) query.found.push(query.scanned);
        query.scanned++;
        if (query.shown < query.limit && query.found.length >= query.limit) break; // a page to show now
        if ((query.scanned & 1023) === 0 && performance.now() > deadline) break;
      }
      show(query);
      report(query);
      if (query.scanned < entries.length) timer = setTimeout(advance, 0);
    }

    function start() {
      var text = input.value.trim().toLowerCase();
      var query = {
        words: text ? text.split(/\s+/) : [],
        base: baseSelect.value,
        type: typeSelect.value,
        scanned: 0,
        found: [],
        shown: 0,
        limit: PAGE
      };
      var active = query.words.length > 0 || query.base || query.type;
      var params = new URLSearchParams();
      if (text) params.set("q", input.value.trim());
      if (query.base) params.set("base", query.base);
      if (query.type) params.set("type", query.type);
      var search = params.toString();
      if (history.replaceState) history.replaceState(null, "", search ? "?" + search : location.pathname);
      results.textContent = "";
      clearTimeout(timer);
      if (!active) {
        current = null;
        results.hidden = true;
        more.hidden = true;
        browse.hidden = false;
        status.textContent = "";
        return;
      }
      current = query;
      results.hidden = false;
      browse.hidden = true;
      advance();
    }

    function option(select, value) {
      if (!value) return;
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === value) {
          select.value = value;
          return;
        }
      }
      var extra = el("option", "", value);
      extra.value = value;
      select.appendChild(extra);
      select.value = value;
    }

    var params = new URLSearchParams(location.search);
    input.value = params.get("q") || "";
    option(baseSelect, params.get("base"));
    option(typeSelect, params.get("type"));
    form.hidden = false;
    form.addEventListener("submit", function (event) { event.preventDefault(); start(); });
    input.addEventListener("input", start);
    baseSelect.addEventListener("change", start);
    typeSelect.addEventListener("change", start);
    more.addEventListener("click", function () {
      if (!current) return;
      var first = current.shown;
      current.limit += PAGE;
      show(current);
      report(current);
      var link = results.children[first] && results.children[first].querySelector("a");
      if (link) link.focus();
    });

    /* Keyboard: "/" focuses the search box; arrow keys move between the box and the results. */
    doc.addEventListener("keydown", function (event) {
      var target = event.target;
      var typing = target && /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName);
      if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        input.focus();
        input.select();
        return;
      }
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      var links = Array.prototype.slice.call(results.querySelectorAll(".entry-head a"));
      if (!links.length || results.hidden) return;
      var at = links.indexOf(target);
      if (target === input && event.key === "ArrowDown") {
        event.preventDefault();
        links[0].focus();
      } else if (at >= 0) {
        event.preventDefault();
        if (event.key === "ArrowDown" && at + 1 < links.length) links[at + 1].focus();
        else if (event.key === "ArrowUp") (at > 0 ? links[at - 1] : input).focus();
      }
    });

    load();
    start();
  }

  copyButtons();
  registryURL();
  liveSearch();
})();
