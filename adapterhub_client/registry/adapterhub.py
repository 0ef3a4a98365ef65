"""AdapterHub identifiers (``ah:sentiment/sst-2@ukp``) resolved through AdapterHub's archived index.

AdapterHub's Hub repository (github.com/adapter-hub/Hub, Apache-2.0) stopped taking adapters in 2024;
its ``dist/v2`` index is shipped here as package data (``data/adapterhub-index.json``, derived by
``tools/derive_adapterhub_index.py``, which records the index's commit and license in its header).
Each archived adapter moved to the Hugging Face repository ``AdapterHub/<file stem>``: its default
version on ``main``, every version on a branch named after it.

The rules mirror the ``adapters`` 1.3.0 library (``utils.find_in_index`` / ``_split_identifier`` /
``_get_matching_version``): the grammar ``<task>[/<subtask>][@<org>]`` or ``@<org>/<file>``, a
one-word identifier naming a task with one subtask or a subtask, the org chosen when only one
exists, and the subtask's ``default`` otherwise. Two deliberate differences: an ``@org`` is always
honoured (the library returns the default of another org), and an architecture that matches
no candidate is an error (the library silently falls back to the default). Configs are compared by
meaning (:func:`same_architecture`), not by hash, so ``reduction_factor: 2`` equals ``2.0``.

Torch-free: the package-manager commands resolve identifiers without tensors.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from ..errors import IncompatibleError, InvalidPackageError, NotFoundError, UsageError
from ..manifest import shown

PREFIX = "ah:"
DATA_FILE = "adapterhub-index.json"
DATA_FORMAT = 1
MAX_DATA_BYTES = 4 << 20  # our own package data, still read no further than this
HF_ORG = "AdapterHub"  # where AdapterHub's migration pushed each archived adapter
DEFAULT_REVISION = "main"  # the default version's branch; every other version is a branch of its name
MAX_ARCHITECTURE_TEXT = 1000
_MAX_LISTED = 12  # choices named in one message before "and N more"

# Always used with fullmatch. Task, subtask and org names of the index are lower-case ASCII words
# (`sst-2`, `zh_yue`, `lohfink-rossi`); upper case is accepted here and simply finds nothing.
_WORD = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"
_WORD_RE = re.compile(_WORD)
_FILE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
_GRAMMAR = "ah:<task>/<subtask>[@<org>] or ah:@<org>/<file> (e.g. ah:sentiment/sst-2@ukp)"
_HASH_RE = re.compile(r"[0-9a-f]{16}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

# Hugging Face moved its legacy canonical models under organisations in 2024
# (`bert-base-uncased` -> `google-bert/bert-base-uncased`); the index keeps the old names.
_MOVED_CANONICAL_ORGS = ("google-bert", "FacebookAI", "openai-community", "distilbert")

# --- AdapterHub's config identity (adapters 1.3.0 utils.get_adapter_config_hash) ----------------

# Keys introduced in adapters v3: at these values they are left out of the hash, which keeps the
# hashes of v2 configs (the archived index's) unchanged.
_HASH_IGNORE_DEFAULT: dict[str, Any] = {
    "phm_layer": True,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "init_weights": "bert",
    "scaling": 1.0,
}


def _minimize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _minimize(v) for k, v in value.items() if v}
    return value


def config_hash(config: Mapping[str, Any]) -> str:
    """AdapterHub's identity of an adapter config: sha1 of its JSON with falsy values dropped (at
    every depth) and sorted keys, first 16 hex chars; the index keys its candidates by it."""
    if not isinstance(config, Mapping):
        raise UsageError(f"an adapter config must be a JSON object, got {type(config).__name__}")
    minimized = _minimize(config)
    for name, default in _HASH_IGNORE_DEFAULT.items():
        if name in minimized and minimized[name] == default:
            del minimized[name]
    try:
        text = json.dumps(minimized, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"an adapter config must hold JSON values only: {exc}") from None
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# --- bottleneck configs by meaning (adapters 1.3.0 configuration/adapter_config.py) -------------

# BnConfig's fields and defaults; the four required fields have none (None here).
_BN_DEFAULTS: dict[str, Any] = {
    "mh_adapter": None,
    "output_adapter": None,
    "reduction_factor": None,
    "non_linearity": None,
    "original_ln_before": False,
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "init_weights": "bert",
    "init_weights_seed": None,
    "is_parallel": False,
    "scaling": 1.0,
    "use_gating": False,
    "residual_before_ln": True,
    "adapter_residual_before_ln": False,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "cross_adapter": False,
    "leave_out": [],
    "dropout": 0.0,
    "phm_layer": False,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "stochastic_depth": 0.0,
}
_SEQ_BN = {
    "original_ln_before": True,
    "original_ln_after": True,
    "residual_before_ln": True,
    "adapter_residual_before_ln": False,
    "ln_before": False,
    "ln_after": False,
    "mh_adapter": False,
    "output_adapter": True,
    "non_linearity": "relu",
    "reduction_factor": 16,
}
_DOUBLE_SEQ_BN = {**_SEQ_BN, "original_ln_before": False, "mh_adapter": True, "non_linearity": "swish"}
_PAR_BN = {
    "original_ln_before": False,
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "mh_adapter": False,
    "output_adapter": True,
    "non_linearity": "relu",
    "reduction_factor": 2,
    "init_weights": "mam_adapter",
    "is_parallel": True,
    "scaling": 4.0,
}
_INV = {"inv_adapter": "nice", "inv_adapter_reduction_factor": 2}
_COMPACTER = {"phm_layer": True, "reduction_factor": 32, "non_linearity": "gelu"}
# adapters 1.x bottleneck presets (ADAPTER_CONFIG_MAP), as `to_dict()` writes them. The archived
# names (pfeiffer, houlsby, pfeiffer+inv, ...) come from the index's architectures.json instead.
_V1_PRESETS: dict[str, dict[str, Any]] = {
    "seq_bn": _SEQ_BN,
    "double_seq_bn": _DOUBLE_SEQ_BN,
    "par_bn": _PAR_BN,
    "parallel": _PAR_BN,
    "scaled_par_bn": {**_PAR_BN, "scaling": "learned"},
    "scaled_parallel": {**_PAR_BN, "scaling": "learned"},
    "seq_bn_inv": {**_SEQ_BN, **_INV},
    "double_seq_bn_inv": {**_DOUBLE_SEQ_BN, **_INV},
    "compacter++": {**_SEQ_BN, **_COMPACTER},
    "compacter": {**_DOUBLE_SEQ_BN, **_COMPACTER},
}
_NOT_BOTTLENECK = ("lora", "dora", "ia3", "vera", "prefix_tuning", "prompt_tuning", "loreft", "mam", "unipelt")

# The keys of 0.x configs (the archived index's). A config with no other key is read as 0.x, where
# "gelu" meant the tanh approximation (adapters renames it to gelu_new when loading such a file).
_LEGACY_KEYS = frozenset(
    {
        "adapter_residual_before_ln",
        "ln_after",
        "ln_before",
        "mh_adapter",
        "non_linearity",
        "original_ln_after",
        "original_ln_before",
        "output_adapter",
        "reduction_factor",
        "residual_before_ln",
        "invertible_adapter",
        "inv_adapter",
        "inv_adapter_reduction_factor",
        "leave_out",
    }
)
_LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}  # adapters utils.ACTIVATION_RENAME
# transformers' names for one function each (get_activation, as adapters calls it, lower-cased)
_ACTIVATION_ALIASES = {
    "swish": "silu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_python": "gelu",
    "leakyrelu": "leaky_relu",
    "linear": "identity",
}
_PHM_SHAPE_KEYS = ("phm_dim", "shared_phm_rule", "factorized_phm_rule", "factorized_phm_W", "shared_W_phm", "phm_rank")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _flag(value: Any) -> Any:
    return bool(value) if isinstance(value, (bool, int)) and value in (0, 1) else value


def _reduction(value: Any) -> Any:
    if isinstance(value, Mapping):
        items = tuple(sorted((str(k), _number(v)) for k, v in value.items()))
        return items[0][1] if len(items) == 1 and items[0][0] == "default" else items
    return _number(value)


def _activation(value: Any, legacy: bool) -> Any:
    if value is None:
        return "identity"
    if not isinstance(value, str):
        return value
    name = value.lower()
    if legacy:
        name = _LEGACY_ACTIVATIONS.get(name, name)
    return _ACTIVATION_ALIASES.get(name, name)


def _is_bottleneck(config: Mapping[str, Any]) -> bool:
    return config.get("architecture") in (None, "bottleneck")


def _meaning(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a bottleneck config that change its math, each normalised, a missing key read as
    the adapters-1.x default; fields that cannot matter given the others are left out."""
    legacy = set(config) <= _LEGACY_KEYS
    c = {**_BN_DEFAULTS, **config}
    inv = config.get("invertible_adapter")  # v1 nested form, as BnConfig.__setattr__ reads it
    if isinstance(inv, Mapping) and inv:
        c["inv_adapter"], c["inv_adapter_reduction_factor"] = inv.get("block_type"), inv.get("reduction_factor")
    leave_out = c["leave_out"] or []
    out: dict[str, Any] = {
        "mh_adapter": _flag(c["mh_adapter"]),
        "output_adapter": _flag(c["output_adapter"]),
        "cross_adapter": _flag(c["cross_adapter"]),
        "reduction_factor": _reduction(c["reduction_factor"]),
        "non_linearity": _activation(c["non_linearity"], legacy),
        "original_ln_after": _flag(c["original_ln_after"]),
        "ln_before": _flag(c["ln_before"]),
        "ln_after": _flag(c["ln_after"]),
        "is_parallel": _flag(c["is_parallel"]),
        "scaling": c["scaling"].lower() if isinstance(c["scaling"], str) else _number(c["scaling"]),
        "use_gating": _flag(c["use_gating"]),
        "leave_out": tuple(sorted({int(i) for i in leave_out})) if isinstance(leave_out, list) else leave_out,
        "inv_adapter": c["inv_adapter"].lower() if isinstance(c["inv_adapter"], str) else c["inv_adapter"] or None,
        "phm_layer": _flag(c["phm_layer"]),
    }
    if out["inv_adapter"]:
        out["inv_adapter_reduction_factor"] = _number(c["inv_adapter_reduction_factor"])
    if out["is_parallel"] is not True:  # a parallel adapter reads the sublayer input: no pre-LN residual
        out["original_ln_before"] = _flag(c["original_ln_before"])
        if out["original_ln_before"] is not False:  # otherwise both residual choices take the same tensor
            out["residual_before_ln"] = c["residual_before_ln"]
        if out["ln_after"] is not False:  # without a new LN, the residual goes in at the same point
            out["adapter_residual_before_ln"] = _flag(c["adapter_residual_before_ln"])
    if out["phm_layer"] is True:
        out.update({k: _number(c[k]) if k in ("phm_dim", "phm_rank") else _flag(c[k]) for k in _PHM_SHAPE_KEYS})
        out["phm_bias"] = _flag(c["phm_bias"])
    return out


