"""Our 4-bit quantization against real bitsandbytes 0.50.2 on the CPU: the same codes, scales and
dequantized weights, the same serialized layout both ways (layers and transformers bnb-4bit checkpoints),
and a quantized model equal to the model with each weight replaced by bitsandbytes' round trip."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub_client as ah
from adapterhub_client.nn.quant import Linear4bit, dequantize_4bit, quantize_4bit
from tests import models

bnb = pytest.importorskip("bitsandbytes")
BF = pytest.importorskip("bitsandbytes.functional")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # the notice about the optional `kernels` package

# shapes bitsandbytes' CPU dequantization gets right (see test_row_blocked_shapes_follow_the_flat_layout):
# a row a multiple of the blocksize, an odd row (short last block, odd count), a row of 100 (not a multiple
# of 16), a weight smaller than one block, a 1-D tensor, one dequantized in several steps
SHAPES = [(64, 256), (33, 77), (40, 100), (3, 5), (7,), (130, 512)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def _no_torch_compile(monkeypatch):
    """bitsandbytes' CPU fallback for odd shapes is wrapped in torch.compile: its first call would spend
    seconds compiling C++. The eager function is the same code."""
    monkeypatch.setattr(torch._dynamo.config, "disable", True)


def weights(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = [(torch.randn(shape, generator=g) * 0.05).to(dtype) for shape in SHAPES]
    zero_block = torch.randn(64, 256, generator=g).to(dtype)
    zero_block.view(-1)[64:192] = 0  # blocks of zeros (absmax 0) next to normal ones
    out.append(zero_block)
    outlier = torch.randn(32, 128, generator=g).to(dtype)
    outlier[3, 7] = 40.0  # one large absmax among small ones: the nested scales' dynamic range
    out.append(outlier)
    return out


def assert_same_state(ours, theirs, nested: bool) -> None:
    assert torch.equal(ours.absmax, theirs.absmax)
    assert torch.equal(ours.code, theirs.code)
    assert tuple(ours.shape) == tuple(theirs.shape) and ours.blocksize == theirs.blocksize
    assert ours.nested == theirs.nested == nested
    if nested:
        assert torch.equal(ours.offset, theirs.offset)
        assert torch.equal(ours.nested_absmax, theirs.state2.absmax)
        assert torch.equal(ours.nested_code, theirs.state2.code)


@pytest.mark.parametrize("double_quant", [False, True], ids=["plain", "nested"])
@pytest.mark.parametrize("blocksize", [64, 128])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_codes_scales_and_dequantized_weights_are_bitsandbytes(quant_type, blocksize, double_quant):
    for dtype in DTYPES:
        for w in weights(dtype):
            codes, state = quantize_4bit(w, blocksize, quant_type, double_quant)
            ref_codes, ref_state = BF.quantize_4bit(
                w, blocksize=blocksize, quant_type=quant_type, compress_statistics=double_quant
            )
            assert codes.dtype == torch.uint8 and torch.equal(codes, ref_codes), (dtype, tuple(w.shape))
            assert_same_state(state, ref_state, double_quant)
            # every output dtype's rounding from fp32 weights; the others back to their own dtype
            for out_dtype in DTYPES if dtype == torch.float32 else [dtype]:
                ref_state.dtype = out_dtype
                expected = BF.dequantize_4bit(ref_codes, ref_state)
                assert torch.equal(dequantize_4bit(codes, state, out_dtype), expected), (dtype, w.shape, out_dtype)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_a_weight_quantized_in_several_steps_is_bitsandbytes(quant_type):
    w = torch.randn(1100, 1024, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)  # > 2**20 values
    codes, state = quantize_4bit(w, 64, quant_type, True)
    ref_codes, ref_state = BF.quantize_4bit(w, blocksize=64, quant_type=quant_type, compress_statistics=True)
    assert torch.equal(codes, ref_codes)
    assert_same_state(state, ref_state, True)
    assert torch.equal(dequantize_4bit(codes, state), BF.dequantize_4bit(ref_codes, ref_state))


@pytest.mark.parametrize("double_quant", [False, True], ids=["plain", "nested"])
def test_row_blocked_shapes_follow_the_flat_layout(double_quant):
    """A row that is a multiple of 16 values but not of the blocksize (96 with blocks of 64): bitsandbytes'
    AVX-512 CPU kernel then reads the absmax by row, not as its quantizer wrote it. We follow the quantizer's
    flat layout, which bitsandbytes' own reference implementation (its default backend) restores."""
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    w = torch.randn(10, 96, generator=torch.Generator().manual_seed(1))
    codes, state = quantize_4bit(w, 64, "nf4", double_quant)
    ref_codes, ref_state = BF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)
    assert torch.equal(codes, ref_codes)
    absmax = ref_state.absmax
    if double_quant:
        absmax = BF.dequantize_blockwise(ref_state.absmax, ref_state.state2) + ref_state.offset
    reference = _dequantize_4bit_compute.__wrapped__(
        ref_codes.reshape(-1), absmax, ref_state.code, 64, w.shape, w.dtype
    )
    assert torch.equal(dequantize_4bit(codes, state), reference)
    assert (dequantize_4bit(codes, state) - w).abs().max() < 0.2 * w.abs().max()


