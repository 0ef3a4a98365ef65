"""4-bit bases (nn.quant, formats.quantized) without bitsandbytes: the math's invariants, the layer,
quantizing whole models (also on the meta device), the safetensors round trip, streaming a checkpoint,
and LoRA / bottleneck adapters training on top. Bit-exactness with bitsandbytes: tests/interop."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub_client as ah
from adapterhub_client.errors import InvalidPackageError, NotFoundError, UsageError
from adapterhub_client.nn.quant import (
    Linear4bit,
    codebook,
    dequantize_4bit,
    quantization_of,
    quantize_4bit,
)
from adapterhub_client.nn.targets import kind_of
from tests import models


def dequantized_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The fp32 model whose quantized layers are plain nn.Linear holding the dequantized weights."""
    ref = copy.deepcopy(model)
    for path, layer in [(p, m) for p, m in ref.named_modules() if isinstance(m, Linear4bit)]:
        dense = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(layer.dequantize(torch.float32))
            if layer.bias is not None:
                dense.bias.copy_(layer.bias)
        ref.set_submodule(path, dense)
    return ref


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# --- the math ----------------------------------------------------------------------------------


def test_codebooks_span_minus_one_to_one():
    nf4, fp4 = codebook("nf4"), codebook("fp4")
    assert nf4.shape == fp4.shape == (16,)
    assert torch.equal(nf4, nf4.sort().values) and nf4[0] == -1 and nf4[7] == 0 and nf4[15] == 1
    assert fp4.abs().max() == 1 and fp4[3] == 1 and fp4[11] == -1  # bit patterns 0b011 / 0b1011: 12 / 12


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_round_trip_error_is_bounded_by_the_codebook_gaps(quant_type, double_quant):
    torch.manual_seed(0)
    w = torch.randn(48, 96)
    codes, state = quantize_4bit(w, 64, quant_type, double_quant)
    assert codes.shape == (48 * 96 // 2, 1) and codes.dtype == torch.uint8
    restored = dequantize_4bit(codes, state)
    absmax = w.view(-1, 64).abs().amax(1, keepdim=True)
    gap = codebook(quant_type).sort().values.diff().max()
    err = (restored - w).view(-1, 64).abs()
    slack = 1.02 if double_quant else 1.0001  # the 8-bit absmax moves each block's scale a little
    assert (err <= absmax * gap / 2 * slack + 1e-6).all()
    assert torch.equal(restored.view(-1, 64).abs().amax(1), absmax.squeeze(1)) or double_quant


def test_zero_blocks_restore_to_zero_and_odd_counts_pad():
    w = torch.zeros(3, 5)
    w[2, 4] = 0.5
    codes, state = quantize_4bit(w, 64, "nf4", True)
    assert codes.numel() == 8  # 15 values, padded to 16
    restored = dequantize_4bit(codes, state)
    assert restored.shape == (3, 5) and restored[2, 4] == pytest.approx(0.5, rel=0.02)
    assert (restored.view(-1)[:14] == 0).all()


def test_meta_weights_give_meta_codes_of_the_right_sizes():
    codes, state = quantize_4bit(torch.empty(300, 70, device="meta"), 64, "nf4", True)
    assert codes.is_meta and codes.shape == (10500, 1)
    assert state.absmax.shape == (329,) and state.absmax.dtype == torch.uint8
    assert state.nested_absmax.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quant_type": "int4"}, "quant_type"),
        ({"blocksize": 100}, "blocksize"),
        ({"blocksize": True}, "blocksize"),
        ({"weight": torch.ones(4, dtype=torch.int64)}, "float32, float16 or bfloat16"),
        ({"weight": torch.ones(0)}, "empty"),
    ],
)
def test_bad_quantization_arguments_are_usage_errors(kwargs, message):
    weight = kwargs.pop("weight", torch.ones(8, 8))
    with pytest.raises(UsageError, match=message):
        quantize_4bit(weight, **kwargs)


# --- the layer ---------------------------------------------------------------------------------


def test_a_768_by_1024_layer_costs_under_a_seventh_of_its_fp32_bytes():
    layer = Linear4bit.from_linear(torch.nn.Linear(768, 1024))
    assert layer.quantized_nbytes() / (768 * 1024 * 4) == pytest.approx(0.129, abs=0.001)


