"""One trained adapter through every kind of team registry: train a LoRA on the real MiniLM for a few
steps, publish it from the model to the local registry, to a directory registry checked by `registry
build` and served over HTTP by the Range/ETag test server, and to a real OCI registry (Debian's
docker-registry); install each into a fresh cache and attach it to a fresh base: the outputs are the
trained model's."""

from __future__ import annotations

import copy

import torch

import adapterhub_client as ah
from tests import models as tiny


def train_a_few_steps(model: torch.nn.Module, ids: torch.Tensor) -> None:
    ah.add_adapter(model, "sst", ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"]))
    ah.mark_only_adapters_trainable(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    target = torch.randn(ids.shape[0], 384, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(input_ids=ids).last_hidden_state[:, 0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def test_one_adapter_through_local_static_and_oci_registries(
    cli, tmp_path, monkeypatch, oci_registry, static_server_factory
):
    ids = tiny.token_ids(1000, batch=2, seq=8)
    base = tiny.minilm()
    model = copy.deepcopy(base).train()
    train_a_few_steps(model, ids)
    with torch.no_grad():
        want = model(input_ids=ids).last_hidden_state
        assert (want - base(input_ids=ids).last_hidden_state).abs().max() > 1e-3  # the training did something

    static_root = tmp_path / "static"
    with ah.Hub() as hub:
        hub.publish(model, adapter="sst", name="acme/sst", version="1.0.0")  # the local registry
        hub.publish(model, adapter="sst", name="acme/sst", version="1.0.0", registry=static_root.as_uri())
        hub.publish(
            model, adapter="sst", name="acme/sst", version="1.0.0", registry=f"oci://{oci_registry.host}/acme/sst"
        )
    assert cli("registry", "build", str(static_root)).code == 0
    server = static_server_factory(static_root)

    sources = {
        "local": "acme/sst@1.0.0",
        "static": f"{server.url}/acme/sst@1.0.0",
        "oci": f"oci://{oci_registry.host}/acme/sst@1.0.0",
    }
    for label, ref in sources.items():
        monkeypatch.setenv("ADAPTERS_CACHE_DIR", str(tmp_path / f"cache-{label}"))
        fresh = copy.deepcopy(base)
        with ah.Hub() as hub:
            hub.attach(fresh, ref, strict=True)  # exact: the fingerprint recorded from the trained model's base
        with torch.no_grad():
            tiny.assert_close(fresh(input_ids=ids).last_hidden_state, want)
