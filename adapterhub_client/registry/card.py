"""Model cards (README.md) for adapters published to a Hugging Face Hub repository. Torch-free.

The front matter is what the Hub indexes: ``base_model`` with ``base_model_relation: adapter`` (the
model tree), ``library_name`` (``peft`` for LoRA, ``adapter-transformers`` for AdapterHub's format and
bottleneck adapters, as AdapterHub's own cards are tagged), ``license`` and ``tags``. The body says how
to install and attach the adapter, its trainable parameter count, the base model's fingerprints and
every file with its size and sha256.

Every value taken from a manifest is escaped: front matter is dumped by huggingface_hub's YAML helper
and read back with the Hub's own front-matter regex before it is used (a description or tag holding
``---``, newlines or YAML specials can neither end the block nor add a key), and text in the body is
rendered as plain text (HTML and Markdown specials escaped, control characters dropped).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from .._text import human_count, human_size
from ..errors import InvalidPackageError, UsageError
from ..manifest import is_hub_id
from ..nn.layout import KINDS, is_transposed
from .hf import VERSION_TAG_PREFIX

# A card is text a person wrote: 1 MiB is far above any real one, and bounds what is parsed.
MAX_CARD_BYTES = 1024 * 1024
CARD_FILE = "README.md"
CLIENT_TAG = "adapterhub-client"
PEFT_LIBRARY = "peft"
ADAPTERHUB_LIBRARY = "adapter-transformers"  # the Hub's library id for AdapterHub's `adapters`
RELATION = "adapter"
HUB_URL = "https://huggingface.co"
# The keys the card manages, in the order they are written.
MANAGED_KEYS = ("base_model", "base_model_relation", "library_name", "license", "license_name", "tags")

# License ids the Hub knows (https://huggingface.co/docs/hub/repositories-licenses); any other license is
# written as `license: other` with `license_name`, as the Hub asks.
_HUB_LICENSE_IDS = """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib
    pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown other"""
HUB_LICENSES = frozenset(_HUB_LICENSE_IDS.split())

_LICENSE_SLUG = re.compile(r"[^a-z0-9.]+")
# Dropped from text shown in the body: C0 (but tab and newline), DEL, C1, and bidi controls.
_DROPPED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029]")
# What Markdown (CommonMark, GFM tables and strikethrough, the Hub's $math$) gives a meaning to anywhere in
# a line; any ASCII punctuation may be backslash-escaped. HTML's three go as entities.
_INLINE_SPECIAL = frozenset("\\`*_[]!|~$#")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# At the start of a line: list markers, setext underlines and ordered-list numbers (`1.`, `2)`).
_LINE_START = re.compile(r"^([-+=]|\d{1,9}(?=[.)]))")


def version_tag(version: str) -> str:
    """The git tag a published version gets in its Hub repository: `v1.0.0` (the tag :mod:`.hf` reads)."""
    return f"{VERSION_TAG_PREFIX}{version}"


# --- metadata ------------------------------------------------------------------------------------


def _config(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    adapter = manifest.get("adapter")
    config = adapter.get("config") if isinstance(adapter, Mapping) else None
    return config if isinstance(config, Mapping) else {}


def _kind(manifest: Mapping[str, Any]) -> str | None:
    adapter = manifest.get("adapter")
    kind = adapter.get("type") if isinstance(adapter, Mapping) else None
    return kind if isinstance(kind, str) and kind else None


def _base(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    base = manifest.get("base_model")
    return base if isinstance(base, Mapping) else {}


def base_model_id(manifest: Mapping[str, Any]) -> str | None:
    """The base model's Hub id, or None when the manifest names none (or a name the Hub cannot link)."""
    name = _base(manifest).get("name")
    return name if is_hub_id(name) else None


def library_name(manifest: Mapping[str, Any]) -> str | None:
    """The Hub library that loads the repository: AdapterHub's format and bottleneck adapters are
    `adapter-transformers` (AdapterHub's own cards), LoRA is `peft`, anything else unnamed."""
    if _config(manifest).get("format") == "adapterhub" or _kind(manifest) == "bottleneck":
        return ADAPTERHUB_LIBRARY
    return PEFT_LIBRARY if _kind(manifest) == "lora" else None


