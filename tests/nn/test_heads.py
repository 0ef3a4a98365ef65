"""Task heads in memory: module copies (PEFT's modules_to_save) and prediction heads (AdapterHub's) are
parts of their adapter: they run, switch, train, count, merge, delete and load strictly with it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import adapterhub_client as ah
from adapterhub_client.errors import AdapterConfigError, AdapterWeightsError, NotFoundError, UsageError
from adapterhub_client.nn.heads import HeadConfig, HeadLayer, ModuleCopy, ModuleCopyLayer, PredictionHead
from adapterhub_client.nn.model import (
    adapter_heads,
    adapter_parameters,
    adapter_tensors,
    add_head,
    attach_weights,
    base_state_dict,
    head_output,
    merge_and_unload,
    trainable_parameters,
)
from adapterhub_client.nn.targets import TargetError
from tests import models

NUM_LABELS = 3


bert_classifier = models.bert_classifier


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return models.token_ids(96, batch=2, seq=8)


def logits(model, ids):
    return models.hidden(model, ids)


def lora() -> ah.LoRAConfig:
    return ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"], init="none")


def perturb(params, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.5)


def with_copy(name: str = "a", seed: int = 1):
    model = bert_classifier()
    ah.add_adapter(model, name, lora())
    assert add_head(model, name, ModuleCopy("classifier")) == "classifier"
    perturb(model.classifier.copies[name].parameters(), seed)
    return model


# --- module copies ------------------------------------------------------------------------------


def test_copy_runs_while_active_and_the_original_comes_back(ids):
    plain = bert_classifier()
    base = logits(plain, ids)
    original = plain.classifier
    ah.add_adapter(plain, "a", lora())
    lora_only = logits(plain, ids)
    add_head(plain, "a", ModuleCopy("classifier"))
    assert isinstance(plain.classifier, ModuleCopyLayer) and plain.classifier.base_layer is original
    assert torch.equal(logits(plain, ids), lora_only)  # a fresh copy is the original's exact twin
    perturb(plain.classifier.copies["a"].parameters())
    trained = logits(plain, ids)
    assert (trained - lora_only).abs().max() > 1e-2
    # the copy is the classifier the model code sees (attributes come from the module that runs)
    assert plain.classifier.weight is plain.classifier.copies["a"].weight
    with ah.disable_adapters(plain):
        assert torch.equal(logits(plain, ids), base)
        assert plain.classifier.weight is original.weight
    assert torch.equal(logits(plain, ids), trained)
    ah.set_active_adapters(plain, None)
    assert torch.equal(logits(plain, ids), base)
    ah.delete_adapter(plain, "a")
    assert plain.classifier is original and torch.equal(logits(plain, ids), base)


def test_copy_is_part_of_the_adapter(ids):
    model = with_copy()
    trained = model.classifier.copies["a"]
    tensors = adapter_tensors(model, "a")
    assert torch.equal(tensors["classifier.weight"], trained.weight) and torch.equal(
        tensors["classifier.bias"], trained.bias
    )
    assert adapter_heads(model, "a") == [ModuleCopy("classifier")]
    info = ah.list_adapters(model)[0]
    lora_params = sum(t.numel() for k, t in tensors.items() if ".lora_" in k)
    assert info.params == lora_params + trained.weight.numel() + trained.bias.numel() and info.heads == ("classifier",)
    assert "classifier" in ah.adapter_summary(model)
    share = ah.mark_only_adapters_trainable(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in trained.parameters()} <= trainable
    assert not any(id(p) in trainable for p in model.classifier.base_layer.parameters())
    assert share.trainable == info.params == trainable_parameters(model).trainable
    # the base state dict (what fingerprints read) is the plain model's: the copy is not in it
    assert set(base_state_dict(model)) == set(bert_classifier().state_dict())
    assert torch.equal(base_state_dict(model)["classifier.weight"], bert_classifier().classifier.weight)
    twin = copy.deepcopy(model)  # the wrapper answers attribute reads only once it is whole
    assert torch.equal(logits(twin, ids), logits(model, ids)) and twin.classifier.out_features == NUM_LABELS


def test_two_adapters_with_copies_of_one_module(ids):
    model = with_copy("a", seed=1)
    ah.add_adapter(model, "b", lora())
    add_head(model, "b", ModuleCopy("classifier"))
    perturb(model.classifier.copies["b"].parameters(), seed=2)
    ah.set_active_adapters(model, "a")
    out_a = logits(model, ids)
    ah.set_active_adapters(model, "b")
    out_b = logits(model, ids)
    assert (out_a - out_b).abs().max() > 1e-2
    with pytest.raises(UsageError, match="each replace classifier"):
        ah.set_active_adapters(model, ["a", "b"])
    assert torch.equal(logits(model, ids), out_b)  # the refused switch changed nothing
    ah.delete_adapter(model, "b")
    assert isinstance(model.classifier, ModuleCopyLayer) and model.classifier.adapter_names == ["a"]


def test_no_adapter_layer_goes_where_a_copy_runs():
    model = with_copy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UsageError, match="module copy replaces"):
        ah.add_adapter(model, "b", ah.LoRAConfig(r=2, target_modules=["classifier", "query"]))
    assert [a.name for a in ah.list_adapters(model)] == ["a"]
    assert model.state_dict().keys() == before.keys()  # rolled back: no LoRA left under the copy
    with pytest.raises(UsageError, match="carries adapter layers"):
        add_head(model, "a", ModuleCopy("bert.encoder.layer.0.attention.self.query"))
    add_head(model, "a", ModuleCopy("bert.pooler"))
    with pytest.raises(UsageError, match="inside or around"):
        add_head(model, "a", ModuleCopy("bert.pooler.dense"))


def test_copy_merges_into_the_base_and_unloads_to_the_trained_module(ids):
    model = with_copy()
    expected = logits(model, ids)
    original = model.classifier.base_layer.weight.detach().clone()
    ah.merge_adapters(model)
    models.assert_close(logits(model, ids), expected)
    ah.unmerge_adapters(model)
    assert torch.equal(model.classifier.base_layer.weight, original)  # bit for bit
    trained = model.classifier.copies["a"].weight.detach().clone()
    plain = merge_and_unload(model)
    assert type(plain.classifier) is nn.Linear and torch.equal(plain.classifier.weight, trained)
    models.assert_close(logits(plain, ids), expected)


def test_attach_weights_fills_copies_strictly(ids):
    source = with_copy()
    expected = logits(source, ids)
    tensors = adapter_tensors(source, "a")
    model = bert_classifier()
    attach_weights(model, "x", lora(), tensors, heads=[ModuleCopy("classifier")])
    assert torch.equal(logits(model, ids), expected)
    assert not any(p.requires_grad for p in adapter_parameters(model, "x"))  # frozen unless trainable
    bad_shape = {**tensors, "classifier.weight": torch.zeros(NUM_LABELS + 1, 32)}
    for broken, match in [
        ({k: v for k, v in tensors.items() if k != "classifier.bias"}, "missing classifier.bias"),
        ({**tensors, "classifier.extra": torch.zeros(1)}, "unexpected classifier.extra"),
        (bad_shape, r"wrong shape classifier.weight \(4, 32\) \(expected \(3, 32\)\)"),
    ]:
        fresh = bert_classifier()
        with pytest.raises(AdapterWeightsError, match=match):
            attach_weights(fresh, "y", lora(), broken, heads=[ModuleCopy("classifier")])
        assert type(fresh.classifier) is nn.Linear and ah.list_adapters(fresh) == []  # all or nothing


# --- prediction heads --------------------------------------------------------------------------


def test_prediction_head_reads_cls_and_is_part_of_the_adapter(ids):
    model = models.tiny_bert()
    base_keys = set(model.state_dict())
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4, init="bert"))
    assert add_head(model, "a", HeadConfig(num_labels=NUM_LABELS, layers=2)) == "heads"
    head = model.heads["a"]
    assert isinstance(model.heads, HeadLayer) and isinstance(head, PredictionHead)
    # AdapterHub's layout: dropout, linear, tanh, dropout, linear
    assert [type(m) for m in head] == [nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]
    with torch.no_grad():
        outputs = model(input_ids=ids)
        cls = outputs.last_hidden_state[:, 0]
        manual = head[4](torch.tanh(head[1](cls)))
        got = head_output(model, outputs)
    assert got.shape == (2, NUM_LABELS) and torch.equal(got, manual)
    assert torch.equal(model.heads(outputs.last_hidden_state), got) and torch.equal(
        head_output(model, outputs, "a"), got
    )
    assert sorted(k for k in adapter_tensors(model, "a") if k.startswith("heads.")) == [
        "heads.1.bias",
        "heads.1.weight",
        "heads.4.bias",
        "heads.4.weight",
    ]
    assert ah.list_adapters(model)[0].heads == ("heads",)
    assert set(base_state_dict(model)) == base_keys  # heads are no part of the base
    with pytest.raises(UsageError, match="unloading would drop"):
        merge_and_unload(model)
    ah.delete_adapter(model, "a")
    assert "heads" not in model._modules and set(model.state_dict()) == base_keys
    with pytest.raises(NotFoundError, match="no prediction heads"):
        head_output(model, outputs)


def test_head_types_give_their_shapes(ids):
    model = models.tiny_bert()
    ah.add_adapter(model, "t", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    add_head(model, "t", HeadConfig(head_type="tagging", num_labels=5, layers=1))
    ah.add_adapter(model, "q", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4), activate=False)
    add_head(model, "q", HeadConfig(head_type="question_answering", layers=1, activation_function=None))
    ah.add_adapter(model, "m", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4), activate=False)
    add_head(model, "m", HeadConfig(head_type="multiple_choice", num_labels=2, activation_function="relu"))
    with torch.no_grad():
        outputs = model(input_ids=ids)  # a batch of 2 sequences: 1 question with 2 choices
    assert head_output(model, outputs).shape == (2, 8, 5)  # "t" is the active one
    assert head_output(model, outputs, "q").shape == (2, 8, 2)
    assert head_output(model, outputs, "m").shape == (1, 2)
    assert [type(m) for m in model.heads["m"]] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    ah.set_active_adapters(model, ["t", "q"])
    with pytest.raises(UsageError, match="2 active adapters have a prediction head"):
        head_output(model, outputs)


def test_pooler_heads_need_the_pooler(ids):
    model = models.tiny_bert(pooler=True)
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    add_head(model, "a", HeadConfig(use_pooler=True, layers=1))
    with torch.no_grad():
        outputs = model(input_ids=ids)
        assert torch.equal(head_output(model, outputs), model.heads["a"][1](outputs.pooler_output))
        with pytest.raises(UsageError, match="pooler_output"):
            head_output(model, outputs.last_hidden_state)


def test_prediction_heads_load_strictly(ids):
    source = models.tiny_bert()
    ah.add_adapter(source, "a", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4, init="bert"))
    add_head(source, "a", HeadConfig(num_labels=NUM_LABELS))
    config, head = ah.list_adapters(source)[0], adapter_heads(source, "a")[0]
    assert config.kind == "bottleneck" and isinstance(head, HeadConfig)
    tensors = adapter_tensors(source, "a")
    with torch.no_grad():
        expected = head_output(source, source(input_ids=ids))
    bottleneck = ah.BottleneckConfig(style="pfeiffer", reduction_factor=4)
    model = models.tiny_bert()
    attach_weights(model, "b", bottleneck, tensors, heads=[head])
    with torch.no_grad():
        assert torch.equal(head_output(model, model(input_ids=ids)), expected)
    narrower = HeadConfig(num_labels=NUM_LABELS - 1)
    fresh = models.tiny_bert()
    with pytest.raises(AdapterWeightsError, match=r"wrong shape heads\.4\.weight \(3, 32\) \(expected \(2, 32\)\)"):
        attach_weights(fresh, "b", bottleneck, tensors, heads=[narrower])
    assert "heads" not in fresh._modules and ah.list_adapters(fresh) == []
    # one layer: [dropout, linear(32, 3)], so the file's second linear (heads.4) lands nowhere
    with pytest.raises(AdapterWeightsError, match=r"unexpected heads\.4\.weight"):
        attach_weights(fresh, "b", bottleneck, tensors, heads=[HeadConfig(num_labels=NUM_LABELS, layers=1)])
    assert "heads" not in fresh._modules and ah.list_adapters(fresh) == []


def test_heads_refuse_what_they_cannot_be():
    with pytest.raises(AdapterConfigError, match="head_type"):
        HeadConfig(head_type="masked_lm")
    with pytest.raises(AdapterConfigError, match="activation_function"):
        HeadConfig(activation_function="prelu")  # has parameters: AdapterHub's layout would shift
    with pytest.raises(AdapterConfigError, match="use_pooler"):
        HeadConfig(head_type="tagging", use_pooler=True)
    with pytest.raises(AdapterConfigError, match="num_labels"):
        HeadConfig(num_labels=0)
    with pytest.raises(AdapterConfigError, match="path"):
        ModuleCopy("")
    model = models.tiny_bert()
    ah.add_adapter(model, "a", ah.BottleneckConfig(style="pfeiffer", reduction_factor=4))
    with pytest.raises(TargetError, match="no module 'classifier'"):
        add_head(model, "a", ModuleCopy("classifier"))
    with pytest.raises(NotFoundError, match="unknown adapter"):
        add_head(model, "zz", HeadConfig())
    add_head(model, "a", HeadConfig())
    with pytest.raises(UsageError, match="already has a prediction head"):
        add_head(model, "a", HeadConfig())
    assert HeadConfig.from_dict(HeadConfig(label2id={"no": 0, "yes": 1}).to_dict()).id2label == {0: "no", 1: "yes"}
