"""``KeyInfo``: what is known about one key, in a module of its own with no database library, so
records can be built from rows read without SQLAlchemy (``llmgw.admin.quick``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

__all__ = ["KeyInfo"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known about one key; never the secret or its digest."""

    id: uuid.UUID
    name: str
    prefix: str
    user_id: uuid.UUID | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rpm: int | None
    tpm: int | None
    models: tuple[str, ...] | None  # None = every model
    created_at: datetime
    last_used_at: datetime | None
    user_email: str | None = None
    user_disabled: bool = False
    rotated_from: uuid.UUID | None = None
    user_role: str | None = None
    """The owner's role (``user`` or ``admin``); ``None`` for a key without a user."""

    def allows_model(self, model: str) -> bool:
        """Whether the allow-list admits ``model`` as the client named it.

        Entries match exactly; ``provider/model`` also admits ``provider/model:version``;
        ``provider/*`` admits every model of that provider. No list admits everything.
        """
        if self.models is None:
            return True
        base = model.split(":", 1)[0]
        for entry in self.models:
            if entry == model or (":" not in entry and entry == base):
                return True
            if entry.endswith("/*") and base.startswith(entry[:-1]) and len(base) >= len(entry):
                return True
        return False

    def is_active(self, now: datetime) -> bool:
        """Not revoked, not expired at ``now`` and its user (if any) not disabled."""
        if self.revoked_at is not None or self.user_disabled:
            return False
        return self.expires_at is None or now < self.expires_at

    def status(self, now: datetime) -> str:
        """``active``, ``expired``, ``revoked`` or ``user disabled``, for listings."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.user_disabled:
            return "user disabled"
        return "active"
