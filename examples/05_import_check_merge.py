"""Bring adapters made by other tools: a PEFT LoRA and an AdapterHub adapter, checked against a local base
model, attached, and the LoRA merged into a deployable checkpoint that plain transformers loads.

A PEFT directory (`adapter_config.json` + `adapter_model.safetensors`, what `save_pretrained` writes and
Hugging Face Hub repos hold) and an AdapterHub directory (what AdapterHub's `model.save_adapter` writes)
work wherever a package does. `adapters attach --check` gives the verdict from the files' metadata alone,
before any weight is read; attaching loads the weights onto the model (every tensor must land);
`adapters pack --base` turns the PEFT directory into a package that records the base's fingerprints (so
`--strict` accepts exactly that base), and `adapters attach --merge --output DIR` streams the base
checkpoint with the LoRA folded in, tensor by tensor: the merged model computes what the base with the
adapter attached computes.

    python examples/05_import_check_merge.py                       # on all-MiniLM-L6-v2, a PEFT LoRA made here
    python examples/05_import_check_merge.py --peft DIR --adapterhub DIR --base DIR   # your own
    python examples/05_import_check_merge.py --tiny                # a tiny BERT built from MiniLM's config
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _shared

import adapterhub_client as ah


def outputs(model: Any, ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model.eval()(input_ids=ids).last_hidden_state


def make_peft_lora(base: Path, out: Path) -> Any:
    """A PEFT LoRA on the query and value projections, saved with PEFT's own save_pretrained. Its factors
    are random (init_lora_weights=False), as after training: a fresh PEFT LoRA (B = 0) changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModel.from_pretrained(str(base)),
        LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False),
    )
    model.save_pretrained(str(out))
    print(f"made a PEFT LoRA with peft's save_pretrained: {sorted(p.name for p in out.iterdir())}")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--base", type=Path, help="the base model's directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--peft", type=Path, help="a PEFT LoRA directory for --base (default: one made here)")
    parser.add_argument(
        "--adapterhub",
        type=Path,
        help="an AdapterHub adapter directory for --base (`adapters install ah:...` or AdapterHub's save_adapter)",
    )
    parser.add_argument("--allow-pickle", action="store_true", help="AdapterHub's pytorch_adapter.bin is a pickle")
    args = parser.parse_args()
    work = _shared.workdir(args.workdir, "import")

    import torch
    from transformers import AutoModel

    base = args.base or _shared.base_model_dir(args.tiny, work)
    plain_model = AutoModel.from_pretrained(str(base))
    ids = torch.randint(0, plain_model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    plain = outputs(plain_model, ids)  # the base alone
    peft_dir = args.peft
    peft_model = None
    if peft_dir is None:
        peft_dir = work / "peft-lora"
        peft_model = make_peft_lora(base, peft_dir)
    pickle = ["--allow-pickle"] if args.allow_pickle else []

    # the verdicts first: nothing but the files' metadata is read
    _shared.adapters("attach", str(peft_dir), "--model", str(base), "--check")
    if args.adapterhub:
        _shared.adapters("attach", str(args.adapterhub), "--model", str(base), "--check", *pickle)

    with ah.Hub() as hub:
        model = AutoModel.from_pretrained(str(base))
        name = hub.attach(model, str(peft_dir))
        attached = outputs(model, ids)
        change = _shared.max_difference(attached, plain)
        print(f"attached the PEFT LoRA as {name!r}: it changes the outputs by up to {change:.4f}")
        if peft_model is not None:
            peft_drift = _shared.max_difference(attached, outputs(peft_model, ids))
            print(f"  and matches PEFT's own forward up to {peft_drift:.2e}")
        if args.adapterhub:
            other = AutoModel.from_pretrained(str(base))
            ah_name = hub.attach(other, str(args.adapterhub), allow_pickle=args.allow_pickle)
            [info] = [a for a in ah.list_adapters(other) if a.name == ah_name]
            change = _shared.max_difference(outputs(other, ids), plain)
            print(
                f"attached the AdapterHub adapter as {ah_name!r} ({info.kind}): it changes the outputs by up to "
                f"{change:.4f}"
            )
    if not args.adapterhub:
        print("no --adapterhub DIR: AdapterHub's adapters live on the Hugging Face Hub (AdapterHub/<name>), e.g.")
        print("  adapters install ah:sentiment/sst-2@ukp --base-name bert-base-uncased --architecture pfeiffer")

    # a raw directory records no base fingerprint (verdict: architecture); packing it with --base does
    packed = work / "packed"
    _shared.adapters(
        "pack",
        str(peft_dir),
        "--output",
        str(packed),
        "--name",
        "acme/imported-lora",
        "--version",
        "1.0.0",
        "--base",
        str(base),
    )
    merged_dir = work / "merged"  # in Python: Hub().attach_dir([str(packed)], base, strict=True, merge_to=merged_dir)
    _shared.adapters("attach", str(packed), "--model", str(base), "--strict", "--merge", "--output", str(merged_dir))
    merged = AutoModel.from_pretrained(str(merged_dir))  # plain transformers: no adapter code involved
    drift = _shared.max_difference(outputs(merged, ids), attached)
    print(f"the merged checkpoint in {merged_dir} loads with transformers' AutoModel (no adapter code)")
    print(f"  and matches the attached LoRA up to {drift:.2e}")
    if drift > 1e-4:
        raise SystemExit("the merged checkpoint computes something else than the attached adapter")


if __name__ == "__main__":
    main()
