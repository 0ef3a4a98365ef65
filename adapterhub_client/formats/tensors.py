"""Weight files in and out for every format: safetensors, and pickles only when the caller allows them.

A pickle (``.bin``, ``.pt``, ... : :func:`adapterhub_client._fs.is_pickle_name`) loads only with
``allow_pickle=True``, and then as ``torch.load(weights_only=True)``: a file from the internet must
not run code. A safetensors file's header is validated in full
(:func:`~..basemodel.safetensors_header.read_header`) before safetensors reads it. Whatever the file
holds must be a mapping of names to tensors; anything unreadable is an
:class:`~..errors.InvalidPackageError` naming the file and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .._fs import is_pickle_name
from ..basemodel.safetensors_header import read_header
from ..errors import InvalidPackageError, UsageError


def pickle_refused(path: Path) -> InvalidPackageError:
    return InvalidPackageError(
        f"{path.parent}: weights are pickled ({path.name}); pass allow_pickle=True to load them "
        "(as torch.load(weights_only=True))"
    )


def load_tensors(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors in a safetensors or (if allowed) pickle file, by name, on the CPU."""
    if is_pickle_name(path):
        if not allow_pickle:
            raise pickle_refused(path)
        try:
            data: object = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InvalidPackageError(f"{path}: cannot read the pickled weights ({_first_line(exc)})") from None
    else:
        read_header(path)  # the full check first: its errors name the file and the reason
        try:
            data = load_file(str(path))
        except Exception as exc:
            raise InvalidPackageError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in data.items()
    ):
        raise InvalidPackageError(f"{path}: expected a mapping of names to tensors, got {type(data).__name__}")
    return dict(data)


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message``: errors print as one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` (detached, contiguous, on the CPU) as safetensors with PEFT's metadata (and `metadata`)."""
    cpu = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    try:
        save_file(cpu, str(path), metadata={"format": "pt", **(metadata or {})})
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
