"""The `adapters` command group and its error handling (one line, a documented exit code)."""

from __future__ import annotations

import json
import os
import sys

import click

from .._version import __version__
from ..errors import EXIT_ERROR, EXIT_USAGE, AdapterError, storage_error
from .output import adapter_warnings

# Subcommands, loaded on first use so `adapters --help` imports nothing heavy.
_COMMANDS = {
    "install": ("commands", "install"),
    "uninstall": ("commands", "uninstall"),
    "list": ("commands", "list_"),
    "info": ("commands", "info"),
    "search": ("commands", "search"),
    "publish": ("commands", "publish"),
    "yank": ("commands", "yank"),
    "verify": ("commands", "verify"),
    "login": ("commands", "login"),
    "logout": ("commands", "logout"),
    "lock": ("commands", "lock"),
    "registry": ("commands", "registry"),
    "cache": ("commands", "cache"),
    "fingerprint": ("cmd_fingerprint", "fingerprint"),
    "attach": ("cmd_attach", "attach"),
    "demo": ("cmd_demo", "demo"),
    "pack": ("cmd_pack", "pack"),
    "export": ("cmd_pack", "export"),
    "convert": ("cmd_pack", "convert"),
    "sign": ("cmd_sign", "sign"),
    "keygen": ("cmd_sign", "keygen"),
}
_HELP = {
    "install": "Install adapters (and their dependencies) into the cache.",
    "uninstall": "Remove installed adapters.",
    "list": "List installed adapters.",
    "info": "Show the resolved manifest of an adapter.",
    "search": "Search the configured registries.",
    "publish": "Publish a package directory (or a PEFT adapter) to a registry.",
    "yank": "Mark a published version as yanked (or --undo).",
    "verify": "Re-hash every installed file (--signatures: check signatures too).",
    "login": "Store credentials for an OCI registry.",
    "logout": "Forget the credentials for an OCI registry.",
    "lock": "Resolve references and write adapters.lock.",
    "registry": "Add, list, remove or build registries, and write their catalogue sites.",
    "cache": "Inspect, prune or clean the cache.",
    "fingerprint": "Fingerprint a local base model directory.",
    "attach": "Check adapters against a local model, then attach or merge them.",
    "demo": "Run the main job end to end on a shipped adapter (no server, no network).",
    "pack": "Turn a PEFT or AdapterHub directory into a package directory.",
    "export": "Write a LoRA package as a PEFT adapter directory.",
    "convert": "Rewrite an adapter's pickled weights as safetensors.",
    "sign": "Sign a package directory (model.sig, the OpenSSF model signing format).",
    "keygen": "Write a signing key pair (ECDSA P-256 or Ed25519).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        from importlib import import_module

        return getattr(import_module(f"{__package__}.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from a table, so that --help does not import every command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in sorted(_COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adapters")
def cli() -> None:
    """adapters: pip for model adapters (LoRA, bottleneck, ...).

    \b
    Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 integrity failure,
    5 incompatible with the model, 6 registry unreachable or refused, 7 invalid package,
    8 the disk refused (full, read-only, permission denied).
    """


def _fail(message: str, code: int, as_json: bool) -> None:
    from .output import safe  # messages quote registry text: escaped for the terminal, exact in JSON

    click.echo(f"error: {safe(message)}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    sys.exit(code)


def _internal(exc: Exception, as_json: bool) -> None:
    if os.environ.get("ADAPTERS_DEBUG"):
        raise exc
    message = f"internal error: {type(exc).__name__}: {exc} (set ADAPTERS_DEBUG=1 for a traceback)"
    _fail(message, EXIT_ERROR, as_json)


# Options a user may put before the command (`adapters --json list`): moved after it, where the
# command's own options are parsed; the value-taking ones carry their value along.
_GLOBAL_FLAGS = frozenset({"--json", "--offline"})
_GLOBAL_VALUED = frozenset({"--registry", "--cache-dir", "--timeout"})


def hoist_global_options(args: list[str]) -> list[str]:
    """`--json list` -> `list --json`: leading global options go to the end of the command line (before a
    `--`, if there is one); anything else stays as typed."""
    moved: list[str] = []
    i = 0
    while i < len(args):
        arg, _, value = args[i].partition("=")
        if arg in _GLOBAL_FLAGS and not value:
            moved.append(args[i])
            i += 1
        elif arg in _GLOBAL_VALUED:
            take = 1 if value else 2
            moved.extend(args[i : i + take])
            i += take
        else:
            break
    rest = args[i:]
    if not moved or not rest:
        return list(args)
    end = rest.index("--") if "--" in rest else len(rest)
    return [*rest[:end], *moved, *rest[end:]]


def main(argv: list[str] | None = None) -> None:
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    try:
        with adapter_warnings():  # every command's AdapterWarnings as `warning:` lines (list, registry, ...)
            cli.main(args=args, prog_name="adapters", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130, as_json)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        _fail(exc.format_message(), EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code, as_json)
    except AdapterError as exc:
        _fail(str(exc), exc.exit_code, as_json)
    except KeyboardInterrupt:
        _fail("interrupted", 130, as_json)
    except BrokenPipeError:
        sys.exit(EXIT_ERROR)
    except OSError as exc:  # a full, read-only or forbidden disk is the user's to fix: one line naming it
        mapped = storage_error(exc, instead="another location (--cache-dir, or a writable registry)")
        if mapped is None:
            _internal(exc, as_json)
        else:
            _fail(str(mapped), mapped.exit_code, as_json)
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        _internal(exc, as_json)
    sys.exit(0)
