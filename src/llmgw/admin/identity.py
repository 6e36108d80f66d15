"""``IdentityOps``: personal access tokens, OAuth clients and signing keys as admin operations.

The same shape as ``AdminOps`` (synchronous, JSON-ready records that are both the CLI's
``--json`` output and the ``/admin/v1`` bodies; errors are ``LlmgwError``s), kept apart so the
dashboard's ``AdminOps`` stays as it is. Two implementations: ``LocalIdentity`` (here: the
identity services on a database engine, an audit row after each change) and
``llmgw.admin.remote.RemoteAdmin`` (``/admin/v1/tokens``, ``/admin/v1/oauth/...``). The server's
admin routes run ``LocalIdentity`` with the gateway's token service, so a revocation is announced
to every instance; the CLI's with one that publishes through Redis when configured.

No record holds a secret but the one-time ``"token"`` of ``tokens_create`` and
``"client_secret"`` of ``oauth_clients_create``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from llmgw.admin.ops import Actor, Record

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.admin.audit import AuditService
    from llmgw.identity.clients import ClientService
    from llmgw.identity.tokens import TokenService

__all__ = ["IdentityOps", "LocalIdentity"]


class IdentityOps(Protocol):
    """Tokens, OAuth clients and signing keys (see the module docstring)."""

    def tokens_create(
        self,
        user: str,
        name: str,
        *,
        expires: timedelta,
        scope: str,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Record:
        """A personal access token for ``user`` (email, id, id prefix or name): its record plus ``"token"``."""
        ...

    def tokens_list(
        self, *, user: str | None = None, include_inactive: bool = False
    ) -> list[Record]:
        """Issued tokens, newest first (one user's with ``user``)."""
        ...

    def tokens_show(self, ref: str) -> Record:
        """One token by ``jti`` or a unique prefix of 8+ characters."""
        ...

    def tokens_revoke(self, ref: str) -> Record:
        """Revoke a token (an access token: its whole grant): ``{"jti", "revoked": [...]}``."""
        ...

    def oauth_clients_list(self, *, include_revoked: bool = False) -> list[Record]:
        """Registered clients, oldest first."""
        ...

    def oauth_clients_show(self, client_id: str) -> Record:
        """One client."""
        ...

    def oauth_clients_create(
        self,
        name: str,
        *,
        kind: str,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        scopes: Sequence[str],
    ) -> Record:
        """A new client; a confidential one's ``"client_secret"`` is in this record only."""
        ...

    def oauth_clients_revoke(self, client_id: str) -> Record:
        """Revoke a client and every token it holds: its record plus ``"tokens_revoked"``."""
        ...

    def oauth_keys_list(self) -> list[Record]:
        """The signing keys, newest first (public facts only)."""
        ...

    def oauth_keys_rotate(self, *, overlap: timedelta | None = None) -> Record:
        """A new signing key (``overlap``: how long older keys verify; ``None``: the
        configured ``identity.key_overlap_seconds``)."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class LocalIdentity:
    """``IdentityOps`` on ``engine`` through the identity services, acting as ``actor``.

    ``tokens`` builds the token service (the server passes its own, which announces
    revocations); ``default_overlap`` is ``identity.key_overlap_seconds``.
    """

    def __init__(
        self,
        engine: Engine,
        actor: Actor,
        source: str,
        *,
        tokens: Callable[[], TokenService],
        default_overlap: timedelta,
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.source = source
        self._tokens = tokens
        self.default_overlap = default_overlap

    @cached_property
    def tokens(self) -> TokenService:
        """The token service (built on first use)."""
        return self._tokens()

    @cached_property
    def clients(self) -> ClientService:
        """The client service."""
        from llmgw.identity.clients import ClientService

        return ClientService(self.engine)

    @cached_property
    def _audit_log(self) -> AuditService:
        from llmgw.admin.audit import AuditService

        return AuditService(self.engine)

    def _audit(self, action: str, target: str | None, detail: dict[str, Any]) -> None:
        self._audit_log.record(self.actor, action, target, source=self.source, detail=detail)

    # -- personal access tokens ----------------------------------------------------------------
    def tokens_create(
        self,
        user: str,
        name: str,
        *,
        expires: timedelta,
        scope: str,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Record:
        """A personal access token; the token itself is in ``"token"``, this once."""
        from llmgw.auth.users import UserService
        from llmgw.identity.records import token_record
        from llmgw.identity.scopes import format_scope, parse_scope

        scopes = format_scope(parse_scope(" ".join(scope.replace(",", " ").split())))
        owner = UserService(self.engine).get(user)
        record, token = self.tokens.create_pat(owner.id, name, scopes, expires, rpm=rpm, tpm=tpm)
        self._audit(
            "tokens.create",
            owner.email,
            {"jti": record.jti, "name": record.name, "scope": record.scope, "rpm": rpm, "tpm": tpm},
        )
        return {**token_record(record, _now()), "token": token}

    def tokens_list(
        self, *, user: str | None = None, include_inactive: bool = False
    ) -> builtins.list[Record]:
        """Issued tokens, newest first."""
        from llmgw.auth.users import UserService
        from llmgw.identity.records import token_record

        owner = UserService(self.engine).get(user).id if user is not None else None
        now = _now()
        return [
            token_record(t, now)
            for t in self.tokens.list_for(owner, include_inactive=include_inactive)
        ]

    def tokens_show(self, ref: str) -> Record:
        """One token."""
        from llmgw.identity.records import token_record

        return token_record(self.tokens.get(ref), _now())

    def tokens_revoke(self, ref: str) -> Record:
        """Revoke a token now (idempotent: ``revoked`` is empty the second time)."""
        record = self.tokens.get(ref)
        revoked = self.tokens.revoke(record.jti)
        self._audit("tokens.revoke", record.user_email or record.client_id, {"jtis": revoked})
        return {"jti": record.jti, "revoked": revoked}

    # -- OAuth clients -------------------------------------------------------------------------
    def oauth_clients_list(self, *, include_revoked: bool = False) -> builtins.list[Record]:
        """Registered clients, oldest first."""
        from llmgw.identity.records import client_record

        return [client_record(c) for c in self.clients.list(include_revoked=include_revoked)]

    def oauth_clients_show(self, client_id: str) -> Record:
        """One client."""
        from llmgw.identity.records import client_record

        return client_record(self.clients.get(client_id))

    def oauth_clients_create(
        self,
        name: str,
        *,
        kind: str,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        scopes: Sequence[str],
    ) -> Record:
        """Register a client."""
        from llmgw.identity.records import client_record

        info, secret = self.clients.create(name, kind, redirect_uris, grant_types, scopes)
        self._audit("oauth.clients.create", info.client_id, {"name": info.name, "kind": info.kind})
        return {**client_record(info), "client_secret": secret}

    def oauth_clients_revoke(self, client_id: str) -> Record:
        """Revoke a client and its tokens."""
        from llmgw.identity.records import client_record

        self.clients.get(client_id)  # NotFound first
        info = self.clients.revoke(client_id)
        revoked = self.tokens.revoke_client(info.client_id)
        self._audit("oauth.clients.revoke", info.client_id, {"tokens_revoked": len(revoked)})
        return {**client_record(info), "tokens_revoked": len(revoked)}

    # -- signing keys --------------------------------------------------------------------------
    def oauth_keys_list(self) -> builtins.list[Record]:
        """The signing keys, newest first."""
        from llmgw.identity.records import key_record

        now = _now()
        return [key_record(k, now) for k in self.tokens.keys.list()]

    def oauth_keys_rotate(self, *, overlap: timedelta | None = None) -> Record:
        """A new signing key; older ones verify for ``overlap`` (default: the configured one)."""
        from llmgw.identity.records import key_record

        span = self.default_overlap if overlap is None else overlap
        new = self.tokens.keys.rotate(span)
        self._audit("oauth.keys.rotate", new.kid, {"overlap_seconds": int(span.total_seconds())})
        return key_record(new, _now())
