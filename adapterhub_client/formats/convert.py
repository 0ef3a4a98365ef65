"""Pickled adapter directories rewritten as safetensors, once, so that no later install or load needs
a pickle (``adapters convert --allow-pickle``).

Which file becomes which is each format's own naming: AdapterHub's ``pytorch_adapter.bin`` ->
``adapter.safetensors`` and ``pytorch_model_head.bin`` -> ``model_head.safetensors``
(:data:`.adapterhub_layout.SAFETENSORS_FOR_PICKLE`, what ``adapters`` writes with
``use_safetensors=True``), PEFT's ``adapter_model.bin`` -> ``adapter_model.safetensors``
(:data:`.peft_layout.SAFETENSORS_FOR_PICKLE`). Every other file at the top of the directory is
copied as it is; a pickle that is not a weights file of the format (``training_args.bin``) is left
out, with an :class:`~..errors.AdapterWarning` naming it. Where the directory already has the
safetensors file next to the pickle, the safetensors file is what every reader loads, so it is
kept and the pickle dropped.

Pickles load only with ``allow_pickle=True``, and then as ``torch.load(weights_only=True)``
(:func:`.tensors.load_tensors`). The output is written into a temporary sibling and renamed into
place: `out_dir` (new, or an empty directory) gets the whole result or nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from .._fs import TEMP_PREFIX, is_pickle_name
from ..errors import AdapterWarning, UsageError, storage_error
from . import adapterhub_layout, peft_layout
from .files import ADAPTERHUB, PACKAGE, PEFT, as_path, detect_format, input_dir
from .tensors import load_tensors, save_tensors

__all__ = ["convert_package"]


def _plan(root: Path, fmt: str) -> tuple[dict[Path, str], list[Path], list[str]]:
    """``({pickle: safetensors name}, files to copy, pickles left out)`` for the directory `root`."""
    renames = adapterhub_layout.SAFETENSORS_FOR_PICKLE if fmt == ADAPTERHUB else peft_layout.SAFETENSORS_FOR_PICKLE
    present = {p.name for p in root.iterdir() if p.is_file()}
    convert: dict[Path, str] = {}
    copy: list[Path] = []
    left_out: list[str] = []
    for name in sorted(present):
        target = renames.get(name)
        if target is not None:
            if target not in present:  # else the safetensors file (copied) is what readers load
                convert[root / name] = target
        elif is_pickle_name(name):
            left_out.append(name)
        else:
            copy.append(root / name)
    return convert, copy, left_out


def convert_package(
    src_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], allow_pickle: bool = False
) -> Path:
    """Write the AdapterHub or PEFT directory `src_dir` (or a package keeping such files, as an installed
    one) to `out_dir` with its pickled weights as safetensors (same tensors, same names); return `out_dir`.

    Refused without ``allow_pickle`` when there is a pickle to convert (loading one runs
    ``torch.load(weights_only=True)``: the user says yes to that explicitly).
    """
    fmt, root = detect_format(input_dir(src_dir))
    skip: set[str] = set()
    if fmt == PACKAGE:  # e.g. an installed AdapterHub adapter: its files as AdapterHub wrote them
        from ..manifest import MANIFEST_FILE, read_manifest

        kept = read_manifest(root)["adapter"]["config"].get("format")
        if kept not in (ADAPTERHUB, PEFT):
            raise UsageError(f"{root}: already a package in our own format (safetensors); nothing to convert")
        fmt, skip = kept, {MANIFEST_FILE, ".install.json"}  # the output is the adapter's own directory
    out = as_path(out_dir, "output directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty directory")
    if out.resolve() == root.resolve():
        raise UsageError(f"{out}: the output must differ from the directory converted")
    convert, copy, left_out = _plan(root, fmt)
    copy = [p for p in copy if p.name not in skip]
    if convert and not allow_pickle:
        names = ", ".join(p.name for p in convert)
        raise UsageError(
            f"{root}: weights are pickled ({names}); converting loads them with torch.load(weights_only=True): "
            "pass allow_pickle=True (adapters convert --allow-pickle)"
        )
    loaded = {target: load_tensors(path, allow_pickle=True) for path, target in convert.items()}  # all before writing
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it 0700: the output is a plain directory
    except OSError as exc:
        raise storage_error(exc, parent) or UsageError(f"{out}: cannot create ({exc.strerror or exc})") from None
    try:
        for target, tensors in loaded.items():
            # a pickle may hold views of one storage; safetensors stores each tensor on its own
            save_tensors({k: t.detach().clone() for k, t in tensors.items()}, tmp / target)
        for path in copy:
            shutil.copyfile(path, tmp / path.name)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise storage_error(exc, out) or UsageError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if left_out:
        warnings.warn(
            AdapterWarning(f"{root}: not a weights file of the adapter, left out: {', '.join(left_out)}"),
            stacklevel=2,
        )
    return out