def test_layer_forward_is_linear_on_the_dequantized_weight_in_the_compute_dtype():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    x = torch.randn(3, 7, 96)
    for compute in (torch.float32, torch.bfloat16, None):
        layer = Linear4bit.from_linear(linear, compute_dtype=compute)
        assert kind_of(layer) == "linear" and layer.bias is linear.bias
        cd = compute or x.dtype
        expected = torch.nn.functional.linear(x.to(cd), layer.dequantize(cd), linear.bias.to(cd)).float()
        with torch.no_grad():
            out = layer(x)
        assert out.dtype == x.dtype and torch.equal(out, expected)
    assert layer.weight.shape == (40, 96) and torch.equal(layer.weight, layer.dequantize())


def test_layer_backward_matches_autograd_through_the_dequantized_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    layer = Linear4bit.from_linear(linear, compute_dtype=torch.float32)
    with torch.inference_mode():  # its reused buffers are made here first, then written with grad mode on
        layer(torch.randn(5, 64))
    x = torch.randn(5, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    layer(x).pow(2).sum().backward()
    bias = linear.bias.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x2, layer.dequantize(), bias).pow(2).sum().backward()
    models.assert_close(x.grad, x2.grad, 1e-5)
    models.assert_close(linear.bias.grad, bias.grad, 1e-5)


def test_dtype_casts_leave_the_scales_and_device_moves_keep_them():
    layer = Linear4bit.from_linear(torch.nn.Linear(64, 16), double_quant=False)
    before = layer.dequantize()
    layer.to(torch.bfloat16)
    assert layer.absmax.dtype == torch.float32 and layer.bias.dtype == torch.bfloat16
    assert torch.equal(layer.dequantize(), before)


def test_layer_state_dict_round_trips_and_plain_weights_quantize_on_load():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 24)
    layer = Linear4bit.from_linear(linear, quant_type="fp4", blocksize=32)
    fresh = Linear4bit(64, 24)
    fresh.load_state_dict(layer.state_dict())
    assert (fresh.quant_type, fresh.blocksize) == ("fp4", 32) and torch.equal(fresh.dequantize(), layer.dequantize())
    plain = Linear4bit(64, 24, quant_type="fp4", blocksize=32)
    plain.load_state_dict(linear.state_dict())
    assert torch.equal(plain.codes, layer.codes)
    with pytest.raises(RuntimeError, match="absmax"):
        bad = layer.state_dict()
        bad["weight.absmax"] = bad["weight.absmax"][:-1]
        Linear4bit(64, 24).load_state_dict(bad)


# --- whole models ------------------------------------------------------------------------------


def test_quantize_replaces_linears_but_the_lm_head_and_skipped_modules():
    model = models.tiny_llama(lm_head=True)
    report = ah.quantize(model, blocksize=32, skip=["down_proj"])
    assert isinstance(model.model.layers[0].self_attn.q_proj, Linear4bit)
    assert type(model.lm_head) is torch.nn.Linear and type(model.model.layers[1].mlp.down_proj) is torch.nn.Linear
    assert len(report.modules) == 2 * 6 and "model.layers.0.mlp.up_proj" in report.modules
    # a 32 x 32 layer: 512 bytes of codes, 32 uint8 absmax, 1 fp32 nested absmax, the fp32 offset, and
    # the 16- and 256-entry maps bitsandbytes stores with every layer
    q_proj = model.model.layers[0].self_attn.q_proj
    assert q_proj.quantized_nbytes() == 512 + 32 + 4 + 4 + 64 + 1024
    assert report.quantized_bytes == sum(model.get_submodule(p).quantized_nbytes() for p in report.modules)
    assert quantization_of(model).to_dict() == report.to_dict()
    assert report.to_dict()["compute_dtype"] == "bfloat16"
    with pytest.raises(UsageError, match="skip"):
        ah.quantize(models.tiny_llama(), skip="q_proj")


def test_quantized_gpt2_conv1d_runs_as_its_transposed_weight():
    model = models.tiny_gpt2()
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    ids = models.token_ids(96)
    layer = model.h[0].attn.c_attn
    assert isinstance(layer, Linear4bit) and (layer.in_features, layer.out_features) == (32, 96)
    models.assert_close(models.hidden(model, ids), models.hidden(dequantized_copy(model), ids), 1e-5)


