"""Every error a user can cause through the torch API is an :class:`AdapterError` (the CLI prints it as
one line with its exit code); a bare ``ValueError``/``KeyError``/``TypeError``/... escaping is a bug
("internal error"). Walks every public function of ``nn`` and the configs, and
``formats.load_adapter``/``save_adapter``/``export_peft``, with bad arguments, bad directories and
tensors that do not fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from adapterhub_client import formats
from adapterhub_client.errors import (
    AdapterConfigError,
    AdapterError,
    AdapterWeightsError,
    IncompatibleError,
    InvalidPackageError,
    NotFoundError,
    UnsupportedAdapterError,
    UsageError,
)
from adapterhub_client.nn import model as api
from adapterhub_client.nn.base import AdapterConfig
from adapterhub_client.nn.bottleneck import BottleneckConfig
from adapterhub_client.nn.lora import LoRAConfig
from tests import models

Case = Callable[[Path], Callable[[], Any]]
CASES: dict[str, tuple[type[AdapterError], Case]] = {}


def case(label: str, expected: type[AdapterError] = AdapterError) -> Callable[[Case], Case]:
    """Register `fn(tmp_path) -> thunk`: calling the thunk must raise `expected` (an AdapterError)."""

    def register(fn: Case) -> Case:
        assert label not in CASES, label
        CASES[label] = (expected, fn)
        return fn

    return register


def llama_with(name: str = "a", **kw: Any) -> nn.Module:
    model = models.tiny_llama()
    api.add_adapter(model, name, LoRAConfig(r=4, target_modules=["q_proj"], **kw))
    return model


def peft_dir(tmp_path: Path, config: Any = None, weights: dict[str, Any] | None = None) -> Path:
    """A PEFT-style directory: a config (dict, or raw text) and optional safetensors weights."""
    d = tmp_path / "peft"
    d.mkdir(exist_ok=True)
    if config is None:
        config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (d / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        save_file(weights, str(d / "adapter_model.safetensors"))
    return d


def exported(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A valid PEFT export of a LoRA on q_proj (2 layers) and its tensors by PEFT key."""
    from safetensors.torch import load_file

    out = formats.export_peft(llama_with(init="none"), "a", tmp_path / "exported")
    return out, load_file(str(out / "adapter_model.safetensors"))


# --- configs ----------------------------------------------------------------------------------

BAD_LORA = {
    "r": [0, -4, 2.5, "8", None, True],
    "alpha": ["x", None, [1]],
    "dropout": [-0.1, 1.0, "0.1", None],
    "bias": ["some", None, 3],
    "init": ["xavier", 3],
    "rslora": ["yes", 1],
    "dora": ["no", None],
    "target_modules": [5, [1, 2], ["q_proj", None], "(unclosed"],
    "exclude_modules": [5, [3], "[bad"],
    "layers_to_transform": ["1", [0, "1"], 1.5, [True]],
    "layers_pattern": [3, ["layers", 2]],
    "rank_pattern": [["q_proj"], {"q_proj": 0}, {"q_proj": "4"}, {"(bad": 4}, {3: 4}],
    "alpha_pattern": [["q_proj"], {"q_proj": "8"}, {"(bad": 8}],
}
BAD_BOTTLENECK = {
    "style": ["sideways", None, 3],
    "reduction_factor": [0, -2, "x", {"0": 0, "default": 4}, {"0": "4"}, [4], None],
    "bottleneck_size": [0, -1, "x", {"default": 0}, 2.5],
    "non_linearity": ["mish", 3],
    "scaling": ["big", None, True, [1.0]],
    "dropout": [-0.5, 1.0, "0.1"],
    "init": ["xavier", None],
    "leave_out": [["a"], 5, "0", [1.5], [-1]],
    "architecture": ["nope", 3],
    "sites": [
        "output.dense",
        [{}],
        [{"target": 3}],
        [{"target": "output.dense", "mode": "sideways"}],
        [{"target": "output.dense", "input": 5}],
        ["x"],
        [{"target": "x", "extra": 1}],
    ],
}


def config_cases() -> list[tuple[type, str, Any]]:
    out = [(LoRAConfig, f, v) for f, values in BAD_LORA.items() for v in values]
    out += [(BottleneckConfig, f, v) for f, values in BAD_BOTTLENECK.items() for v in values]
    return out


