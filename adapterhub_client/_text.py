"""Text for people: the one table formatter and the human-readable sizes and counts. Torch-free."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def format_table(rows: Iterable[Sequence[object]], headers: Sequence[str], *, rule: bool = False) -> str:
    """Left-aligned columns separated by two spaces; ``rule`` adds a dashed line under the headers."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(n: float) -> str:
    """Bytes in decimal units: ``512 B``, ``1.5 kB``, ``22.7 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_count(n: int) -> str:
    """Parameter counts as PEFT prints them: ``22.7M``, ``1.2K``, ``512``."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 adapter``, ``2 adapters``."""
    return f"{n} {word if n == 1 else many or word + 's'}"
