"""Adapters onto a base model: resolve and check every manifest before any weight is downloaded,
then install and either load them onto the model (the base loaded with the transformers class its
checkpoint was saved from) or merge the LoRA ones into a copy of the checkpoint on disk.

Importing this module imports no torch; the loading steps do, when they run."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bnb_layout import QUANT_TYPES
from ..errors import UsageError
from .for_model import check, local_model
from .install import install_resolved
from .resolution import resolve, root_index
from .results import AttachCheck, Attached, AttachReport, CheckedAdapter, Installed, Merged, Resolved
from .session import Session

if TYPE_CHECKING:
    from ..basemodel.compat import Verdict

_NOT_IN_TORCH_NAMES = re.compile(r"[^A-Za-z0-9_]")


def adapter_name(package_name: str) -> str:
    """The name an attached package gets on the model unless one is given: its full name with every
    character outside [A-Za-z0-9_] replaced by '_' (`acme/sentiment` -> `acme_sentiment`), since
    torch module names cannot contain '.' and two orgs may both publish a `sentiment`."""
    return _NOT_IN_TORCH_NAMES.sub("_", package_name)


# What `adapters attach --quantize TYPE` loads the base as (QLoRA's settings), in the manifest's
# `base_model.quantization` form: the check compares these before the base is loaded
QUANTIZE_SETTINGS: dict[str, Any] = {"blocksize": 64, "double_quant": True, "compute_dtype": "bfloat16"}


def check_for_attach(
    session: Session, refs: Sequence[str], model: Any, strict: bool = False, quantize: str | None = None
) -> AttachCheck:
    """Resolve `refs` and check every manifest against `model` (to be quantized with `quantize`, for a
    directory) before any weight is downloaded."""
    verdicts: list[Verdict] = []
    use_model_name(session, model)
    local = local_model(session, model)
    if quantize is not None and local.quantization is not None:  # a 4-bit checkpoint loads as it was quantized
        if local.quantization["type"] != quantize:
            raise UsageError(
                f"{local.source} is a {local.quantization['type']} checkpoint already; --quantize {quantize} "
                "cannot change that (give the full-precision base, or leave --quantize out)"
            )
    elif quantize is not None:
        local = dataclasses.replace(local, quantization={"type": quantize, **QUANTIZE_SETTINGS})
    items = resolve(session, refs, check=lambda manifest: verdicts.append(check(session, manifest, local, strict)))
    return AttachCheck(items, verdicts)


def use_model_name(session: Session, model: Any) -> None:
    """`ah:` identifiers resolve for the model being checked, unless a base name was given."""
    from .adapterhub_source import model_name_of

    if session.adapterhub.base_name is None:
        session.adapterhub = dataclasses.replace(session.adapterhub, base_name=model_name_of(model))


def attach(
    session: Session, model: Any, ref: str, name: str | None = None, strict: bool = False, allow_pickle: bool = False
) -> str:
    """Check `ref` against the in-memory `model`, install it if needed, attach it with the built-in
    modules; return the adapter's name. An architecture-only match warns (refused with strict=True)."""
    from ..basemodel.compat import EXACT
    from ..formats import load_adapter

    checked = check_for_attach(session, [ref], model, strict=strict)
    for verdict in checked.verdicts:
        if verdict.kind != EXACT:
            warnings.warn(verdict.message, stacklevel=3)  # at the caller of Hub.attach
    from ..formats.recipe_layout import COMPOSITION
    from ..nn.fusion import KIND as FUSION

    installed = install_resolved(session, checked.items)
    index = root_index(checked.items, ref)
    root, kind = installed[index], checked.items[index].manifest["adapter"]["type"]
    if kind in (COMPOSITION, FUSION):
        return attach_with_parts(model, root, installed, checked.items, name=name, allow_pickle=allow_pickle)
    return load_adapter(model, root.path, name=name or adapter_name(root.name), allow_pickle=allow_pickle)


def attach_with_parts(
    model: Any,
    root: Installed,
    installed: Sequence[Installed],
    items: Sequence[Resolved],
    *,
    name: str | None = None,
    allow_pickle: bool = False,
) -> str:
    """A recipe or a fusion (`root`), its parts already checked and installed: attach every part under
    `adapter_name` of its package (adapters first, then fusions, which need their adapters), then
    activate the root's composition; return the root's name."""
    from ..formats import load_adapter
    from ..formats.composition import load_composition
    from ..formats.fusion import load_fusion
    from ..formats.recipe_layout import COMPOSITION, PARTS
    from ..nn.fusion import KIND as FUSION

    kinds = {i.name: r.manifest["adapter"]["type"] for i, r in zip(installed, items, strict=True)}
    parts_of = {i.name: r.manifest["adapter"].get(PARTS) or {} for i, r in zip(installed, items, strict=True)}
    by_name = {i.name: i for i in installed}
    nested = [p for p in parts_of[root.name].values() if kinds.get(p) == COMPOSITION]
    if nested:
        raise UsageError(
            f"{root.name}: parts {nested} are recipes themselves; a recipe's parts are adapters or fusions"
        )

    def attached_names(package: str) -> dict[str, str]:
        return {saved: adapter_name(part) for saved, part in parts_of[package].items()}

    needed = set(parts_of[root.name].values())
    for package in [p for p in needed if kinds.get(p) == FUSION]:
        needed |= set(parts_of[package].values())
    for package in sorted(p for p in needed if kinds.get(p) not in (FUSION, COMPOSITION)):
        load_adapter(model, by_name[package].path, name=adapter_name(package), allow_pickle=allow_pickle)
    for package in sorted(p for p in needed if kinds.get(p) == FUSION):
        load_fusion(
            model, by_name[package].path, adapter_name(package), adapters=attached_names(package), activate=False
        )
    own = name or adapter_name(root.name)
    if kinds[root.name] == FUSION:
        return load_fusion(model, root.path, own, adapters=attached_names(root.name))
    load_composition(model, root.path, adapters=attached_names(root.name))
    return own


