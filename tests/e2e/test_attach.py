"""`adapters attach` and `Hub.attach`: checks before download, attach onto the real MiniLM,
streaming merge to a checkpoint that transformers loads with the attached model's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def blobs(home: Path) -> list[Path]:
    return [p for p in (home / "cache" / "blobs").rglob("*") if p.is_file()] if (home / "cache").exists() else []


def test_check_only_downloads_nothing(cli, published, home):
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]), "--check", "--json")
    assert r.code == 0, r.err
    assert r.json()["adapters"][0]["compatibility"]["verdict"] == "exact"
    sizes = sorted(p.stat().st_size for p in blobs(home))
    assert len(sizes) == 1 and sizes[0] < 20000  # the manifest only, no weights


def test_incompatible_model_is_refused_before_download(cli, published, home):
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["gpt2"]))
    assert r.code == 5
    assert "encoder.layer.0.attention.self.query: expected [384, 384] float32, found missing" in r.err
    assert "more" in r.err  # the count of the remaining differences
    assert all(p.stat().st_size < 20000 for p in blobs(home))


def test_architecture_match_warns_or_refuses_under_strict(cli, published):
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["perturbed2"]), "--check")
    assert r.code == 0 and "acme/mini-lora 1.0.0: architecture" in r.out
    # the warning says why it is not exact: same shapes, other weights than the recorded base
    assert "warning:" in r.err and "has the shapes of" in r.err and "weights differ from the recorded base" in r.err
    verdict = cli(
        "attach", "acme/mini-lora@1.0.0", "--model", str(published["perturbed2"]), "--check", "--json"
    ).json()["adapters"][0]["compatibility"]
    assert verdict["verdict"] == "architecture"
    assert verdict["found"]["content"] != verdict["expected"]["content"]  # the contents were compared
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["perturbed2"]), "--strict")
    assert r.code == 5


def test_attach_reports_modules_and_parameters(cli, published):
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]), "--json")
    assert r.code == 0, r.err
    attached = r.json()["attached"][0]
    assert attached["modules"] == 12  # query and value in 6 layers
    assert attached["parameters"] == 12 * (4 * 384 + 384 * 4)
    assert (attached["adapter"], attached["name"]) == ("acme/mini-lora", "acme_mini_lora")  # adapter_name()


def test_merge_streams_a_checkpoint_equal_to_the_attached_model(cli, published, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    out = tmp_path / "merged"
    r = cli(
        "attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]), "--merge", "--output", str(out), "--json"
    )
    assert r.code == 0, r.err
    assert r.json()["merged"]["merged_tensors"] == 12
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    merged = AutoModel.from_pretrained(str(out)).eval()
    reference = PeftModel.from_pretrained(
        AutoModel.from_pretrained(str(published["minilm"])), str(published["lora"])
    ).eval()
    ids = torch.randint(0, 30000, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(input_ids=ids).last_hidden_state
        got = merged(input_ids=ids).last_hidden_state
        base = AutoModel.from_pretrained(str(published["minilm"])).eval()(input_ids=ids).last_hidden_state
    import adapterhub_client as ah

    ours = AutoModel.from_pretrained(str(published["minilm"])).eval()
    ah.load_adapter(ours, str(published["lora"]))  # the attached (unmerged) model
    with torch.no_grad():
        attached = ours(input_ids=ids).last_hidden_state
    assert (got - attached).abs().max() < 1e-5
    assert (got - expected).abs().max() < 1e-5
    assert (got - base).abs().max() > 1e-3  # the adapter really changed the weights


def test_hub_attach_python_api(published, home):
    from transformers import AutoModel

    import adapterhub_client as ah

    model = AutoModel.from_pretrained(str(published["minilm"])).eval()
    hub = ah.Hub()
    name = hub.attach(model, "acme/mini-lora@1.0.0", name="sent")
    assert name == "sent"
    assert [a.name for a in ah.list_adapters(model)] == ["sent"]
    other = AutoModel.from_pretrained(str(published["gpt2"]))
    with pytest.raises(ah.AdapterError):
        hub.attach(other, "acme/mini-lora@1.0.0")


def test_attached_adapters_get_one_default_name_from_both_entry_points(cli, published, home):
    from transformers import AutoModel

    import adapterhub_client as ah
    from adapterhub_client.operations.attach import adapter_name

    model = AutoModel.from_pretrained(str(published["minilm"])).eval()
    name = ah.Hub().attach(model, "acme/mini-lora@1.0.0")
    assert name == adapter_name("acme/mini-lora") == "acme_mini_lora"  # not "mini-lora" from the folder
    assert [a.name for a in ah.list_adapters(model)] == ["acme_mini_lora"]
    r = cli("attach", "acme/mini-lora@1.0.0", "--model", str(published["minilm"]), "--json")
    assert r.code == 0, r.err
    assert r.json()["attached"][0]["name"] == name


def test_merge_refuses_bottleneck_adapters_before_download(cli, models, home, tmp_path):
    from transformers import AutoModel

    import adapterhub_client as ah

    model = AutoModel.from_pretrained(str(models["minilm"]))
    ah.add_adapter(model, "houlsby", ah.BottleneckConfig(style="houlsby", reduction_factor=16))
    pkg = ah.save_adapter(model, "houlsby", tmp_path / "pkg", name="acme/mini-houlsby", version="1.0.0")
    r = cli("publish", str(pkg))
    assert r.code == 0, r.err
    manifest = cli("info", "acme/mini-houlsby", "--json").json()["manifest"]
    fingerprint = cli("fingerprint", str(models["minilm"]), "--json").json()
    assert manifest["base_model"]["fingerprint"]["content"] == fingerprint["content"]
    r = cli(
        "attach", "acme/mini-houlsby", "--model", str(models["minilm"]), "--merge", "--output", str(tmp_path / "out")
    )
    assert r.code == 2 and "cannot be merged" in r.err
    assert "acme/mini-houlsby 1.0.0: exact" in r.out  # the verdict is shown before the refusal
    assert not (tmp_path / "out").exists()
    assert all(p.stat().st_size < 20000 for p in blobs(home))  # refused before the weights were fetched
    r = cli("attach", "acme/mini-houlsby", "--model", str(models["minilm"]), "--json")
    assert r.code == 0 and r.json()["attached"][0]["modules"] == 12
