"""Per-sample routing (``ah.route``) against PEFT's mixed batches (``adapter_names``), in the same run.

    python benchmarks/bench_routing.py [--rounds N] [--only mixed,many,threshold]

1. mixed: MiniLM, 8 LoRA adapters (r=8 on query/key/value/dense), a batch of 32 x 64 tokens, 4 rows per
   adapter in shuffled order. Ours routed vs PEFT ``adapter_names`` (target <= 0.7) and vs our own
   forward of the same batch with one adapter active (target <= 1.3).
2. many: 64 such adapters, one per row (batch 64 x 64 tokens): ours vs PEFT.
3. threshold: whole-model forward time of the "bmm" path over the "segments" path for 1, 2, 4, 8 and 16
   distinct adapters in a 32 x 64 batch (1: half the rows base rows), rows shuffled or grouped by adapter;
   ``SEGMENT_MAX_ADAPTERS`` in nn/routing.py cites it.

Every row of a table is a median over paired rounds (all variants once per round, order reversed every
other round, after warm-up); the two models hold the same weights and their outputs are checked equal.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
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
from benchmarks._util import print_table  # noqa: E402
from tests import models  # noqa: E402

TARGETS = ["query", "key", "value", "dense"]
SEQ = 64


def with_adapters(base: torch.nn.Module, count: int) -> torch.nn.Module:
    """`base` with `count` random (trained-looking) LoRA adapters a0, a1, ... (r=8)."""
    model = copy.deepcopy(base)
    torch.manual_seed(0)
    for i in range(count):
        ah.add_adapter(model, f"a{i}", ah.LoRAConfig(r=8, alpha=16, target_modules=TARGETS, init="none"))
    return model


def peft_copy(base: torch.nn.Module, ours: torch.nn.Module, count: int):
    """PEFT's model with the same adapters (exported from ours, loaded the way PEFT users do)."""
    import peft

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            ah.export_peft(ours, f"a{i}", Path(tmp) / f"a{i}")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), Path(tmp) / "a0", adapter_name="a0")
        for i in range(1, count):
            theirs.load_adapter(Path(tmp) / f"a{i}", adapter_name=f"a{i}")
    return theirs.eval()


def shuffled_names(rows: int, count: int, seed: int = 0) -> list[str]:
    names = [f"a{i % count}" for i in range(rows)]
    random.Random(seed).shuffle(names)
    return names


