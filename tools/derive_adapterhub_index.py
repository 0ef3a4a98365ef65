"""Derive the compact AdapterHub index shipped as package data from AdapterHub's archived Hub repository.

    python tools/derive_adapterhub_index.py /work/shared/adapterhub-index adapterhub_client/registry/data/

Reads ``dist/v2`` of github.com/adapter-hub/Hub at commit a53c6b7 (Apache-2.0): the per-model index
files (``index/<model>.json``: task -> subtask -> config hash -> {versions: {org: adapter file}}, plus
a ``default`` per subtask), every adapter file they name (``adapters/<org>/<stem>.json``: config_id,
default_version, files[version] = {url, sha1, sha256}, info) and ``architectures.json``. It checks them
against each other and against ``all.json`` (every adapter listed once, the same config, hash and
names everywhere; v2's index is the union of the older ``index_text_task`` / ``index_text_lang``,
whose hashes predate v2), then writes one mapping, deterministically (sorted keys, fixed layout)::

    {"format": 1, "source": {repository, commit, path, license, ...},
     "architectures": {name: config hash}, "configs": {config hash: config},
     "models": {model: {task: {subtask: {"default": stem,
                "adapters": {stem: {org, config, default_version, versions: {v: [url, sha256]}}}}}}}}

The Hugging Face repository of an adapter is ``AdapterHub/<stem>``; sha1 and scores are left out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from adapterhub_client._fs import atomic_write
from adapterhub_client.registry.adapterhub import DATA_FILE, DATA_FORMAT, config_hash

COMMIT = "a53c6b7"
COMMIT_DATE = "2024-05-07"
LICENSE = "Apache-2.0"
REPOSITORY = "https://github.com/adapter-hub/Hub"
MAX_BYTES = 300_000  # the shipped file stays small

_HASH = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_REF = re.compile(r"adapters/(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<stem>[A-Za-z0-9][A-Za-z0-9._-]*)\.json")


class DeriveError(Exception):
    """The archived index breaks an assumption the derived data relies on."""


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeriveError(f"{path}: {exc}") from None


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DeriveError(what)


def _check_source(root: Path) -> None:
    readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    _check(COMMIT in readme, f"{root}/README.md does not name commit {COMMIT}")
    license_text = (root / "LICENSE.txt").read_text(encoding="utf-8") if (root / "LICENSE.txt").is_file() else ""
    _check("Apache License" in license_text and "Version 2.0" in license_text, f"{root}/LICENSE.txt is not Apache-2.0")


def _adapter(v2: Path, ref: str, model: str, task: str, subtask: str, org: str, chash: str) -> tuple[str, dict]:
    m = _REF.fullmatch(ref)
    _check(m is not None and m["org"] == org, f"{model} {task}/{subtask}: bad adapter reference {ref!r} for {org}")
    assert m is not None
    entry = _load(v2 / ref)
    info = entry["info"]
    where = f"{ref} ({model} {task}/{subtask}@{org})"
    _check(entry["config_id"] == chash, f"{where}: config_id {entry['config_id']} but the index says {chash}")
    _check(config_hash(info["adapter_config"]) == chash, f"{where}: its config does not hash to {chash}")
    names = (info["model_name"], info["task"], info["subtask"], info["username"], info["adapter_id"])
    _check(names == (model, task, subtask, org, f"@{org}/{m['stem']}"), f"{where}: its info names {names}")
    _check(entry["default_version"] in entry["files"], f"{where}: default version missing from its files")
    versions = {}
    for version, f in entry["files"].items():
        _check(bool(_WORD.fullmatch(version)), f"{where}: version {version!r} is not a branch-safe name")
        _check(bool(_SHA256.fullmatch(f["sha256"])), f"{where}: version {version} has no valid sha256")
        _check(f["url"].startswith(("https://", "http://")), f"{where}: version {version} url is not HTTP(S)")
        versions[version] = [f["url"], f["sha256"]]
    return m["stem"], {
        "org": org,
        "config": chash,
        "default_version": entry["default_version"],
        "versions": versions,
        "_config": info["adapter_config"],
        "_info": info,
    }


def derive(root: Path) -> dict[str, Any]:
    """The derived mapping from the archived repository's root (the folder holding dist/)."""
    _check_source(root)
    v2 = root / "dist" / "v2"
    configs: dict[str, Any] = {}
    models: dict[str, Any] = {}
    seen: dict[str, dict] = {}
    for index_file in sorted((v2 / "index").rglob("*.json")):
        model = index_file.relative_to(v2 / "index").with_suffix("").as_posix()
        for task, subtasks in _load(index_file).items():
            _check(bool(_WORD.fullmatch(task)), f"{model}: task {task!r}")
            for subtask, entry in subtasks.items():
                _check(bool(_WORD.fullmatch(subtask)), f"{model}: subtask {subtask!r}")
                adapters: dict[str, Any] = {}
                default = entry.get("default")
                default_stem = None
                for chash, config_entry in entry.items():
                    if chash == "default":
                        continue
                    _check(bool(_HASH.fullmatch(chash)), f"{model} {task}/{subtask}: config key {chash!r}")
                    _check(set(config_entry) == {"versions"}, f"{model} {task}/{subtask}: keys {set(config_entry)}")
                    for org, ref in config_entry["versions"].items():
                        stem, adapter = _adapter(v2, ref, model, task, subtask, org, chash)
                        _check(stem not in seen, f"adapter file stem {stem} is listed twice")
                        config = adapter.pop("_config")
                        seen[stem] = adapter.pop("_info")
                        _check(configs.setdefault(chash, config) == config, f"two configs hash to {chash}")
                        adapters[stem] = adapter
                        if ref == default:
                            default_stem = stem
                _check(default_stem is not None, f"{model} {task}/{subtask}: default {default!r} is no candidate")
                models.setdefault(model, {}).setdefault(task, {})[subtask] = {
                    "default": default_stem,
                    "adapters": adapters,
                }
    # all.json and the adapter files must hold exactly what the index lists
    all_entries = {e["adapter_id"].split("/", 1)[1]: e for e in _load(v2 / "all.json")}
    _check(all_entries.keys() == seen.keys(), "all.json and the index list different adapters")
    _check(all(all_entries[s] == seen[s] for s in seen), "all.json and the adapter files disagree")
    files = {p.stem for p in (v2 / "adapters").rglob("*.json")}
    _check(files == seen.keys(), "adapter files that no index lists (or the reverse)")
    architectures = {}
    for name, config in _load(v2 / "architectures.json").items():
        chash = config_hash(config)
        _check(configs.setdefault(chash, config) == config, f"architecture {name}: two configs hash to {chash}")
        architectures[name] = chash
    return {
        "format": DATA_FORMAT,
        "source": {
            "name": "AdapterHub's archived Hub index",
            "repository": REPOSITORY,
            "commit": COMMIT,
            "date": COMMIT_DATE,
            "path": "dist/v2",
            "license": LICENSE,
            "derived_by": "tools/derive_adapterhub_index.py",
            "adapters": len(seen),
            "versions": sum(
                len(a["versions"])
                for t in models.values()
                for s in t.values()
                for e in s.values()
                for a in e["adapters"].values()
            ),
        },
        "architectures": architectures,
        "configs": configs,
        "models": models,
    }


