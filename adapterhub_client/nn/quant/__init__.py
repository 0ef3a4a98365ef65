"""4-bit quantization of base models for QLoRA, in memory: NF4 / FP4 codes bit for bit as bitsandbytes
(:mod:`.blockwise`), the 4-bit linear layer and its bitsandbytes state-dict layout (:mod:`.layer`), and
the model-level API (:mod:`.convert`). Files (safetensors, streaming a checkpoint into a quantized
model) are :mod:`adapterhub_client.formats.quantized`'s."""

from __future__ import annotations

from .blockwise import FP4, NF4, QUANT_TYPES, QuantState, codebook, dequantize_4bit, quantize_4bit
from .convert import (
    KbitTraining,
    Quantization,
    prepare_for_kbit_training,
    quantization_of,
    quantize_modules,
    quantize_targets,
    quantized_layers,
)
from .layer import Linear4bit

__all__ = [
    "FP4",
    "NF4",
    "QUANT_TYPES",
    "KbitTraining",
    "Linear4bit",
    "QuantState",
    "Quantization",
    "codebook",
    "dequantize_4bit",
    "prepare_for_kbit_training",
    "quantization_of",
    "quantize_4bit",
    "quantize_modules",
    "quantize_targets",
    "quantized_layers",
]
