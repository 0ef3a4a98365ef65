"""Task heads across formats: PEFT's modules_to_save both ways (PeftModel's outputs within 1e-5), an
AdapterHub classification head saved by `adapters` 1.3.0 (its logits within 1e-5, pickles only when
allowed), our package format, and `convert_package` turning pickled directories into safetensors."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub_client as ah
from adapterhub_client import formats
from adapterhub_client.errors import (
    AdapterWarning,
    AdapterWeightsError,
    IncompatibleError,
    InvalidPackageError,
    UnsupportedAdapterError,
    UsageError,
)
from adapterhub_client.formats.package import read_package
from adapterhub_client.nn.heads import HeadConfig, ModuleCopy, ModuleCopyLayer
from adapterhub_client.nn.model import adapter_heads, add_head, head_output
from tests import models
from tests.nn.test_heads import NUM_LABELS, bert_classifier

FIX = Path(__file__).parents[1] / "fixtures" / "adapterhub"
HEAD_CASE = "seq_bn_head"  # pickles, as AdapterHub saves by default
SAFE_CASE = "seq_bn_head_safetensors"


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return models.token_ids(96, batch=2, seq=8)


def logits(model, ids):
    return models.hidden(model, ids)


def trained_peft(tmp_path: Path, **kw) -> tuple[torch.nn.Module, Path]:
    """A PEFT LoRA on the tiny classifier with its modules_to_save copies moved off the base; saved."""
    torch.manual_seed(7)
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **kw)
    pm = peft.get_peft_model(bert_classifier(), config).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if ".modules_to_save." in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    pm.save_pretrained(tmp_path)
    return pm, tmp_path


# --- PEFT's modules_to_save ------------------------------------------------------------------


def test_peft_seq_cls_adapter_loads_with_peft_outputs(ids, tmp_path):
    pm, d = trained_peft(tmp_path, target_modules=["query", "value"], task_type="SEQ_CLS")
    data = json.loads((d / "adapter_config.json").read_text())
    assert data["modules_to_save"] == ["classifier", "score"]  # what SEQ_CLS adds; only classifier exists
    expected = logits(pm, ids)
    model = bert_classifier()
    base = logits(model, ids)
    assert ah.load_adapter(model, d, "p") == "p"
    assert isinstance(model.classifier, ModuleCopyLayer) and adapter_heads(model, "p") == [ModuleCopy("classifier")]
    got = logits(model, ids)
    assert (expected - base).abs().max() > 1e-2
    models.assert_close(got, expected)
    with ah.disable_adapters(model):
        models.assert_close(logits(model, ids), base)
    # the copy is what PEFT trained: it is in the parameter count
    assert ah.list_adapters(model)[0].params == sum(p.numel() for p in pm.parameters() if p.requires_grad)


def test_lora_stays_off_saved_modules_as_in_peft(ids, tmp_path):
    # PEFT keeps LoRA off modules_to_save modules (bert.pooler.dense, classifier) although targeted
    pm, d = trained_peft(tmp_path, target_modules=["dense", "classifier"], modules_to_save=["classifier", "pooler"])
    model = bert_classifier()
    ah.load_adapter(model, d, "p")
    assert ah.list_adapters(model)[0].heads == ("bert.pooler", "classifier")
    models.assert_close(logits(model, ids), logits(pm, ids))
    out = tmp_path / "exported"
    ah.export_peft(model, "p", out)
    again = peft.PeftModel.from_pretrained(bert_classifier(), out).eval()
    models.assert_close(logits(again, ids), logits(pm, ids))


def test_exported_copies_load_in_peft(ids, tmp_path):
    model = bert_classifier()
    ah.add_adapter(model, "mine", ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"], init="none"))
    add_head(model, "mine", ModuleCopy("classifier"))
    with torch.no_grad():
        model.classifier.copies["mine"].weight.mul_(-2.0)
    expected = logits(model, ids)
    ah.export_peft(model, "mine", tmp_path)
    data = json.loads((tmp_path / "adapter_config.json").read_text())
    assert data["modules_to_save"] == ["classifier"]
    keys = set(load_file(str(tmp_path / "adapter_model.safetensors")))
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= keys
    pm = peft.PeftModel.from_pretrained(bert_classifier(), tmp_path).eval()
    models.assert_close(logits(pm, ids), expected)
    with pm.disable_adapter():  # PEFT restores the original classifier too
        models.assert_close(logits(pm, ids), logits(bert_classifier(), ids))


def test_saved_modules_load_strictly(tmp_path):
    _, d = trained_peft(tmp_path, target_modules=["query", "value"], task_type="SEQ_CLS")
    tensors = load_file(str(d / "adapter_model.safetensors"))
    save_file(
        {k: v for k, v in tensors.items() if k != "base_model.model.classifier.bias"},
        str(d / "adapter_model.safetensors"),
    )
    model = bert_classifier()
    with pytest.raises(AdapterWeightsError, match=r"missing base_model\.model\.classifier\.bias"):
        ah.load_adapter(model, d)
    assert ah.list_adapters(model) == [] and type(model.classifier) is torch.nn.Linear


def test_saved_module_the_model_lacks_is_incompatible(tmp_path):
    _, d = trained_peft(tmp_path, target_modules=["query", "value"], task_type="SEQ_CLS")
    model = models.tiny_bert()  # the bare backbone: no classifier
    with pytest.raises(IncompatibleError, match=r"'classifier' saved base_model\.model\.classifier\."):
        ah.load_adapter(model, d)
    assert ah.list_adapters(model) == []


def test_bias_all_next_to_modules_to_save_is_refused(tmp_path):
    _, d = trained_peft(tmp_path, target_modules=["query"], modules_to_save=["classifier"], bias="all")
    with pytest.raises(UnsupportedAdapterError, match="bias='all' next to modules_to_save"):
        ah.load_adapter(bert_classifier(), d)


def test_package_keeps_copies_and_exports_them_to_peft(ids, tmp_path):
    pm, d = trained_peft(tmp_path / "peft", target_modules=["query", "value"], task_type="SEQ_CLS")
    model = bert_classifier()
    ah.load_adapter(model, d, "p")
    pkg = ah.save_adapter(model, "p", tmp_path / "pkg", name="acme/cls", version="1.0.0")
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["adapter"]["heads"] == [{"type": "module_copy", "path": "classifier"}]
    assert manifest["base_model"]["architecture"]["modules"]["classifier"]["shape"] == [NUM_LABELS, 32]
    assert {"classifier.weight", "classifier.bias"} <= set(load_file(str(pkg / "adapter.safetensors")))
    again = bert_classifier()
    ah.load_adapter(again, pkg, "q")
    models.assert_close(logits(again, ids), logits(pm, ids))
    # the streaming merge reads LoRA tensors only: it must not silently drop the classifier
    with pytest.raises(UnsupportedAdapterError, match="task heads"):
        read_package(pkg)
    formats.export_package_peft(pkg, tmp_path / "exported")
    exported = peft.PeftModel.from_pretrained(bert_classifier(), tmp_path / "exported").eval()
    models.assert_close(logits(exported, ids), logits(pm, ids))


# --- AdapterHub's prediction heads -------------------------------------------------------------


def run(model, inputs):
    with torch.no_grad():
        outputs = model(**inputs)
        return outputs.last_hidden_state, head_output(model, outputs)


def test_adapterhub_head_reproduces_adapterhub_logits(base_model, data):
    inputs, expected = data
    assert not (FIX / SAFE_CASE / "pytorch_model_head.bin").exists()
    model = copy.deepcopy(base_model)
    assert ah.load_adapter(model, FIX / SAFE_CASE) == HEAD_CASE  # the name AdapterHub saved it under
    head = adapter_heads(model, HEAD_CASE)[0]
    assert isinstance(head, HeadConfig)
    assert (head.head_type, head.num_labels, head.layers, head.activation_function) == ("classification", 3, 2, "tanh")
    hidden, got = run(model, inputs)
    assert (got - expected[f"{HEAD_CASE}.logits"]).abs().max() <= 1e-5
    assert (hidden - expected[HEAD_CASE]).abs().max() <= 1e-5
    # the head's output is not the same for any backbone: the adapter's hidden states matter
    with ah.disable_adapters(model), torch.no_grad():
        bare = model.heads[HEAD_CASE](model(**inputs))
    assert (bare - expected[f"{HEAD_CASE}.logits"]).abs().max() > 1e-2
    # the parameter count has both: two SeqBn blocks (32 -> 2 -> 32) and the head (32 -> 32 -> 3)
    adapter, head_params = 2 * (32 * 2 + 2 + 2 * 32 + 32), 32 * 32 + 32 + 32 * 3 + 3
    assert ah.list_adapters(model)[0].params == adapter + head_params


def test_pickled_head_loads_only_when_allowed(base_model, data, tmp_path):
    inputs, expected = data
    model = copy.deepcopy(base_model)
    with pytest.raises(InvalidPackageError, match="pickled"):
        ah.load_adapter(model, FIX / HEAD_CASE)
    assert ah.list_adapters(model) == [] and "heads" not in model._modules
    # a safetensors adapter next to a pickled head: the head's pickle is refused the same way
    mixed = tmp_path / "mixed"
    shutil.copytree(FIX / SAFE_CASE, mixed)
    (mixed / "model_head.safetensors").unlink()
    shutil.copy(FIX / HEAD_CASE / "pytorch_model_head.bin", mixed)
    with pytest.raises(InvalidPackageError, match=r"pickled \(pytorch_model_head\.bin\)"):
        ah.load_adapter(model, mixed)
    assert ah.list_adapters(model) == []
    ah.load_adapter(model, FIX / HEAD_CASE, allow_pickle=True)
    _, got = run(model, inputs)
    assert (got - expected[f"{HEAD_CASE}.logits"]).abs().max() <= 1e-5


def head_dir(tmp_path: Path, change=None, tensors=None) -> Path:
    """The safetensors head case, with its head_config.json's `config` changed or other head tensors."""
    d = tmp_path / "case"
    shutil.copytree(FIX / SAFE_CASE, d)
    if change is not None:
        meta = json.loads((d / "head_config.json").read_text())
        change(meta)
        (d / "head_config.json").write_text(json.dumps(meta))
    if tensors is not None:
        save_file(tensors, str(d / "model_head.safetensors"))
    return d


