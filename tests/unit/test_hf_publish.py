"""Publishing to a Hugging Face Hub repository through the real huggingface_hub, against the fake Hub
(tests/hubfake.py): one commit with the package, manifest.json and README.md, then a `v<version>` tag; a
republish is a no-op, other content under a published version is refused, a commit landing meanwhile
is a race, and a refused token is one line without the token. Torch-free."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import ModelCard, hf_hub_download
from safetensors.numpy import save_file

from adapterhub_client.errors import IntegrityError, InvalidPackageError, RegistryError
from adapterhub_client.formats.pack import prepare_package
from adapterhub_client.manifest import complete_package, dumps_manifest
from adapterhub_client.registry import hf_publish
from adapterhub_client.registry.card import complete_card, render_card
from adapterhub_client.registry.hf_publish import HubPublication, publish_to_hub
from tests.hubfake import FakeHub
from tests.pkgs import make_package

REPO = "acme/sentiment"
WRITE_TOKEN = "hf_test_write"


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    return fake_hub


def our_package(directory: Path, seed: int = 0, version: str = "1.0.0") -> tuple[Path, dict[str, Any]]:
    """One of our packages (two safetensors files), its manifest completed from the files on disk."""
    pkg = make_package(directory, "acme/sentiment", version, files=2, seed=seed)
    return pkg, complete_package(pkg, json.loads((pkg / "manifest.json").read_text()))


def peft_package(directory: Path) -> tuple[Path, dict[str, Any]]:
    """A PEFT LoRA directory as PEFT saves it, and the manifest `adapters publish` derives from it."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    tensors = {}
    for module in ("encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value"):
        tensors[f"base_model.model.{module}.lora_A.weight"] = rng.standard_normal((4, 32)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = rng.standard_normal((32, 4)).astype(np.float32)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    (directory / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "org/bert-tiny"}))
    return directory, prepare_package(directory, name="acme/sentiment-peft", version="2.0.0")


def publish(
    hub: FakeHub, pkg: Path, manifest: dict[str, Any], repo: str = REPO, token: str | None = WRITE_TOKEN, **kw: Any
) -> HubPublication:
    return publish_to_hub(
        pkg,
        manifest,
        dumps_manifest(manifest),
        repo,
        manifest["version"],
        endpoint=hub.url,
        token=token,
        card=render_card(manifest, repo_id=repo),
        **kw,
    )


def commits_sent(hub: FakeHub) -> list[Any]:
    return [r for r in hub.requests if r.method == "POST" and r.endpoint == "commit"]


