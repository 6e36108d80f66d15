"""A command group that imports each command's module only when that command runs.

``llmgw --help`` and shell completion of the command names list every command from a one-line
help string held here, so they import none of the command modules (and none of what those
modules import: SQLAlchemy, pydantic-settings, rich tables, the server). Running ``llmgw keys
list`` imports ``llmgw.cli.keys`` alone. tests/cli/test_startup.py checks that each string
matches its command's own help, and what the common commands import.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, ClassVar

import typer
import typer.core
import typer.main

try:  # typer >= 0.25 ships its own copy of click (as in main.py)
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import UsageError  # type: ignore[assignment]

__all__ = ["LazyCommand", "LazyGroup", "subcommands"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives, and the one-line help ``llmgw --help`` shows for it."""

    module: str
    """Module that defines it, e.g. ``llmgw.cli.keys``."""
    attr: str
    """A ``typer.Typer`` (a command group) or a command function in that module."""
    help: str
    """The first paragraph of the command's own help (a test keeps the two equal)."""

    def load(self, name: str) -> Any:
        """Import the module and build the click command, named ``name``."""
        obj = getattr(importlib.import_module(self.module), self.attr)
        holder = typer.Typer(rich_markup_mode=None)  # plain help, like the root
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=name)
        else:
            holder.command(name)(obj)
        return typer.main.get_group(holder).commands[name]


class LazyGroup(typer.core.TyperGroup):
    """A Typer group whose subcommands are ``lazy_commands``, loaded on first use."""

    lazy_commands: ClassVar[dict[str, LazyCommand]] = {}
    """Subcommands in the order help lists them; a subclass sets it."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command name, without importing any command module."""
        return [*self.commands, *(n for n in self.lazy_commands if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command; while help or completion lists names, a stand-in holding its help."""
        cmd = self.commands.get(cmd_name)
        spec = self.lazy_commands.get(cmd_name)
        if cmd is not None or spec is None:
            return cmd
        if self._listing:
            return typer.core.TyperCommand(cmd_name, help=spec.help, rich_markup_mode=None)
        cmd = self.commands[cmd_name] = spec.load(cmd_name)
        return cmd

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Typer's, with its "Did you mean" drawn from every command, imported or not."""
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if self.suggest_commands and matches and "Did you mean" not in exc.message:
                names = ", ".join(repr(m) for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {names}?"
            raise

    @contextmanager
    def _names_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Help (rich or plain) that lists the commands from their one-line strings."""
        with self._names_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        """Complete command names with their help, importing no command module."""
        with self._names_only():
            return super().shell_complete(ctx, incomplete)


def subcommands(cmd: Any) -> Iterator[tuple[str, Any]]:
    """A command's subcommands as (name, command), lazy ones loaded (for walking the tree)."""
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield name, cmd.get_command(ctx, name)
