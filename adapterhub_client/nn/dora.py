"""DoRA's weight math, once: used by the LoRA layers (forward norm, merge, unmerge) and by the
streaming checkpoint merge, so the two cannot drift apart.

DoRA (Liu et al. 2024) rescales the LoRA-updated weight per output feature:
``W' = m * (W + sBA) / ||W + sBA||`` with ``W`` as ``[out, in]`` and the norm over each row
(PEFT's ``lora_magnitude_vector`` is ``m``). Every function takes ``[out, in]`` tensors; callers
orient stored weights first (:mod:`.layout`).
"""

from __future__ import annotations

import torch


def dora_norm(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``||W + delta||`` per output feature (one value per row of ``[out, in]``)."""
    return torch.linalg.vector_norm(weight + delta, dim=1)


def dora_merge(
    weight: torch.Tensor,
    delta: torch.Tensor,
    magnitude: torch.Tensor,
    norm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m / n * (W + delta), n)``; ``n`` is ``||W + delta||`` unless given (a layer takes it from
    the base without other merged adapters, as its forward does)."""
    combined = weight + delta
    if norm is None:
        norm = torch.linalg.vector_norm(combined, dim=1)
    return (magnitude / norm).unsqueeze(1) * combined, norm


def dora_unmerge(
    weight: torch.Tensor,
    delta: torch.Tensor,
    magnitude: torch.Tensor,
    norm: torch.Tensor,
) -> torch.Tensor:
    """Inverse of :func:`dora_merge` with the norm it used: ``W' / (m / n) - delta``."""
    return weight / (magnitude / norm).unsqueeze(1) - delta