def test_quantize_on_the_meta_device_then_fill_equals_quantizing_the_loaded_model():
    from transformers import BertModel

    real = models.tiny_bert()
    with torch.device("meta"):
        meta = BertModel(models.tiny_bert_config(), add_pooling_layer=False)
    report = ah.quantize(meta, blocksize=32)
    layer = meta.encoder.layer[0].intermediate.dense
    assert layer.codes.is_meta and report.quantized_bytes > 0
    meta.load_state_dict(real.state_dict(), assign=True)
    ah.quantize(real, blocksize=32)
    state_equal(meta, real)


def test_adapters_wrapped_bases_are_refused(tmp_path):
    model = models.tiny_bert()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, target_modules=["query"]))
    with pytest.raises(UsageError, match="before adding adapters"):
        ah.quantize(model)
    quantized = models.tiny_bert()
    ah.quantize(quantized)
    ah.add_adapter(quantized, "a", ah.LoRAConfig(r=2, target_modules=["query"]))
    with pytest.raises(UsageError, match="carries adapters"):
        ah.save_quantized(quantized, tmp_path)


# --- files -------------------------------------------------------------------------------------


def test_save_and_load_quantized_round_trip_exactly(tmp_path):
    model = models.tiny_llama(lm_head=True)
    ah.quantize(model, quant_type="fp4", blocksize=32, compute_dtype=torch.float32)
    path = ah.save_quantized(model, tmp_path)
    assert path.name == "model.safetensors" and "model.layers.0.self_attn.q_proj.weight.absmax" in load_file(path)
    loaded = ah.load_quantized(tmp_path, compute_dtype=torch.float32)
    state_equal(loaded, model)
    ids = models.token_ids(96)
    assert torch.equal(models.hidden(loaded, ids), models.hidden(model, ids))


@pytest.mark.parametrize("builder", [models.tiny_llama, models.tiny_gpt2], ids=["llama", "gpt2-conv1d-tied"])
def test_streaming_a_checkpoint_equals_quantizing_the_loaded_model(tmp_path, builder):
    builder(lm_head=True).save_pretrained(tmp_path, max_shard_size="40KB")  # several files, one index
    streamed = ah.load_quantized(tmp_path, blocksize=32, compute_dtype=torch.float32)
    in_memory = builder(lm_head=True)
    ah.quantize(in_memory, blocksize=32, compute_dtype=torch.float32)
    state_equal(streamed, in_memory)
    emb = streamed.get_input_embeddings().weight
    assert (streamed.get_output_embeddings().weight is emb) == (
        in_memory.get_output_embeddings().weight is in_memory.get_input_embeddings().weight
    )
    ids = models.token_ids(96)
    assert torch.equal(models.hidden(streamed, ids), models.hidden(in_memory, ids))


