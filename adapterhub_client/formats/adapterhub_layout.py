"""AdapterHub's (`adapters` library) adapter files and key names, once, torch-free.

A directory holds ``adapter_config.json`` (``{name, model_class | model_name, model_type,
hidden_size, config: {...}}``) and ``adapter.safetensors`` or a pickled ``pytorch_adapter.bin``.
Bottleneck keys are ``<container>.adapters.<saved name>.<param>`` where the container is a block's
attention output (``...<i>.attention.output``) or FFN output (``...<i>.output``); LoRA keys are
``<module>.loras.<saved name>.<lora_A | lora_B>``.

A prediction head saved next to the adapter (``save_adapter(..., with_head=True)`` of a
flexible-head model such as ``BertAdapterModel``, or ``save_head``) adds ``head_config.json``
(``{name, model_class, model_type, hidden_size, config: {head_type, num_labels | num_choices,
layers, activation_function, use_pooler, bias, dropout_prob, label2id}}``; ``config`` is null for a
model class's own static head) and ``pytorch_model_head.bin`` (a pickle, the default) or
``model_head.safetensors`` (``use_safetensors=True``), keyed ``heads.<saved name>.<index>.<param>``
with AdapterHub's layout (``PredictionHead.build``: ``[Dropout, Linear, activation]`` per hidden
layer, then ``[Dropout, Linear]``; a falsy activation adds no module).

Which token a sequence-level head (classification, multi-label, multiple choice) reads depends on
the model class's ``forward``: the first token of ``last_hidden_state`` for the encoder models of
:data:`FIRST_TOKEN_MODEL_TYPES`, ``pooler_output`` with ``use_pooler`` for those of
:data:`POOLER_MODEL_TYPES`; decoder and encoder-decoder models pick an end-of-sequence token instead.
"""

from __future__ import annotations

import re
from typing import Any

CONFIG_FILE = "adapter_config.json"
SAFE_WEIGHTS_FILE = "adapter.safetensors"
PICKLE_FILE = "pytorch_adapter.bin"
BOTTLENECK_MARK = ".adapters."
LORA_MARK = ".loras."
HEAD_CONFIG_FILE = "head_config.json"
HEAD_SAFE_WEIGHTS_FILE = "model_head.safetensors"
HEAD_PICKLE_FILE = "pytorch_model_head.bin"
HEAD_PREFIX = "heads."
HEAD_FILES = (HEAD_CONFIG_FILE,)
HEAD_WEIGHT_FILES = (HEAD_SAFE_WEIGHTS_FILE, HEAD_PICKLE_FILE)  # the one a reader takes first, first
# pickled weight file -> the safetensors file `adapters` writes instead (use_safetensors=True)
SAFETENSORS_FOR_PICKLE = {PICKLE_FILE: SAFE_WEIGHTS_FILE, HEAD_PICKLE_FILE: HEAD_SAFE_WEIGHTS_FILE}
# model_type -> its flexible-head model reads [CLS] as outputs[0][:, 0] (models/<type>/adapter_model.py)
FIRST_TOKEN_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "bert-generation",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "roberta",
        "vit",
        "xlm-roberta",
        "xmod",
    }
)
# ... and passes pooled_output=outputs[1] (the pooler's output) to heads with use_pooler
POOLER_MODEL_TYPES = frozenset({"albert", "bert", "roberta", "vit", "xlm-roberta", "xmod"})
# AdapterHub's constructor defaults (heads/base.py), for a head config that leaves a key out
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {"num_labels": 2, "layers": 2, "activation_function": "tanh"},
    "multilabel_classification": {"num_labels": 2, "layers": 2, "activation_function": "tanh"},
    "multiple_choice": {"num_choices": 2, "layers": 2, "activation_function": "tanh"},
    "tagging": {"num_labels": 2, "layers": 1, "activation_function": "tanh"},
    "question_answering": {"num_labels": 2, "layers": 1, "activation_function": "tanh"},
}
# encoder families whose bottleneck containers (<block>.attention.output, <block>.output) hold the site's
# LayerNorm, which is what a bottleneck's manifest records as the module it touches
LAYERNORM_SITE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "xmod"})
_LAYER_IDX = re.compile(r"(?:^|\.)(\d+)\.")


def is_adapterhub_config(meta: Any) -> bool:
    """Whether parsed ``adapter_config.json`` contents are AdapterHub's: they nest the adapter's own
    config under ``config`` (PEFT's are flat, with ``peft_type``)."""
    return isinstance(meta, dict) and "config" in meta and "peft_type" not in meta


def head_param(key: str, saved_name: str) -> str | None:
    """``heads.<saved name>.1.weight`` -> ``1.weight``; None for a key of another head or none."""
    prefix = f"{HEAD_PREFIX}{saved_name}."
    return key[len(prefix) :] if key.startswith(prefix) and len(key) > len(prefix) else None


def bottleneck_slot(container: str) -> tuple[str, str] | None:
    """``encoder.layer.3.attention.output`` -> ``("encoder.layer.3.", "attn")``; ``...3.output`` ->
    ``(..., "ffn")``: the block's path and which of its sites the adapter sits at. None without an index."""
    padded = container + "."
    m = _LAYER_IDX.search(padded)
    if m is None:
        return None
    return padded[: m.end()], "attn" if "att" in padded[m.end() :] else "ffn"