def paired(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each variant, interleaved (every variant once per round, alternating order)."""
    with torch.inference_mode():
        for fn in variants.values():  # warm-up: caches, allocator, first-call costs
            fn()
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        for i in range(rounds):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for k in order:
                t = time.perf_counter()
                variants[k]()
                times[k].append(time.perf_counter() - t)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def ms(times: dict[str, list[float]], k: str) -> str:
    return f"{statistics.median(times[k]) * 1e3:.0f} ms"


def check_same(ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor]) -> float:
    with torch.inference_mode():
        diff = (ours() - theirs()).abs().max().item()
    assert diff < 1e-3, f"ours and PEFT disagree by {diff}"
    return diff


def bench_mixed(base: torch.nn.Module, rounds: int) -> list[list[str]]:
    ours = with_adapters(base, 8)
    theirs = peft_copy(base, ours, 8)
    ids = torch.randint(0, base.config.vocab_size, (32, SEQ), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    names = shuffled_names(32, 8)

    def routed() -> torch.Tensor:
        with ah.route(ours, names):
            return ours(input_ids=ids, attention_mask=mask).last_hidden_state

    def single() -> torch.Tensor:
        return ours(input_ids=ids, attention_mask=mask).last_hidden_state  # a7 active: the last one added

    def peft_mixed() -> torch.Tensor:
        return theirs(input_ids=ids, attention_mask=mask, adapter_names=names).last_hidden_state

    def base_only() -> torch.Tensor:
        return base(input_ids=ids, attention_mask=mask).last_hidden_state

    diff = check_same(routed, peft_mixed)
    t = paired({"ours": routed, "peft": peft_mixed, "single": single, "base": base_only}, rounds)
    return [
        [
            "8 adapters, 32 x 64, shuffled: ours / PEFT",
            f"ours {ms(t, 'ours')} | PEFT {ms(t, 'peft')} (max diff {diff:.1e})",
            f"{ratio(t, 'ours', 'peft'):.3f}",
            "<= 0.7",
        ],
        [
            "  ours routed / ours single adapter",
            f"single {ms(t, 'single')} | base {ms(t, 'base')}",
            f"{ratio(t, 'ours', 'single'):.3f}",
            "<= 1.3",
        ],
        [
            "  over the base: ours | PEFT",
            f"{ratio(t, 'ours', 'base') - 1:+.1%} | {ratio(t, 'peft', 'base') - 1:+.1%}",
            "",
            "",
        ],
    ]


def bench_many(base: torch.nn.Module, rounds: int) -> list[list[str]]:
    ours = with_adapters(base, 64)
    theirs = peft_copy(base, ours, 64)
    ids = torch.randint(0, base.config.vocab_size, (64, SEQ), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    names = shuffled_names(64, 64)

    def routed() -> torch.Tensor:
        with ah.route(ours, names):
            return ours(input_ids=ids, attention_mask=mask).last_hidden_state

    def peft_mixed() -> torch.Tensor:
        return theirs(input_ids=ids, attention_mask=mask, adapter_names=names).last_hidden_state

    diff = check_same(routed, peft_mixed)
    t = paired({"ours": routed, "peft": peft_mixed}, rounds)
    return [
        [
            "64 adapters, one per row, 64 x 64: ours / PEFT",
            f"ours {ms(t, 'ours')} | PEFT {ms(t, 'peft')} (max diff {diff:.1e})",
            f"{ratio(t, 'ours', 'peft'):.3f}",
            "report",
        ]
    ]


def threshold_names(k: int, grouped: bool) -> list[str | None]:
    """32 rows over `k` adapters (k = 1: half of them base rows), shuffled or grouped by adapter."""
    names: list[str | None] = list(shuffled_names(32, k, seed=k))
    if k == 1:
        names = [None if i % 2 else n for i, n in enumerate(names)]
    return sorted(names, key=lambda n: (n is None, n or "")) if grouped else names


def bench_threshold(base: torch.nn.Module, rounds: int) -> list[list[str]]:
    lora = with_adapters(base, 16)
    bottleneck = copy.deepcopy(base)
    for i in range(8):
        ah.add_adapter(bottleneck, f"a{i}", ah.BottleneckConfig(style="houlsby", init="bert"))
    ids = torch.randint(0, base.config.vocab_size, (32, SEQ), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    rows = []
    cases = [("LoRA", lora, k, grouped) for k in (1, 2, 4, 8, 16) for grouped in (False, True)]
    cases += [("Houlsby", bottleneck, k, grouped) for k in (1, 8) for grouped in (False, True)]
    for kind, model, k, grouped in cases:
        names = threshold_names(k, grouped)

        def run(method: str, names: list[str | None] = names, model: torch.nn.Module = model) -> torch.Tensor:
            with ah.route(model, names, method=method):
                return model(input_ids=ids, attention_mask=mask).last_hidden_state

        t = paired({"bmm": lambda: run("bmm"), "segments": lambda: run("segments")}, rounds)
        layout = "grouped" if grouped else "shuffled"
        rows.append(
            [
                f"{kind}: {k} adapter(s){' + base rows' if k == 1 else ''}, {layout}",
                f"bmm {ms(t, 'bmm')} | segments {ms(t, 'segments')}",
                f"{ratio(t, 'bmm', 'segments'):.3f}",
                "",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", default="mixed,many,threshold", help="comma-separated subset")
    args = parser.parse_args()
    import peft
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    only = set(args.only.split(","))
    base = models.minilm()
    headers = ["benchmark", "measured (medians)", "ratio", "target"]
    if "mixed" in only:
        print_table("Routing: mixed batches, ours vs PEFT", bench_mixed(base, args.rounds), headers)
    if "many" in only:
        print_table("Routing: one adapter per row", bench_many(base, max(3, args.rounds // 2)), headers)
    if "threshold" in only:
        rows = bench_threshold(base, max(3, args.rounds // 2))
        print_table("Routing: bmm / segments (nn/routing.py SEGMENT_MAX_ADAPTERS)", rows, headers)


if __name__ == "__main__":
    main()
