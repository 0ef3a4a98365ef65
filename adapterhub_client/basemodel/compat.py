"""Does an adapter fit a local base model? Verdicts from the manifest's `base_model` alone.

Owns FINGERPRINT.md § Verdicts:

- exact: the content fingerprint matches (same weights), or the base's weight files have the recorded
  sha256s (known without hashing for a Hugging Face cache snapshot, whose blobs are named by them), and
  the base is quantized as the manifest records (`base_model.quantization`: both in full precision, or
  both 4-bit with the same type, blocksize and double quantization for the adapted modules).
- exact (unquantized): the same weights in full precision, where the adapter was trained on their 4-bit
  quantization (QLoRA): it fits, but outputs differ a little from training's; the note says how to match.
- architecture: every module the adapter touches exists with the recorded shape and dtype, but the
  weights differ, the manifest records no content fingerprint, or the same weights are quantized
  otherwise than in training (differently, or here and not there).
- incompatible: a touched module is missing or has another shape or dtype.
- unknown: the manifest records neither modules nor a matching architecture fingerprint.

Module paths are aligned by one prefix rewrite (see `align_paths` and registry_schema/FINGERPRINT.md),
so a manifest recorded on `BertModel` paths checks against a `bert.`-prefixed checkpoint.
No torch here (an nn.Module passed in is read by `fingerprint.module`), and no settings: the
fingerprint cache directory is the caller's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import IncompatibleError
from ..modpaths import align_paths
from .fingerprint import LocalModel, ModelLike, algorithm_of
from .safetensors_header import canonical_dtype

EXACT = "exact"
EXACT_UNQUANTIZED = "exact (unquantized)"
ARCHITECTURE = "architecture"
INCOMPATIBLE = "incompatible"
UNKNOWN = "unknown"
SHOWN_DIFFERENCES = 5


@dataclass(frozen=True)
class Difference:
    """One adapted module that does not fit, as the verdict message and `--json` show it."""

    module: str  # path as the manifest records it
    expected: str  # "[384, 384] float32"
    found: str  # "[768, 768] float32" or "missing"

    def __str__(self) -> str:
        return f"{self.module}: expected {self.expected}, found {self.found}"


@dataclass
class Verdict:
    """The outcome of a check, with what it compared, so callers can explain or refuse."""

    kind: str  # exact | exact (unquantized) | architecture | incompatible | unknown
    message: str
    differences: list[Difference] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)  # the manifest's fingerprints
    found: dict[str, Any] = field(default_factory=dict)  # the local model's fingerprints (those computed)
    prefix_rewrite: tuple[str, str] = ("", "")  # (strip from manifest paths, then add) that aligned them

    @property
    def ok(self) -> bool:
        return self.kind in (EXACT, EXACT_UNQUANTIZED, ARCHITECTURE)

    @property
    def exact(self) -> bool:
        """The base weights are the recorded ones (what strict checks require), quantized or not."""
        return self.kind in (EXACT, EXACT_UNQUANTIZED)

    def to_json(self) -> dict[str, Any]:
        """The `--json` form (prefix_rewrite left out: it explains, it does not decide)."""
        return {
            "verdict": self.kind,
            "message": self.message,
            "differences": [dataclasses.asdict(d) for d in self.differences],
            "expected": self.expected,
            "found": self.found,
        }


# --------------------------------------------------------------------------- verdicts


def _describe(shape: Iterable[int], dtype: str | None) -> str:
    return f"{list(int(d) for d in shape)} {canonical_dtype(dtype) if dtype else '(any dtype)'}"


def to_local(path: str, rewrite: tuple[str, str]) -> str:
    """A manifest's module path as the local model names it, by the (strip, add) rewrite of `align_paths`."""
    strip, add = rewrite
    return add + path[len(strip) :] if path.startswith(strip) else path


