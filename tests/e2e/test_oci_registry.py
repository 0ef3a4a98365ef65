"""`oci://` end to end through the CLI against a real OCI registry (Debian's docker-registry on loopback,
tests/ociregistry.py): publish a trained LoRA, install it into a fresh cache, attach it with the trained
model's outputs; lock / --frozen pin the manifest digest; an artifact `oras` pushed from a PEFT directory
installs with a derived manifest; wrong credentials are exit 6 and leave no tag."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import adapterhub_client as ah
from tests import models as tiny


@pytest.fixture
def trained(tmp_path):
    model = tiny.trained_tiny_lora("t", seed=3)
    pkg = ah.save_adapter(model, "t", tmp_path / "pkg", name="acme/oci-lora", version="1.0.0")
    return model, pkg


def test_publish_install_attach_lock_frozen(cli, oci_registry, trained, tmp_path, monkeypatch):
    model, pkg = trained
    repo = f"oci://{oci_registry.host}/acme/oci-lora"
    r = cli("publish", str(pkg), "--registry", repo, "--json")
    assert r.code == 0, r.err
    assert r.json()["created"] is True and oci_registry.tags_on_disk("acme/oci-lora") == ["1.0.0"]
    assert cli("publish", str(pkg), "--registry", repo, "--json").json()["created"] is False  # same content

    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh"))
    fresh = tiny.tiny_bert()
    with ah.Hub() as hub:
        hub.attach(fresh, f"{repo}@>=1,<2", strict=True)  # the fingerprint recorded at save: exact
    ids = tiny.token_ids(96)
    with torch.no_grad():
        tiny.assert_close(fresh.eval()(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)

    monkeypatch.chdir(tmp_path)
    assert cli("lock", f"{repo}@1.0.0").code == 0
    (entry,) = json.loads((tmp_path / "adapters.lock").read_text())["adapters"]
    assert entry["source"].startswith(f"{repo}@sha256:")
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh2"))
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["source"] == entry["source"]


def test_an_oras_pushed_peft_directory_installs(cli, oci_registry, tmp_path, monkeypatch, models):
    import oras.client
    from peft import PeftModel
    from transformers import BertModel

    peft_dir = tmp_path / "peft"
    shutil.copytree(models["lora"], peft_dir)
    monkeypatch.chdir(peft_dir)  # oras titles files by the paths given
    oras.client.OrasClient(insecure=True).push(
        target=f"{oci_registry.host}/acme/oras-peft:1.0.0", files=["adapter_config.json", "adapter_model.safetensors"]
    )
    ref = f"oci://{oci_registry.host}/acme/oras-peft@1.0.0"
    r = cli("install", ref, "--json")
    assert r.code == 0, r.err
    assert (r.json()["installed"][0]["name"], r.json()["installed"][0]["version"]) == ("acme/oras-peft", "1.0.0")
    minilm = BertModel.from_pretrained(str(models["minilm"]))
    with ah.Hub() as hub:
        hub.attach(minilm, ref)
    want = PeftModel.from_pretrained(BertModel.from_pretrained(str(models["minilm"])), str(peft_dir)).eval()
    ids = tiny.token_ids(1000)
    with torch.no_grad():
        tiny.assert_close(minilm.eval()(input_ids=ids).last_hidden_state, want(input_ids=ids).last_hidden_state)


def test_wrong_credentials_are_exit_6_and_leave_no_tag(cli, oci_basic_registry, trained, monkeypatch):
    _, pkg = trained
    monkeypatch.setenv("ADAPTERS_USERNAME", oci_basic_registry.username)
    monkeypatch.setenv("ADAPTERS_PASSWORD", "not-the-password")
    r = cli("publish", str(pkg), "--registry", f"oci://{oci_basic_registry.host}/acme/guarded")
    assert r.code == 6, r.err
    assert oci_basic_registry.host in r.err and "not-the-password" not in r.err
    assert oci_basic_registry.tags_on_disk("acme/guarded") == []
    monkeypatch.setenv("ADAPTERS_PASSWORD", oci_basic_registry.password)
    assert cli("publish", str(pkg), "--registry", f"oci://{oci_basic_registry.host}/acme/guarded").code == 0
    assert oci_basic_registry.tags_on_disk("acme/guarded") == ["1.0.0"]


def test_login_stores_credentials_0600_and_logout_forgets_them(cli, oci_basic_registry, trained, home):
    import os
    import stat

    _, pkg = trained
    host = oci_basic_registry.host
    r = cli("login", host, "-u", oci_basic_registry.username, "--password-stdin", input="wrong\n")
    assert r.code == 6 and "wrong" not in r.err and not (home / "credentials.json").exists()
    r = cli(
        "login", host, "-u", oci_basic_registry.username, "--password-stdin", input=oci_basic_registry.password + "\n"
    )
    assert r.code == 0, r.err
    store = home / "credentials.json"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert oci_basic_registry.password not in r.out + r.err
    assert cli("publish", str(pkg), "--registry", f"oci://{host}/acme/logged-in").code == 0
    assert cli("logout", host).code == 0
    assert cli("publish", str(pkg), "--registry", f"oci://{host}/acme/logged-out").code == 6


def test_an_oci_registry_by_name_with_a_prefix(cli, oci_registry, trained, tmp_path, monkeypatch):
    """`registry add team oci://host/prefix`: org/name lives in <prefix>/org/name; install and publish use
    it like any registry, lock and --frozen too."""
    model, pkg = trained
    assert cli("registry", "add", "team", f"oci://{oci_registry.host}/teamprefix").code == 0
    r = cli("publish", str(pkg), "--registry", "team", "--json")
    assert r.code == 0, r.err
    assert r.json()["registry"] == "team" and oci_registry.tags_on_disk("teamprefix/acme/oci-lora") == ["1.0.0"]
    r = cli("install", "acme/oci-lora@>=1", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["source"] == f"oci://{oci_registry.host}/teamprefix/"
    fresh = tiny.tiny_bert()
    with ah.Hub() as hub:
        hub.attach(fresh, "acme/oci-lora", strict=True)
    ids = tiny.token_ids(96)
    with torch.no_grad():
        tiny.assert_close(fresh.eval()(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
    monkeypatch.chdir(tmp_path)
    assert cli("lock", "acme/oci-lora").code == 0
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh"))
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert cli("install", "acme/not-there").code == 3


def test_push_progress_on_a_terminal_and_none_under_json(cli, oci_registry, trained, capsys):
    _, pkg = trained
    repo = f"oci://{oci_registry.host}/acme/progress"
    with ah.Hub(progress=True) as hub:  # as on a terminal
        hub.publish(pkg, registry=repo)
        first = capsys.readouterr().err
        hub.publish(pkg, registry=repo, version="1.0.1")  # the same files under a new version
        second = capsys.readouterr().err
    assert "pushing acme/oci-lora" in first and "B/s" in first
    assert "already in the registry" in second  # what was skipped is said
    r = cli("publish", str(pkg), "--registry", repo, "--version", "1.0.2", "--json")
    assert r.code == 0, r.err
    assert "pushing" not in r.err  # --json: machine output only


def test_registry_down_before_the_manifest_leaves_no_tag_and_a_rerun_skips_what_was_sent(
    cli, oci_registry, trained, monkeypatch, capsys
):
    from tests.ociregistry import InterceptingProxy

    down = True

    def before_the_tag(data: bytes) -> bytes | None:
        """While `down`, a manifest PUT's connection is closed unanswered: the registry went away after
        the blobs, before the tag."""
        first_line = data.split(b"\r\n", 1)[0]
        return b"" if down and first_line.startswith(b"PUT ") and b"/manifests/" in first_line else None

    _, pkg = trained
    proxy = InterceptingProxy(int(oci_registry.host.rsplit(":", 1)[1]), before_the_tag)
    monkeypatch.setenv("ADAPTERS_TIMEOUT", "3")
    try:
        repo = f"oci://{proxy.host}/acme/interrupted"
        r = cli("publish", str(pkg), "--registry", repo)
        assert r.code == 6, r.err
        assert oci_registry.tags_on_disk("acme/interrupted") == []  # no tag: the manifest goes last
        down = False
        capsys.readouterr()
        with ah.Hub(progress=True) as hub:
            done = hub.publish(pkg, registry=repo)
        assert done.created and oci_registry.tags_on_disk("acme/interrupted") == ["1.0.0"]
        assert "already in the registry" in capsys.readouterr().err  # the blobs sent before are not sent again
        r = cli("install", f"{repo}@1.0.0")
        assert r.code == 0, r.err
    finally:
        proxy.close()


def test_a_rejected_blob_upload_fails_the_push_with_no_tag(cli, oci_registry, trained):
    from tests.ociregistry import InterceptingProxy

    def reject_uploads(data: bytes) -> bytes | None:
        """Every blob upload PUT answered 400, as a registry refusing the bytes (quota, policy) would."""
        first_line = data.split(b"\r\n", 1)[0]
        if not (first_line.startswith(b"PUT ") and b"/blobs/uploads/" in first_line):
            return None
        body = b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"rejected by policy"}]}'
        return (
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )

    _, pkg = trained
    proxy = InterceptingProxy(int(oci_registry.host.rsplit(":", 1)[1]), reject_uploads)
    try:
        r = cli("publish", str(pkg), "--registry", f"oci://{proxy.host}/acme/rejected")
        assert r.code == 6, r.err
        assert r.err.count("\n") == 1 and ("400" in r.err or "rejected" in r.err), r.err
        assert oci_registry.tags_on_disk("acme/rejected") == []
    finally:
        proxy.close()


def test_a_tag_moved_between_resolution_and_download_the_pinned_digest_wins(
    cli, oci_registry, trained, tmp_path, monkeypatch
):
    """Resolution pins the manifest digest; blobs are fetched by digest, so a tag force-pushed to other
    content meanwhile (or after `lock`) changes nothing that is installed."""
    from adapterhub_client.operations import oci_source

    model, pkg = trained
    other = ah.save_adapter(
        tiny.trained_tiny_lora("t", seed=4), "t", tmp_path / "other", name="acme/oci-lora", version="1.0.0"
    )
    repo = f"oci://{oci_registry.host}/acme/moving"
    assert cli("publish", str(pkg), "--registry", repo).code == 0
    real_resolve = oci_source.resolve_oci
    moved = []

    def resolve_then_move(*args, **kwargs):
        item = real_resolve(*args, **kwargs)
        if not moved:  # someone force-pushes other content to the tag right after we resolved it
            assert cli("publish", str(other), "--registry", repo, "--force").code == 0
            moved.append(True)
        return item

    monkeypatch.setattr(oci_source, "resolve_oci", resolve_then_move)
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh"))
    r = cli("install", f"{repo}@1.0.0", "--json")
    assert r.code == 0, r.err
    assert moved
    installed = r.json()["installed"][0]
    monkeypatch.setattr(oci_source, "resolve_oci", real_resolve)
    fresh = tiny.tiny_bert()
    with ah.Hub() as hub:
        hub.attach(fresh, installed["source"], strict=True)  # the pinned digest: the first package
    ids = tiny.token_ids(96)
    with torch.no_grad():
        tiny.assert_close(fresh.eval()(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)

    # the same through the lockfile: locked before the tag moves back, installed after
    monkeypatch.chdir(tmp_path)
    assert cli("lock", installed["source"]).code == 0
    assert cli("publish", str(pkg), "--registry", repo, "--force").code == 0
    monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / "fresh2"))
    r = cli("install", "--frozen", "--json")
    assert r.code == 0, r.err
    assert r.json()["installed"][0]["source"] == installed["source"]
    assert cli("publish", str(other), "--force").code == 2  # a directory registry never moves a version
