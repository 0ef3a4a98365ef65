"""`hf://` installs without torch (this tier runs with torch unimportable), against the fake Hub
(tests/hubfake.py: a FAKE of the Hub's documented HTTP API, faithful to what huggingface_hub sends):
references, manifests derived from metadata, our own manifest used as is, the HF cache shared with
transformers users (never downloaded twice), and tokens kept to their own hosts."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from adapterhub_client.errors import UsageError
from adapterhub_client.refs import HubRef, parse_ref

PEFT_CONFIG = {
    "peft_type": "LORA",
    "r": 2,
    "lora_alpha": 4,
    "target_modules": ["query"],
    "base_model_name_or_path": "acme/base",
}


def safetensors_bytes(tensors: dict[str, list[int]]) -> bytes:
    """A float32 safetensors file of zeros with these shapes (written by hand: no torch here)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


LORA_FILE = safetensors_bytes(
    {
        "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": [2, 8],
        "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": [8, 2],
    }
)


def test_hub_references_parse_with_revisions_ranges_and_subfolders():
    assert parse_ref("hf://acme/x") == HubRef("acme/x")
    assert parse_ref("hf://acme/x@v1.2.0:sub/dir") == HubRef("acme/x", "v1.2.0", "sub/dir")
    ranged = parse_ref("hf://acme/x@>=1.2,<2")
    assert isinstance(ranged, HubRef) and ranged.specifier is not None and "1.5" in ranged.specifier
    assert str(ranged) == "hf://acme/x@<2,>=1.2"
    for bad in ("hf://acme", "hf://acme/x/y", "hf://acme/x@", "hf://acme/x:../up", "hf://a--b/x", "hf://acme/x@a..b"):
        with pytest.raises(UsageError):
            parse_ref(bad)


@pytest.fixture
def lora_repo(fake_hub):
    base_weights = safetensors_bytes({"encoder.layer.0.attention.self.query.weight": [8, 8]})
    fake_hub.add_repo("acme/base", {"config.json": b"{}", "model.safetensors": base_weights})
    commit = fake_hub.add_repo(
        "acme/lora", {"adapter_config.json": json.dumps(PEFT_CONFIG).encode(), "adapter_model.safetensors": LORA_FILE}
    )
    return commit


