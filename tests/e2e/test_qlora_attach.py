"""A QLoRA adapter trained on the real MiniLM quantized to NF4, published, then attached: `adapters attach
--quantize nf4` loads the base in 4 bits and checks `exact`; the full-precision base checks `exact
(unquantized)` with a note; Hub.attach onto a quantized base gives the trainer's outputs exactly."""

from __future__ import annotations

import warnings

import pytest
import torch

import adapterhub_client as ah
from tests.basemodels import models  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def qlora(cli, models, tmp_path):  # noqa: F811
    """acme/qlora 1.0.0 trained (one step) on NF4-quantized MiniLM, in the local registry; the trainer's model."""
    model = ah.load_quantized(models["minilm"])
    ah.add_adapter(model, "q", ah.LoRAConfig(r=4, target_modules=["query", "value"]))
    ah.prepare_for_kbit_training(model, gradient_checkpointing=False)
    ah.mark_only_adapters_trainable(model)
    ids = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    model.train()
    loss = model(input_ids=ids).last_hidden_state.pow(2).mean()
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    model.eval()
    ah.save_adapter(model, "q", tmp_path / "pkg", name="acme/qlora", version="1.0.0")
    r = cli("publish", str(tmp_path / "pkg"))
    assert r.code == 0, r.err
    return model, ids


def test_attach_quantize_nf4_is_exact_and_full_precision_is_exact_unquantized(cli, models, qlora):  # noqa: F811
    r = cli("info", "acme/qlora")
    assert r.code == 0 and "quantized:  nf4 (blocksize 64, double quant) (attach with --quantize nf4)" in r.out
    r = cli("attach", "acme/qlora@1.0.0", "--model", str(models["minilm"]), "--quantize", "nf4", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert report["adapters"][0]["compatibility"]["verdict"] == "exact"
    assert report["attached"][0]["modules"] == 12  # attached onto the 4-bit layers

    r = cli("attach", "acme/qlora@1.0.0", "--model", str(models["minilm"]))
    assert r.code == 0, r.err
    assert "acme/qlora 1.0.0: exact (unquantized)" in r.out
    assert "warning:" in r.err and "in full precision" in r.err and "--quantize nf4" in r.err

    r = cli("attach", "acme/qlora@1.0.0", "--model", str(models["minilm"]), "--quantize", "fp4", "--check")
    assert r.code == 0 and "acme/qlora 1.0.0: architecture" in r.out and "type nf4 in training, fp4 here" in r.err
    r = cli("attach", "acme/qlora@1.0.0", "--model", str(models["minilm"]), "--quantize", "fp4", "--strict")
    assert r.code == 5

    r = cli(
        "attach", "acme/qlora@1.0.0", "--model", str(models["minilm"]), "--quantize", "nf4", "--merge", "--output", "o"
    )
    assert r.code == 2 and "--merge writes full-precision weights" in r.err


def test_hub_attach_onto_a_quantized_base_reproduces_the_trainer(cli, models, qlora):  # noqa: F811
    trained, ids = qlora
    base = ah.load_quantized(models["minilm"])
    with ah.Hub() as hub, warnings.catch_warnings():
        warnings.simplefilter("error")  # exact: no warning
        name = hub.attach(base, "acme/qlora@1.0.0")
    ah.set_active_adapters(base, name)
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids).last_hidden_state, trained(input_ids=ids).last_hidden_state)


def test_attach_onto_a_4bit_checkpoint_directory(cli, models, qlora, tmp_path):  # noqa: F811
    """A 4-bit checkpoint (save_quantized's, bitsandbytes' layout) is checked and loaded as stored, in pure torch."""
    ah.save_quantized(ah.load_quantized(models["minilm"]), tmp_path / "nf4")
    r = cli("attach", "acme/qlora@1.0.0", "--model", str(tmp_path / "nf4"), "--json")
    assert r.code == 0, r.err
    assert r.json()["adapters"][0]["compatibility"]["verdict"] == "exact"
    assert r.json()["attached"][0]["modules"] == 12
    r = cli("attach", "acme/qlora@1.0.0", "--model", str(tmp_path / "nf4"), "--quantize", "fp4", "--check")
    assert r.code == 2 and "is a nf4 checkpoint already" in r.err
