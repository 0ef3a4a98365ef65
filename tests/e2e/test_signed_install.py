"""Signed adapters end to end (docs/SIGNING.md): a trained LoRA published with `sign_key=` installs and attaches
under a [[trust]] policy, and one signed by another key is refused before anything is installed; an OCI
publish attaches the signature as an artifact (the referrers tag-schema fallback `sha256-<hex>` on Debian's
docker-registry 2.8), which `adapters verify oci://...` checks without pulling any blob of the package."""

from __future__ import annotations

import httpx
import pytest
import torch

import adapterhub_client as ah
from adapterhub_client.signing.keys import generate_keypair
from tests import models as tiny

SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@pytest.fixture
def keys(tmp_path):
    return {label: generate_keypair(tmp_path / f"{label}.pem") for label in ("trusted", "other")}


def _trust(home, public) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[[trust]]\nmatch = "acme/*"\ntrusted_keys = ["{public}"]\n')


def test_a_trained_lora_signed_at_publish_installs_and_attaches_and_another_signer_is_refused(cli, home, keys):
    model = tiny.trained_tiny_lora("t", seed=4)
    with ah.Hub() as hub:
        hub.publish(model, adapter="t", name="acme/signed-lora", version="1.0.0", sign_key=keys["trusted"][0])
        hub.publish(model, adapter="t", name="acme/signed-lora", version="1.1.0", sign_key=keys["other"][0])
    _trust(home, keys["trusted"][1])
    fresh = tiny.tiny_bert()
    with ah.Hub() as hub:
        with pytest.raises(ah.IntegrityError, match="untrusted key"):
            hub.attach(fresh, "acme/signed-lora@1.1.0")
        assert hub.installed() == []  # refused before any view was built
        name = hub.attach(fresh, "acme/signed-lora@1.0.0")
        assert hub.info("acme/signed-lora@1.0.0").signature.signer == keys["trusted"][2]
    ah.set_active_adapters(fresh, name)
    ids = tiny.token_ids(96)
    with torch.no_grad():
        tiny.assert_close(fresh.eval()(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
    r = cli("install", "acme/signed-lora", "--json")  # the highest version is 1.1.0: refused, exit 4
    assert r.code == 4 and keys["other"][2] in r.err


def test_oci_signature_artifact_and_verify_without_pulling_blobs(cli, home, keys, oci_registry, package, tmp_path):
    pkg = package("acme/oci-signed", "1.0.0", size=20000)
    repo = f"oci://{oci_registry.host}/acme/oci-signed"
    r = cli("publish", str(pkg), "--registry", repo, "--sign", "--key", str(keys["trusted"][0]), "--json")
    assert r.code == 0, r.err
    digest = r.json()["url"].rsplit("@", 1)[1]
    index = httpx.get(
        f"{oci_registry.url}/v2/acme/oci-signed/manifests/{digest.replace(':', '-')}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    )
    assert index.status_code == 200, index.text
    (listed,) = index.json()["manifests"]
    assert listed["artifactType"] == SIGNATURE_TYPE
    signature = httpx.get(
        f"{oci_registry.url}/v2/acme/oci-signed/manifests/{listed['digest']}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    assert signature["subject"]["digest"] == digest and signature["layers"][0]["mediaType"] == SIGNATURE_TYPE

    r = cli("verify", f"{repo}@1.0.0", "--key", str(keys["trusted"][1]), "--json")
    assert r.code == 0, r.err
    assert r.json()["signature"]["verified"] is True and r.json()["signature"]["signer"] == keys["trusted"][2]
    blobs = home / "cache" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))  # no package blob was pulled
    r = cli("verify", f"{repo}@1.0.0", "--key", str(keys["other"][1]))
    assert r.code == 4 and "untrusted key" in r.err

    _trust(home, keys["trusted"][1])
    assert cli("install", f"{repo}@1.0.0").code == 0
    # the tag moved to the same files signed by another key: the new manifest's own signature artifact is read
    r = cli("publish", str(pkg), "--registry", repo, "--sign", "--key", str(keys["other"][0]), "--force")
    assert r.code == 0, r.err
    r = cli("verify", f"{repo}@1.0.0", "--json")
    assert r.code == 4 and f"untrusted key {keys['other'][2]}" in r.err
    r = cli("lock", f"{repo}@1.0.0", "--lockfile", str(tmp_path / "adapters.lock"))
    assert r.code == 4 and not (tmp_path / "adapters.lock").exists()  # lock applies the policy too


def test_a_hub_publish_signs_what_the_hub_receives(cli, home, keys, tmp_path, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_write")
    model = tiny.trained_tiny_lora("t", seed=5)
    pkg = ah.save_adapter(model, "t", tmp_path / "pkg", name="acme/hubbed", version="1.0.0")
    assert cli("sign", str(pkg), "--key", str(keys["trusted"][0])).code == 0
    r = cli("publish", str(pkg), "--registry", "hf://acme/hubbed")
    assert r.code == 2 and "--sign --key" in r.err  # converted to PEFT's files, which model.sig does not sign
    r = cli("publish", str(pkg), "--registry", "hf://acme/hubbed", "--sign", "--key", str(keys["trusted"][0]))
    assert r.code == 0, r.err
    assert "model.sig" in fake_hub.files("acme/hubbed", "v1.0.0")
    _trust(home, keys["trusted"][1])
    r = cli("install", "hf://acme/hubbed@v1.0.0", "--json")
    assert r.code == 0, r.err
    assert cli("info", "hf://acme/hubbed@v1.0.0", "--json").json()["signature"]["verified"] is True