def test_head_weights_must_fit(base_model, tmp_path):
    tensors = load_file(str(FIX / SAFE_CASE / "model_head.safetensors"))
    for label, changed, match in [
        ("missing", {k: v for k, v in tensors.items() if not k.endswith("4.bias")}, "missing heads.seq_bn_head.4.bias"),
        ("shape", {**tensors, "heads.seq_bn_head.4.bias": torch.zeros(4)}, "wrong shape heads.seq_bn_head.4.bias"),
        ("stray", {**tensors, "heads.other.1.weight": torch.zeros(1)}, "not keys of head 'seq_bn_head'"),
    ]:
        model = copy.deepcopy(base_model)
        with pytest.raises(AdapterWeightsError, match=match):
            ah.load_adapter(model, head_dir(tmp_path / label, tensors=changed))
        assert ah.list_adapters(model) == [] and "heads" not in model._modules, label


def _set(key, value):
    return lambda meta: meta["config"].update({key: value})


@pytest.mark.parametrize(
    "change,error,match",
    [
        (_set("head_type", "masked_lm"), UnsupportedAdapterError, "head type 'masked_lm'"),
        (_set("activation_function", "prelu"), UnsupportedAdapterError, "activation_function"),
        (lambda meta: meta.update(model_type="gpt2"), UnsupportedAdapterError, "end-of-sequence token"),
        (lambda meta: meta.update(config=None), UnsupportedAdapterError, "static head"),
        (lambda meta: meta.update(hidden_size=64), IncompatibleError, "head was trained for hidden size 64"),
        (_set("num_labels", 4), AdapterWeightsError, r"wrong shape heads\.seq_bn_head\.4\.weight \(3, 32\)"),
    ],
)
def test_head_configs_we_cannot_reproduce_are_refused(base_model, tmp_path, change, error, match):
    model = copy.deepcopy(base_model)
    with pytest.raises(error, match=match):
        ah.load_adapter(model, head_dir(tmp_path, change))
    assert ah.list_adapters(model) == []