def same_architecture(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two adapter configs describe the same adapter math: an archived index config (0.x keys)
    and an adapters-1.x ``adapter_config.json`` ``config`` compare equal when only spelling or defaults
    differ (``swish``/``silu``, ``16``/``16.0``, a key left at its default). Non-bottleneck configs
    (LoRA, prefix tuning, ...) compare by :func:`config_hash`."""
    for config in (a, b):
        if not isinstance(config, Mapping):
            raise UsageError(f"an adapter config must be a JSON object, got {type(config).__name__}")
    if not (_is_bottleneck(a) and _is_bottleneck(b)):
        return config_hash(a) == config_hash(b)
    try:
        return _meaning(a) == _meaning(b)
    except (TypeError, ValueError):  # e.g. a leave_out list holding a non-number: compare as written
        return config_hash(a) == config_hash(b)


# --- architecture names -----------------------------------------------------------------------

_CONFIG_STRING = re.compile(r"(?P<name>[^\[\]|\n]+)(?:\[(?P<kvs>.*)\])?")  # adapters' config string
_ARCH_ORDER = {"pfeiffer": 0, "houlsby": 1}  # the names a description prefers, then the others by name
# canonical activation -> a transformers name that means it in 0.x and 1.x configs alike
_UNAMBIGUOUS_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu_python", "silu": "swish"}
_MISSING = object()


def architecture_names() -> list[str]:
    """Every name :func:`resolve_architecture` accepts: the archived ones, then the adapters-1.x presets."""
    return [*_index().architectures, *sorted(_V1_PRESETS)]


def resolve_architecture(name_or_config: str | Mapping[str, Any]) -> dict[str, Any]:
    """A bottleneck config from a name (``pfeiffer``, ``houlsby``, ... as the archived index's
    architectures.json writes them; ``seq_bn``, ``double_seq_bn``, ``par_bn``, ... as adapters 1.x
    writes them), optionally with overrides in adapters' syntax (``pfeiffer[reduction_factor=2]``),
    or a config dict (returned as a copy)."""
    if isinstance(name_or_config, Mapping):
        return copy.deepcopy(dict(name_or_config))
    if not isinstance(name_or_config, str):
        raise UsageError(f"an architecture is a name or a config object, got {type(name_or_config).__name__}")
    text = name_or_config
    if len(text) > MAX_ARCHITECTURE_TEXT:
        raise UsageError(f"architecture {shown(text)} is longer than {MAX_ARCHITECTURE_TEXT} characters")
    m = _CONFIG_STRING.fullmatch(text)
    if m is None or m.group("name") != m.group("name").strip():
        raise UsageError(f"invalid architecture {shown(text)}: expected a name such as pfeiffer or name[key=value]")
    name = m.group("name").lower()
    archived = _index().architectures
    if name in archived:
        config = copy.deepcopy(archived[name])
    elif name in _V1_PRESETS:
        config = {**copy.deepcopy(_BN_DEFAULTS), **copy.deepcopy(_V1_PRESETS[name])}
    elif name in _NOT_BOTTLENECK:
        raise UsageError(
            f"{name} is not a bottleneck architecture; the archived AdapterHub index holds bottleneck adapters "
            f"only ({', '.join(architecture_names())})"
        )
    else:
        raise UsageError(f"unknown architecture {shown(name)}; expected one of {', '.join(architecture_names())}")
    if m.group("kvs") is not None:
        config.update(_overrides(m.group("kvs"), text))
    return config


def _overrides(kvs: str, text: str) -> dict[str, Any]:
    """``key=value, ...`` (Python literals) as adapters' parse_adapter_config_string reads them."""
    try:
        values = ast.literal_eval("{" + re.sub(r"(\w+)=", r"'\1':", kvs) + "}")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise UsageError(f"invalid architecture overrides in {shown(text)}: expected key=value, ...") from None
    if not isinstance(values, dict):
        raise UsageError(f"invalid architecture overrides in {shown(text)}: expected key=value, ...")
    unknown = sorted(k for k in values if k not in _BN_DEFAULTS)
    if unknown:
        raise UsageError(f"unknown bottleneck config key {shown(unknown[0])} in {shown(text)}")
    return values


def _literal(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    return repr(list(value) if isinstance(value, tuple) else value)


def describe_architecture(config: Mapping[str, Any]) -> str:
    """A short name for a config that :func:`resolve_architecture` reads back to the same architecture:
    ``pfeiffer``, or the nearest archived name with overrides (``pfeiffer[reduction_factor=2]``)."""
    archived = _index().architectures
    try:
        meaning = _meaning(config) if _is_bottleneck(config) else None
    except (TypeError, ValueError):
        meaning = None
    if meaning is None:
        return f"config {config_hash(config)}"
    best: tuple[int, int, str, list[str]] | None = None
    for rank, (name, base) in enumerate(sorted(archived.items(), key=lambda kv: (_ARCH_ORDER.get(kv[0], 9), kv[0]))):
        base_meaning = _meaning(base)
        changed = [k for k in meaning if base_meaning.get(k, _MISSING) != meaning[k]]
        if best is None or (len(changed), rank) < (best[0], best[1]):
            best = (len(changed), rank, name, changed)
    if best is None:
        return f"config {config_hash(config)}"
    _, _, name, changed = best
    if not changed:
        return name
    # as written where that reads back the same (the index's "gelu"), else in a spelling that cannot
    # be read two ways (an adapters-1.x "gelu" put on an archived 0.x base)
    for spelling in (None, _UNAMBIGUOUS_ACTIVATIONS):
        values = {}
        for key in changed:
            value = config[key] if key in config else meaning[key]
            if key == "reduction_factor" and isinstance(meaning[key], tuple):
                value = dict(meaning[key])
            if key == "non_linearity" and spelling is not None:
                value = spelling.get(meaning[key], meaning[key])
            values[key] = value
        if _meaning({**archived[name], **values}) == meaning:
            return f"{name}[{', '.join(f'{k}={_literal(v)}' for k, v in values.items())}]"
    return f"config {config_hash(config)}"


# --- identifiers ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AdapterHubId:
    """A parsed AdapterHub identifier: ``task/subtask@org``; ``task`` alone (``subtask`` None) is a task
    with one subtask or a subtask name, as adapters reads it; ``file`` set: ``@org/file``, one adapter."""

    task: str | None = None
    subtask: str | None = None
    org: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.file is not None:
            return f"{PREFIX}@{self.org}/{self.file}"
        text = f"{PREFIX}{self.task}" + (f"/{self.subtask}" if self.subtask else "")
        return text + (f"@{self.org}" if self.org else "")


def is_adapterhub_id(text: object) -> bool:
    """Whether text is meant as an AdapterHub identifier (it starts with ``ah:``; parse to validate)."""
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_adapterhub_id(text: str) -> AdapterHubId:
    """Text to an :class:`AdapterHubId`, validated whole (no surrounding whitespace, no stray parts)."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise UsageError(f"not an AdapterHub identifier: {shown(text)}; expected {_GRAMMAR}")
    body = text[len(PREFIX) :]
    if body.startswith("@"):
        org, sep, file = body[1:].partition("/")
        if not sep or not _WORD_RE.fullmatch(org) or not _FILE_RE.fullmatch(file):
            raise UsageError(f"invalid AdapterHub identifier {shown(text)}: expected ah:@<org>/<file>")
        return AdapterHubId(org=org, file=file)
    name, *orgs = body.split("@")
    if len(orgs) > 1:
        raise UsageError(
            f"invalid AdapterHub identifier {shown(text)}: one @<org> at most; a version is not part of "
            f"the identifier, give it separately"
        )
    parts = name.split("/")
    if len(parts) > 2:
        raise UsageError(f"invalid AdapterHub identifier {shown(text)}: expected {_GRAMMAR}")
    labels = ("task", "subtask")
    for label, part in [*zip(labels, parts), *(("org", o) for o in orgs)]:
        if not _WORD_RE.fullmatch(part):
            what = f"empty {label}" if not part else f"invalid {label} {shown(part)}"
            raise UsageError(
                f"{what} in AdapterHub identifier {shown(text)}: letters, digits, '.', '_' and '-' "
                f"(starting and ending with a letter or digit); expected {_GRAMMAR}"
            )
    return AdapterHubId(task=parts[0], subtask=parts[1] if len(parts) > 1 else None, org=orgs[0] if orgs else None)


# --- the shipped index ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AdapterHubArchive:
    """One version of an archived adapter: its original zip and that zip's sha256."""

    version: str
    url: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class AdapterHubCandidate:
    """One archived adapter for a (model, task, subtask): what resolution chooses among."""

    org: str
    name: str  # the index's file stem; the Hugging Face repo is AdapterHub/<name>
    model_name: str
    task: str
    subtask: str
    config_hash: str
    default_version: str
    archives: tuple[AdapterHubArchive, ...]
    is_default: bool  # the subtask's default in the index

    @property
    def hf_repo(self) -> str:
        return f"{HF_ORG}/{self.name}"

    @property
    def identifier(self) -> str:
        return f"{PREFIX}{self.task}/{self.subtask}@{self.org}"

    @property
    def config(self) -> dict[str, Any]:
        """The index's config (a copy: callers may change it)."""
        return copy.deepcopy(_index().configs[self.config_hash])

    @property
    def architecture(self) -> str:
        return describe_architecture(_index().configs[self.config_hash])

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(a.version for a in self.archives)

    def archive(self, version: str) -> AdapterHubArchive | None:
        return next((a for a in self.archives if a.version == version), None)


@dataclasses.dataclass(frozen=True)
class AdapterHubMatch:
    """The adapter an identifier resolved to, and where its bytes are: the Hugging Face repo and
    revision it moved to, and the original archive with its sha256."""

    org: str
    name: str
    hf_repo: str
    version: str
    hf_revision: str
    archive_url: str
    archive_sha256: str
    config: dict[str, Any]
    config_hash: str
    model_name: str
    task: str
    subtask: str
    default_version: str

    @property
    def identifier(self) -> str:
        return f"{PREFIX}{self.task}/{self.subtask}@{self.org}"


@dataclasses.dataclass(frozen=True)
class _Index:
    header: dict[str, Any]
    configs: dict[str, dict[str, Any]]
    architectures: dict[str, dict[str, Any]]
    subtasks: dict[tuple[str, str, str], tuple[AdapterHubCandidate, ...]]  # (model, task, subtask)
    by_name: dict[str, AdapterHubCandidate]
    models_of: dict[tuple[str, str], tuple[str, ...]]  # (task, subtask) -> models
    tasks_of: dict[str, dict[str, tuple[str, ...]]]  # model -> task -> subtasks


def _bad_data(what: str) -> InvalidPackageError:
    return InvalidPackageError(f"the shipped AdapterHub index ({DATA_FILE}) is broken: {what}; reinstall the package")


@cache
def _index() -> _Index:
    """Load the package data once, on first use."""
    ref = resources.files(__package__ or "adapterhub_client.registry").joinpath("data").joinpath(DATA_FILE)
    try:
        with ref.open("rb") as fh:
            raw = fh.read(MAX_DATA_BYTES + 1)
    except OSError as exc:
        raise _bad_data(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_DATA_BYTES:
        raise _bad_data(f"over {MAX_DATA_BYTES} bytes")
    try:
        data = json.loads(raw)
        return _build(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _bad_data(type(exc).__name__ + (f" {exc}" if str(exc) else "")) from None


def _build(data: dict[str, Any]) -> _Index:
    if data.get("format") != DATA_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {DATA_FORMAT}")
    configs = {h: dict(c) for h, c in data["configs"].items()}
    architectures = {name: configs[h] for name, h in data["architectures"].items()}
    subtasks: dict[tuple[str, str, str], tuple[AdapterHubCandidate, ...]] = {}
    by_name: dict[str, AdapterHubCandidate] = {}
    models_of: dict[tuple[str, str], list[str]] = {}
    tasks_of: dict[str, dict[str, tuple[str, ...]]] = {}
    for model, tasks in data["models"].items():
        tasks_of[model] = {task: tuple(subs) for task, subs in tasks.items()}
        for task, subs in tasks.items():
            for subtask, entry in subs.items():
                found = []
                for name, adapter in entry["adapters"].items():
                    if adapter["config"] not in configs or not _HASH_RE.fullmatch(adapter["config"]):
                        raise ValueError(f"{name}: unknown config {adapter['config']!r}")
                    archives = tuple(AdapterHubArchive(v, url, sha) for v, (url, sha) in adapter["versions"].items())
                    if not all(_SHA256_RE.fullmatch(a.sha256) for a in archives):
                        raise ValueError(f"{name}: invalid sha256")
                    candidate = AdapterHubCandidate(
                        org=adapter["org"],
                        name=name,
                        model_name=model,
                        task=task,
                        subtask=subtask,
                        config_hash=adapter["config"],
                        default_version=adapter["default_version"],
                        archives=archives,
                        is_default=name == entry.get("default"),
                    )
                    found.append(candidate)
                    by_name[name] = candidate
                subtasks[(model, task, subtask)] = tuple(found)
                models_of.setdefault((task, subtask), []).append(model)
    return _Index(
        header=dict(data["source"]),
        configs=configs,
        architectures=architectures,
        subtasks=subtasks,
        by_name=by_name,
        models_of={k: tuple(sorted(v)) for k, v in models_of.items()},
        tasks_of=tasks_of,
    )


def adapterhub_index_source() -> dict[str, Any]:
    """Where the shipped index comes from: repository, commit, path, license."""
    return dict(_index().header)


def _index_model(model_name: str) -> str | None:
    """The index's name for a model: as given, or without an organisation Hugging Face moved it to."""
    tasks_of = _index().tasks_of
    if model_name in tasks_of:
        return model_name
    org, sep, rest = model_name.partition("/")
    if sep and org in _MOVED_CANONICAL_ORGS and rest in tasks_of:
        return rest
    return None


def _listing(items: Iterable[str]) -> str:
    names = list(items)
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def candidates_for(model_name: str, task: str, subtask: str) -> list[AdapterHubCandidate]:
    """The archived adapters for one (model, task, subtask), the default first; empty when none."""
    model = _index_model(model_name) if isinstance(model_name, str) else None
    found = _index().subtasks.get((model, task, subtask), ()) if model else ()
    return sorted(found, key=lambda c: (not c.is_default, c.org, c.name))


def search_adapterhub(text: str, model_name: str | None = None) -> list[AdapterHubCandidate]:
    """Archived adapters whose ``task/subtask@org`` or model name contains `text` (any letter case),
    for one model when `model_name` is given; ordered by model, task, subtask, org."""
    needle = text.lower() if isinstance(text, str) else ""
    model = _index_model(model_name) if model_name else None
    if model_name and model is None:
        return []
    hits = [
        c
        for (m, _, _), found in _index().subtasks.items()
        if model is None or m == model
        for c in found
        if needle in f"{c.task}/{c.subtask}@{c.org}".lower() or needle in c.model_name.lower()
    ]
    return sorted(hits, key=lambda c: (c.model_name, c.task, c.subtask, not c.is_default, c.org, c.name))


def _subtask_for(ahid: AdapterHubId, model: str, model_name: str) -> tuple[str, str]:
    """(task, subtask) for an identifier on one model; a one-word identifier as adapters' _dict_extract
    reads it: the task's only subtask, or a subtask of that name under any task."""
    assert ahid.task is not None
    tasks = _index().tasks_of[model]
    if ahid.subtask is not None:
        if ahid.subtask in tasks.get(ahid.task, ()):
            return ahid.task, ahid.subtask
        raise _not_for_model(ahid, model_name, [(ahid.task, ahid.subtask)])
    word = ahid.task
    pairs = [(word, s) for s in tasks.get(word, ())] + [
        (t, word) for t, subs in tasks.items() if t != word and word in subs
    ]
    if len(pairs) == 1:
        return pairs[0]
    if not pairs:
        raise _not_for_model(ahid, model_name, _wanted_keys(ahid))
    raise UsageError(
        f"{ahid} is ambiguous for {model_name}: {_listing(f'{PREFIX}{t}/{s}' for t, s in sorted(pairs))}; "
        f"name the task and subtask"
    )


def _wanted_keys(ahid: AdapterHubId) -> list[tuple[str, str]]:
    """The (task, subtask) pairs an identifier could mean on some model."""
    if ahid.subtask is not None and ahid.task is not None:
        return [(ahid.task, ahid.subtask)]
    return [k for k in _index().models_of if ahid.task in k]


def _not_for_model(ahid: AdapterHubId, model_name: str, wanted: list[tuple[str, str]]) -> NotFoundError:
    models = sorted({m for key in wanted for m in _index().models_of.get(key, ())})
    if models:
        return NotFoundError(
            f"the archived AdapterHub index has no {ahid} for model {shown(model_name)}; it has one for "
            f"{_listing(models)}"
        )
    return NotFoundError(f"the archived AdapterHub index has no adapter {ahid} for any model; try search")


def _pick(pool: list[AdapterHubCandidate], what: str) -> AdapterHubCandidate:
    """The subtask's default if it is in the pool, else the only candidate, else the choices."""
    default = [c for c in pool if c.is_default]
    if default:
        return default[0]
    if len(pool) == 1:
        return pool[0]
    choices = _listing(f"@{c.org} {c.architecture}" for c in pool)
    raise UsageError(f"{what} has {len(pool)} adapters: {choices}; choose one with @<org> or an architecture")


def resolve_adapterhub(
    ahid: AdapterHubId | str,
    model_name: str | None,
    architecture: str | Mapping[str, Any] | None = None,
    version: str | None = None,
) -> AdapterHubMatch:
    """The archived adapter an identifier names for a model (and an architecture, when given), at the
    requested version or its default: see the module docstring for the rules."""
    if isinstance(ahid, str):
        ahid = parse_adapterhub_id(ahid)
    wanted = resolve_architecture(architecture) if architecture is not None else None
    if ahid.file is not None:
        candidate = _direct(ahid, model_name)
        if wanted is not None and not same_architecture(wanted, _index().configs[candidate.config_hash]):
            raise NotFoundError(f"{ahid} is a {candidate.architecture} adapter, not {describe_architecture(wanted)}")
    else:
        if not model_name:
            raise UsageError(f"{ahid}: AdapterHub identifiers resolve for a base model; give its name")
        model = _index_model(model_name)
        if model is None:
            raise _not_for_model(ahid, model_name, _wanted_keys(ahid))
        task, subtask = _subtask_for(ahid, model, model_name)
        pool = candidates_for(model, task, subtask)
        what = f"{PREFIX}{task}/{subtask} for {model_name}"
        if ahid.org is not None:
            orgs = sorted({c.org for c in pool})
            pool = [c for c in pool if c.org == ahid.org]
            if not pool:
                raise NotFoundError(f"{what} has no adapter by {shown(ahid.org)}; by: {_listing(orgs)}")
            what = f"{PREFIX}{task}/{subtask}@{ahid.org} for {model_name}"
        if wanted is not None:
            available = sorted({c.architecture for c in pool})
            pool = [c for c in pool if same_architecture(wanted, _index().configs[c.config_hash])]
            if not pool:
                raise NotFoundError(
                    f"{what} has no {describe_architecture(wanted)} adapter; architectures: {_listing(available)}"
                )
        candidate = _pick(pool, what)
    return _match(candidate, version)


def _direct(ahid: AdapterHubId, model_name: str | None) -> AdapterHubCandidate:
    candidate = _index().by_name.get(ahid.file or "")
    if candidate is None or candidate.org != ahid.org:
        raise NotFoundError(f"the archived AdapterHub index has no adapter file {ahid.org}/{ahid.file}")
    if model_name and _index_model(model_name) != candidate.model_name:
        raise IncompatibleError(f"{ahid} is an adapter for {candidate.model_name}, not {shown(model_name)}")
    return candidate


def _match(candidate: AdapterHubCandidate, version: str | None) -> AdapterHubMatch:
    chosen = candidate.default_version if version is None else version
    archive = candidate.archive(chosen) if isinstance(chosen, str) else None
    if archive is None:
        raise NotFoundError(
            f"{candidate.identifier} ({candidate.hf_repo}) has no version {shown(chosen)}; versions: "
            f"{_listing(candidate.versions)}"
        )
    return AdapterHubMatch(
        org=candidate.org,
        name=candidate.name,
        hf_repo=candidate.hf_repo,
        version=chosen,
        hf_revision=DEFAULT_REVISION if chosen == candidate.default_version else chosen,
        archive_url=archive.url,
        archive_sha256=archive.sha256,
        config=candidate.config,
        config_hash=candidate.config_hash,
        model_name=candidate.model_name,
        task=candidate.task,
        subtask=candidate.subtask,
        default_version=candidate.default_version,
    )


__all__ = [
    "AdapterHubArchive",
    "AdapterHubCandidate",
    "AdapterHubId",
    "AdapterHubMatch",
    "adapterhub_index_source",
    "architecture_names",
    "candidates_for",
    "config_hash",
    "describe_architecture",
    "is_adapterhub_id",
    "parse_adapterhub_id",
    "resolve_adapterhub",
    "resolve_architecture",
    "same_architecture",
    "search_adapterhub",
]
