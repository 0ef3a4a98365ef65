"""The manifest names the base model by a Hub id (never a path of the publisher's machine), records its
model_type, and publish takes --base-name --description --license --tag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def test_hub_ids_from_paths_and_configs(tmp_path):
    from adapterhub_client.formats.pack import base_metadata, hub_id_of_path, portable_base_name

    snap = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / ("a" * 40)
    assert hub_id_of_path(snap) == ("sentence-transformers/all-MiniLM-L6-v2", "a" * 40)
    assert hub_id_of_path(tmp_path / "plain") is None
    assert portable_base_name("./all-MiniLM-L6-v2") is None
    assert portable_base_name("/srv/models/bert") is None
    assert portable_base_name("org/name") == "org/name"
    assert portable_base_name(str(snap)) == "sentence-transformers/all-MiniLM-L6-v2"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "bert", "_name_or_path": "/home/me/minilm"}))
    assert base_metadata(snap) == {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "revision": "a" * 40,
        "model_type": "bert",
    }
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "gpt2", "_name_or_path": "/home/me/gpt2"}))
    assert base_metadata(plain) == {"name": None, "revision": None, "model_type": "gpt2"}


@pytest.fixture
def peft_with_local_base(models, tmp_path):
    """The PEFT adapter as PEFT saves it after `from_pretrained("/abs/path")`: the base is a local path."""
    lora = tmp_path / "lora"
    shutil.copytree(models["lora"], lora)
    cfg = json.loads((lora / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(models["minilm"])
    (lora / "adapter_config.json").write_text(json.dumps(cfg))
    return lora


def test_publish_records_hub_id_and_model_type_not_a_path(cli, models, peft_with_local_base):
    r = cli(
        "publish", str(peft_with_local_base), "--name", "acme/m", "--version", "1.0.0", "--base", str(models["minilm"])
    )
    assert r.code == 0, r.err
    base = cli("info", "acme/m", "--json").json()["manifest"]["base_model"]
    assert base["name"] == "nreimers/MiniLM-L6-H384-uncased"  # the base's config.json `_name_or_path`
    assert base["architecture"]["model_type"] == "bert"
    assert str(models["minilm"]) not in json.dumps(base)


def test_publish_from_hf_cache_snapshot_records_repo_and_revision(cli, models, peft_with_local_base, tmp_path):
    snap = tmp_path / "hf" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).symlink_to(Path(models["minilm"]) / f)
    r = cli("publish", str(peft_with_local_base), "--name", "acme/m", "--version", "1.0.0", "--base", str(snap))
    assert r.code == 0, r.err
    base = cli("info", "acme/m", "--json").json()["manifest"]["base_model"]
    assert (base["name"], base["revision"]) == ("sentence-transformers/all-MiniLM-L6-v2", "b" * 40)


def test_publish_without_base_drops_a_local_path(cli, peft_with_local_base):
    assert cli("publish", str(peft_with_local_base), "--name", "acme/m", "--version", "1.0.0").code == 0
    assert cli("info", "acme/m", "--json").json()["manifest"]["base_model"]["name"] is None


def test_publish_metadata_options(cli, peft_with_local_base):
    r = cli(
        "publish",
        str(peft_with_local_base),
        "--name",
        "acme/m",
        "--version",
        "1.0.0",
        "--base-name",
        "sentence-transformers/all-MiniLM-L6-v2",
        "--description",
        "sentiment on MiniLM",
        "--license",
        "apache-2.0",
        "--tag",
        "sentiment",
        "--tag",
        "en",
    )
    assert r.code == 0, r.err
    m = cli("info", "acme/m", "--json").json()["manifest"]
    assert m["base_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (m["description"], m["license"], m["tags"]) == ("sentiment on MiniLM", "apache-2.0", ["sentiment", "en"])
    hits = cli("search", "sentiment", "--json").json()["results"]
    assert [h["name"] for h in hits] == ["acme/m"]
    bad = cli("publish", str(peft_with_local_base), "--name", "acme/m", "--version", "2.0.0", "--base-name", "./x")
    assert bad.code == 7 and "Hub id" in bad.err
