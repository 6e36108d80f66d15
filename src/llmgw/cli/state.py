"""What every command shares: the global flags, and settings and database built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic-settings and SQLAlchemy load when a command first needs them
    from sqlalchemy.engine import Engine

    from llmgw.config import LoadedSettings, Settings

if TYPE_CHECKING:
    import httpx
    import typer

    from llmgw.admin.identity import IdentityOps
    from llmgw.admin.ops import AdminOps
    from llmgw.admin.remote import RemoteAdmin
    from llmgw.auth.broadcast import ChangePublisher

__all__ = ["CliState", "open_engine", "state"]


@dataclass
class CliState:
    """Global options and lazily built services for one CLI invocation."""

    config_file: Path | None = None
    debug: bool = False
    url: str | None = None
    """``--url``/``LLMGW_URL``: admin commands go to this server's ``/admin/v1`` API."""
    token: str | None = field(default=None, repr=False)  # a secret: never in a repr
    """``--token``/``LLMGW_TOKEN``: an admin's API key for ``url``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    _loaded: LoadedSettings | None = None
    _engine: Engine | None = None
    _publisher: ChangePublisher | None = None
    _admin: AdminOps | None = None
    _remote: RemoteAdmin | None = None

    def loaded(self) -> LoadedSettings:
        """Settings with their sources (loaded once)."""
        if self._loaded is None:
            from llmgw.config import load_settings

            self._loaded = load_settings(self.config_file, self.overrides)
        return self._loaded

    @property
    def settings(self) -> Settings:
        """The settings of this invocation."""
        return self.loaded().settings

    def engine(self, *, migrate: bool = True) -> Engine:
        """The database engine, connection checked, schema upgraded to head when ``migrate``."""
        if self._engine is None:
            s = self.settings
            self._engine = open_engine(
                s.database_url,
                pool_size=s.database.pool_size,
                connect_timeout=s.database.connect_timeout,
                dead_connection_timeout=s.database.dead_connection_timeout,
                migrate=migrate,
            )
        return self._engine

    @property
    def remote(self) -> bool:
        """Whether admin commands go to a server (``--url``/``LLMGW_URL``), not the database."""
        return self.url is not None

    def local_only(self, command: str) -> None:
        """Refuse ``command``, which reads the database itself, when ``--url`` is given: it would
        quietly answer from a local database instead of the server's."""
        if self.url is not None:
            from llmgw.errors import UsageError

            raise UsageError(
                f"`llmgw {command}` works on the database directly, not through --url",
                hint="run it where the server's database is reachable, without --url / LLMGW_URL",
            )

    def admin(self) -> AdminOps:
        """The admin operations of this invocation (built once; audit rows say ``source`` ``cli``):
        with ``--url``, ``RemoteAdmin`` on that server's ``/admin/v1`` acting as the token's
        owner (httpx loads only then) or, without a token, as the user of the stored ``llmgw
        login`` for that URL; otherwise ``LocalAdmin`` on the database, acting as
        ``local:<os user>``."""
        if self._admin is None and self.url is not None:
            from llmgw.admin.remote import RemoteAdmin

            self._admin = self._remote = RemoteAdmin(
                self.url, self.token, "cli", auth=None if self.token else self.login(self.url)
            )
        if self._admin is None:
            from llmgw.admin.local import LocalAdmin
            from llmgw.admin.ops import Actor

            changes = self.auth_changes()
            self._admin = LocalAdmin(
                self.engine(),
                Actor.local(),
                "cli",
                on_change=changes.publish if changes is not None else None,
                settings=self.settings,
            )
        return self._admin

    def identity(self) -> IdentityOps:
        """Tokens, OAuth clients and signing keys (``llmgw tokens``, ``llmgw oauth``): with
        ``--url`` the server's ``/admin/v1`` (as ``admin`` does), otherwise ``LocalIdentity`` on
        the database, whose revocations reach running servers through Redis when configured."""
        if self.url is not None:
            self.admin()
            assert self._remote is not None
            return self._remote
        from datetime import timedelta

        from llmgw.admin.identity import LocalIdentity
        from llmgw.admin.ops import Actor
        from llmgw.identity.tokens import TokenService

        def tokens() -> TokenService:
            changes = self.auth_changes()
            return TokenService.from_settings(
                self.settings,
                self.engine(),
                on_change=changes.publish if changes is not None else None,
            )

        return LocalIdentity(
            self.engine(),
            Actor.local(),
            "cli",
            tokens=tokens,
            default_overlap=timedelta(seconds=self.settings.identity.key_overlap_seconds),
        )

    def login(self, url: str) -> httpx.Auth | None:
        """The stored ``llmgw login`` for ``url`` (refreshing itself), or ``None``."""
        from llmgw.cli.login import stored_auth

        return stored_auth(self.settings.home, url)

    def auth_changes(self) -> ChangePublisher | None:
        """What announces key and user changes to running servers; ``None`` without Redis."""
        s = self.settings
        if s.redis_url is None or not s.auth.broadcast:
            return None
        if self._publisher is None:
            from llmgw.auth.broadcast import ChangePublisher

            self._publisher = ChangePublisher(
                s.redis_url.get_secret_value(),
                prefix=s.auth.redis_prefix,
                timeout=s.auth.redis_timeout,
            )
        return self._publisher

    def warn_unannounced(self) -> None:
        """One stderr line when the last change could not be announced (the change itself holds)."""
        if self._publisher is None or self._publisher.error is None:
            return
        import typer

        typer.echo(
            f"warning: running servers were not told through Redis ({self._publisher.error}); "
            f"each stops trusting its cached copy within server.key_cache_seconds "
            f"({self.settings.server.key_cache_seconds:g} s)",
            err=True,
        )

    def close(self) -> None:
        """Release the database and Redis connections."""
        self._admin = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


def open_engine(
    url: str,
    *,
    pool_size: int,
    connect_timeout: float,
    dead_connection_timeout: float,
    migrate: bool,
) -> Engine:
    """An engine on ``url`` (at most 5 pooled connections: one CLI process), connection checked,
    schema upgraded to head when ``migrate``."""
    from llmgw.storage.db import check_connection, make_engine
    from llmgw.storage.schema import is_current, upgrade

    engine = make_engine(
        url,
        pool_size=min(pool_size, 5),
        connect_timeout=connect_timeout,
        dead_connection_timeout=dead_connection_timeout,
    )
    check_connection(engine)
    if migrate and not is_current(engine):
        upgrade(engine)
    return engine


def state(ctx: typer.Context) -> CliState:
    """The ``CliState`` stored on the root context."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