def test_install_derives_the_manifest_from_metadata(cli, fake_hub, lora_repo):
    r = cli("install", "hf://acme/lora", "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    manifest = json.loads((view / "manifest.json").read_text())
    assert manifest["name"] == "acme/lora" and manifest["version"] == "0.0.0"
    assert manifest["adapter"]["config"]["r"] == 2
    assert manifest["base_model"]["architecture"]["modules"] == {
        "encoder.layer.0.attention.self.query": {"shape": [8, 8], "dtype": None, "layer": "linear"}
    }
    assert manifest["base_model"]["name"] == "acme/base"
    assert manifest["base_model"]["fingerprint"] is None  # the base's files are looked up when checking
    files = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert files["adapter_model.safetensors"] == hashlib.sha256(LORA_FILE).hexdigest()
    assert (view / "adapter_model.safetensors").read_bytes() == LORA_FILE


def test_the_check_looks_up_the_bases_files_and_finds_the_cached_base_exact(cli, fake_hub, lora_repo):
    import os

    from huggingface_hub import snapshot_download

    base = snapshot_download("acme/base", endpoint=fake_hub.url, cache_dir=os.environ["HF_HUB_CACHE"])
    fake_hub.clear_requests()
    r = cli("attach", "hf://acme/lora", "--model", base, "--check", "--json")
    assert r.code == 0, r.err
    verdict = r.json()["adapters"][0]["compatibility"]
    base_sha = hashlib.sha256(fake_hub.file("acme/base", "model.safetensors")).hexdigest()
    assert verdict["verdict"] == "exact" and verdict["expected"]["files"] == {"model.safetensors": base_sha}
    whole = [r for r in fake_hub.requests if r.origin == "cdn" and "range" not in r.headers]
    assert not whole  # metadata only (the adapter's safetensors header is a ranged read): nothing downloaded


def test_a_file_in_the_hf_cache_is_never_downloaded_again(cli, fake_hub, lora_repo, home):
    import os

    from huggingface_hub import hf_hub_download

    # as transformers users have it (huggingface_hub read HF_HUB_CACHE at import: pass this test's own)
    hf_hub_download(
        "acme/lora", "adapter_model.safetensors", endpoint=fake_hub.url, cache_dir=os.environ["HF_HUB_CACHE"]
    )
    fake_hub.clear_requests()
    assert cli("install", "hf://acme/lora").code == 0
    assert not [r for r in fake_hub.requests if r.method == "GET" and r.origin == "cdn"]
    cli("cache", "clean", "--yes")  # our store emptied: the HF cache still serves, offline too
    assert cli("install", "hf://acme/lora", "--offline").code == 0


def test_our_manifest_in_a_repo_is_used_as_is(cli, fake_hub, package):
    from adapterhub_client.manifest import complete_package, write_manifest

    pkg = package("acme/ours", "1.2.0")
    write_manifest(pkg, complete_package(pkg, json.loads((pkg / "manifest.json").read_text())))  # as published
    files = {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()}
    fake_hub.add_repo("acme/ours", files)
    r = cli("info", "hf://acme/ours", "--json")
    assert r.code == 0, r.err
    assert r.json()["manifest"]["name"] == "acme/ours" and r.json()["manifest"]["version"] == "1.2.0"
    listed = json.loads(files["manifest.json"])["files"]
    assert r.json()["manifest"]["files"] == listed
    fake_hub.commit("acme/ours", {"adapter.safetensors": b"other bytes"})  # no longer what manifest.json lists
    r = cli("info", "hf://acme/ours")
    assert r.code == 7 and "adapter.safetensors" in r.err


def test_tokens_go_only_to_their_own_hosts(cli, fake_hub, lora_repo, served_registry, monkeypatch):
    server, url = served_registry
    server.require_token("ours-s3cret")
    assert cli("registry", "add", "team", url, "--token", "ours-s3cret").code == 0
    monkeypatch.setenv("HF_TOKEN", "hf_test_read")
    assert cli("install", "hf://acme/lora", "acme/pkg").code == 0
    assert {r.auth for r in fake_hub.requests if r.origin == "hub"} == {"Bearer hf_test_r…"}
    assert {e["authorization"] for e in server.log()} == {"Bearer ours-s3cret"}


@pytest.fixture
def served_registry(tmp_path, cli, package, static_server_factory):
    root = tmp_path / "served"
    assert cli("publish", str(package("acme/pkg", "1.0.0")), "--registry", root.as_uri()).code == 0
    server = static_server_factory(root)
    return server, server.url + "/"


def test_search_on_the_hub_finds_adapter_repos(cli, fake_hub, lora_repo):
    card = b"---\nlibrary_name: peft\nbase_model: acme/base\ntags: [base_model:adapter:acme/base, lora]\n---\n# x\n"
    fake_hub.commit("acme/lora", {"README.md": card})
    fake_hub.add_repo("acme/other", {"README.md": b"---\nlibrary_name: transformers\n---\n"})
    r = cli("search", "--hf", "lora", "--json")
    assert r.code == 0, r.err
    (hit,) = r.json()["results"]
    assert hit["name"] == "hf://acme/lora" and hit["base"] == "acme/base"
    assert cli("search", "--hf", "other", "--json").json()["results"] == []  # not an adapter library
    listed = [r for r in fake_hub.requests if r.path == "/api/models"]
    assert {r.query.get("filter") for r in listed} == {"peft", "adapter-transformers"}
    r = cli("search", "--hf", "--offline")
    assert r.code == 3 and "offline" in r.err


# --- regressions from review: each of these failed before ----------------------------------------


def test_a_repo_of_three_files_installs_from_a_warm_hf_cache(cli, fake_hub, lora_repo, home, monkeypatch):
    fake_hub.commit("acme/lora", {"README.md": b"# a card\n"})
    assert cli("install", "hf://acme/lora").code == 0
    monkeypatch.setenv("ADAPTERS_HOME", str(home.parent / "other-home"))  # our store empty, the HF cache warm
    r = cli("install", "hf://acme/lora", "--json")
    assert r.code == 0, r.err
    assert cli("install", "hf://acme/lora", "--offline").code == 0


def test_frozen_reproduces_on_a_fresh_machine_even_after_the_base_moved(
    cli, fake_hub, lora_repo, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    fake_hub.tag("acme/lora", "v1.0.0")
    assert cli("lock", "hf://acme/lora").code == 0
    fake_hub.commit("acme/base", {"config.json": b'{"moved": true}'})
    monkeypatch.setenv("ADAPTERS_HOME", str(tmp_path / "fresh-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-hf"))
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["version"] == "1.0.0"
    # the same HF cache, another store, offline: the manifest derived from the snapshot is the locked one
    monkeypatch.setenv("ADAPTERS_HOME", str(tmp_path / "third-home"))
    r = cli("install", "--frozen", "--offline")
    assert r.code == 0, r.err


def test_a_bad_base_id_in_a_config_does_not_crash(cli, fake_hub):
    config = {**PEFT_CONFIG, "base_model_name_or_path": "acme/tiny--bert"}
    fake_hub.add_repo(
        "acme/odd", {"adapter_config.json": json.dumps(config).encode(), "adapter_model.safetensors": LORA_FILE}
    )
    r = cli("info", "hf://acme/odd", "--json")
    assert r.code == 0, r.err
    assert r.json()["manifest"]["base_model"]["name"] is None  # not a Hub id: not recorded as one


def test_subfolders_do_not_share_a_record(cli, fake_hub):
    a = {**PEFT_CONFIG, "lora_dropout": 0.0}
    b = {**PEFT_CONFIG, "lora_dropout": 0.25}
    fake_hub.add_repo(
        "acme/subs",
        {
            "a/b/adapter_config.json": json.dumps(a).encode(),
            "a/b/adapter_model.safetensors": LORA_FILE,
            "a--b/adapter_config.json": json.dumps(b).encode(),
            "a--b/adapter_model.safetensors": LORA_FILE,
        },
    )
    assert cli("info", "hf://acme/subs:a/b", "--json").json()["manifest"]["adapter"]["config"]["dropout"] == 0.0
    assert cli("info", "hf://acme/subs:a--b", "--json").json()["manifest"]["adapter"]["config"]["dropout"] == 0.25


def test_a_stored_login_goes_only_to_huggingface_co(cli, fake_hub, lora_repo, monkeypatch):
    from huggingface_hub import constants

    token_file = constants.HF_TOKEN_PATH
    import os

    os.makedirs(os.path.dirname(token_file), exist_ok=True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", token_file)
    with open(token_file, "w") as fh:
        fh.write("hf_stored_login_for_huggingface_co")
    try:
        assert cli("info", "hf://acme/lora").code == 0
    finally:
        os.unlink(token_file)
    assert {r.auth for r in fake_hub.requests} == {None}


def test_a_corrupt_hf_cache_copy_is_fetched_again_once(cli, fake_hub, lora_repo):
    import os

    from huggingface_hub import hf_hub_download

    cached = hf_hub_download(
        "acme/lora", "adapter_model.safetensors", endpoint=fake_hub.url, cache_dir=os.environ["HF_HUB_CACHE"]
    )
    blob = os.path.realpath(cached)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x01")
    r = cli("install", "hf://acme/lora", "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    assert (view / "adapter_model.safetensors").read_bytes() == LORA_FILE
    assert not os.stat(view / "adapter_model.safetensors").st_mode & 0o222  # read-only, as every blob


def test_a_snapshot_link_out_of_the_cache_is_refused(cli, lora_repo, tmp_path):
    import os

    from tests.hfcache import populate_hf_cache

    snapshot = populate_hf_cache(
        Path(os.environ["HF_HUB_CACHE"]),
        "acme/linked",
        {"adapter_config.json": json.dumps(PEFT_CONFIG).encode(), "adapter_model.safetensors": LORA_FILE},
    )
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(LORA_FILE)
    (snapshot / "adapter_model.safetensors").unlink()
    (snapshot / "adapter_model.safetensors").symlink_to(outside)
    r = cli("install", "hf://acme/linked", "--offline")
    assert r.code == 7 and "outside" in r.err


def test_a_repo_manifest_may_not_claim_another_name(cli, fake_hub, package):
    from adapterhub_client.manifest import complete_package, write_manifest

    pkg = package("acme/sentiment", "1.0.0")
    write_manifest(pkg, complete_package(pkg, json.loads((pkg / "manifest.json").read_text())))
    fake_hub.add_repo("mallory/sentiment", {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()})
    r = cli("install", "hf://mallory/sentiment")
    assert r.code == 7 and "mallory/sentiment" in r.err