def module_differences(
    modules: Mapping[str, Mapping[str, Any]], local: LocalModel
) -> tuple[list[Difference], tuple[str, str]]:
    """Each recorded module whose `.weight` is missing locally or differs in shape or dtype, and the
    (strip, add) rewrite that aligned manifest paths with local ones."""
    local_modules = {name[: -len(".weight")] for name in local.weights if name.endswith(".weight")}
    # a 4-bit checkpoint stores every weight as [out, in] (bitsandbytes' Linear4bit), GPT-2's Conv1D too
    four_bit = set((local.quantization or {}).get("modules") or ())
    strip, add = align_paths(modules, local_modules)
    differences: list[Difference] = []
    for path in sorted(modules):
        spec = modules[path]
        dtype = spec.get("dtype")  # None: unknown to the publisher, so any dtype matches
        expected = _describe(spec.get("shape", []), dtype)
        mapped = to_local(path, (strip, add))
        weight = local.weights.get(mapped + ".weight")
        if weight is None:
            differences.append(Difference(path, expected, "missing"))
            continue
        shape = list(weight["shape"])
        if spec.get("layer") == "conv1d" and mapped in four_bit and shape[::-1] == list(spec.get("shape", [])):
            shape = shape[::-1]
        found = _describe(shape, weight["dtype"] if dtype else None)
        if found != expected:
            differences.append(Difference(path, expected, found))
    return differences, (strip, add)


def check_compat(
    base_model: Mapping[str, Any], model: ModelLike, cache_dir: str | os.PathLike[str] | None = None
) -> Verdict:
    """Verdict for a manifest's `base_model` against a local model (directory path, nn.Module or LocalModel).

    `cache_dir` holds the fingerprint cache for a directory (None: hash without storing).

    Cheap checks first: module shapes from headers; the content fingerprint (hashing, cached for
    directories) only once the shapes fit. With `quantization` recorded, the fingerprints describe
    the unquantized base: a quantized module is compared by the full-precision weights it came from,
    and its quantization (or `local.quantization`, for a directory to be quantized) decides between
    exact and exact (unquantized)."""
    local = LocalModel.of(model, cache_dir)
    recorded = dict(base_model.get("fingerprint") or {})
    recorded_files = recorded.pop("files", None) or {}
    modules = (base_model.get("architecture") or {}).get("modules") or {}
    name = base_model.get("name") or "the base model"
    known = local.known_architecture
    found: dict[str, Any] = {"architecture": known} if known is not None else {}
    rewrite: tuple[str, str] = ("", "")
    if modules:
        differences, rewrite = module_differences(modules, local)
        if differences:
            shown = "; ".join(str(d) for d in differences[:SHOWN_DIFFERENCES])
            rest = len(differences) - SHOWN_DIFFERENCES
            more = f"; and {rest} more" if rest > 0 else ""
            return Verdict(
                INCOMPATIBLE,
                f"{local.source} does not fit {name}: {len(differences)} of {len(modules)} adapted modules "
                f"differ: {shown}{more}",
                differences,
                recorded,
                found,
                rewrite,
            )

    files_note = "the manifest records no content fingerprint"
    if recorded_files:
        files_note = "the manifest records only the base's weight-file sha256s, not comparable here"
        # Same weight files, same weights. Free for a Hugging Face cache snapshot and for files hashed
        # before; hashing the files is worth it only when no content fingerprint can decide instead.
        local_files = local.file_sha256(may_hash=not recorded.get("content"))
        if local_files is not None:
            found["files"] = local_files
            if sorted(local_files.values()) == sorted(recorded_files.values()):
                kind, message = same_weights(base_model, local, rewrite, "same weight files")
                return Verdict(kind, message, [], {**recorded, "files": recorded_files}, found, rewrite)
            files_note = "its weight files differ from the recorded base's"

    if recorded.get("content"):
        algorithm = algorithm_of(recorded["content"])
        content = local.content(algorithm)
        if content is not None:
            found["content"] = content
            if content == recorded["content"]:
                kind, message = same_weights(base_model, local, rewrite, "same weights")
                return Verdict(kind, message, [], recorded, found, rewrite)
            content_note = "weights differ from the recorded base"
        elif local.quantization is not None:
            content_note = (
                "cannot compare weights here (its 4-bit layers carry no digest of their full-precision weights)"
            )
        else:
            content_note = f"cannot compare weights here ({algorithm!r} fingerprints are not available)"
    else:
        content_note = files_note

    if modules:
        return Verdict(
            ARCHITECTURE,
            f"{local.source} has the shapes of {name} for all {len(modules)} adapted modules, but {content_note}",
            [],
            recorded,
            found,
            rewrite,
        )
    if recorded.get("architecture"):
        found["architecture"] = local.architecture
    if recorded.get("architecture") and recorded["architecture"] == local.architecture:
        return Verdict(
            ARCHITECTURE,
            f"{local.source} has the architecture of {name}, but {content_note}",
            [],
            recorded,
            found,
            rewrite,
        )
    arch_note = (
        "its architecture fingerprint differs" if recorded.get("architecture") else "no architecture fingerprint"
    )
    return Verdict(
        UNKNOWN,
        f"cannot tell whether {local.source} fits {name}: the manifest lists no adapted modules and "
        f"{arch_note}; {content_note}",
        [],
        recorded,
        found,
        rewrite,
    )


