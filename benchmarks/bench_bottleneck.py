"""Bottleneck forward overhead over the base model on the real all-MiniLM-L6-v2 (8 x 128 tokens).

Base, Pfeiffer and Houlsby models are timed in the same round (interleaved), and the overhead is
the median of the per-round ratios: forward medians drift about 15% between runs, paired ratios
only by a few percent. AdapterHub's figures come from ``tests/fixtures/adapterhub/adapterhub_overhead.json``
(measured by ``tools/make_adapterhub_fixtures.py`` the same way, with `adapters` 1.3.0 and
transformers 4.57 in their own venv) next to the ones in REFERENCE.md.

    python benchmarks/bench_bottleneck.py [--rounds 15] [--threads 2] [--json out.json] [--adapterhub]

``--adapterhub`` also re-measures AdapterHub right before ours (needs ``tools/.adapterhub-venv``, see
the fixture script), so both figures come from the same machine state.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import adapterhub_client as ah  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests.models import minilm  # noqa: E402

REFERENCE = {"pfeiffer": 0.097, "houlsby": 0.142}  # REFERENCE.md, AdapterHub on a 2-core machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--adapterhub", action="store_true", help="re-measure AdapterHub now (its own venv)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fresh_hub = measure_adapterhub(args.rounds, args.threads) if args.adapterhub else None

    base = minilm()
    variants = {"base": base}
    for style in ("pfeiffer", "houlsby"):
        m = copy.deepcopy(base)
        # AdapterHub's presets: Pfeiffer relu, Houlsby swish, both reduction 16 (MiniLM: width 24)
        nl = "swish" if style == "houlsby" else "relu"
        ah.add_adapter(m, style, ah.BottleneckConfig(style=style, reduction_factor=16, non_linearity=nl, init="bert"))
        variants[style] = m.eval()

    ids = torch.randint(1000, 20000, (8, 128), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for m in variants.values():  # warm-up
            m(input_ids=ids)
        for _ in range(args.rounds):
            for name, m in variants.items():
                t = time.perf_counter()
                m(input_ids=ids)
                times[name].append(time.perf_counter() - t)

    ours = {k: statistics.median(t / b for t, b in zip(times[k], times["base"])) - 1 for k in ("pfeiffer", "houlsby")}
    # contention only adds time: the fastest rounds give a second, noise-robust view
    ours_min = {k: min(times[k]) / min(times["base"]) - 1 for k in ("pfeiffer", "houlsby")}
    fixture = ROOT / "tests" / "fixtures" / "adapterhub" / "adapterhub_overhead.json"
    hub_all = json.loads(fixture.read_text()) if fixture.is_file() else {}
    if fresh_hub is not None:
        hub_all = fresh_hub
        print(f"AdapterHub re-measured now: base median {fresh_hub['median_ms']['base']:.1f} ms")

    label = "AdapterHub (now)" if fresh_hub is not None else "AdapterHub (fixture run)"
    hub, hub_min = hub_all.get("overhead", {}), hub_all.get("overhead_min", {})
    rows = [
        [
            k,
            f"{statistics.median(times[k]) * 1e3:.1f}",
            f"{ours[k]:+.1%}",
            f"{ours_min[k]:+.1%}",
            f"{hub[k]:+.1%}" if k in hub else "n/a",
            f"{hub_min[k]:+.1%}" if k in hub_min else "n/a",
            f"{REFERENCE[k]:+.1%}",
        ]
        for k in ("pfeiffer", "houlsby")
    ]
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (numbers are only meaningful near 0 on 2 cores)")
    print_table(
        f"Bottleneck forward overhead over the base, MiniLM 8 x 128 tokens, {args.threads} threads, "
        f"{args.rounds} paired rounds (base median {statistics.median(times['base']) * 1e3:.1f} ms)",
        rows,
        [
            "style",
            "ours ms",
            "ours (median)",
            "ours (min)",
            f"{label} (median)",
            f"{label} (min)",
            "AdapterHub (REFERENCE.md)",
        ],
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "ours": ours,
                    "ours_min": ours_min,
                    "adapterhub": hub,
                    "adapterhub_min": hub_min,
                    "reference": REFERENCE,
                    "median_ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
                },
                indent=2,
            )
        )
    return 0


def measure_adapterhub(rounds: int, threads: int) -> dict | None:
    py = ROOT / "tools" / ".adapterhub-venv" / "bin" / "python"
    if not py.exists():
        print("no tools/.adapterhub-venv: using the fixture's AdapterHub figures")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hub.json"
        subprocess.run(
            [
                str(py),
                str(ROOT / "tools" / "make_adapterhub_fixtures.py"),
                "--bench-only",
                "--rounds",
                str(rounds),
                "--threads",
                str(threads),
                "--bench-json",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        return json.loads(out.read_text())


if __name__ == "__main__":
    sys.exit(main())