def test_loading_refuses_incomplete_or_broken_checkpoints(tmp_path):
    with pytest.raises(NotFoundError):
        ah.load_quantized(tmp_path / "nowhere")
    model = models.tiny_bert(pooler=True)
    model.save_pretrained(tmp_path / "m")
    tensors = load_file(tmp_path / "m" / "model.safetensors")
    del tensors["encoder.layer.1.output.dense.weight"]
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        InvalidPackageError, match=r"lacks 1 tensors of the model \(encoder.layer.1.output.dense.weight\)"
    ):
        ah.load_quantized(tmp_path / "m")

    ah.quantize(model)
    ah.save_quantized(model, tmp_path / "q")
    tensors = load_file(tmp_path / "q" / "model.safetensors")
    tensors["encoder.layer.0.attention.self.query.weight.quant_state.bitsandbytes__nf4"] = torch.tensor(
        list(b'{"quant_type": "nf4"}'), dtype=torch.uint8
    )
    save_file(tensors, str(tmp_path / "q" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InvalidPackageError, match="encoder.layer.0.attention.self.query: 4-bit blocksize None"):
        ah.load_quantized(tmp_path / "q")


# --- training on top ---------------------------------------------------------------------------


def test_lora_on_a_quantized_model_trains_only_the_adapter():
    model = models.tiny_bert()
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    prep = ah.prepare_for_kbit_training(model)
    assert prep.gradient_checkpointing and prep.input_grads and prep.frozen > 0
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value", "dense"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = models.token_ids(96, batch=2, seq=8)
    target = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(trainable, lr=2e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = (model(input_ids=ids).last_hidden_state - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_A." in k or ".lora_B." in k for k in changed)


def test_adapter_gradients_equal_those_on_the_dequantized_model():
    model = models.tiny_bert()
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["query", "output.dense"], init="none"))
    ah.add_adapter(model, "b", ah.BottleneckConfig(style="houlsby", init="bert"))
    ah.set_active_adapters(model, ["a", "b"])
    ref = dequantized_copy(model)
    ids = models.token_ids(96, batch=2, seq=8)
    grads = []
    for m in (model, ref):
        ah.mark_only_adapters_trainable(m, ["a", "b"])
        m(input_ids=ids).last_hidden_state.pow(2).mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and any("adapter_up" in n for n in grads[0])
    for name, grad in grads[0].items():
        models.assert_close(grad, grads[1][name], 1e-5)


@pytest.mark.parametrize("mode", ["reentrant", "non-reentrant", "autocast", "over-the-bound"])
def test_checkpointed_training_dequantizes_twice_per_step_with_the_same_gradients(monkeypatch, mode):
    import gc

    from adapterhub_client.nn.quant import layer as layer_module

    calls, kept = [], []
    dequantize_into, dense = layer_module.dequantize_into, Linear4bit._dense
    monkeypatch.setattr(layer_module, "dequantize_into", lambda out, *a: (calls.append(1), dequantize_into(out, *a)))
    held = []  # bytes kept at once, after each weight kept

    def counting_dense(self, dtype, scratch=True):
        kept.append(not scratch)
        out = dense(self, dtype, scratch)
        held.append(layer_module._kept[0])
        return out

    monkeypatch.setattr(Linear4bit, "_dense", counting_dense)
    bound = layer_module.KEEP_RECOMPUTED_BYTES
    if mode == "over-the-bound":  # room for two 32 x 32 fp32 weights: a layer's query and key, recomputed first
        bound = 2 * 32 * 32 * 4
        monkeypatch.setattr(layer_module, "KEEP_RECOMPUTED_BYTES", bound)
    ids = models.token_ids(96, batch=2, seq=8)
    grads, counts, owned = [], [], []
    for checkpointing in (True, False):
        model = models.tiny_bert()
        ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
        ah.prepare_for_kbit_training(
            model,
            gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": mode != "non-reentrant"},
        )
        ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["query", "dense"], init="none"))
        model.train()
        calls.clear()
        kept.clear()
        torch.manual_seed(3)  # the same dropout masks with and without recomputation
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            loss = model(input_ids=ids).last_hidden_state.float().pow(2).mean()
        loss.backward()
        counts.append(len(calls))
        owned.append(sum(kept))
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        gc.collect()
        assert layer_module._kept[0] == 0  # every kept weight was freed, and its bytes given back
    layers = sum(isinstance(m, Linear4bit) for m in model.modules())
    # without checkpointing: forward and backward. With it: forward, recompute, and, in a reentrant
    # recompute, the backward reuses the recomputed weight. A non-reentrant recompute only restores saved
    # tensors and keeps nothing; under autocast nothing is kept either (the GEMM runs in bf16); over the
    # bound only what fits is kept
    segments = model.config.num_hidden_layers  # one checkpoint per encoder layer
    expected = {"reentrant": layers, "non-reentrant": 0, "autocast": 0, "over-the-bound": 2 * segments}[mode]
    assert owned == [expected, 0] and max(held) <= bound
    assert counts == [3 * layers - expected, 2 * layers]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, grad in grads[0].items():
        models.assert_close(grad, grads[1][name], 1e-2 if mode == "autocast" else 1e-5)


def test_lora_adds_into_a_4bit_bases_output_in_place_with_the_same_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 48)
    for compute in (torch.float32, torch.bfloat16):
        base = Linear4bit.from_linear(torch.nn.Linear(48, 24), compute_dtype=compute)
        model = torch.nn.Sequential(copy.deepcopy(base))
        ah.add_adapter(model, "a", ah.LoRAConfig(r=4, alpha=8, target_modules=["0"], init="none"))
        ah.add_adapter(model, "d", ah.LoRAConfig(r=2, target_modules=["0"], dora=True, init="none"))
        ah.add_adapter(model, "b", ah.LoRAConfig(r=3, target_modules=["0"], init="none"))
        ah.set_active_adapters(model, ["a", "d", "b"])
        layer = model[0]
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        with torch.profiler.profile() as prof:
            out = model(xs[0])
        # the plain LoRAs ("a", "b") add into the output in place, under autograd: no copy of it
        assert [e.name for e in prof.events()].count("aten::addmm_") == 2
        # the same sum computed out of place: base, each adapter's delta on the running result in turn
        expected = layer.base_layer(xs[1])
        for name in ("a", "d", "b"):
            expected = expected + layer._adapter_delta(name, xs[1], expected)
        assert out.shape == (2, 5, 24)
        models.assert_close(out, expected, 1e-6)
        params = [p for p in layer.parameters() if p.requires_grad]
        got = torch.autograd.grad(out.pow(2).sum(), [xs[0], *params])
        want = torch.autograd.grad(expected.pow(2).sum(), [xs[1], *params])
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-4)