@pytest.mark.parametrize("cls,field,value", config_cases(), ids=lambda x: repr(x)[:40])
def test_invalid_config_values_raise_one_line_config_errors(cls, field, value):
    kw = {"target_modules": ["q_proj"]} if cls is LoRAConfig and field != "target_modules" else {}
    with pytest.raises(AdapterConfigError) as info:
        cls(**kw, **{field: value})
    message = str(info.value)
    assert field in message and "\n" not in message, message


def test_layers_to_transform_needs_list_targets():
    with pytest.raises(AdapterConfigError, match="layers_to_transform"):
        LoRAConfig(target_modules=".*q_proj", layers_to_transform=[0])


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"type": "prefix_tuning"}, UnsupportedAdapterError),
        ({"kind": None}, UnsupportedAdapterError),
        ({}, UnsupportedAdapterError),
        ("lora", AdapterConfigError),
        (["lora"], AdapterConfigError),
        ({"type": "lora", "r": -1}, AdapterConfigError),
        ({"type": "lora", "r": "8"}, AdapterConfigError),
        ({"type": "bottleneck", "style": "sideways"}, AdapterConfigError),
        ({"type": "bottleneck", "leave_out": "x"}, AdapterConfigError),
    ],
)
def test_config_from_dict(data, expected):
    with pytest.raises(expected):
        AdapterConfig.from_dict(data)


def test_valid_configs_still_construct():
    LoRAConfig(
        r=4,
        alpha=8.5,
        target_modules={"q_proj", "v_proj"},
        init=True,
        layers_to_transform=1,
        rank_pattern={"q_proj": 2},
        alpha_pattern={"q_proj": 3.0},
        exclude_modules=".*k_proj",
    )
    LoRAConfig(target_modules="all-linear", init=False, bias="lora_only", dropout=0.5, layers_pattern=["layers"])
    BottleneckConfig(
        style="parallel",
        reduction_factor={"0": 2, "default": 4.0},
        scaling="channel",
        non_linearity="GELU",
        leave_out=(0,),
        bottleneck_size={"1": 3, "default": 5},
    )
    BottleneckConfig(
        sites=[{"target": "mlp.up_proj", "mode": "parallel", "input": "mlp", "role": "ffn"}],
        scaling=2,
        architecture="bert",
    )


# --- nn functions -----------------------------------------------------------------------------

NOT_A_MODEL = [None, "model", 3]


@pytest.mark.parametrize("bad", NOT_A_MODEL, ids=repr)
@pytest.mark.parametrize(
    "fn,args",
    [
        (api.add_adapter, ("a", LoRAConfig(target_modules=["q_proj"]))),
        (api.set_active_adapters, ("a",)),
        (api.merge_adapters, ()),
        (api.unmerge_adapters, ()),
        (api.merge_and_unload, ()),
        (api.mark_only_adapters_trainable, ()),
        (api.adapter_summary, ()),
        (api.delete_adapter, ("a",)),
        (api.list_adapters, ()),
        (api.adapter_parameters, ("a",)),
        (api.trainable_parameters, ()),
        (api.base_state_dict, ()),
        (api.adapter_tensors, ("a",)),
        (api.adapter_layers, ("a",)),
        (api.attach_weights, ("a", LoRAConfig(target_modules=["q_proj"]), {})),
        (formats.load_adapter, ("/nonexistent",)),
        (formats.save_adapter, ("a", "/tmp/out")),
        (formats.export_peft, ("a", "/tmp/out")),
    ],
    ids=lambda x: getattr(x, "__name__", "args"),
)
def test_not_a_model_is_a_usage_error(fn, args, bad):
    with pytest.raises(UsageError, match="nn.Module"):
        fn(bad, *args)


def test_disable_adapters_on_not_a_model():
    with pytest.raises(UsageError, match="nn.Module"), api.disable_adapters(None):
        pass


@pytest.mark.parametrize("name", ["", "a.b", 5, None, ("a",)], ids=repr)
def test_bad_adapter_names_on_add(name):
    with pytest.raises(UsageError):
        api.add_adapter(models.tiny_llama(), name, LoRAConfig(target_modules=["q_proj"]))


