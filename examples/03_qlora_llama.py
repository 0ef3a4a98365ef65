"""QLoRA: fine-tune a LoRA on a 4-bit (NF4) small causal LM, publish it with the quantization recorded.

The base is SmolLM2-135M when it is in your Hugging Face cache (`--model`), else a Llama of SmolLM2-135M's
shape built from its config with random weights (seeded, so a second build is the same base). Every linear
layer but the LM head becomes NF4 (`ah.quantize`, bit for bit as bitsandbytes), `ah.prepare_for_kbit_training`
freezes and upcasts what it must, and a LoRA on every linear layer trains for a few steps of next-token
prediction on real English text (by default the README of the installed transformers package; `--text FILE`
for yours). The adapter is published, installed into a fresh cache and attached to a freshly loaded and
quantized base, which then computes the trained model's loss again; `adapters attach --quantize nf4
--check` gives the verdict for the base on disk loaded as it was trained.

    python examples/03_qlora_llama.py            # SmolLM2-135M's shape, 10 steps of 2 x 128 tokens: ~10 min on 2 cores
    python examples/03_qlora_llama.py --tiny     # a 2-layer Llama, 6 steps
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import _shared

import adapterhub_client as ah

NAME = "acme/smollm2-qlora"
SEED = 0


def llama_config(tiny: bool) -> Any:
    """SmolLM2-135M's shapes (30 layers, hidden 576, MLP 1536, 9 heads, 3 KV heads, tied embeddings); with
    `tiny`, 2 layers of hidden 64 and a byte-sized vocabulary."""
    from transformers import LlamaConfig

    if tiny:
        return LlamaConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
        )
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=True,
    )


def local_copy(model_id: str) -> Path | None:
    """`model_id` as a directory, or its snapshot in the local Hugging Face cache; None when neither is
    there (nothing is downloaded)."""
    if Path(model_id).is_dir():
        return Path(model_id)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def base_dir(model_id: str, tiny: bool, work: Path) -> tuple[Path, str]:
    """(directory, what it is): the real model from a directory or the local Hugging Face cache, else one
    built from the config with seeded random weights and saved under `work` (about 0.5 GB at full size),
    so that the trainer and the installer load the same base from files."""
    local = None if tiny else local_copy(model_id)
    if local is not None:
        return local, model_id
    import torch
    from transformers import LlamaForCausalLM

    out = work / "base"
    torch.manual_seed(SEED)
    LlamaForCausalLM(llama_config(tiny)).save_pretrained(str(out))
    shape = "a tiny Llama" if tiny else "a SmolLM2-135M-shaped Llama"
    return out, f"{shape} built from its config (random weights: {model_id} is not in the local cache)"


def load(directory: Path) -> tuple[Any, Any]:
    """The causal LM in fp32 and its tokenizer (None when the directory has none)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    has_tokenizer = any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    return model, AutoTokenizer.from_pretrained(str(directory)) if has_tokenizer else None


def token_blocks(text: str, tokenizer: Any, seq_len: int, vocab: int) -> Any:
    """The text's tokens cut into rows of `seq_len` (UTF-8 bytes as tokens when there is no tokenizer)."""
    import torch

    ids = tokenizer(text)["input_ids"] if tokenizer is not None else [b % vocab for b in text.encode("utf-8")]
    rows = len(ids) // seq_len
    return torch.tensor(ids[: rows * seq_len]).view(rows, seq_len)


def mean_loss(model: Any, blocks: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float(model(input_ids=blocks, labels=blocks).loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M", help="a Hub id in your cache, or a directory")
    parser.add_argument("--text", type=Path, help="a UTF-8 text file to train on (default: transformers' README)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.batch_size, args.seq_len, args.lr = 6, 2, 32, 5e-3
    work = _shared.workdir(args.workdir, "qlora")

    import torch

    text = args.text.read_text("utf-8") if args.text else importlib.metadata.metadata("transformers")["Description"]
    base, what = base_dir(args.model, args.tiny, work)
    print(f"base model: {what}, in {base}")
    model, tokenizer = load(base)
    blocks = token_blocks(text, tokenizer, args.seq_len, model.config.vocab_size)
    train, held_out = blocks[:-2], blocks[-2:]
    print(f"text: {len(text):,} characters, {blocks.numel():,} tokens in {len(blocks)} rows of {args.seq_len}")

    quantization = ah.quantize(model, quant_type="nf4", blocksize=64, double_quant=True)
    print(
        f"quantized {len(quantization.modules)} linear layers to NF4 (not the LM head): "
        f"{quantization.source_bytes:,} -> {quantization.quantized_bytes:,} bytes"
    )
    ah.prepare_for_kbit_training(model)
    model.config.use_cache = False  # no KV cache while training (gradient checkpointing recomputes)
    ah.add_adapter(model, "qlora", ah.LoRAConfig(r=args.rank, alpha=2 * args.rank, target_modules="all-linear"))
    print(f"LoRA r={args.rank} on every linear layer: {ah.mark_only_adapters_trainable(model)}")
    before = mean_loss(model, held_out)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for step in range(args.steps):
        batch = train[torch.randint(0, len(train), (args.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"  step {step + 1}/{args.steps}: loss {float(loss.detach()):.4f}")
    after = mean_loss(model, held_out)
    print(f"held-out loss: {before:.4f} before training, {after:.4f} after")

    registry = f"file://{work / 'registry'}"
    with ah.Hub() as hub:
        hub.publish(model, registry, adapter="qlora", name=NAME, version=args.version, tags=["qlora", "llama"])
    print(f"published {NAME} {args.version} to {registry}")
    _shared.adapters("info", f"{NAME}@{args.version}", "--registry", registry)

    with ah.Hub(registry=registry, cache_dir=work / "elsewhere-cache") as elsewhere:
        [installed] = elsewhere.install([f"{NAME}@{args.version}"])
        manifest = json.loads((Path(installed.path) / "manifest.json").read_text())
        recorded = manifest["base_model"].get("quantization")
        shown = recorded if recorded is None else {k: v for k, v in recorded.items() if k != "modules"}
        layers = "" if recorded is None else f" ({len(recorded.get('modules', []))} layers)"
        print(f"installed manifest: base_model.quantization = {json.dumps(shown, sort_keys=True)}{layers}")
        fresh, _ = load(base)
        ah.quantize(fresh, quant_type="nf4", blocksize=64, double_quant=True)
        name = elsewhere.attach(fresh, f"{NAME}@{args.version}", strict=True)
    # the CLI's check compares the quantization too: the base on disk, loaded in NF4 as it was trained
    cache = str(work / "elsewhere-cache")
    _shared.adapters(
        "attach",
        f"{NAME}@{args.version}",
        "--model",
        str(base),
        "--quantize",
        "nf4",
        "--check",
        "--strict",
        "--registry",
        registry,
        "--cache-dir",
        cache,
    )
    again = mean_loss(fresh, held_out)
    print(f"attached as {name!r} to a fresh NF4 base: held-out loss {again:.4f} (trainer: {after:.4f})")
    if abs(again - after) > 1e-4:
        raise SystemExit("the attached adapter does not reproduce the trained model's loss")


if __name__ == "__main__":
    main()
