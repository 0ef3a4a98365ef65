"""AdapterHub interop: adapters saved by the real `adapters` 1.3.0 (tools/make_adapterhub_fixtures.py,
transformers 4.57) load with transformers 5 and reproduce AdapterHub's outputs within 1e-5."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers  # noqa: F401

import adapterhub_client as ah
from adapterhub_client.errors import AdapterWeightsError, InvalidPackageError, UnsupportedAdapterError
from adapterhub_client.formats.adapterhub import is_adapterhub_dir, read_adapterhub
from tests import models  # noqa: F401  (sets offline/quiet transformers env)

FIX = Path(__file__).parents[1] / "fixtures" / "adapterhub"
CASES = {  # fixture -> (our kind, weights file)
    "seq_bn": ("bottleneck", "pytorch_adapter.bin"),
    "double_seq_bn": ("bottleneck", "adapter.safetensors"),
    "par_bn": ("bottleneck", "pytorch_adapter.bin"),
    "seq_bn_custom": ("bottleneck", "adapter.safetensors"),
    "lora": ("lora", "pytorch_adapter.bin"),
}


def run(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def fresh(base_model):
    import copy

    return copy.deepcopy(base_model)


def test_base_model_matches(base_model, data):
    inputs, expected = data
    assert torch.allclose(run(base_model, inputs), expected["base"], atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_match_adapterhub(base_model, data, case):
    inputs, expected = data
    kind, weights = CASES[case]
    assert (FIX / case / weights).is_file()
    model = fresh(base_model)
    pickled = weights.endswith(".bin")
    if pickled:  # AdapterHub's default format is a pickle: refused unless allowed explicitly
        with pytest.raises(InvalidPackageError, match="pickled"):
            ah.load_adapter(model, FIX / case)
        assert ah.list_adapters(model) == []
    name = ah.load_adapter(model, FIX / case, allow_pickle=pickled)  # dispatched to the AdapterHub reader
    assert name == case
    assert [(a.name, a.kind, a.active) for a in ah.list_adapters(model)] == [(case, kind, True)]
    got = run(model, inputs)
    # the adapter is not an identity, and we reproduce AdapterHub's output
    assert (got - expected["base"]).abs().max() > 1e-2
    assert (got - expected[case]).abs().max() <= 1e-5
    with ah.disable_adapters(model):
        assert torch.allclose(run(model, inputs), expected["base"], atol=1e-5)


def test_loaded_adapter_is_frozen_unless_trainable(base_model):
    model = fresh(base_model)  # through ah.load_adapter: its options reach the AdapterHub reader
    assert ah.load_adapter(model, FIX / "seq_bn", name="mine", trainable=True, allow_pickle=True) == "mine"
    ah.load_adapter(model, FIX / "double_seq_bn", activate=False)
    params = dict(model.named_parameters())
    assert all(p.requires_grad for k, p in params.items() if ".adapters.mine." in k)
    assert not any(p.requires_grad for k, p in params.items() if ".adapters.double_seq_bn." in k)
    assert {a.name: a.active for a in ah.list_adapters(model)} == {"mine": True, "double_seq_bn": False}


def test_mapped_configs():
    from adapterhub_client.formats.adapterhub import config_from_adapterhub

    meta, tensors = read_adapterhub(FIX / "seq_bn_custom")
    cfg = config_from_adapterhub(meta)
    assert (cfg.style, cfg.non_linearity, cfg.scaling, cfg.leave_out) == ("pfeiffer", "gelu", "learned", [1])
    assert cfg.reduction_factor == {"0": 4, "default": 8}
    meta, _ = read_adapterhub(FIX / "par_bn", allow_pickle=True)
    cfg = config_from_adapterhub(meta)
    assert (cfg.style, cfg.reduction_factor, cfg.scaling) == ("parallel", 2, 4.0)
    assert config_from_adapterhub(read_adapterhub(FIX / "double_seq_bn")[0]).non_linearity == "swish"


@pytest.mark.parametrize(
    "change,match",
    [
        ({"use_gating": True}, "use_gating"),
        ({"ln_after": True}, "ln_after"),
        ({"phm_layer": True}, "phm_layer"),
        ({"original_ln_before": False}, "placement"),
        ({"non_linearity": "mish"}, "non_linearity"),
        ({"architecture": "prefix_tuning"}, "prefix_tuning"),
    ],
)
def test_unsupported_options_are_refused(base_model, tmp_path, change, match):
    d = tmp_path / "a"
    shutil.copytree(FIX / "seq_bn", d)
    meta = json.loads((d / "adapter_config.json").read_text())
    meta["config"].update(change)
    (d / "adapter_config.json").write_text(json.dumps(meta))
    model = fresh(base_model)
    with pytest.raises(UnsupportedAdapterError, match=match):  # exit 7, as the same refusal from PEFT
        ah.load_adapter(model, d, allow_pickle=True)
    assert not ah.list_adapters(model)


def test_weights_that_do_not_fit_leave_the_model_unchanged(base_model, tmp_path):
    d = tmp_path / "a"
    shutil.copytree(FIX / "seq_bn", d)
    meta = json.loads((d / "adapter_config.json").read_text())
    meta["config"]["leave_out"] = [1]  # config says layer 0 only, weights have both layers
    (d / "adapter_config.json").write_text(json.dumps(meta))
    model = fresh(base_model)
    # the layer-1 tensors land on no adapted module; the error names them as the file has them
    with pytest.raises(AdapterWeightsError, match=r"unexpected encoder\.layer\.1\.output\.adapters\.seq_bn\."):
        ah.load_adapter(model, d, allow_pickle=True)
    assert not ah.list_adapters(model)
    assert not any(".adapters." in k for k, _ in model.named_parameters())


@pytest.mark.parametrize("case", ["double_seq_bn", "lora"])
def test_weights_that_do_not_fit_name_the_full_keys(base_model, tmp_path, case):
    from safetensors.torch import save_file

    _, tensors = read_adapterhub(FIX / case, allow_pickle=True)
    key = sorted(tensors)[0]  # e.g. encoder.layer.0.attention.output.adapters.double_seq_bn.adapter_down.0.bias
    extra = key.rpartition(".")[0] + ".extra"
    for label, changed, match in [
        ("missing", {k: v for k, v in tensors.items() if k != key}, key),
        ("unexpected", {**tensors, extra: torch.zeros(2)}, extra),
    ]:
        d = tmp_path / label
        shutil.copytree(FIX / case, d)
        for f in ("adapter.safetensors", "pytorch_adapter.bin"):
            (d / f).unlink(missing_ok=True)
        save_file(changed, str(d / "adapter.safetensors"))
        model = fresh(base_model)
        with pytest.raises(AdapterWeightsError, match=f"{label} {re.escape(match)}"):
            ah.load_adapter(model, d)
        assert not ah.list_adapters(model)


def test_format_detection(tmp_path):
    assert all(is_adapterhub_dir(FIX / c) for c in CASES)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    assert not is_adapterhub_dir(tmp_path)


def test_fixtures_stay_small_and_overhead_recorded():
    size = sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file())
    assert size < 2_000_000
    bench = json.loads((FIX / "adapterhub_overhead.json").read_text())
    assert set(bench["overhead"]) == {"pfeiffer", "houlsby"} and bench["versions"]["adapters"] == "1.3.0"
