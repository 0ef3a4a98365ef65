"""`hf://` references served from a pre-populated Hugging Face cache with HF_HUB_OFFLINE=1 (the
library's own offline code path): install, info, lock and --frozen, attach with an `exact` verdict from
the cache's blob names alone, and what is missing named when it is not cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests import models as tiny
from tests.hfcache import populate_hf_cache

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
ADAPTER_ID = "acme/minilm-lora"


@pytest.fixture
def hf_cache(models) -> dict[str, Path]:
    """The MiniLM base and a PEFT LoRA trained on it, as huggingface_hub would have cached them."""
    cache = Path(os.environ["HF_HUB_CACHE"])
    base = populate_hf_cache(
        cache,
        BASE_ID,
        {"config.json": models["minilm"] / "config.json", "model.safetensors": models["minilm"] / "model.safetensors"},
    )
    config = json.loads((models["lora"] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_ID
    adapter = populate_hf_cache(
        cache,
        ADAPTER_ID,
        {
            "adapter_config.json": json.dumps(config).encode(),
            "adapter_model.safetensors": models["lora"] / "adapter_model.safetensors",
        },
        refs=("main", "v1.0.0"),
    )
    return {"base": base, "adapter": adapter}


def test_install_from_the_hf_cache_offline(cli, hf_cache):
    r = cli("install", f"hf://{ADAPTER_ID}", "--json")
    assert r.code == 0, r.err
    item = r.json()["installed"][0]
    assert item["name"] == ADAPTER_ID and item["version"] == "1.0.0"  # the v1.0.0 ref on the same commit
    assert item["source"] == f"hf://{ADAPTER_ID}@{hf_cache['adapter'].name}"
    view = Path(item["path"])
    got = (view / "adapter_model.safetensors").read_bytes()
    assert got == (hf_cache["adapter"] / "adapter_model.safetensors").read_bytes()
    manifest = json.loads((view / "manifest.json").read_text())
    assert manifest["adapter"]["config"]["format"] == "peft"
    assert manifest["base_model"]["name"] == BASE_ID
    assert manifest["base_model"]["fingerprint"] is None  # a function of the repo's commit only
    blob = os.path.realpath(hf_cache["adapter"] / "adapter_model.safetensors")
    assert os.stat(view / "adapter_model.safetensors").st_ino == os.stat(blob).st_ino  # linked, not copied


def test_a_tampered_hf_cache_blob_is_refused(cli, hf_cache):
    blob = Path(os.path.realpath(hf_cache["adapter"] / "adapter_model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    r = cli("install", f"hf://{ADAPTER_ID}")
    assert r.code == 4, r.err
    assert "adapter_model.safetensors" in r.err
    assert cli("list", "--json").json()["installed"] == []


def test_offline_miss_names_the_repo(cli, hf_cache):
    r = cli("install", "hf://acme/not-cached")
    assert r.code == 3, r.err
    assert "acme/not-cached" in r.err and "offline" in r.err


def test_version_range_over_cached_tags_and_unknown_revision(cli, hf_cache):
    info = cli("info", f"hf://{ADAPTER_ID}@>=1,<2", "--json").json()
    assert info["manifest"]["version"] == "1.0.0" and info["versions"] == ["1.0.0"]
    r = cli("info", f"hf://{ADAPTER_ID}@>=2")
    assert r.code == 3 and ">=2" in r.err


def test_lock_and_frozen_from_the_cache(cli, hf_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("lock", f"hf://{ADAPTER_ID}")
    assert r.code == 0, r.err
    lock = json.loads((tmp_path / "adapters.lock").read_text())
    (entry,) = lock["adapters"]
    assert entry["source"] == f"hf://{ADAPTER_ID}@{hf_cache['adapter'].name}"
    sha = os.path.basename(os.path.realpath(hf_cache["adapter"] / "adapter_model.safetensors"))
    assert {"path": "adapter_model.safetensors", "sha256": sha} in [
        {"path": f["path"], "sha256": f["sha256"]} for f in entry["files"]
    ]
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["source"] == entry["source"]


def test_attach_checks_exact_from_blob_names_and_matches_peft(cli, hf_cache, tmp_path):
    from peft import PeftModel
    from transformers import BertModel

    r = cli("attach", f"hf://{ADAPTER_ID}", "--model", str(hf_cache["base"]), "--check", "--json")
    assert r.code == 0, r.err
    verdict = r.json()["adapters"][0]["compatibility"]
    assert verdict["verdict"] == "exact", r.out  # the base's files, looked up in the HF cache: no hashing
    base_blob = os.path.basename(os.path.realpath(hf_cache["base"] / "model.safetensors"))
    assert verdict["expected"]["files"] == {"model.safetensors": base_blob}
    out = tmp_path / "merged"
    r = cli("attach", f"hf://{ADAPTER_ID}", "--model", str(hf_cache["base"]), "--merge", "--output", str(out))
    assert r.code == 0, r.err
    ids = tiny.token_ids(1000, batch=2, seq=8)
    base = BertModel.from_pretrained(str(hf_cache["base"]))
    peft = PeftModel.from_pretrained(base, str(hf_cache["adapter"])).eval()
    merged = BertModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        tiny.assert_close(merged(input_ids=ids).last_hidden_state, peft(input_ids=ids).last_hidden_state)
