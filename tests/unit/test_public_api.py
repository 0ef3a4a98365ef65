"""The public package: the lazy map, `__all__` and the TYPE_CHECKING block name the same API, and
importing it (or running `adapters --help` / `adapters list`) costs no torch.

Resolving every lazy name imports torch: that check is tests/e2e/test_public_names.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import adapterhub_client
from adapterhub_client import errors
from adapterhub_client.operations import results

INIT = Path(adapterhub_client.__file__)


def type_checking_imports() -> dict[str, str]:
    """name -> absolute module, for every `from X import name` under `if TYPE_CHECKING:` in __init__.py."""
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    names: dict[str, str] = {}
    for node in ast.walk(block):
        if isinstance(node, ast.ImportFrom):
            module = ("adapterhub_client." if node.level else "") + (node.module or "")
            for alias in node.names:
                names[alias.asname or alias.name] = module.rstrip(".")
    return names


def test_lazy_map_all_and_type_checking_block_agree():
    lazy = adapterhub_client._LAZY
    assert sorted(adapterhub_client.__all__) == sorted(["__version__", *lazy])
    assert len(adapterhub_client.__all__) == len(set(adapterhub_client.__all__))
    assert type_checking_imports() == lazy  # same names, each from the same module
    assert dir(adapterhub_client) == sorted(adapterhub_client.__all__)


def test_every_error_and_result_type_is_public():
    lazy = adapterhub_client._LAZY
    assert set(errors.__all__) <= set(lazy)
    assert all(lazy[name] == "adapterhub_client.errors" for name in errors.__all__)
    assert set(results.__all__) <= set(lazy)
    assert all(lazy[name] == "adapterhub_client.operations.results" for name in results.__all__)
    for name in ("load_adapter", "save_adapter", "export_peft"):
        assert lazy[name] == "adapterhub_client.formats"


def test_torch_free_names_resolve_without_torch():
    code = (
        "import sys, adapterhub_client as ah\n"
        "names = [n for n, m in ah._LAZY.items() if m.startswith(('adapterhub_client.hub', "
        "'adapterhub_client.errors', 'adapterhub_client.operations'))]\n"
        "assert names and all(getattr(ah, n) is not None for n in names)\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_names_raise_attribute_error():
    try:
        adapterhub_client.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_help_and_list_never_import_torch():
    for argv in (["--help"], ["list"], ["list", "--json"], ["install", "--help"]):
        code = (
            "import sys\n"
            "from adapterhub_client.cli.main import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft'))\n"
            "assert not heavy, heavy[:5]\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