def bnb_layer(linear: torch.nn.Linear, quant_type: str, double_quant: bool, blocksize: int = 64):
    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=torch.float32,
        compress_statistics=double_quant,
        quant_type=quant_type,
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.data.clone(),
        requires_grad=False,
        blocksize=blocksize,
        compress_statistics=double_quant,
        quant_type=quant_type,
        module=layer,
    )
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.data.clone())
    return layer.to("cpu")  # bitsandbytes quantizes on the move


def bnb_dequantized(layer) -> torch.Tensor:
    return BF.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


@pytest.mark.parametrize(("quant_type", "double_quant"), [("nf4", True), ("fp4", False)])
def test_layer_state_dict_is_bitsandbytes_layout(quant_type, double_quant):
    linear = torch.nn.Linear(128, 48)
    ours = Linear4bit.from_linear(linear, quant_type=quant_type, double_quant=double_quant)
    theirs = bnb_layer(linear, quant_type, double_quant).state_dict()
    mine = ours.state_dict()
    assert list(mine) == list(theirs)
    for key, tensor in theirs.items():
        assert mine[key].dtype == tensor.dtype and torch.equal(mine[key], tensor), key
    blob = f"weight.quant_state.bitsandbytes__{quant_type}"
    assert json.loads(bytes(mine[blob].tolist()))["shape"] == [48, 128]


@pytest.mark.parametrize(("quant_type", "double_quant"), [("nf4", True), ("nf4", False), ("fp4", True)])
def test_layers_load_each_others_safetensors(tmp_path, quant_type, double_quant):
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64)
    theirs = bnb_layer(linear, quant_type, double_quant)
    save_file(theirs.state_dict(), str(tmp_path / "theirs.safetensors"))
    ours = Linear4bit(256, 64, compute_dtype=torch.float32)
    ours.load_state_dict(load_file(str(tmp_path / "theirs.safetensors")))
    assert (ours.quant_type, ours.double_quant) == (quant_type, double_quant)
    assert torch.equal(ours.dequantize(), bnb_dequantized(theirs))
    x = torch.randn(4, 256)
    theirs.train()  # bitsandbytes' dequantize-then-matmul path (eval mode repacks into a bf16 kernel)
    with torch.no_grad():
        models.assert_close(ours(x), theirs(x))

    mine = Linear4bit.from_linear(linear, quant_type=quant_type, double_quant=double_quant)
    save_file(mine.state_dict(), str(tmp_path / "ours.safetensors"))
    tensors = load_file(str(tmp_path / "ours.safetensors"))
    stats = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    loaded = bnb.nn.Params4bit.from_prequantized(tensors["weight"], stats, device="cpu")
    assert torch.equal(BF.dequantize_4bit(loaded.data, loaded.quant_state), mine.dequantize())


def test_forward_matches_bitsandbytes_linear4bit():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 64)
    theirs = bnb_layer(linear, "nf4", True).train()
    ours = Linear4bit.from_linear(linear, compute_dtype=torch.float32)
    x = torch.randn(2, 5, 128, requires_grad=True)
    x_theirs = x.detach().clone().requires_grad_(True)
    out, ref = ours(x), theirs(x_theirs)
    models.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    models.assert_close(x.grad, x_theirs.grad, 1e-4)


