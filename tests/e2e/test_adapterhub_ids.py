"""`ah:task/subtask@org` identifiers end to end: resolved through AdapterHub's archived index (shipped as
package data) for a base model name and an architecture, installed from the Hugging Face repo the adapter
moved to (served by the fake Hub, tests/hubfake.py: a FAKE of the Hub's documented HTTP API, faithful to
what huggingface_hub sends) or from the archived zip (a real loopback HTTP server), with AdapterHub's own
fixtures (tools/make_adapterhub_fixtures.py, written by the `adapters` library itself)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from adapterhub_client.registry import adapterhub as index

FIX = Path(__file__).parents[1] / "fixtures" / "adapterhub"
PFEIFFER = "AdapterHub/bert-base-uncased_sentiment_sst-2_pfeiffer"
HOULSBY = "AdapterHub/bert-base-uncased_sentiment_sst-2_houlsby"
ID = "ah:sentiment/sst-2@ukp"


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.fixture
def migrated(fake_hub):
    """The two sst-2 adapters of bert-base-uncased as AdapterHub's migration pushed them (files as the
    `adapters` library saves them; our fixtures have the same architectures)."""
    fake_hub.add_repo(PFEIFFER, files_of(FIX / "seq_bn"))
    fake_hub.add_repo(HOULSBY, files_of(FIX / "double_seq_bn"))
    return fake_hub


def test_resolution_picks_the_entry_for_model_and_architecture(cli, migrated):
    r = cli("info", ID, "--base-name", "bert-base-uncased", "--json")
    assert r.code == 0, r.err
    assert r.json()["source"].startswith(f"hf://{PFEIFFER}@")  # the subtask's default
    r = cli("info", ID, "--base-name", "bert-base-uncased", "--architecture", "houlsby", "--json")
    assert r.code == 0, r.err
    assert r.json()["source"].startswith(f"hf://{HOULSBY}@")
    assert r.json()["manifest"]["adapter"]["type"] == "bottleneck"
    # the Hub's newer name for the same model resolves too
    r = cli("info", ID, "--base-name", "google-bert/bert-base-uncased", "--json")
    assert r.code == 0 and r.json()["source"].startswith(f"hf://{PFEIFFER}@")


def test_an_identifier_without_a_base_model_says_what_to_add(cli, migrated):
    r = cli("info", ID)
    assert r.code == 2 and "--base-name" in r.err
    r = cli("info", ID, "--base-name", "gpt2")
    assert r.code == 3 and "gpt2" in r.err


def test_a_repo_holding_another_architecture_is_refused(cli, fake_hub):
    fake_hub.add_repo(PFEIFFER, files_of(FIX / "double_seq_bn"))  # houlsby files where pfeiffer is expected
    r = cli("install", ID, "--base-name", "bert-base-uncased")
    assert r.code == 7 and "architecture" in r.err


def test_install_from_the_migrated_repo_and_attach(cli, migrated):
    r = cli("install", ID, "--base-name", "bert-base-uncased", "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    assert (view / "pytorch_adapter.bin").read_bytes() == (FIX / "seq_bn" / "pytorch_adapter.bin").read_bytes()
    r = cli("attach", ID, "--model", str(FIX / "base"), "--base-name", "bert-base-uncased", "--json")
    assert r.code == 7 and "pickle" in r.err  # pickled weights stay refused ...
    r = cli("attach", ID, "--model", str(FIX / "base"), "--base-name", "bert-base-uncased", "--allow-pickle", "--json")
    assert r.code == 0, r.err  # ... unless allowed (then weights_only=True)
    assert r.json()["attached"][0]["modules"] > 0


# --- the archived zip -------------------------------------------------------------------------


def zip_of(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(files_of(directory).items()):
            zf.writestr(f"sst-2/{name}", data)
    return buf.getvalue()


@pytest.fixture
def archive_server(tmp_path, static_server_factory, monkeypatch):
    """AdapterHub's file server, on loopback: the index's path for the pfeiffer archive."""
    match = index.resolve_adapterhub(index.parse_adapterhub_id(ID), "bert-base-uncased")
    from urllib.parse import urlsplit

    root = tmp_path / "ukp"
    target = root / urlsplit(match.archive_url).path.lstrip("/")
    target.parent.mkdir(parents=True)
    server = static_server_factory(root)
    monkeypatch.setenv("ADAPTERS_ADAPTERHUB_MIRROR", server.url)
    return server, target, match


def serve_index_entry(monkeypatch, match, data: bytes) -> None:
    """Our zip is not AdapterHub's (its bytes differ), so the index entry is given our zip's sha256:
    everything else (selection, the URL path, the download, the checks) is the real code."""
    patched = dataclasses.replace(match, archive_sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(index, "resolve_adapterhub", lambda *a, **k: patched)


def test_install_from_the_archive_checks_the_index_sha256(cli, archive_server, monkeypatch):
    server, target, match = archive_server
    data = zip_of(FIX / "seq_bn")
    target.write_bytes(data)
    r = cli("install", ID, "--base-name", "bert-base-uncased", "--source", "archive")
    assert r.code == 4, r.err  # the real index's sha256 is not our zip's: refused, nothing extracted
    assert cli("list", "--json").json()["installed"] == []
    serve_index_entry(monkeypatch, match, data)
    r = cli("install", ID, "--base-name", "bert-base-uncased", "--source", "archive", "--json")
    assert r.code == 0, r.err
    view = Path(r.json()["installed"][0]["path"])
    assert (view / "pytorch_adapter.bin").read_bytes() == (FIX / "seq_bn" / "pytorch_adapter.bin").read_bytes()


def hostile(kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("adapter_config.json", (FIX / "seq_bn" / "adapter_config.json").read_bytes())
        if kind == "dotdot":
            zf.writestr("../evil.txt", b"x")
        elif kind == "absolute":
            zf.writestr("/tmp/evil.txt", b"x")
        elif kind == "symlink":
            info = zipfile.ZipInfo("pytorch_adapter.bin")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        elif kind == "oversize":
            zf.writestr("pytorch_adapter.bin", b"\0" * (3 * 1024 * 1024))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "oversize"])
def test_hostile_archives_are_refused_and_write_nothing_outside(cli, archive_server, monkeypatch, home, kind):
    from adapterhub_client.operations import adapterhub_source

    server, target, match = archive_server
    data = hostile(kind)
    target.write_bytes(data)
    serve_index_entry(monkeypatch, match, data)
    monkeypatch.setattr(adapterhub_source, "MAX_ARCHIVE_BYTES", 1024 * 1024)
    before = {p for p in home.parent.rglob("*")}
    r = cli("install", ID, "--base-name", "bert-base-uncased", "--source", "archive")
    assert r.code == 7, r.err
    after = {p for p in home.parent.rglob("*")}
    assert not [p for p in after - before if "evil" in p.name]
    archives = home / "cache" / "archives"
    assert not archives.exists() or not any(archives.iterdir())
    assert not json.loads(cli("list", "--json").out)["installed"]


# --- the head: AdapterHub's own logits, through ah: ---------------------------------------------


def adapterhub_outputs(model):
    import torch
    from safetensors.torch import load_file

    from adapterhub_client.nn.model import head_output

    inputs = load_file(str(FIX / "inputs.safetensors"))
    with torch.no_grad():
        outputs = model.eval()(**inputs)
        return outputs.last_hidden_state, head_output(model, outputs)


def assert_adapterhub_logits(model) -> None:
    from safetensors.torch import load_file

    expected = load_file(str(FIX / "expected.safetensors"))
    hidden, logits = adapterhub_outputs(model)
    assert (logits - expected["seq_bn_head.logits"]).abs().max() <= 1e-5  # the adapters library's own
    assert (hidden - expected["seq_bn_head"]).abs().max() <= 1e-5


def base_model():
    from transformers import BertModel

    return BertModel.from_pretrained(str(FIX / "base"), add_pooling_layer=False)


def test_ah_with_a_head_from_the_hub_reproduces_adapterhubs_outputs(cli, fake_hub):
    import adapterhub_client as ah

    fake_hub.add_repo(PFEIFFER, files_of(FIX / "seq_bn_head_safetensors"))
    r = cli("info", ID, "--base-name", "bert-base-uncased", "--json")
    assert r.code == 0, r.err
    listed = {f["path"] for f in r.json()["manifest"]["files"]}
    assert {"adapter.safetensors", "adapter_config.json", "head_config.json", "model_head.safetensors"} <= listed
    model = base_model()
    options = ah.AdapterHubOptions(base_name="bert-base-uncased")
    with ah.Hub(adapterhub=options) as hub:
        hub.attach(model, ID)
    assert_adapterhub_logits(model)


def test_ah_from_the_archive_with_pickles_then_converted(cli, archive_server, monkeypatch, tmp_path):
    import adapterhub_client as ah

    server, target, match = archive_server
    data = zip_of(FIX / "seq_bn_head")  # pickles, as AdapterHub's archives hold them
    target.write_bytes(data)
    serve_index_entry(monkeypatch, match, data)
    options = ah.AdapterHubOptions(base_name="bert-base-uncased", source="archive")
    with ah.Hub(adapterhub=options) as hub:
        model = base_model()
        with pytest.raises(ah.InvalidPackageError, match="pickle"):
            hub.attach(model, ID)
        model = base_model()
        hub.attach(model, ID, allow_pickle=True)
    assert_adapterhub_logits(model)
    # convert once: the result loads with no pickle allowed, with the same outputs
    view = Path(cli("install", ID, "--base-name", "bert-base-uncased", "--source", "archive", "--json").json()[
        "installed"][0]["path"])  # fmt: skip
    assert cli("convert", str(view), "--output", str(tmp_path / "conv")).code == 2  # needs --allow-pickle
    r = cli("convert", str(view), "--output", str(tmp_path / "conv"), "--allow-pickle", "--json")
    assert r.code == 0, r.err
    assert not [f for f in r.json()["files"] if f.endswith(".bin")]
    model = base_model()
    ah.load_adapter(model, tmp_path / "conv")
    assert_adapterhub_logits(model)


def test_both_sources_give_the_index_version_and_an_archive_lock_reproduces(
    cli, migrated, archive_server, monkeypatch, tmp_path, home
):
    server, target, match = archive_server
    data = zip_of(FIX / "seq_bn")
    target.write_bytes(data)
    r = cli("info", ID, "--base-name", "bert-base-uncased", "--json")
    assert r.json()["manifest"]["version"] == "1"  # the index's version, as the repo's branch names it
    serve_index_entry(monkeypatch, match, data)
    r = cli("info", ID, "--base-name", "bert-base-uncased", "--source", "archive", "--json")
    assert r.json()["manifest"]["version"] == "1"
    monkeypatch.chdir(tmp_path)
    assert cli("lock", ID, "--base-name", "bert-base-uncased", "--source", "archive").code == 0
    (entry,) = json.loads((tmp_path / "adapters.lock").read_text())["adapters"]
    assert entry["source"] == f"{match.archive_url}#sha256={hashlib.sha256(data).hexdigest()}"
    assert cli("cache", "clean", "--yes").code == 0  # the lock does not point into a cache
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["version"] == "1"
