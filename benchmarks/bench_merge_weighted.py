"""Weighted merging of two LoRA adapters into one: ours (``merge_weighted``) vs PEFT's
``add_weighted_adapter``, both measured in the same run on the same adapters.

    python benchmarks/bench_merge_weighted.py [--rounds 5]

MiniLM with two random LoRA adapters, r=8 on query/key/value/dense (alpha 8 and 16), at weights
0.5/0.5 and 0.7/-0.3. The error is the relative Frobenius error over all modules of the merged
adapter's delta against the true weighted delta ``sum_i w_i s_i B_i A_i``, computed here from each
merged adapter's own tensors and scale. Rows: our ``exact`` vs PEFT's ``linear`` (which scales A and
B by ``sqrt(w s)`` and so adds cross terms) and ``cat``; our ``svd`` at rank 8 vs PEFT's ``svd`` at
rank 8. Times: the median over rounds of creating the merged adapter (deleted again between rounds).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import adapterhub_client as ah  # noqa: E402
from adapterhub_client.nn.lora import LoRALayer  # noqa: E402
from adapterhub_client.nn.model import adapter_layers  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests import models  # noqa: E402

TARGETS = ["query", "key", "value", "dense"]
CASES = [(0.5, 0.5), (0.7, -0.3)]


def peft_model():
    """MiniLM with PEFT adapters a (alpha 8) and b (alpha 16), r=8, A and B random."""
    import peft

    torch.manual_seed(0)
    model = peft.get_peft_model(
        models.minilm(), peft.LoraConfig(r=8, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False), "a"
    )
    model.add_adapter("b", peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False))
    return model.eval()


def peft_deltas(model, name: str) -> dict[str, torch.Tensor]:
    """``{module path: s B A}`` of a PEFT adapter, as ``[out, in]``."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    out = {}
    for path, module in model.named_modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            A, B = module.lora_A[name].weight, module.lora_B[name].weight
            out[path.removeprefix(prefix)] = (B @ A * module.scaling[name]).detach()
    return out


def our_deltas(model, name: str) -> dict[str, torch.Tensor]:
    out = {}
    for path, layer in adapter_layers(model, name):
        if isinstance(layer, LoRALayer):
            out[path] = (layer.lora_B[name] @ layer.lora_A[name] * layer.scaling[name]).detach()
    return out


def rel_error(got: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> float:
    err = sum(float((got.get(p, 0) - t).double().norm()) ** 2 for p, t in target.items())
    err += sum(float(g.double().norm()) ** 2 for p, g in got.items() if p not in target)
    return math.sqrt(err / sum(float(t.double().norm()) ** 2 for t in target.values()))


def timed_creation(create: Callable[[], None], delete: Callable[[], None], rounds: int) -> float:
    """Median seconds of `create` (the last one is kept: its result is measured)."""
    samples = []
    for i in range(rounds):
        t0 = time.perf_counter()
        create()
        samples.append(time.perf_counter() - t0)
        if i < rounds - 1:
            delete()
    return statistics.median(samples)


def measure(
    ours, pm, weights: tuple[float, float], name: str, our_kw: dict, peft_kw: dict, target: dict, rounds: int
) -> tuple[float, float, float, float]:
    """(our error, PEFT's error, our seconds, PEFT's seconds) for one way of merging a and b."""
    wa, wb = weights
    t_ours = timed_creation(
        lambda: ah.merge_weighted(ours, {"a": wa, "b": wb}, name, **our_kw),
        lambda: ah.delete_adapter(ours, name),
        rounds,
    )
    t_peft = timed_creation(
        lambda: pm.add_weighted_adapter(["a", "b"], [wa, wb], name, **peft_kw), lambda: pm.delete_adapter(name), rounds
    )
    errors = rel_error(our_deltas(ours, name), target), rel_error(peft_deltas(pm, name), target)
    ah.delete_adapter(ours, name)
    pm.delete_adapter(name)
    return (*errors, t_ours, t_peft)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    pm = peft_model()
    ours = models.minilm()
    with tempfile.TemporaryDirectory() as tmp:  # the same adapters on our side, through PEFT's files
        pm.save_pretrained(tmp, selected_adapters=["a", "b"])
        ah.load_adapter(ours, tmp, "a")
        ah.load_adapter(ours, Path(tmp) / "b", "b")
    dw = {n: peft_deltas(pm, n) for n in ("a", "b")}
    assert all(torch.allclose(our_deltas(ours, n)[p], d, atol=1e-6) for n in dw for p, d in dw[n].items())

    rows = []
    for i, (wa, wb) in enumerate(CASES):
        target = {p: wa * dw["a"][p] + wb * dw["b"][p] for p in dw["a"]}
        case = f"{wa}/{wb}"
        pairs = [
            ("exact", "linear", {}, {"combination_type": "linear"}),
            ("exact", "cat", {}, {"combination_type": "cat"}),
            ("svd r=8", "svd r=8", {"method": "svd", "rank": 8}, {"combination_type": "svd", "svd_rank": 8}),
        ]
        for j, (ours_label, peft_label, our_kw, peft_kw) in enumerate(pairs):
            e_ours, e_peft, t_ours, t_peft = measure(
                ours, pm, (wa, wb), f"m{i}_{j}", our_kw, peft_kw, target, args.rounds
            )
            rows.append(
                [
                    case,
                    f"{ours_label} / {peft_label}",
                    f"{e_ours:.2e}",
                    f"{e_peft:.2e}",
                    f"{t_ours * 1e3:.1f} ms",
                    f"{t_peft * 1e3:.1f} ms",
                    f"{t_ours / t_peft:.2f}",
                ]
            )
    print_table(
        f"MiniLM, two random LoRA r=8 on {'/'.join(TARGETS)} ({len(dw['a'])} modules); relative Frobenius error of the merged "
        f"delta against sum_i w_i dW_i; median of {args.rounds} rounds",
        rows,
        ["weights", "ours / PEFT", "ours error", "PEFT error", "ours", "PEFT", "time ours/PEFT"],
    )


if __name__ == "__main__":
    main()