@case("add: config is a dict", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: api.add_adapter(models.tiny_llama(), "a", {"r": 4})


@case("add: config is the class", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: api.add_adapter(models.tiny_llama(), "a", LoRAConfig)


@case("add: duplicate name", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    return lambda: api.add_adapter(model, "a", LoRAConfig(target_modules=["v_proj"]))


@case("add: targets match nothing", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: api.add_adapter(models.tiny_llama(), "a", LoRAConfig(target_modules=["nothing"]))


@case("add: unsupported module type", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: api.add_adapter(models.tiny_llama(), "a", LoRAConfig(target_modules=["self_attn"]))


@case("add: bottleneck with no preset", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: api.add_adapter(nn.Sequential(nn.Linear(4, 4)), "a", BottleneckConfig())


@case("add: bottleneck site input module missing", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    cfg = BottleneckConfig(sites=[{"target": "mlp.down_proj", "mode": "parallel", "input": "nothing.here"}])
    return lambda: api.add_adapter(models.tiny_llama(), "a", cfg)


@case("add: bottleneck per-layer width without default", AdapterConfigError)
def _(tmp: Path) -> Callable[[], Any]:
    cfg = BottleneckConfig(style="houlsby", reduction_factor={"0": 4}, architecture="llama")
    return lambda: api.add_adapter(models.tiny_llama(), "a", cfg)


@case("add: bottleneck on a module of unknown width", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = nn.Sequential(nn.ModuleList([nn.Sequential(nn.ReLU())]))
    return lambda: api.add_adapter(model, "a", BottleneckConfig(sites=[{"target": "0", "mode": "output"}]))


@case("add: bottleneck mixing layernorm and output on one module", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    api.add_adapter(model, "n", BottleneckConfig(sites=[{"target": "mlp.down_proj", "mode": "layernorm"}]))
    return lambda: api.add_adapter(model, "o", BottleneckConfig(sites=[{"target": "mlp.down_proj"}]))


@case("add: parallel adapters reading different inputs", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    site = {"target": "mlp.down_proj", "mode": "parallel"}
    api.add_adapter(model, "p", BottleneckConfig(sites=[{**site, "input": "mlp.up_proj"}]))
    return lambda: api.add_adapter(model, "q", BottleneckConfig(sites=[{**site, "input": "mlp.gate_proj"}]))


MULTI = ("set_active_adapters", "merge_adapters", "mark_only_adapters_trainable")  # a name or a list
SINGLE = ("delete_adapter", "adapter_parameters", "adapter_tensors", "adapter_layers")
BAD_NAMES: list[tuple[Any, type[AdapterError]]] = [("nope", NotFoundError), (5, UsageError), (b"a", UsageError)]


def _name_case(fn_name: str, bad: Any) -> Case:
    def build(tmp: Path) -> Callable[[], Any]:
        model = llama_with()
        return lambda: getattr(api, fn_name)(model, bad)

    return build


for _fn in MULTI + SINGLE:
    for _bad, _expected in BAD_NAMES + (
        [(["a", "nope"], NotFoundError), ([1], UsageError)]
        if _fn in MULTI
        else [(None, UsageError), (["a"], UsageError)]
    ):
        case(f"{_fn}: adapter name {_bad!r}", _expected)(_name_case(_fn, _bad))


@case("set_active: names of the wrong type", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    return lambda: api.set_active_adapters(model, 3.5)


@case("set_active: while merged", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    api.add_adapter(model, "b", LoRAConfig(target_modules=["q_proj"]), activate=False)
    api.merge_adapters(model)
    return lambda: api.set_active_adapters(model, "b")


@case("merge: bottleneck", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    api.add_adapter(model, "b", BottleneckConfig(architecture="llama"))
    return lambda: api.merge_adapters(model)


@case("merge: tied weights", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_gpt2(lm_head=True)
    api.add_adapter(model, "a", LoRAConfig(target_modules=["wte"]))
    return lambda: api.merge_adapters(model)


@case("merge: names of the wrong type", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    return lambda: api.merge_adapters(model, 3)


@case("merge_and_unload: unknown adapter", NotFoundError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    return lambda: api.merge_and_unload(model, "nope")


@case("delete: merged adapter", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    api.merge_adapters(model)
    return lambda: api.delete_adapter(model, "a")


@case("mark_trainable: names of the wrong type", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = llama_with()
    return lambda: api.mark_only_adapters_trainable(model, 7)


# --- attach_weights: tensors that do not fit --------------------------------------------------


def _attach(tensors: Any, config: Any = None, model: nn.Module | None = None) -> Callable[[], Any]:
    model = model if model is not None else models.tiny_llama()
    config = config if config is not None else LoRAConfig(r=4, target_modules=["q_proj"])
    return lambda: api.attach_weights(model, "w", config, tensors)


def _good() -> dict[str, torch.Tensor]:
    return api.adapter_tensors(llama_with("x"), "x")


@case("attach: tensors not a mapping", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach(list(_good().values()))


@case("attach: a value that is not a tensor", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({**_good(), "layers.0.self_attn.q_proj.lora_A": [[0.0] * 32] * 4})


@case("attach: a key that is not a string", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({**_good(), 3: torch.zeros(1)})


@case("attach: wrong shape", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({k: v[:2] if k.endswith("lora_A") else v for k, v in _good().items()})


@case("attach: wrong rank everywhere", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach(_good(), LoRAConfig(r=8, target_modules=["q_proj"]))


@case("attach: stray key", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({**_good(), "layers.0.mlp.up_proj.lora_A": torch.zeros(4, 32)})


@case("attach: missing key", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({k: v for k, v in _good().items() if not k.endswith("lora_B")})


@case("attach: no tensors", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach({})


@case("attach: bias of the wrong shape", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_gpt2()
    cfg = LoRAConfig(r=4, target_modules=["c_attn"], bias="lora_only")
    api.add_adapter(model, "x", cfg)
    tensors = api.adapter_tensors(model, "x")
    api.delete_adapter(model, "x")
    bad = {k: (torch.zeros(1) if k.endswith(".bias") else v) for k, v in tensors.items()}  # broadcastable
    return _attach(bad, cfg, model)


@case("attach: bias missing", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_gpt2()
    cfg = LoRAConfig(r=4, target_modules=["c_attn"], bias="all")
    api.add_adapter(model, "x", cfg)
    tensors = {k: v for k, v in api.adapter_tensors(model, "x").items() if not k.endswith(".bias")}
    api.delete_adapter(model, "x")
    return _attach(tensors, cfg, model)


@case("attach: bottleneck wrong shape", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    cfg = BottleneckConfig(architecture="llama")
    api.add_adapter(model, "x", cfg)
    tensors = {k: v[:1] for k, v in api.adapter_tensors(model, "x").items()}
    api.delete_adapter(model, "x")
    return _attach(tensors, cfg, model)


@case("attach: bottleneck missing tensors", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    cfg = BottleneckConfig(architecture="llama")
    api.add_adapter(model, "x", cfg)
    tensors = {k: v for k, v in api.adapter_tensors(model, "x").items() if "adapter_up" not in k}
    api.delete_adapter(model, "x")
    return _attach(tensors, cfg, model)


@case("attach: config is not a config", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return _attach(_good(), config={"r": 4})


# --- formats.load_adapter ---------------------------------------------------------------------


@case("load: path does not exist", NotFoundError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), tmp / "missing")


@case("load: path is a file", NotFoundError)
def _(tmp: Path) -> Callable[[], Any]:
    (tmp / "f.txt").write_text("x")
    return lambda: formats.load_adapter(models.tiny_llama(), tmp / "f.txt")


@case("load: path is None", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), None)


@case("load: path is a number", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), 3)


@case("load: empty dir", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), tmp)


@case("load: invalid adapter name", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, _ = exported(tmp)
    return lambda: formats.load_adapter(models.tiny_llama(), d, "a.b")


@case("load: name already used", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, _ = exported(tmp)
    model = llama_with("dup")
    return lambda: formats.load_adapter(model, d, "dup")


@case("load: broken JSON", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp, "{not json"))


@case("load: config is a JSON list", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp, "[1, 2]"))


@case("load: config is not UTF-8", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = peft_dir(tmp)
    (d / "adapter_config.json").write_bytes(b"\xff\xfe{")
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT without weights", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp))


@case("load: PEFT unsupported type", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp, {"peft_type": "IA3"}))


@case("load: PEFT unsupported option", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    cfg = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "lora_bias": True}
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp, cfg))


@case("load: PEFT base-changing init", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    cfg = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "init_lora_weights": "pissa"}
    return lambda: formats.load_adapter(models.tiny_llama(), peft_dir(tmp, cfg))


@pytest.mark.parametrize(
    "field,value",
    [
        ("r", -1),
        ("r", "4"),
        ("lora_alpha", "x"),
        ("lora_dropout", 2),
        ("target_modules", 5),
        ("bias", "some"),
        ("use_dora", "yes"),
    ],
)
def test_load_peft_config_with_bad_values(tmp_path, field, value):
    d, _ = exported(tmp_path)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg[field] = value
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidPackageError, match=field.split("_")[-1]):
        formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT target the model lacks", IncompatibleError)
def _(tmp: Path) -> Callable[[], Any]:
    d, _ = exported(tmp)
    return lambda: formats.load_adapter(models.tiny_gpt2(), d)


@case("load: PEFT pickle without allow_pickle", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    torch.save(tensors, d / "adapter_model.bin")
    (d / "adapter_model.safetensors").unlink()
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT garbage safetensors", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, _ = exported(tmp)
    (d / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT garbage pickle with allow_pickle", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, _ = exported(tmp)
    (d / "adapter_model.safetensors").unlink()
    (d / "adapter_model.bin").write_bytes(b"not a pickle at all")
    return lambda: formats.load_adapter(models.tiny_llama(), d, allow_pickle=True)


@case("load: PEFT pickle of a list with allow_pickle", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    (d / "adapter_model.safetensors").unlink()
    torch.save(list(tensors.values()), d / "adapter_model.bin")
    return lambda: formats.load_adapter(models.tiny_llama(), d, allow_pickle=True)


@case("load: PEFT tensors of the wrong shape", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    save_file({k: v[:2].contiguous() for k, v in tensors.items()}, str(d / "adapter_model.safetensors"))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT stray tensor", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    tensors["base_model.model.layers.0.mlp.up_proj.lora_A.weight"] = torch.zeros(4, 32)
    save_file(tensors, str(d / "adapter_model.safetensors"))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT saved embedding that replaces the base", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    tensors["base_model.model.embed_tokens.base_layer.weight"] = torch.ones(96, 32)
    save_file(tensors, str(d / "adapter_model.safetensors"))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: PEFT saved base weight for a module the model lacks", IncompatibleError)
def _(tmp: Path) -> Callable[[], Any]:
    d, tensors = exported(tmp)
    tensors["base_model.model.nothing.base_layer.weight"] = torch.ones(2, 2)
    save_file(tensors, str(d / "adapter_model.safetensors"))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


def _package(tmp: Path) -> Path:
    return formats.save_adapter(llama_with(init="none"), "a", tmp / "pkg")


@case("load: package with broken manifest", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _package(tmp)
    (d / "manifest.json").write_text("{")
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: package with unknown adapter type", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _package(tmp)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["adapter"]["type"] = "prefix_tuning"
    (d / "manifest.json").write_text(json.dumps(manifest))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: package with an invalid config value", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _package(tmp)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["adapter"]["config"]["r"] = -3
    (d / "manifest.json").write_text(json.dumps(manifest))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: package with missing weights", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _package(tmp)
    (d / "adapter.safetensors").unlink()
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@case("load: package weights that do not fit", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _package(tmp)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["adapter"]["config"]["r"] = 2
    (d / "manifest.json").write_text(json.dumps(manifest))
    return lambda: formats.load_adapter(models.tiny_llama(), d)


@pytest.mark.parametrize("suffix", [".PT", ".bin", ".pth", ".ckpt"])
def test_package_with_pickled_weights_needs_allow_pickle(tmp_path, suffix):
    from adapterhub_client._fs import file_digest
    from adapterhub_client.manifest import new_manifest, write_manifest

    d = _package(tmp_path)
    source = llama_with(init="none")
    torch.save(api.adapter_tensors(source, "a"), d / f"adapter{suffix}")
    (d / "adapter.safetensors").unlink()
    sha, size = file_digest(d / f"adapter{suffix}")
    data = new_manifest(
        "local/a", "0.1.0", "lora", LoRAConfig(r=4, target_modules=["q_proj"]).to_dict(), {"name": None}, []
    )
    data["files"] = [{"path": f"adapter{suffix}", "sha256": sha, "size": size}]
    write_manifest(d, data)
    with pytest.raises(InvalidPackageError, match="allow_pickle"):
        formats.load_adapter(models.tiny_llama(), d)
    model = models.tiny_llama()
    assert formats.load_adapter(model, d, allow_pickle=True) == "a"
    assert all(torch.equal(v, api.adapter_tensors(source, "a")[k]) for k, v in api.adapter_tensors(model, "a").items())


def _adapterhub(tmp: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> Path:
    d = tmp / "ah"
    d.mkdir(exist_ok=True)
    meta = {"name": "x", "model_class": "BertModel", "model_type": "bert", "hidden_size": 32, "config": config}
    (d / "adapter_config.json").write_text(json.dumps(meta))
    save_file(
        tensors or {"encoder.layer.0.output.adapters.x.adapter_up.weight": torch.zeros(32, 2)},
        str(d / "adapter.safetensors"),
    )
    return d


def _bert() -> nn.Module:
    return models.tiny_bert()


SEQ_BN = {"architecture": "bottleneck", "output_adapter": True, "original_ln_before": True, "reduction_factor": 16}


@case("load: AdapterHub unsupported option", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, {**SEQ_BN, "use_gating": True}))


@case("load: AdapterHub unsupported architecture", UnsupportedAdapterError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, {"architecture": "prefix_tuning"}))


@case("load: AdapterHub bad config value", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, {**SEQ_BN, "reduction_factor": "x"}))


@case("load: AdapterHub hidden size differs", IncompatibleError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _adapterhub(tmp, SEQ_BN)
    meta = json.loads((d / "adapter_config.json").read_text())
    meta["hidden_size"] = 64
    (d / "adapter_config.json").write_text(json.dumps(meta))
    return lambda: formats.load_adapter(_bert(), d)


@case("load: AdapterHub key without '.adapters.'", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, SEQ_BN, {"encoder.layer.0.x": torch.zeros(1)}))


@case("load: AdapterHub key without a layer index", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, SEQ_BN, {"pooler.adapters.x.a": torch.zeros(1)}))


@case("load: AdapterHub weights that do not fit", AdapterWeightsError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, SEQ_BN))


@case("load: AdapterHub LoRA on a module the model lacks", IncompatibleError)
def _(tmp: Path) -> Callable[[], Any]:
    tensors = {"decoder.q.loras.x.lora_A": torch.zeros(2, 32), "decoder.q.loras.x.lora_B": torch.zeros(32, 2)}
    return lambda: formats.load_adapter(_bert(), _adapterhub(tmp, {"architecture": "lora", "r": 2}, tensors))


@case("load: AdapterHub config without 'config'", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _adapterhub(tmp, SEQ_BN)
    (d / "adapter_config.json").write_text(json.dumps({"model_class": "BertModel", "config": "bottleneck"}))
    return lambda: formats.load_adapter(_bert(), d)


@case("load: AdapterHub pickle without allow_pickle", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    d = _adapterhub(tmp, SEQ_BN)
    (d / "adapter.safetensors").unlink()
    torch.save({}, d / "pytorch_adapter.bin")
    return lambda: formats.load_adapter(_bert(), d)


# --- formats.save_adapter / export_peft -------------------------------------------------------


@case("save: unknown adapter", NotFoundError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.save_adapter(llama_with(), "nope", tmp / "out")


@case("save: out_dir is a file", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    (tmp / "file").write_text("x")
    return lambda: formats.save_adapter(llama_with(), "a", tmp / "file")


@case("save: out_dir is None", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.save_adapter(llama_with(), "a", None)


@case("save: invalid version", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.save_adapter(llama_with(), "a", tmp / "out", version="not a version")


@case("save: invalid package name", InvalidPackageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.save_adapter(llama_with(), "a", tmp / "out", name="no slash")


@case("export: unknown adapter", NotFoundError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.export_peft(llama_with(), "nope", tmp / "out")


@case("export: bottleneck adapter", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    model = models.tiny_llama()
    api.add_adapter(model, "b", BottleneckConfig(architecture="llama"))
    return lambda: formats.export_peft(model, "b", tmp / "out")


@case("export: out_dir is a file", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    (tmp / "file").write_text("x")
    return lambda: formats.export_peft(llama_with(), "a", tmp / "file")


@case("export: out_dir is a number", UsageError)
def _(tmp: Path) -> Callable[[], Any]:
    return lambda: formats.export_peft(llama_with(), "a", 3)


# --- the walk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(CASES))
def test_user_errors_are_adapter_errors(tmp_path, label):
    expected, build = CASES[label]
    thunk = build(tmp_path)
    try:
        thunk()
    except AdapterError as exc:
        assert isinstance(exc, expected), f"{label}: {type(exc).__name__} is not a {expected.__name__}: {exc}"
        assert str(exc) and "\n" not in str(exc), f"{label}: the CLI prints errors as one line: {exc!r}"
    except Exception as exc:
        pytest.fail(f"{label}: a bare {type(exc).__name__} escaped: {exc}")
    else:
        pytest.fail(f"{label}: no error raised")


def test_failed_loads_leave_no_adapter_behind(tmp_path):
    d, tensors = exported(tmp_path)
    save_file({k: v[:2].contiguous() for k, v in tensors.items()}, str(d / "adapter_model.safetensors"))
    model = models.tiny_llama()
    with pytest.raises(AdapterWeightsError):
        formats.load_adapter(model, d)
    assert api.list_adapters(model) == []
    assert not any("lora" in k for k in model.state_dict())
