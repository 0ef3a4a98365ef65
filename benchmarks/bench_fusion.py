"""AdapterFusion forward overhead over the base model on the real all-MiniLM-L6-v2 (8 x 128 tokens):
ours against AdapterHub's ``Fuse``, both measured in this run, and our outputs against AdapterHub's.

    python benchmarks/bench_fusion.py [--rounds 15] [--threads 2] [--adapterhub-python PATH] [--json out.json]

Ours: base, one Pfeiffer adapter, and ``Fuse`` over two and three Pfeiffer adapters (the default
"dynamic" fusion), timed in the same rounds, interleaved; the overhead is the median of per-round
ratios (and the ratio of the fastest rounds, which contention cannot flatter). AdapterHub's figures come
from ``tools/bench_adapterhub_fusion.py`` run first, the same way, in AdapterHub's venv (``adapters``
1.3.0 on transformers 4.57: the interpreter from ``--adapterhub-python``, ``$ADAPTERHUB_PYTHON``,
``tools/.adapterhub-venv`` or ``/tmp/ahvenv``); without one, from the committed
``tests/fixtures/adapterhub/adapterhub_fusion_overhead.json``. The ratio column is
``(1 + ours) / (1 + AdapterHub)``: forward time over each one's own base.

With the venv the script also checks agreement: AdapterHub's tiny-BERT outputs for ``Fuse``, ``Stack``
and ``Parallel`` of two SeqBn adapters against ours on the same weights (max absolute difference).
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

FIXTURES = ROOT / "tests" / "fixtures" / "adapterhub"
TOOL = ROOT / "tools" / "bench_adapterhub_fusion.py"
VARIANTS = {"pfeiffer": "Pfeiffer, 1 adapter", "fuse2": "Fuse of 2 Pfeiffer", "fuse3": "Fuse of 3 Pfeiffer"}


def adapterhub_python(given: str | None) -> Path | None:
    for candidate in (given, os.environ.get("ADAPTERHUB_PYTHON"), ROOT / "tools/.adapterhub-venv/bin/python"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    fallback = Path("/tmp/ahvenv/bin/python")
    return fallback if fallback.exists() else None


def run_tool(py: Path, *args: str) -> None:
    subprocess.run([str(py), str(TOOL), *args], check=True, capture_output=True, cwd=ROOT)


def ours(rounds: int) -> dict[str, list[float]]:
    base = minilm()
    variants = {"base": base}
    for key, count in (("pfeiffer", 1), ("fuse2", 2), ("fuse3", 3)):
        m = copy.deepcopy(base)
        names = ["a", "b", "c"][:count]
        for name in names:
            ah.add_adapter(m, name, ah.BottleneckConfig(style="pfeiffer", init="bert"))
        if count > 1:
            ah.add_fusion(m, ah.Fuse(*names))
        else:
            ah.set_active_adapters(m, "a")
        variants[key] = m.eval()
    ids = torch.randint(1000, 20000, (8, 128), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for m in variants.values():
            m(input_ids=ids)
        for i in range(rounds):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                t = time.perf_counter()
                variants[name](input_ids=ids)
                times[name].append(time.perf_counter() - t)
    return times


def module_alone(rounds: int) -> list[list[str]]:
    """One layer's fusion on MiniLM-sized activations (8 x 128 x 384): ours against AdapterHub's
    BertFusion formula (query, a key and a value per child), timed interleaved in this process."""
    from adapterhub_client.nn.fusion import AdapterFusion

    torch.manual_seed(0)
    fusion = AdapterFusion(384, ah.FusionConfig(), 0.0).eval()
    h = torch.randn(8, 128, 384)

    def bertfusion(ds: list[torch.Tensor]) -> torch.Tensor:  # adapters 1.3.0, methods/modeling.py
        d = torch.stack(ds, dim=2)
        q, k, v = fusion.query(h), fusion.key(d), fusion.value(d)
        p = torch.softmax(torch.squeeze(torch.matmul(q.unsqueeze(2), k.transpose(-2, -1)), dim=2), dim=-1)
        return torch.squeeze(torch.matmul(p.unsqueeze(2), v), dim=2)

    rows = []
    for count in (2, 3, 8):
        ds = [torch.randn(8, 128, 384) * 0.1 for _ in range(count)]
        with torch.inference_mode():
            assert torch.allclose(fusion(h, ds), bertfusion(ds), atol=1e-4)
            t_ours, t_hub = [], []
            for _ in range(rounds):
                for fn, out in ((lambda ds=ds: fusion(h, ds), t_ours), (lambda ds=ds: bertfusion(ds), t_hub)):
                    t = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t)
        ratio = statistics.median(a / b for a, b in zip(t_ours, t_hub))
        rows.append(
            [
                str(count),
                f"{statistics.median(t_ours) * 1e3:.2f}",
                f"{statistics.median(t_hub) * 1e3:.2f}",
                f"{ratio:.3f}",
            ]
        )
    return rows


def agreement(py: Path) -> dict[str, float]:
    """Max |ours - AdapterHub| for Fuse, Stack and Parallel on AdapterHub's weights (tiny BERT)."""
    from safetensors.torch import load_file
    from transformers import BertModel

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hub.safetensors"
        run_tool(py, "--outputs", str(out))
        hub = load_file(str(out))
    model = BertModel.from_pretrained(str(FIXTURES / "base"), add_pooling_layer=False).eval()
    for name in ("a", "b"):
        ah.add_adapter(model, name, ah.BottleneckConfig(style="pfeiffer"))
    ah.add_fusion(model, ah.Fuse("a", "b"), ah.FusionConfig(dropout=0.0))
    # AdapterHub keeps a BERT layer's adapters at `output`; ours wrap `output.LayerNorm`
    state = {
        k.removeprefix("param.")
        .replace(".output.adapters.", ".output.LayerNorm.adapters.")
        .replace(".output.adapter_fusion_layer.", ".output.LayerNorm.fusions."): v
        for k, v in hub.items()
        if k.startswith("param.")
    }
    own = {k for k in model.state_dict() if ".adapters." in k or ".fusions." in k}
    if own != set(state):
        raise SystemExit(f"AdapterHub's tensors do not map onto ours: {sorted(own ^ set(state))[:4]}")
    model.load_state_dict(state, strict=False)
    diffs = {}
    for label, block in (
        ("fuse", ah.Fuse("a", "b")),
        ("stack", ah.Stack("a", "b")),
        ("parallel", ah.Parallel("a", "b")),
    ):
        ah.set_active_adapters(model, block)
        with torch.no_grad():
            mine = model(input_ids=hub["input_ids"]).last_hidden_state
        diffs[label] = (mine - hub[f"out.{label}"]).abs().max().item()
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adapterhub-python", help="the interpreter of a venv with adapters 1.3.0")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    py = adapterhub_python(args.adapterhub_python)
    if py is not None:
        with tempfile.TemporaryDirectory() as tmp:
            hub_json = Path(tmp) / "hub.json"
            run_tool(py, "--rounds", str(args.rounds), "--threads", str(args.threads), "--json", str(hub_json))
            hub = json.loads(hub_json.read_text())
        label = "AdapterHub (now)"
    else:
        hub = json.loads((FIXTURES / "adapterhub_fusion_overhead.json").read_text())
        label = "AdapterHub (fixture run)"
    times = ours(args.rounds)
    base_ms = statistics.median(times["base"]) * 1e3
    over = {k: statistics.median(t / b for t, b in zip(times[k], times["base"])) - 1 for k in VARIANTS}
    over_min = {k: min(times[k]) / min(times["base"]) - 1 for k in VARIANTS}
    rows = [
        [
            what,
            f"{statistics.median(times[k]) * 1e3:.1f}",
            f"{over[k]:+.1%}",
            f"{over_min[k]:+.1%}",
            f"{hub['overhead'][k]:+.1%}",
            f"{hub['overhead_min'][k]:+.1%}",
            f"{(1 + over[k]) / (1 + hub['overhead'][k]):.3f}",
        ]
        for k, what in VARIANTS.items()
    ]
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (numbers are only meaningful near 0 on 2 cores)")
    print_table(
        f"Fusion forward overhead over the base, MiniLM 8 x 128 tokens, {args.threads} threads, {args.rounds} "
        f"paired rounds (our base median {base_ms:.1f} ms; AdapterHub's {hub['median_ms']['base']:.1f} ms)",
        rows,
        ["variant", "ours ms", "ours (median)", "ours (min)", f"{label} (median)", f"{label} (min)", "ours/AdapterHub"],
    )
    print_table(
        "One layer's fusion alone, 8 x 128 x 384 (same process, interleaved)",
        module_alone(args.rounds),
        ["children", "ours ms", "BertFusion formula ms", "ours/BertFusion (paired)"],
    )
    diffs = agreement(py) if py is not None else {}
    if diffs:
        print_table(
            "Agreement with AdapterHub on the same weights (tiny BERT, two SeqBn adapters, eval)",
            [[k, f"{v:.2e}"] for k, v in diffs.items()],
            ["block", "max |ours - AdapterHub|"],
        )
    if args.json:
        args.json.write_text(
            json.dumps({"ours": over, "ours_min": over_min, "adapterhub": hub, "agreement": diffs}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