def _license_fields(license: object) -> dict[str, str]:
    """`license` as the Hub reads it: a known id (case-insensitive), else `other` with a `license_name`."""
    if not isinstance(license, str) or not license.strip():
        return {}
    lowered = license.strip().lower()
    if lowered in HUB_LICENSES:
        return {"license": lowered}
    slug = _LICENSE_SLUG.sub("-", lowered).strip("-.")[:100] or "custom"
    return {"license": "other", "license_name": slug}


def card_metadata(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The front matter the card manages, in :data:`MANAGED_KEYS` order (absent values left out)."""
    data: dict[str, Any] = {}
    base = base_model_id(manifest)
    if base is not None:
        data["base_model"] = base
    data["base_model_relation"] = RELATION
    library = library_name(manifest)
    if library is not None:
        data["library_name"] = library
    data.update(_license_fields(manifest.get("license")))
    tags: list[str] = []
    if base is not None:
        tags.append(f"base_model:adapter:{base}")
    kind = _kind(manifest)
    if kind is not None:
        tags.append(kind)
    if library is not None and library != PEFT_LIBRARY:
        tags.append(library)  # AdapterHub's cards carry it as a tag too
    tags.append(CLIENT_TAG)
    own = manifest.get("tags")
    if isinstance(own, list):
        tags += [t for t in own if isinstance(t, str) and t.strip()]
    data["tags"] = list(dict.fromkeys(tags))
    return data


# --- front matter: dumped, then read back the way the Hub reads it ----------------------------------


def _dumps(data: Mapping[str, Any], line_break: str, allow_unicode: bool) -> str:
    from huggingface_hub.utils import yaml_dump

    text: str = yaml_dump(dict(data), sort_keys=False, line_break=line_break, allow_unicode=allow_unicode)
    return text.strip()


def _load_yaml(block: str, where: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # PyYAML, which huggingface_hub requires

    try:
        data = yaml.safe_load(block)
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidPackageError(f"{where}: front matter is not valid YAML ({first[:200]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidPackageError(f"{where}: front matter is a {type(data).__name__}, not a mapping of keys")
    return data


def _split(card: str) -> tuple[re.Match[str] | None, dict[str, Any]]:
    """The Hub's front-matter match (huggingface_hub's copy of the server's regex) and its data."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(card)
    return match, (_load_yaml(match.group(2), "README.md") if match else {})


def front_matter(data: Mapping[str, Any], line_break: str = "\n") -> str:
    """`---` YAML `---` for `data`, checked by reading it back as the Hub does: every value, however odd
    (`---`, line breaks, `key: value` text), stays inside its key. Unicode is kept readable when PyYAML
    writes it back faithfully, else escaped."""
    expected = _dumps(data, "\n", allow_unicode=False)
    for allow_unicode in (True, False):
        block = f"---{line_break}{_dumps(data, line_break, allow_unicode)}{line_break}---{line_break}"
        match, parsed = _split(block + "body")
        if match is not None and match.end() == len(block) and _dumps(parsed, "\n", False) == expected:
            return block
    raise InvalidPackageError("model card metadata cannot be written as YAML front matter that reads back the same")


def _line_break(text: str) -> str:
    found = re.search(r"\r\n|\r|\n", text)
    return found.group(0) if found else "\n"


def _merged(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """`existing` with the keys of `wanted` it lacks (None counts as lacking); tags merged, author's first."""
    merged = dict(existing)
    has_license = existing.get("license") is not None
    for key, value in wanted.items():
        if key == "tags":
            own = existing.get("tags")
            if own is None:
                own = []
            elif isinstance(own, str):
                own = [own]
            elif not isinstance(own, list):
                raise InvalidPackageError(f"README.md: front matter 'tags' is a {type(own).__name__}, not a list")
            merged["tags"] = own + [t for t in value if t not in own]
        elif key in ("license", "license_name") and has_license:
            continue  # the author chose the license; a license_name would only contradict it
        elif existing.get(key) is None:
            merged[key] = value
    return merged


def _check_size(text: str, where: str) -> None:
    if not isinstance(text, str):
        raise UsageError(f"{where}: expected text, not {type(text).__name__}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CARD_BYTES:
        raise InvalidPackageError(f"{where}: {size} bytes; a model card may have at most {MAX_CARD_BYTES} bytes")


# --- trainable parameters ----------------------------------------------------------------------------


def recorded_parameters(manifest: Mapping[str, Any]) -> int | None:
    """The count the manifest records itself (`adapter.trainable_parameters`), if any."""
    adapter = manifest.get("adapter")
    recorded = adapter.get("trainable_parameters") if isinstance(adapter, Mapping) else None
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0 else None


def trainable_parameters(manifest: Mapping[str, Any]) -> int | None:
    """The adapter's trainable parameter count: recorded in the manifest, else for LoRA
    :func:`lora_parameters`, else None (unknown)."""
    recorded = recorded_parameters(manifest)
    if recorded is not None:
        return recorded
    return lora_parameters(manifest) if _kind(manifest) == "lora" else None


def _is_dora(config: Mapping[str, Any]) -> bool:
    return bool(config.get("dora") or config.get("use_dora"))


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def lora_parameters(manifest: Mapping[str, Any]) -> int | None:
    """LoRA's count from the touched modules' shapes (Hu et al. 2021, arXiv:2106.09685): ΔW = B·A with
    A ∈ R^{r×in} and B ∈ R^{out×r}, so r·(in + out) per module; DoRA (arXiv:2402.09353) adds its
    magnitude vector, `out` per module. None when the rank varies by module (rank_pattern), biases or
    whole modules are trained too, or a module's shape is not a 2-D weight."""
    config = _config(manifest)
    rank = _positive_int(config.get("r"))
    if rank is None or config.get("rank_pattern") or config.get("modules_to_save"):
        return None
    if config.get("bias") not in (None, "none") or config.get("use_gating"):
        return None
    if config.get("composition_mode") not in (None, "add"):
        return None  # AdapterHub's "scale" LoRA trains a vector, not B·A
    architecture = _base(manifest).get("architecture")
    modules = architecture.get("modules") if isinstance(architecture, Mapping) else None
    if not isinstance(modules, Mapping) or not modules:
        return None
    dora = _is_dora(config)
    total = 0
    for info in modules.values():
        shape = info.get("shape") if isinstance(info, Mapping) else None
        if not isinstance(shape, list) or len(shape) != 2 or not all(_positive_int(d) for d in shape):
            return None
        total += rank * (shape[0] + shape[1])
        if dora:
            layer = info.get("layer")
            if layer not in KINDS:
                return None  # which side is `out` depends on how the base stores its weight
            total += shape[1] if is_transposed(layer) else shape[0]
    return total


# --- the body ----------------------------------------------------------------------------------------


def _escape_line(line: str) -> str:
    start = _LINE_START.match(line)
    head = ""
    if start is not None:  # `1.` -> `1\.`, `-` -> `\-`: no list, no setext heading
        marker = start.group(1)
        head, line = (marker, line[len(marker) :]) if marker[0].isdigit() else ("\\" + marker, line[1:])
        if marker[0].isdigit():
            head, line = head + "\\" + line[0], line[1:]
    return head + "".join(_HTML.get(c) or (f"\\{c}" if c in _INLINE_SPECIAL else c) for c in line)


def markdown_text(value: object) -> str:
    """`value` as literal Markdown text: HTML and Markdown specials escaped, control and bidi characters
    dropped, lines unindented (no code blocks), paragraphs kept."""
    text = _DROPPED.sub("", _LINE_BREAKS.sub("\n", str(value))).replace("\t", " ")
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [_escape_line(line.strip()) for line in paragraph.split("\n") if line.strip()]
        if lines:
            out.append("\n".join(lines))
    return "\n\n".join(out)


def _cell(value: object) -> str:
    """Text for one table cell: escaped, on one line."""
    return markdown_text(value).replace("\n", " ")


def _code(text: str) -> str:
    """An inline code span for text known to hold no backtick or line break (names, ids, hashes)."""
    return f"`{text}`"


def _repo_id(manifest: Mapping[str, Any], repo_id: str | None) -> str:
    repo = repo_id if repo_id is not None else manifest.get("name")
    if not is_hub_id(repo):
        raise UsageError(f"invalid Hub repository id {str(repo)[:200]!r}: expected org/name")
    return repo


def _usage(manifest: Mapping[str, Any], repo: str, version: str, on_hub: bool) -> list[str]:
    # on the Hub `hf://repo@1.0.0` installs the tag v1.0.0; in a registry the name and version do
    ref = f"hf://{repo}@{version}" if on_hub else f"{repo}@{version}"
    tag = version_tag(version)
    base = base_model_id(manifest)
    base_dir = "./base-model"
    lines = [
        "## Install and attach",
        "",
        "With [adapterhub-client](https://pypi.org/project/adapterhub-client/) (`adapters` on the command line):",
        "",
        "```bash",
        "pip install 'adapterhub-client[transformers]'   # [transformers]: what attach needs",
        f"adapters install {shlex.quote(ref)}",
    ]
    if base is not None:
        lines.append(f"hf download {shlex.quote(base)} --local-dir {base_dir}   # the base model, as a local directory")
    lines += [
        f"adapters attach {shlex.quote(ref)} --model {base_dir} --check   # compatibility only, nothing downloaded",
        f"adapters attach {shlex.quote(ref)} --model {base_dir}",
        "```",
        "",
        "In Python:",
        "",
        "```python",
        "import adapterhub_client as ah",
        "from transformers import AutoModel",
        "",
        "hub = ah.Hub()",
        f"[installed] = hub.install([{ref!r}])",
        f"model = AutoModel.from_pretrained({(base or base_dir)!r})",
        f"name = hub.attach(model, {ref!r})  # checks the base, then attaches; model stays an nn.Module",
        "```",
    ]
    fmt = _config(manifest).get("format") if on_hub else None  # a registry serves no PEFT repo
    if fmt == "peft":
        lines += [
            "",
            "The repository is also a PEFT adapter:",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModel",
            "",
            f"base = AutoModel.from_pretrained({(base or base_dir)!r})",
            f"model = PeftModel.from_pretrained(base, {repo!r}, revision={tag!r})",
            "```",
        ]
    elif fmt == "adapterhub":
        lines += [
            "",
            "The repository is also an AdapterHub adapter (`pip install adapters`):",
            "",
            "```python",
            "from adapters import AutoAdapterModel",
            "",
            f"model = AutoAdapterModel.from_pretrained({(base or base_dir)!r})",
            f"adapter_name = model.load_adapter({repo!r}, source='hf', set_active=True)",
            "```",
        ]
    return lines


def _parameters(manifest: Mapping[str, Any]) -> list[str]:
    lines = ["## Trainable parameters", ""]
    recorded = recorded_parameters(manifest)
    count = trainable_parameters(manifest)
    if recorded is not None:
        lines.append(f"{recorded:,} ({human_count(recorded)}), as recorded in the manifest.")
    elif count is None:
        lines.append("unknown: the manifest records no count, and it cannot be derived from its module shapes.")
    else:
        config = _config(manifest)
        modules = _base(manifest)["architecture"]["modules"]
        dora = " plus DoRA's magnitude vector (`out` per module, arXiv:2402.09353)" if _is_dora(config) else ""
        lines.append(
            f"{count:,} ({human_count(count)}): LoRA adds r·(in + out) parameters per adapted module "
            "(ΔW = B·A with A of shape r × in and B of shape out × r; Hu et al. 2021, "
            f"[arXiv:2106.09685](https://arxiv.org/abs/2106.09685)){dora}; here r = {config['r']} over "
            f"{len(modules)} module{'' if len(modules) == 1 else 's'}."
        )
    return lines


def _base_section(manifest: Mapping[str, Any]) -> list[str]:
    base = _base(manifest)
    name = base.get("name")
    hub_id = base_model_id(manifest)
    lines = ["## Base model", ""]
    if hub_id is not None:
        shown = f"[{_code(hub_id)}]({HUB_URL}/{hub_id})"
    elif isinstance(name, str) and name:
        shown = markdown_text(name).replace("\n", " ")
    else:
        shown = "not recorded"
    revision = base.get("revision")
    if isinstance(revision, str) and revision:
        shown += f" at revision {_cell(revision)}"
    lines.append(f"- name: {shown}")
    fingerprint = base.get("fingerprint")
    fingerprint = fingerprint if isinstance(fingerprint, Mapping) else {}
    for key in ("content", "architecture"):
        value = fingerprint.get(key)
        lines.append(f"- {key} fingerprint: {_cell(value) if isinstance(value, str) and value else 'not recorded'}")
    files = fingerprint.get("files")
    if isinstance(files, Mapping) and files:
        lines += ["", "Base weight files:", "", "| file | sha256 |", "|---|---|"]
        lines += [f"| {_cell(path)} | {_cell(sha)} |" for path, sha in files.items()]
    lines += [
        "",
        "`adapters attach --check` compares a local base model with these fingerprints before any weight is "
        "downloaded (`exact`, `architecture` or `incompatible`).",
    ]
    return lines


def _files_section(manifest: Mapping[str, Any]) -> list[str]:
    """Every listed file but the card itself: a card cannot hold its own sha256, and leaving it out lets a
    package list the very card it is published with."""
    lines = ["## Files", "", "| file | size | sha256 |", "|---|---:|---|"]
    files = manifest.get("files")
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, Mapping) or entry.get("path") == CARD_FILE:
            continue
        size = entry.get("size")
        shown = f"{human_size(size)} ({size:,} bytes)" if isinstance(size, int) else "unknown"
        lines.append(f"| {_cell(entry.get('path', ''))} | {shown} | {_cell(entry.get('sha256', 'unknown'))} |")
    lines += ["", "`manifest.json` lists them; installs check every file's size and sha256."]
    return lines


def card_body(manifest: Mapping[str, Any], repo_id: str | None = None) -> str:
    """The Markdown body of the card (no front matter). With `repo_id` (a Hub repository) the snippets
    install from `hf://repo_id`; without, from the registry the package is published to, by name."""
    on_hub = repo_id is not None
    repo = _repo_id(manifest, repo_id)
    version = manifest.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"[0-9A-Za-z.!+_-]{1,64}", version):
        raise InvalidPackageError(f"manifest: invalid version {str(version)[:80]!r}")
    name = manifest.get("name")
    title = _code(name) if is_hub_id(name) else _code(repo)
    kind = _kind(manifest)
    named = {"lora": "A LoRA adapter", "bottleneck": "A bottleneck adapter", None: "An adapter"}
    what = named.get(kind) or f"A {_code(str(kind))} adapter"
    base = base_model_id(manifest)
    target = f" for [{_code(base)}]({HUB_URL}/{base})" if base is not None else ""
    lines = [f"# {title} {_code(version)}", ""]
    description = manifest.get("description")
    if isinstance(description, str) and markdown_text(description):
        lines += [markdown_text(description), ""]
    published = f" as tag {_code(version_tag(version))}" if on_hub else ""
    lines += [f"{what}{target}, published with adapterhub-client{published}.", ""]
    for section in (_usage(manifest, repo, version, on_hub), _parameters(manifest)):
        lines += [*section, ""]
    lines += [*_base_section(manifest), "", *_files_section(manifest)]
    return "\n".join(lines) + "\n"


def render_card(manifest: dict[str, Any], *, repo_id: str | None = None) -> str:
    """A complete model card for `manifest`: front matter, then :func:`card_body`. `repo_id` is the Hub
    repository the snippets install from (None: a registry, by the manifest's name)."""
    body = card_body(manifest, repo_id)
    return front_matter(card_metadata(manifest)) + "\n" + body


def complete_card(existing: str, manifest: dict[str, Any]) -> str:
    """The publisher's own card with the front matter completed: keys it lacks are added, tags merged (its
    own first, no duplicates), nothing it set is overwritten, and the body after the front matter stays
    byte-identical. A card without front matter gets one prepended; a card that already has everything
    is returned unchanged. (Completed front matter is written anew, so YAML comments in it are lost.)"""
    _check_size(existing, CARD_FILE)
    wanted = card_metadata(manifest)
    match, data = _split(existing)
    if match is None:
        return front_matter(wanted, _line_break(existing)) + existing
    merged = _merged(data, wanted)
    if merged == data:
        return existing
    return front_matter(merged, _line_break(match.group(1))) + existing[match.end() :]


__all__ = [
    "CARD_FILE",
    "CLIENT_TAG",
    "MAX_CARD_BYTES",
    "card_body",
    "card_metadata",
    "complete_card",
    "front_matter",
    "library_name",
    "lora_parameters",
    "markdown_text",
    "recorded_parameters",
    "render_card",
    "trainable_parameters",
    "version_tag",
]
