"""The workflows under the facade, without torch: naming, registry settings, cache statistics, the one
fingerprint folder, the transport's locality and typed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from adapterhub_client import config
from adapterhub_client.errors import NotFoundError, UsageError
from adapterhub_client.hub import Hub
from adapterhub_client.operations.attach import adapter_name
from adapterhub_client.operations.results import Info, Installed, Published, SearchHit, VerifyReport
from adapterhub_client.registry.transport import FileTransport, local_package_dir, open_transport
from adapterhub_client.store.cache import Cache


@pytest.mark.parametrize(
    "package,expected",
    [
        ("acme/sentiment", "acme_sentiment"),
        ("acme/mini-lora", "acme_mini_lora"),
        ("org.x/a.b-c", "org_x_a_b_c"),
        ("a_b/c_d", "a_b_c_d"),
    ],
)
def test_adapter_name_is_the_full_name_made_a_torch_name(package, expected):
    assert adapter_name(package) == expected


def test_registry_settings_go_through_config(home, tmp_path):
    remote = tmp_path / "reg"
    remote.mkdir()
    spec = config.add_registry("team", str(remote), token="t0k")
    assert spec.url == remote.resolve().as_uri() + "/" and spec.token == "t0k"
    config.add_registry("web", "https://adapters.example.com/reg")
    stored = config.read_config_file(config.config_path())["registry"]
    assert [(r["name"], r["url"], r.get("token")) for r in stored] == [
        ("team", spec.url, "t0k"),
        ("web", "https://adapters.example.com/reg/", None),
    ]
    config.add_registry("team", "file:///srv/other")  # same name: replaced, moved last
    assert [r["name"] for r in config.read_config_file(config.config_path())["registry"]] == ["web", "team"]
    assert [s.name for s in config.load_settings().registries] == ["local", "web", "team"]
    config.remove_registry("web")
    with pytest.raises(NotFoundError):
        config.remove_registry("web")
    for name, url, message in [
        ("local", "file:///x", "built-in"),
        ("x", "ftp://host/", "unsupported"),
        ("x", "http://adapters.example.com/", "https"),
        ("x", "not/a/dir", "unsupported"),
    ]:
        with pytest.raises(UsageError, match=message):
            config.add_registry(name, url)
    assert [r["name"] for r in config.read_config_file(config.config_path())["registry"]] == ["team"]


def test_cache_stats(cli, package, home):
    cache = Cache(home / "cache")
    empty = cache.stats()
    assert (empty.blobs, empty.partial, empty.installed) == (0, 0, 0)
    cli("install", str(package("acme/s", "1.0.0", size=3000)))
    (home / "cache" / "partial" / ("0" * 64 + ".part")).write_bytes(b"12345")
    stats = cache.stats()
    # installed from a local directory: the weights are a blob, the manifest is not
    assert (stats.blobs, stats.partial, stats.partial_bytes, stats.installed) == (1, 1, 5, 1)
    assert stats.blob_bytes > 3000
    assert stats.to_json() == cli("cache", "info", "--json").json()
    assert set(stats.to_json()) == {"path", "blobs", "blob_bytes", "partial", "partial_bytes", "installed"}


def tiny_model(directory: Path) -> Path:
    directory.mkdir(parents=True)
    save_file({"layer.weight": np.ones((4, 4), np.float32)}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "tiny"}))
    return directory


def test_fingerprints_live_in_the_cache_roots_fingerprints_folder(cli, package, tmp_path):
    model = tiny_model(tmp_path / "model")
    root = tmp_path / "flag-cache"
    assert Cache(root).fingerprints_dir == root / "fingerprints"
    r = cli("fingerprint", str(model), "--cache-dir", str(root), "--json")
    assert r.code == 0, r.err
    assert any((root / "fingerprints").iterdir())  # the same layout every command uses
    assert not (tmp_path / "flag-cache" / "fingerprints.json").exists()
    other = tmp_path / "other-cache"
    Hub(cache_dir=other).local_model(str(model)).content()
    assert any((other / "fingerprints").iterdir())
    third = tmp_path / "publish-cache"
    r = cli("publish", str(package("acme/fp", "1.0.0")), "--base", str(model), "--cache-dir", str(third))
    assert r.code == 0, r.err
    assert any((third / "fingerprints").iterdir())
    r = cli("fingerprint", str(model), "--no-cache", "--cache-dir", str(tmp_path / "unused"), "--json")
    assert r.code == 0 and not (tmp_path / "unused").exists()


def test_transports_say_whether_they_read_locally(tmp_path):
    local = open_transport(tmp_path.as_uri(), lambda: pytest.fail("no HTTP client for a directory"), tmp_path)
    assert isinstance(local, FileTransport) and local.reads_locally and local.local_root == tmp_path
    with pytest.raises(UsageError, match="unsupported registry URL"):
        open_transport("ftp://x/", lambda: pytest.fail("not called"), tmp_path)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    assert local_package_dir(pkg.as_uri()) is None  # no manifest.json: a registry, not a package
    (pkg / "manifest.json").write_text("{}")
    assert local_package_dir(pkg.as_uri()) == pkg
    assert local_package_dir("https://example.com/reg/") is None


def test_hub_returns_typed_results(cli, package, home):
    pkg = package("acme/typed", "1.0.0")
    with Hub() as hub:
        published = hub.publish(pkg)
        assert isinstance(published, Published) and published.created
        [installed] = hub.install(["acme/typed"])
        assert isinstance(installed, Installed) and not installed.already
        info = hub.info("acme/typed")
        assert isinstance(info, Info) and info.versions == ["1.0.0"]
        assert info.to_json() == cli("info", "acme/typed", "--json").json()
        [hit] = hub.search("typed")
        assert isinstance(hit, SearchHit) and hit.name == "acme/typed" and hit.registry == "local"
        assert hub.installed()[0].to_json() == cli("list", "--json").json()["installed"][0]
        report = hub.verify()
        assert isinstance(report, VerifyReport) and report.ok and report.checked == 1
        assert hub.yank("acme/typed@1.0.0").to_json() == {"name": "acme/typed", "version": "1.0.0", "yanked": True}
        assert [r.to_json() for r in hub.uninstall(["acme/typed"])] == [{"name": "acme/typed", "version": "1.0.0"}]
        assert not hasattr(hub, "installed_view")