def test_head_config_without_weights_is_invalid(base_model, tmp_path):
    d = head_dir(tmp_path)
    (d / "model_head.safetensors").unlink()
    with pytest.raises(InvalidPackageError, match="without the head's weights"):
        ah.load_adapter(copy.deepcopy(base_model), d)


def test_package_with_a_prediction_head_round_trips(base_model, data, tmp_path):
    inputs, expected = data
    model = copy.deepcopy(base_model)
    name = ah.load_adapter(model, FIX / SAFE_CASE)
    pkg = ah.save_adapter(model, name, tmp_path / "pkg", name="acme/sentiment", version="1.0.0")
    entry = json.loads((pkg / "manifest.json").read_text())["adapter"]["heads"][0]
    assert entry["type"] == "prediction" and entry["config"]["label2id"] == {f"LABEL_{i}": i for i in range(3)}
    again = copy.deepcopy(base_model)
    assert ah.load_adapter(again, pkg) == "sentiment"
    _, got = run(again, inputs)
    assert (got - expected[f"{HEAD_CASE}.logits"]).abs().max() <= 1e-5
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["adapter"]["heads"] = [{"type": "prediction", "config": {"head_type": "masked_lm"}}]
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidPackageError, match="adapter.heads: HeadConfig.head_type"):
        ah.load_adapter(copy.deepcopy(base_model), pkg)


