"""``LlmgwApp``: the ``llmgw dash`` Textual application.

It is handed an ``AdminOps`` (``LocalAdmin`` on the database or ``RemoteAdmin`` on a server's
``/admin/v1``; the CLI chooses and wires it) and reaches data only through it. Screens are
Textual modes switched with the number keys; each polls in its own worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from llmgw.errors import AuthError, PermissionDenied
from llmgw.tui.screens.base import PolledScreen, describe

if TYPE_CHECKING:
    from llmgw.admin.chat import ChatSource
    from llmgw.admin.ops import AdminOps, Record
    from llmgw.alerts.source import AlertSource

__all__ = ["SCREENS_ORDER", "LlmgwApp", "screen_class"]

Clock = Callable[[], datetime]

SCREENS_ORDER: tuple[tuple[str, str], ...] = (
    ("providers", "Providers"),
    ("requests", "Requests"),
    ("usage", "Usage"),
    ("keys", "Keys"),
    ("users", "Users"),
    ("audit", "Audit"),
    ("chat", "Chat"),
    ("alerts", "Alerts"),
)
"""(mode, title) in the order of the number keys 1..8."""

_SCREENS: dict[str, str] = {
    "providers": "providers:ProvidersScreen",
    "requests": "requests:RequestsScreen",
    "usage": "usage:UsageScreen",
    "keys": "keys:KeysScreen",
    "users": "users:UsersScreen",
    "audit": "audit:AuditScreen",
    "chat": "chat:ChatScreen",
    "alerts": "alerts:AlertsScreen",
}
"""Mode -> ``module:class`` in ``llmgw.tui.screens``. A screen's module (and what it needs:
forms, charts, the chat client) is imported when the screen is first shown, so the first
paint pays only for Providers."""


def screen_class(mode: str) -> type[Screen[Any]]:
    """The screen class of ``mode``, imported on first use."""
    module, name = _SCREENS[mode].split(":")
    cls: type[Screen[Any]] = getattr(importlib.import_module(f"llmgw.tui.screens.{module}"), name)
    return cls


def _lazy(mode: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        return screen_class(mode)()

    return make


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LlmgwApp(App[None]):
    """The admin dashboard: providers, requests, usage, keys, users, the audit log, chat and
    the alert history."""

    CSS_PATH = "llmgw.tcss"
    TITLE = "llmgw dash"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        mode: _lazy(mode) for mode in _SCREENS
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                str(n),
                f"switch_mode('{mode}')",
                title,
                id=f"screen-{mode}",
                tooltip=f"Show the {title} screen",
                show=False,
            )
            for n, (mode, title) in enumerate(SCREENS_ORDER, start=1)
        ),
        Binding("question_mark", "help", "Help", id="help", tooltip="List every key binding"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave llmgw dash"),
    ]

    def __init__(
        self,
        ops: AdminOps,
        settings: Any = None,
        *,
        clock: Clock = _utcnow,
        poll_interval: float = 2.0,
        chat: ChatSource | None = None,
        connect_chat: Callable[[str, str], ChatSource] | None = None,
        local_chat_url: str | None = None,
        keymap: Mapping[str, str] | None = None,
        alerts: AlertSource | None = None,
        warm_up: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self._warm_up = warm_up
        """Run in a worker shortly after the first screen shows data (the CLI opens the database
        there when it painted without it); once."""
        self.ops = ops
        self.chat = chat
        """The gateway's chat API (remote mode), or None until the Chat screen connects."""
        self.connect_chat = connect_chat
        """Makes a ``ChatSource`` from a URL and an API key (local mode's Chat screen)."""
        self.local_chat_url = local_chat_url
        """This host's ``llmgw serve`` address, offered by local mode's Chat screen."""
        self.alerts = alerts
        """The alert history (``/api/alerts`` or the database) for the Alerts screen."""
        self.keymap_overrides: dict[str, str] = dict(keymap or {})
        self.settings = settings
        self.clock = clock
        self.poll_interval = poll_interval
        self.identity: Record = {}
        self.where = ""
        """Who and where, for the header: ``actor @ url`` or ``actor @ local database``."""

    def now(self) -> datetime:
        """The time as the app's clock says (fixed in tests)."""
        return self.clock()

    @property
    def live(self) -> bool:
        """Whether the data comes from a running server (remote mode)."""
        return self.identity.get("mode") == "remote"

    def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        self.switch_mode("providers")
        self.check_access()

    @work(thread=True, exclusive=True, group="whoami", exit_on_error=False)
    def check_access(self) -> None:
        """Who we are; a refused credential ends the app with exit code 2 (never a traceback)."""
        try:
            identity = self.ops.whoami()
        except (AuthError, PermissionDenied) as exc:
            self.call_from_thread(self._refuse, describe(exc))
            return
        except Exception as exc:  # unreachable server: the screens show stale and retry
            self.call_from_thread(
                self.notify, describe(exc), title="whoami failed", severity="error"
            )
            return
        self.call_from_thread(self._identified, identity)

    def painted(self) -> None:
        """A screen shows data for the first time: start ``warm_up`` half a second later (after
        the frame is on the terminal), in a thread."""
        if self._warm_up is not None:
            warm, self._warm_up = self._warm_up, None
            self.set_timer(
                0.5,
                lambda: self.run_worker(warm, thread=True, group="warm-up", exit_on_error=False),
            )

    def _refuse(self, why: str) -> None:
        self.exit(return_code=2, message=f"Error: llmgw dash: {why}")

    def _identified(self, identity: Record) -> None:
        self.identity = identity
        role = identity.get("role")
        if role is not None and role != "admin":
            self._refuse(
                f"{identity.get('actor', 'this credential')} has the role {role!r}; "
                "the dashboard needs an admin"
            )
            return
        url = identity.get("url") or getattr(self.ops, "url", None) or "server"
        where = url if self.live else "local database"
        self.where = f"{identity.get('actor', '?')} @ {where}"
        if isinstance(self.screen, PolledScreen):
            self.screen.sub_title = f"{self.screen.TITLE_TEXT} · {self.where}"

    async def on_unmount(self) -> None:
        if self.chat is not None:
            await self.chat.aclose()
        close = getattr(self.alerts, "close", None)
        if callable(close):
            close()

    def action_help(self) -> None:
        """Show the help screen with every binding."""
        from llmgw.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            screen = self.screen
            self.push_screen(HelpScreen(screen.active_bindings, getattr(screen, "TITLE_TEXT", "")))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: Textual's own commands plus one per screen."""
        yield from super().get_system_commands(screen)
        for mode, title in SCREENS_ORDER:
            yield SystemCommand(
                f"Show {title}", f"Switch to the {title} screen", self._switcher(mode)
            )
        yield SystemCommand("Help", "List every key binding", self.action_help)

    def _switcher(self, mode: str) -> Callable[[], None]:
        def switch() -> None:
            self.switch_mode(mode)

        return switch