def attach_dir(
    session: Session,
    refs: Sequence[str],
    model_dir: str | os.PathLike[str],
    *,
    strict: bool = False,
    check_only: bool = False,
    merge_to: str | os.PathLike[str] | None = None,
    on_checked: Callable[[list[CheckedAdapter]], None] | None = None,
    allow_pickle: bool = False,
    quantize: str | None = None,
) -> AttachReport:
    """`adapters attach`: check `refs` against the model directory; unless `check_only`, install them
    and attach them onto the loaded base (proving every weight fits) or, with `merge_to`, write the
    base with the LoRA adapters merged. Only LoRA adapters merge: others are refused before download.
    `quantize` ("nf4", "fp4") loads the base's linear layers in 4 bits (QUANTIZE_SETTINGS), streamed."""
    if quantize is not None and quantize not in QUANT_TYPES:
        raise UsageError(f"--quantize takes {' or '.join(QUANT_TYPES)}, got {quantize!r}")
    if quantize is not None and merge_to is not None:
        raise UsageError("--quantize loads the base in 4 bits to attach onto; --merge writes full-precision weights")
    start = time.perf_counter()
    checked = check_for_attach(session, refs, model_dir, strict=strict, quantize=quantize)
    adapters = [
        CheckedAdapter(i.name, i.version, i.manifest["adapter"]["type"], v)
        for i, v in zip(checked.items, checked.verdicts)
    ]
    if on_checked is not None:
        on_checked(adapters)
    if merge_to is not None:
        not_lora = [a.name for a in adapters if a.type != "lora"]
        if not_lora:
            raise UsageError(
                f"--merge: {', '.join(not_lora)} cannot be merged into the base weights "
                "(only LoRA adapters merge; attach bottleneck adapters at run time)"
            )
    attached: list[Attached] | None = None
    merged: Merged | None = None
    if not check_only:
        installed = install_resolved(session, checked.items)
        if merge_to is not None:
            merged = merge(model_dir, installed, merge_to)
        else:
            base = load_base_model(model_dir, quantize=quantize)
            attached = attach_installed(base, installed, allow_pickle=allow_pickle)
    return AttachReport(str(model_dir), adapters, attached, merged, round(time.perf_counter() - start, 3))


def load_base_model(model_dir: str | os.PathLike[str], quantize: str | None = None) -> Any:
    """The base model of a directory, loaded with the transformers class its checkpoint was saved from (so
    heads such as lm_head exist; else AutoModel), its linear layers in 4 bits with `quantize`; transformers'
    progress bars and info logs stay off (they would mix into `attach` output, --json included)."""
    try:
        import transformers
    except ImportError:
        raise UsageError(
            "attaching onto a model directory needs transformers: pip install 'adapterhub-client[transformers]'"
        ) from None
    from ..formats.quantized import is_4bit_config, load_quantized, saved_model_class

    with quiet_transformers():
        config = transformers.AutoConfig.from_pretrained(str(model_dir))
        if quantize is not None or is_4bit_config(config):  # a 4-bit checkpoint loads in pure torch, as stored
            import torch

            compute_dtype = getattr(torch, QUANTIZE_SETTINGS["compute_dtype"])
            settings = {**QUANTIZE_SETTINGS, "compute_dtype": compute_dtype}
            return load_quantized(model_dir, quant_type=quantize or "nf4", **settings)
        return saved_model_class(config).from_pretrained(str(model_dir))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Transformers (and huggingface_hub) without progress bars or logs below errors, restored after."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def attach_installed(model: Any, installed: Sequence[Installed], allow_pickle: bool = False) -> list[Attached]:
    """Load each installed package onto `model` under `adapter_name` (strict: every key must land)."""
    from ..formats import load_adapter
    from ..nn.base import adapter_state
    from ..nn.model import list_adapters, parameter_count

    total = parameter_count(model)  # the base's, before any adapter
    out = []
    for inst in installed:
        name = load_adapter(model, inst.path, name=adapter_name(inst.name), allow_pickle=allow_pickle)
        info = next(a for a in list_adapters(model) if a.name == name)
        out.append(
            Attached(inst.name, name, info.modules, info.params, total, tuple(adapter_state(model).modules[name][:3]))
        )
    return out


def merge(model_dir: str | os.PathLike[str], installed: Sequence[Installed], output: str | os.PathLike[str]) -> Merged:
    """Stream the checkpoint in `model_dir` to `output` with the installed LoRA packages merged."""
    from ..formats.checkpoint import merge_checkpoint, read_lora_package

    adapters = [read_lora_package(i.path) for i in installed]
    return Merged.from_report(merge_checkpoint(Path(model_dir), adapters, Path(output)))
