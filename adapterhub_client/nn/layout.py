"""How a base weight is laid out: the one vocabulary of module kinds and its orientation rule. Torch-free.

LoRA thinks in ``[out, in]`` (``delta = s * B @ A``); the base weight it lands on is stored as

* ``linear``    ``nn.Linear``              ``[out, in]``  (as the delta)
* ``conv1d``    GPT-2 ``Conv1D``           ``[in, out]``  (transposed; PEFT's ``fan_in_fan_out``)
* ``embedding`` ``nn.Embedding``           ``[num, dim]`` (transposed: LoRA's "in" is the vocabulary)

Manifests record the kind per module (``base_model.architecture.modules.<path>.layer``), the
manifest builder derives it from PEFT files, the streaming merge reads it, and the torch side
classifies live modules with :func:`adapterhub_client.nn.targets.kind_of`. This module imports
nothing heavy, so torch-free code (manifest building) may use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LINEAR = "linear"
CONV1D = "conv1d"
EMBEDDING = "embedding"
KINDS = (LINEAR, CONV1D, EMBEDDING)

# model types whose attention/MLP projections are GPT-2 `Conv1D` ([in, out] weights)
CONV1D_MODEL_TYPES = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
_EMBEDDING_NAME = re.compile(r"(embed|(^|\.)(wte|wpe)\.)")


def is_transposed(kind: str) -> bool:
    """Whether a weight of this kind is stored transposed to LoRA's ``[out, in]``."""
    return kind != LINEAR


def weight_shape(kind: str, out_features: int, in_features: int) -> list[int]:
    """The stored shape of a base weight of `kind` for a LoRA with these features."""
    return [in_features, out_features] if is_transposed(kind) else [out_features, in_features]


def guess_kind(weight: Sequence[int], dense: Sequence[int], name: str, model_type: str | None) -> str:
    """The kind of a stored weight whose manifest predates ``layer``: the delta's ``[out, in]`` shape
    decides; a square weight is read as an embedding by its name, as Conv1D in GPT-2-style models,
    else as Linear."""
    weight, dense = tuple(weight), tuple(dense)
    if dense != weight:
        return CONV1D  # stored transposed; the caller's shape check refuses anything else
    if len(weight) == 2 and weight[0] == weight[1]:
        if _EMBEDDING_NAME.search(name):
            return EMBEDDING
        if model_type in CONV1D_MODEL_TYPES:
            return CONV1D
    return LINEAR