def test_hooks_on_a_4bit_base_see_its_own_shapes_and_outputs_under_lora():
    torch.manual_seed(0)
    model = torch.nn.Sequential(Linear4bit.from_linear(torch.nn.Linear(48, 24), compute_dtype=torch.float32))
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["0"], init="none"))
    seen, aux = [], []

    def hook(module, args, output):
        seen.append((tuple(args[0].shape), output.detach().clone(), output))
        aux.append(output.pow(2).mean())  # autograd keeps the output: it must not change in place

    model[0].base_layer.register_forward_hook(hook)
    x = torch.randn(2, 5, 48, requires_grad=True)
    out = model(x)
    (out.sum() + aux[0]).backward()  # no "modified by an inplace operation"
    shape, value, output = seen[0]
    assert shape == (2, 5, 48) and torch.equal(output, value)  # the base's own output, unchanged
    assert not torch.equal(out, value)  # the adapter's delta was added to a copy


def test_the_weight_reads_dequantized_and_refuses_writes():
    model = models.tiny_bert()
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    layer = model.encoder.layer[0].attention.self.query
    assert torch.equal(layer.weight + 0, layer.dequantize())
    with pytest.raises(UsageError, match="dequantized copy"):
        layer.weight.add_(1)


def _quantized_with_lora():
    model = models.tiny_bert()
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules=["query", "value"], init="none"))
    return model


def test_a_merge_on_a_4bit_base_goes_into_a_dequantized_copy_and_unmerge_restores_the_4bit_layer():
    model = _quantized_with_lora()
    ids = models.token_ids(96)
    before = models.hidden(model, ids)
    ah.merge_adapters(model)
    query = model.encoder.layer[0].attention.self.query
    assert type(query.base_layer) is torch.nn.Linear  # dense: the merge has a weight to go into
    models.assert_close(models.hidden(model, ids), before)
    ah.unmerge_adapters(model)
    assert isinstance(query.base_layer, Linear4bit)  # the very layer, codes untouched
    assert torch.equal(models.hidden(model, ids), before)


def test_merge_and_unload_gives_dense_layers_or_requantizes_them_with_a_warning():
    model = _quantized_with_lora()
    ids = models.token_ids(96)
    before = models.hidden(model, ids)
    dense = ah.merge_and_unload(copy.deepcopy(model))
    assert type(dense.encoder.layer[0].attention.self.query) is torch.nn.Linear
    assert isinstance(dense.encoder.layer[0].attention.self.key, Linear4bit)  # no adapter there: still 4-bit
    models.assert_close(models.hidden(dense, ids), before)
    with pytest.warns(ah.AdapterWarning, match=r"requantized 4 merged layers to nf4: .* up to [0-9.e-]+ of their"):
        again = ah.merge_and_unload(model, requantize=True)
    assert isinstance(again.encoder.layer[0].attention.self.query, Linear4bit)
    requantized = models.hidden(again, ids)
    assert not torch.allclose(requantized, before, atol=1e-6)  # the 4-bit round trip costs something
    assert torch.allclose(requantized, before, atol=0.2)
    with pytest.raises(UsageError, match="no 4-bit layers"):
        ah.merge_and_unload(models.tiny_bert(), requantize=True)


def test_prepare_for_kbit_training_upcasts_half_parameters_for_a_bf16_model():
    model = models.tiny_llama(lm_head=True).to(torch.bfloat16)
    ah.quantize(model, blocksize=32)
    prep = ah.prepare_for_kbit_training(model)
    assert "model.norm.weight" in prep.upcast and model.model.norm.weight.dtype == torch.float32
    assert model.model.layers[0].self_attn.q_proj.codes.dtype == torch.uint8
    assert not any(p.requires_grad for p in model.parameters())
    assert model.get_input_embeddings()(models.token_ids(96)).requires_grad
    ah.add_adapter(model, "a", ah.LoRAConfig(r=4, target_modules="all-linear"))
    model.train()
    model(input_ids=models.token_ids(96)).logits.float().pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