def test_prediction_heads_have_no_peft_form(tmp_path):
    model = models.tiny_bert()
    ah.add_adapter(model, "l", ah.LoRAConfig(r=2, target_modules=["query"]))
    add_head(model, "l", HeadConfig())
    with pytest.raises(UsageError, match="prediction head"):
        ah.export_peft(model, "l", tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


# --- convert_package -------------------------------------------------------------------------


def test_convert_rewrites_adapterhub_pickles_as_safetensors(base_model, data, tmp_path):
    inputs, expected = data
    with pytest.raises(UsageError, match="allow_pickle"):
        formats.convert_package(FIX / HEAD_CASE, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    out = formats.convert_package(FIX / HEAD_CASE, tmp_path / "converted", allow_pickle=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter.safetensors",
        "adapter_config.json",
        "head_config.json",
        "model_head.safetensors",
    ]
    for pickled, safe in [
        ("pytorch_adapter.bin", "adapter.safetensors"),
        ("pytorch_model_head.bin", "model_head.safetensors"),
    ]:
        before = torch.load(FIX / HEAD_CASE / pickled, weights_only=True)
        after = load_file(str(out / safe))
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    converted, pickled = copy.deepcopy(base_model), copy.deepcopy(base_model)
    ah.load_adapter(converted, out)  # no allow_pickle needed any more
    ah.load_adapter(pickled, FIX / HEAD_CASE, allow_pickle=True)
    for a, b in zip(run(converted, inputs), run(pickled, inputs)):
        assert torch.equal(a, b)
    with pytest.raises(UsageError, match="not an empty directory"):
        formats.convert_package(FIX / HEAD_CASE, out, allow_pickle=True)


def test_convert_rewrites_a_peft_pickle_and_leaves_other_pickles_out(ids, tmp_path):
    torch.manual_seed(7)
    pm = peft.get_peft_model(
        bert_classifier(), peft.LoraConfig(r=4, target_modules=["query"], task_type="SEQ_CLS", init_lora_weights=False)
    ).eval()
    src = tmp_path / "src"
    pm.save_pretrained(src, safe_serialization=False)
    torch.save({"lr": torch.tensor(0.1)}, src / "training_args.bin")
    assert (src / "adapter_model.bin").is_file() and not (src / "adapter_model.safetensors").exists()
    with pytest.warns(AdapterWarning, match="training_args.bin"):
        out = formats.convert_package(src, tmp_path / "out", allow_pickle=True)
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    model = bert_classifier()
    ah.load_adapter(model, out)
    models.assert_close(logits(model, ids), logits(pm, ids))


def test_convert_takes_raw_directories_only(tmp_path):
    model = models.tiny_bert()
    ah.add_adapter(model, "b", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    pkg = ah.save_adapter(model, "b", tmp_path / "pkg")
    with pytest.raises(UsageError, match="already a package"):
        formats.convert_package(pkg, tmp_path / "out")
    out = formats.convert_package(FIX / SAFE_CASE, tmp_path / "copied")  # nothing pickled: a plain copy
    assert {p.name for p in out.iterdir()} == {p.name for p in (FIX / SAFE_CASE).iterdir()}