def _expanded(path: tuple[str, ...]) -> bool:
    """Which objects get one member per line: the top level and its members, and models down to each
    subtask's adapters (so each adapter, and each config, is one line)."""
    if len(path) <= 1:
        return True
    return path[0] == "models" and (len(path) <= 4 or (len(path) == 5 and path[4] == "adapters"))


def _emit(value: Any, path: tuple[str, ...] = ()) -> str:
    if isinstance(value, dict) and _expanded(path):
        members = [json.dumps(k) + ":" + _emit(value[k], (*path, k)) for k in sorted(value)]
        return "{\n" + ",\n".join(members) + "}"
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def dumps(data: dict[str, Any]) -> bytes:
    """Deterministic bytes: sorted keys, ASCII, compact, one adapter or config per line (small,
    reviewable diffs)."""
    return (_emit(data) + "\n").encode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the archived Hub repository (holding README.md, dist/)")
    parser.add_argument("out_dir", type=Path, help="where to write " + DATA_FILE)
    args = parser.parse_args(argv)
    try:
        data = derive(args.source)
    except (DeriveError, OSError, KeyError, TypeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    raw = dumps(data)
    if len(raw) > MAX_BYTES:
        print(f"error: {len(raw)} bytes, over the {MAX_BYTES}-byte budget", file=sys.stderr)
        return 1
    target = atomic_write(args.out_dir / DATA_FILE, raw, mode=0o644)
    src = data["source"]
    print(
        f"{target}: {len(raw)} bytes, {src['adapters']} adapters, {src['versions']} versions, "
        f"{len(data['configs'])} configs, {len(data['models'])} models"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
