"""Entry point: runs the Typer app and turns every failure into one line on stderr and an exit code.

Exit codes (also in docs/cli.md):
0 ok, 1 unexpected error or a declined confirmation, 2 bad usage or config (also a
destructive command without --yes when stdin is not a terminal), 3 database unreachable, 4 not found,
5 conflict (already exists), 6 authentication or not allowed (a key without the admin role
at --url; a login refused or denied or expired or timed out; no stored login for --url), 7 rate limited, 8 upstream failure, 9 unavailable (also: the server at --url cannot
be reached), 10 data check failed (a migrated table differs from its source or a source value matches
no rule; a backup or database fails its integrity check), 130 interrupted (Ctrl-C; one line on stderr).
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import typer
import typer.main

from llmgw.cli.app import app
from llmgw.errors import LlmgwError

try:  # typer >= 0.25 ships its own copy of click
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as click  # type: ignore[no-redef]

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``llmgw`` with ``argv`` (default ``sys.argv[1:]``) and exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        _refuse_version_with_arguments(args)
        rv = command.main(args=args, prog_name="llmgw", standalone_mode=False)
    except LlmgwError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except click.NoArgsIsHelpError as exc:  # `llmgw keys`: the help is the answer, no Error: line
        exc.show()
        sys.exit(2)
    except click.UsageError as exc:
        _print_error(exc.format_message(), _usage_hint(exc))
        sys.exit(2)
    except click.ClickException as exc:
        _print_error(exc.format_message(), None)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted", None)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no locals
        if debug:
            traceback.print_exc()
            _print_error(f"unexpected {type(exc).__name__}", None)
        else:
            _print_error(
                f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                "re-run with --debug for a traceback",
            )
        sys.exit(1)
    if rv == 130:  # typer turns KeyboardInterrupt (Ctrl-C) into a silent exit code 130
        _print_error("interrupted", None)
    sys.exit(rv if isinstance(rv, int) else 0)


def _refuse_version_with_arguments(args: list[str]) -> None:
    """``--version`` is a flag: ``llmgw --version true`` (a value or a command after it) is refused."""
    others: list[str] = []  # what comes with `llmgw --version` besides --debug and --config FILE
    seen = False
    it = iter(args)
    for tok in it:
        if tok in ("-c", "--config", "--url", "--token"):
            next(it, None)
        elif tok == "--version":
            seen = True
        elif tok != "--debug" and not tok.startswith(("--config=", "--url=", "--token=")):
            others.append(tok)
            if not tok.startswith("-"):  # a command: its own options follow
                break
    if seen and others:
        raise click.UsageError(f"--version takes no value or command, got {' '.join(others)!r}")


def _print_error(message: str, hint: str | None) -> None:
    """``output.print_error``, imported only when there is an error to print (it loads rich)."""
    from llmgw.cli.output import print_error as rich_print_error

    rich_print_error(message, hint)


def _usage_hint(exc: click.UsageError) -> str:
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "llmgw"
    if ctx is not None and ctx.parent is not None and _GLOBAL_OPTION.search(exc.format_message()):
        # `llmgw keys list --url X`: the option exists, before the command
        return f"--url and --token go before the command: llmgw --url URL {path[6:]} ..."
    return f"see `{path} --help`"


_GLOBAL_OPTION = re.compile(r"No such option: --(url|token)\b")
