"""The demo's classifier, shared by `adapters demo` and `tools/train_demo_adapter.py`: sentence
embeddings (mean-pooled, normalised, as sentence-transformers computes them for all-MiniLM-L6-v2)
compared with the embeddings of the label descriptions. Torch is imported here, so this module is
imported only when tensors are needed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import LABEL_TEXTS, LABELS

MAX_TOKENS = 64
SCALE = 20.0  # cosine similarities -> logits (a fixed temperature, as in contrastive training)


def embed(model: Any, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings of `texts` (gradients flow when enabled)."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def logits(model: Any, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """One logit per label: the scaled cosine similarity to each label description."""
    return SCALE * embed(model, tokenizer, texts) @ embed(model, tokenizer, LABEL_TEXTS).T


@torch.no_grad()
def predict(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64) -> list[str]:
    """The label of each text."""
    model.eval()
    labels = LABELS
    out: list[str] = []
    for i in range(0, len(texts), batch_size):
        out += [labels[int(j)] for j in logits(model, tokenizer, texts[i : i + batch_size]).argmax(-1)]
    return out
