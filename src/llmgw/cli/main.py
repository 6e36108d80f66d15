"""Entry point: runs the Typer app and turns every failure into one line on stderr and an exit code.

Exit codes (also in docs/cli.md):
0 ok, 1 unexpected error or a declined confirmation, 2 bad usage or config (also a
destructive command without --yes when stdin is not a terminal), 3 database unreachable, 4 not found,
5 conflict (already exists; for db migrate and restore: the database is open in
another process), 6 authentication or not allowed (a key without the admin role
at --url; a login refused or denied or expired or timed out; no stored login for --url), 7 rate limited, 8 upstream failure, 9 unavailable (also: the server at --url cannot
be reached), 10 data check failed (a migrated table differs from its source or a source value matches
no rule; a backup or database fails its integrity check), 130 interrupted (Ctrl-C; one line on stderr).
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from llmgw.errors import LlmgwError

if TYPE_CHECKING:
    from typer._click import exceptions as click

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``llmgw`` with ``argv`` (default ``sys.argv[1:]``) and exit.

    A few read-only commands that scripts call in loops are answered by ``llmgw.cli.fast``
    without importing Typer or pydantic, when it can give the very same output; everything else,
    and those commands whenever the fast path cannot tell, goes through the Typer app.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        from llmgw.cli.fast import answer

        code = answer(args)
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - as in _run_app
        _fail(exc, debug)
    if code is not None:
        sys.exit(code)
    _run_app(args, debug)


def _run_app(args: list[str], debug: bool) -> NoReturn:
    import typer
    import typer.main

    from llmgw.cli.app import app

    try:  # typer >= 0.25 ships its own copy of click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        if misuse := _version_misuse(args):
            raise click.UsageError(misuse)
        rv = command.main(args=args, prog_name="llmgw", standalone_mode=False)
    except LlmgwError as exc:
        _fail(exc, debug)
    except click.NoArgsIsHelpError as exc:  # `llmgw keys`: the help is the answer, no Error: line
        exc.show()
        sys.exit(2)
    except click.UsageError as exc:
        _print_error(exc.format_message(), _usage_hint(exc))
        sys.exit(2)
    except click.ClickException as exc:
        _print_error(exc.format_message(), None)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt) as exc:
        _fail(exc, debug, interrupted=True)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no locals
        _fail(exc, debug)
    if rv == 130:  # typer turns KeyboardInterrupt (Ctrl-C) into a silent exit code 130
        _print_error("interrupted", None)
    sys.exit(rv if isinstance(rv, int) else 0)


def _fail(exc: BaseException, debug: bool, *, interrupted: bool = False) -> NoReturn:
    """Print what went wrong as one line (and a hint) on stderr and exit with its code."""
    if isinstance(exc, LlmgwError):
        if debug:
            traceback.print_exc()
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    if interrupted or isinstance(exc, KeyboardInterrupt):
        _print_error("interrupted", None)
        sys.exit(130)
    if debug:
        traceback.print_exc()
        _print_error(f"unexpected {type(exc).__name__}", None)
    else:
        _print_error(
            f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
            "re-run with --debug for a traceback",
        )
    sys.exit(1)


def _version_misuse(args: list[str]) -> str | None:
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
        return f"--version takes no value or command, got {' '.join(others)!r}"
    return None


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