QUANTIZATION_SETTINGS = ("type", "blocksize", "double_quant")  # what changes the dequantized weights


def describe_quantization(quantization: Mapping[str, Any]) -> str:
    """``nf4 (blocksize 64, double quant)``: how a manifest's `base_model.quantization` reads in messages."""
    double = "double quant" if quantization.get("double_quant") else "no double quant"
    return f"{quantization.get('type')} (blocksize {quantization.get('blocksize')}, {double})"


def same_weights(
    base_model: Mapping[str, Any], local: LocalModel, rewrite: tuple[str, str], what: str
) -> tuple[str, str]:
    """(verdict kind, message) once the weights are known equal to the recorded base's: the quantization the
    adapter was trained on against the local one decides (module docstring)."""
    name = base_model.get("name") or "the base model"
    trained, here = base_model.get("quantization") or None, local.quantization
    if not trained and not here:
        return EXACT, f"{local.source} is {name}: {what}"
    if trained and not here:
        return EXACT_UNQUANTIZED, (
            f"{local.source} is {name}: {what}, in full precision; the adapter was trained on its "
            f"{describe_quantization(trained)} quantization, so outputs differ slightly from training's "
            f"(quantize the base the same way, e.g. adapters attach --quantize {trained.get('type')})"
        )
    assert here is not None
    if not trained:
        return ARCHITECTURE, (
            f"{local.source} has the weights of {name} ({what}) quantized to {describe_quantization(here)}, "
            "but the adapter was trained on the full-precision base"
        )
    differ = [
        f"{key} {trained.get(key)} in training, {here.get(key)} here"
        for key in QUANTIZATION_SETTINGS
        if trained.get(key) != here.get(key)
    ]
    modules = (base_model.get("architecture") or {}).get("modules") or {}
    if isinstance(trained.get("modules"), list) and isinstance(here.get("modules"), list):
        local_quantized = set(here["modules"])
        quantized_then = {m for m in modules if m in set(trained["modules"])}
        quantized_now = {m for m in modules if to_local(m, rewrite) in local_quantized}
        if quantized_then != quantized_now:
            changed = sorted(quantized_then ^ quantized_now)
            differ.append(f"{len(changed)} adapted modules quantized in one and not the other ({changed[0]}, ...)")
    if differ:
        return ARCHITECTURE, f"{local.source} has the weights of {name} ({what}) but quantized otherwise: " + "; ".join(
            differ
        )
    note = ""
    if trained.get("compute_dtype") != here.get("compute_dtype"):
        note = f"; computing in {here.get('compute_dtype')} where training used {trained.get('compute_dtype')}"
    return EXACT, f"{local.source} is {name}: {what}, quantized the same way ({describe_quantization(here)}){note}"


def ensure_compatible(
    base_model: Mapping[str, Any],
    model: ModelLike,
    *,
    strict: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Verdict:
    """check_compat(), raising IncompatibleError (exit 5) for incompatible, and with strict=True for
    anything but exact."""
    verdict = check_compat(base_model, model, cache_dir)
    if verdict.kind == INCOMPATIBLE or (strict and not verdict.exact):
        hint = " (strict: the exact base weights are required)" if verdict.kind != INCOMPATIBLE else ""
        raise IncompatibleError(verdict.message + hint)
    return verdict