@pytest.mark.parametrize(("quant_type", "double_quant"), [("nf4", True), ("nf4", False), ("fp4", True)])
def test_the_bitsandbytes_kernel_call_on_our_state_equals_our_forward(quant_type, double_quant):
    """What Linear4bit runs on CUDA (bitsandbytes' matmul_4bit on our codes and state), run on the CPU:
    the same outputs and input gradients as our own kernels, with and without autograd."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96)
    layer = Linear4bit.from_linear(linear, quant_type=quant_type, double_quant=double_quant, compute_dtype=None)
    x = torch.randn(2, 6, 256, requires_grad=True)
    x_bnb = x.detach().clone().requires_grad_(True)
    bias = linear.bias.detach()
    with torch.no_grad():
        models.assert_close(layer._bnb_linear(x, bias), layer(x), 1e-4)
    out, ref = layer(x), layer._bnb_linear(x_bnb, bias)
    assert ref.grad_fn is not None and type(ref.grad_fn).__name__.startswith("MatMul4Bit")
    models.assert_close(out, ref, 1e-4)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x_bnb.grad, rtol=1e-4, atol=1e-4)


def roundtrip_copy(model: torch.nn.Module, blocksize: int) -> torch.nn.Module:
    """`model` with every nn.Linear weight replaced by bitsandbytes' NF4 round trip."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, torch.nn.Linear):
                codes, state = BF.quantize_4bit(
                    module.weight, blocksize=blocksize, compress_statistics=True, quant_type="nf4"
                )
                module.weight.copy_(BF.dequantize_4bit(codes, state))
    return ref


def test_quantized_tiny_bert_equals_bitsandbytes_round_trip():
    model = models.tiny_bert()
    ref = roundtrip_copy(model, blocksize=32)  # hidden 32: rows a whole number of blocks
    ah.quantize(model, blocksize=32, compute_dtype=torch.float32)
    ids = models.token_ids(96, batch=2, seq=12)
    models.assert_close(models.hidden(model, ids), models.hidden(ref, ids), 1e-3)


@pytest.mark.slow
def test_quantized_minilm_equals_bitsandbytes_round_trip():
    model = models.minilm()
    ref = roundtrip_copy(model, blocksize=64)
    ah.quantize(model, compute_dtype=torch.float32)
    ids = models.token_ids(model.config.vocab_size, batch=2, seq=16)
    models.assert_close(models.hidden(model, ids), models.hidden(ref, ids), 1e-3)


def test_transformers_bnb_checkpoints_load_both_ways(tmp_path):
    from transformers import BertModel, BitsAndBytesConfig

    models.tiny_bert(pooler=True).save_pretrained(tmp_path / "fp32")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    theirs = BertModel.from_pretrained(tmp_path / "fp32", quantization_config=config, device_map="cpu")
    theirs.save_pretrained(tmp_path / "bnb")

    # theirs -> ours: every tensor as bitsandbytes stored it, layer by layer
    ours = ah.load_quantized(tmp_path / "bnb", compute_dtype=torch.float32)
    assert isinstance(ours.encoder.layer[0].attention.self.query, Linear4bit)
    expected = theirs.state_dict()
    got = ours.state_dict()
    assert set(got) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key

    # their checkpoint, read without torch, stands for the fp32 base quantized (compat checks it as such)
    from adapterhub_client.basemodel.fingerprint import LocalModel

    local, full = LocalModel.from_dir(tmp_path / "bnb"), LocalModel.from_dir(tmp_path / "fp32")
    assert local.weights == full.weights and local.architecture == full.architecture
    assert {k: local.quantization[k] for k in ("type", "blocksize", "double_quant")} == {
        "type": "nf4",
        "blocksize": 64,
        "double_quant": True,
    }
    assert local.content() is None  # bitsandbytes keeps no digest of the weights it quantized

    # ours -> theirs: transformers + bitsandbytes load our checkpoint into their layers
    fresh = models.tiny_bert(pooler=True)
    ah.quantize(fresh)
    ah.save_quantized(fresh, tmp_path / "ours")
    back = BertModel.from_pretrained(tmp_path / "ours", device_map="cpu")
    query = back.encoder.layer[0].attention.self.query
    assert isinstance(query, bnb.nn.Linear4bit)
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key


@pytest.mark.parametrize("blocksize", [64, 128])
def test_the_forward_dequantization_is_bitsandbytes_across_chunks(blocksize):
    """The forward's chunked dequantization (several chunks of blockwise._CHUNK_VALUES, then a short last
    block) writes bitsandbytes' dequantized weight, value for value."""
    from adapterhub_client.nn.quant import blockwise

    torch.manual_seed(0)
    out_features = 2 * blockwise._CHUNK_VALUES // 701 + 3  # more than two chunks, and a partial last block
    linear = torch.nn.Linear(701, out_features)
    layer = Linear4bit.from_linear(linear, blocksize=blocksize, compute_dtype=None)
    codes, state = bnb.functional.quantize_4bit(
        linear.weight.data, blocksize=blocksize, quant_type="nf4", compress_statistics=True
    )
    assert torch.equal(layer._dense(torch.float32), bnb.functional.dequantize_4bit(codes, state))
