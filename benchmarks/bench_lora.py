"""LoRA benchmarks against PEFT, both measured in the same run (ratios are what to compare).

    python benchmarks/bench_lora.py [--rounds N] [--only attach,load,forward]

1. attach: LoRA r=16 on q,k,v,o,gate,up,down of a Llama-7B-shaped model on the meta device
   (224 modules); ours vs ``get_peft_model`` (plain and ``low_cpu_mem_usage=True``). Target <= 0.5.
2. forward: MiniLM, batch 8 x 128 tokens, LoRA r=8 on query/key/value/dense; base, unmerged and
   merged, interleaved in rounds; overhead = median over rounds of (t / t_base - 1). Targets:
   ours unmerged <= PEFT unmerged; ours merged within 2% of the base.
3. load: a saved adapter onto a fresh MiniLM, ours (package dir) vs ``PeftModel.from_pretrained``.
   Target <= 0.5.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import adapterhub_client as ah  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests import models  # noqa: E402

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BERT_TARGETS = ["query", "key", "value", "dense"]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


def bench_attach(rounds: int) -> list[tuple[str, str, str]]:
    import peft
    from transformers import LlamaForCausalLM

    config = models.llama_7b_config()

    def fresh():
        with torch.device("meta"):
            return LlamaForCausalLM(config)

    times: dict[str, list[float]] = {"ours": [], "peft": [], "peft_low_mem": []}
    for _ in range(rounds):
        for key in times:  # interleaved: every round runs all three
            model = fresh()
            gc.collect()
            if key == "ours":
                cfg = ah.LoRAConfig(r=16, alpha=32, target_modules=LLAMA_TARGETS)
                times[key].append(timed(lambda m=model, c=cfg: ah.add_adapter(m, "a", c)))
                assert len(ah.list_adapters(model)) == 1 and ah.list_adapters(model)[0].modules == 224
            else:
                cfg = peft.LoraConfig(r=16, lora_alpha=32, target_modules=LLAMA_TARGETS)
                low = key == "peft_low_mem"
                times[key].append(timed(lambda m=model, c=cfg, lo=low: peft.get_peft_model(m, c, low_cpu_mem_usage=lo)))
            del model
    ours, p, pl = (median_ms(times[k]) for k in ("ours", "peft", "peft_low_mem"))
    return [
        (
            "attach Llama-7B meta, 224 modules r=16",
            f"ours {ours:.1f} ms | PEFT {p:.1f} ms | PEFT low_cpu_mem {pl:.1f} ms",
            f"{ours / p:.3f} (vs low_cpu_mem {ours / pl:.3f})",
        ),
    ]


def bench_forward(rounds: int) -> list[tuple[str, str, str]]:
    import peft

    base = models.minilm()
    ours_u = copy.deepcopy(base)
    ah.add_adapter(ours_u, "a", ah.LoRAConfig(r=8, alpha=16, target_modules=BERT_TARGETS, init="none"))
    ours_m = copy.deepcopy(ours_u)
    ah.merge_adapters(ours_m)
    torch.manual_seed(0)
    pcfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=BERT_TARGETS, init_lora_weights=False)
    peft_u = peft.get_peft_model(copy.deepcopy(base), pcfg).eval()
    peft_m = peft.get_peft_model(copy.deepcopy(base), pcfg).eval()
    peft_m.merge_adapter()
    variants = {
        "base": base,
        "ours_unmerged": ours_u,
        "peft_unmerged": peft_u,
        "ours_merged": ours_m,
        "peft_merged": peft_m,
    }
    ids = torch.randint(0, base.config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)

    def run(m):
        with torch.inference_mode():
            m(input_ids=ids, attention_mask=mask)

    for m in variants.values():  # warm-up
        run(m)
        run(m)
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(rounds):
        order = list(variants)
        if i % 2:
            order.reverse()  # no variant always runs right after the same one
        for k in order:
            per_round[k].append(timed(lambda k=k: run(variants[k])))
    ratio = {k: statistics.median(t / b - 1 for t, b in zip(per_round[k], per_round["base"])) for k in variants}
    base_ms = median_ms(per_round["base"])
    return [
        ("forward MiniLM 8x128, base", f"{base_ms:.1f} ms", ""),
        (
            "forward overhead unmerged (r=8 q,k,v,dense)",
            f"ours {ratio['ours_unmerged']:+.1%} | PEFT {ratio['peft_unmerged']:+.1%}",
            f"{(1 + ratio['ours_unmerged']) / (1 + ratio['peft_unmerged']):.3f} (time ratio)",
        ),
        (
            "forward overhead merged",
            f"ours {ratio['ours_merged']:+.1%} | PEFT {ratio['peft_merged']:+.1%}",
            f"{(1 + ratio['ours_merged']) / (1 + ratio['peft_merged']):.3f} (time ratio)",
        ),
    ]


def bench_load(rounds: int) -> list[tuple[str, str, str]]:
    import peft

    base = models.minilm()
    src = copy.deepcopy(base)
    ah.add_adapter(src, "a", ah.LoRAConfig(r=8, alpha=16, target_modules=BERT_TARGETS, init="none"))
    tmp = Path(tempfile.mkdtemp())
    ah.save_adapter(src, "a", tmp / "pkg", name="bench/a", version="1.0.0")
    ah.export_peft(src, "a", tmp / "peft")
    times: dict[str, list[float]] = {"ours": [], "ours_from_peft_dir": [], "peft": []}
    for _ in range(rounds):
        for key in times:
            model = copy.deepcopy(base)
            gc.collect()
            if key == "ours":
                times[key].append(timed(lambda m=model: ah.load_adapter(m, tmp / "pkg")))
            elif key == "ours_from_peft_dir":
                times[key].append(timed(lambda m=model: ah.load_adapter(m, tmp / "peft")))
            else:
                times[key].append(timed(lambda m=model: peft.PeftModel.from_pretrained(m, tmp / "peft")))
    ours, ours_p, p = (median_ms(times[k]) for k in ("ours", "ours_from_peft_dir", "peft"))
    return [
        (
            "load saved adapter onto MiniLM (37 modules r=8)",
            f"ours {ours:.1f} ms (PEFT dir: {ours_p:.1f} ms) | PEFT {p:.1f} ms",
            f"{ours / p:.3f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15, help="forward rounds (attach/load use a third)")
    parser.add_argument("--only", default="attach,load,forward", help="comma-separated subset")
    args = parser.parse_args()
    import peft
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    only = set(args.only.split(","))
    rows = []
    if "attach" in only:
        rows += bench_attach(max(3, args.rounds // 3))
    if "load" in only:
        rows += bench_load(max(5, args.rounds // 2))
    if "forward" in only:
        rows += bench_forward(args.rounds)
    print_table("LoRA: ours vs PEFT", [list(r) for r in rows], ["benchmark", "measured", "ours/PEFT"])


if __name__ == "__main__":
    main()