def test_publish_makes_one_commit_with_the_package_manifest_and_card_then_tags_it(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    result = publish(hub, pkg, manifest, private=True)
    assert (result.repo_id, result.version, result.tag, result.noop) == (REPO, "1.0.0", "v1.0.0", False)
    assert result.url == f"{hub.url}/{REPO}/tree/v1.0.0"
    assert hub.tags(REPO) == {"v1.0.0": result.commit} and hub.head(REPO) == result.commit
    assert hub.is_private(REPO)
    assert len(commits_sent(hub)) == 1
    files = hub.files(REPO, "v1.0.0")
    assert set(files) == {
        ".gitattributes",
        "adapter.safetensors",
        "adapter-1.safetensors",
        "manifest.json",
        "README.md",
    }
    for entry in manifest["files"]:
        assert files[entry["path"]] == (pkg / entry["path"]).read_bytes()
        assert hub.entry(REPO, entry["path"], "v1.0.0").lfs  # weights went through LFS, as on the Hub
    assert files["manifest.json"] == dumps_manifest(manifest)
    assert files["README.md"].decode() == render_card(manifest, repo_id=REPO)
    assert ModelCard(files["README.md"].decode()).data.to_dict()["base_model_relation"] == "adapter"


def test_what_was_published_downloads_back_byte_for_byte(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    publish(hub, pkg, manifest)
    for path in [f["path"] for f in manifest["files"]] + ["manifest.json"]:
        got = hf_hub_download(REPO, path, revision="v1.0.0", endpoint=hub.url, cache_dir=tmp_path / "hf")
        expected = dumps_manifest(manifest) if path == "manifest.json" else (pkg / path).read_bytes()
        assert Path(got).read_bytes() == expected


def test_an_existing_repo_gets_one_commit_on_top_of_the_head_it_was_read_at(hub: FakeHub, tmp_path: Path) -> None:
    before = hub.add_repo(REPO, {"notes.txt": b"kept\n"})
    pkg, manifest = our_package(tmp_path / "pkg")
    result = publish(hub, pkg, manifest)
    [commit] = commits_sent(hub)
    assert commit.path == f"/api/models/{REPO}/commit/main"
    assert commit.body[0]["value"]["parentCommit"] == before
    assert hub.file(REPO, "notes.txt", result.tag) == b"kept\n"  # a commit on top, not a replacement
    assert not hub.is_private(REPO)


def test_a_peft_package_keeps_peft_files_at_the_repo_root(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = peft_package(tmp_path / "peft")
    result = publish(hub, pkg, manifest, repo="acme/sentiment-peft")
    files = hub.files("acme/sentiment-peft", result.tag)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert files[name] == (pkg / name).read_bytes()
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "peft" and card.data.base_model == "org/bert-tiny"
    assert "PeftModel.from_pretrained(base, 'acme/sentiment-peft', revision='v2.0.0')" in card.text


def test_a_peft_directory_publishes_its_own_card_completed(hub: FakeHub, tmp_path: Path) -> None:
    pkg, _ = peft_package(tmp_path / "peft")
    own = "---\nlicense: apache-2.0\n---\n# My LoRA\n\nWritten by hand.\n"
    (pkg / "README.md").write_text(own)
    card = complete_card(own, prepare_package(pkg, name="acme/sentiment-peft", version="2.0.0"))
    (pkg / "README.md").write_text(card)  # the completed card goes into the package, then it is packed again
    manifest = prepare_package(pkg, name="acme/sentiment-peft", version="2.0.0")
    assert "README.md" in [f["path"] for f in manifest["files"]]
    result = publish_to_hub(
        pkg,
        manifest,
        dumps_manifest(manifest),
        "acme/sentiment-peft",
        "2.0.0",
        endpoint=hub.url,
        token=WRITE_TOKEN,
        card=card,
    )
    readme = hub.file("acme/sentiment-peft", "README.md", result.tag).decode()
    assert readme == card and ModelCard(readme).text == "# My LoRA\n\nWritten by hand.\n"
    assert ModelCard(readme).data.license == "apache-2.0" and ModelCard(readme).data.library_name == "peft"


def test_republishing_the_same_content_is_a_noop(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    first = publish(hub, pkg, manifest)
    hub.clear_requests()
    again = publish(hub, pkg, manifest)
    assert again.noop and again.commit == first.commit and again.tag == "v1.0.0"
    assert commits_sent(hub) == [] and hub.head(REPO) == first.commit


def test_other_content_under_a_published_version_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    first = publish(hub, pkg, manifest)
    other, other_manifest = our_package(tmp_path / "other", seed=7)
    with pytest.raises(InvalidPackageError, match="version 1.0.0 already published with other content") as err:
        publish(hub, other, other_manifest)
    assert err.value.exit_code == 7
    assert hub.head(REPO) == first.commit and hub.tags(REPO) == {"v1.0.0": first.commit}


def test_a_commit_landing_between_reading_the_head_and_committing_is_a_race(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    read_refs = hf_publish.read_refs
    landed: list[str] = []

    def another_publisher_commits(api: Any, repo_id: str, branch: str = "main") -> hf_publish.RepoRefs:
        refs = read_refs(api, repo_id, branch)
        landed.append(hub.commit(repo_id, {"theirs.txt": b"first\n"}, message="another publisher"))
        return refs

    monkeypatch.setattr(hf_publish, "read_refs", another_publisher_commits)
    with pytest.raises(RegistryError, match="moved while publishing 1.0.0; another publisher committed first; retry"):
        publish(hub, pkg, manifest)
    assert hub.head(REPO) == landed[0] and hub.tags(REPO) == {}
    assert "manifest.json" not in hub.files(REPO)


def test_a_tag_created_while_publishing_is_a_race(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    read_refs = hf_publish.read_refs

    def another_publisher_tags(api: Any, repo_id: str, branch: str = "main") -> hf_publish.RepoRefs:
        refs = read_refs(api, repo_id, branch)
        hub.tag(repo_id, "v1.0.0", "main")
        return refs

    monkeypatch.setattr(hf_publish, "read_refs", another_publisher_tags)
    with pytest.raises(RegistryError, match="tag v1.0.0 was created while publishing") as err:
        publish(hub, pkg, manifest)
    assert err.value.exit_code == 6


@pytest.mark.parametrize("token", ["hf_not_a_known_token_123", "hf_test_read", "hf_test_mallory", None])
def test_a_refused_token_is_a_registry_error_without_the_token(hub: FakeHub, tmp_path: Path, token: str | None) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:\d+ refused to publish to acme/sentiment") as err:
        publish(hub, pkg, manifest, token=token)
    message = str(err.value)
    assert err.value.exit_code == 6 and "\n" not in message
    assert token is None or token not in message
    assert commits_sent(hub) == []


def test_files_that_changed_after_packing_are_refused_before_any_upload(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    weights = pkg / "adapter.safetensors"
    same_size = bytearray(weights.read_bytes())
    same_size[-1] ^= 0xFF
    weights.write_bytes(bytes(same_size))
    with pytest.raises(IntegrityError, match="sha256 does not match") as err:
        publish(hub, pkg, manifest)
    assert err.value.exit_code == 4
    weights.write_bytes(bytes(same_size) + b"more")
    with pytest.raises(IntegrityError, match="bytes, but manifest.json lists"):
        publish(hub, pkg, manifest)
    assert hub.requests == []


def test_a_listed_readme_must_be_the_card(hub: FakeHub, tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "pkg", REPO, "1.0.0")
    (pkg / "README.md").write_text("# hand-written\n")
    data = json.loads((pkg / "manifest.json").read_text())
    data["files"].append({"path": "README.md"})
    manifest = complete_package(pkg, data)
    with pytest.raises(InvalidPackageError, match="lists a README.md other than the card"):
        publish(hub, pkg, manifest)
    card = (pkg / "README.md").read_text()
    result = publish_to_hub(
        pkg, manifest, dumps_manifest(manifest), REPO, "1.0.0", endpoint=hub.url, token=WRITE_TOKEN, card=card
    )
    assert hub.file(REPO, "README.md", result.tag) == card.encode()


def test_a_card_the_hub_refuses_is_an_invalid_package(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    broken = "---\nlicense: [unclosed\n---\n# card\n"
    with pytest.raises(
        InvalidPackageError, match=r"README.md: 127\.0\.0\.1:\d+ refused its metadata: .*Invalid YAML"
    ) as err:
        publish_to_hub(
            pkg, manifest, dumps_manifest(manifest), REPO, "1.0.0", endpoint=hub.url, token=WRITE_TOKEN, card=broken
        )
    assert err.value.exit_code == 7 and "\n" not in str(err.value)
    assert commits_sent(hub) == [] and hub.tags(REPO) == {}


def test_manifest_bytes_must_encode_the_manifest(hub: FakeHub, tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")
    tampered = dumps_manifest({**manifest, "description": "something else"})
    with pytest.raises(InvalidPackageError, match="do not encode the manifest given"):
        publish_to_hub(pkg, manifest, tampered, REPO, "1.0.0", endpoint=hub.url, token=WRITE_TOKEN, card="# card\n")
    assert hub.requests == []


def test_an_unreachable_endpoint_is_a_registry_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pkg, manifest = our_package(tmp_path / "pkg")
    with pytest.raises(RegistryError, match=f"cannot reach 127.0.0.1:{port} while publishing") as err:
        publish_to_hub(
            pkg,
            manifest,
            dumps_manifest(manifest),
            REPO,
            "1.0.0",
            endpoint=f"http://127.0.0.1:{port}",
            token="t",
            card="",
        )
    assert err.value.exit_code == 6


def test_offline_mode_refuses_to_publish(tmp_path: Path) -> None:
    pkg, manifest = our_package(tmp_path / "pkg")  # conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(RegistryError, match="HF_HUB_OFFLINE"):
        publish_to_hub(
            pkg, manifest, dumps_manifest(manifest), REPO, "1.0.0", endpoint="https://hub.example", token="t", card=""
        )
