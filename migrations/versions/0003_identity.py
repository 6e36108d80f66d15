"""Identity (issue 11): passwords, OAuth clients, codes, refresh tokens, device codes, issued
tokens, signing keys and browser sessions; the built-in public client ``llmgw-cli``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from llmgw.storage.types import JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The client `llmgw login` uses: public, loopback redirect on any port (RFC 8252 §7.3).
CLI_CLIENT = {
    "client_id": "llmgw-cli",
    "name": "llmgw CLI",
    "kind": "public",
    "secret_digest": None,
    "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]/callback"],
    "grant_types": [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ],
    "scopes": ["chat", "keys:self", "usage:self", "admin"],
    "revoked_at": None,
}


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(512)))
        batch.add_column(sa.Column("password_changed_at", UTCDateTime()))
    clients = op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("secret_digest", sa.String(64)),
        sa.Column("redirect_uris", JSONType, nullable=False),
        sa.Column("grant_types", JSONType, nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("code_digest", sa.String(64), primary_key=True),
        sa.Column(
            "client_id", sa.String(64), sa.ForeignKey("oauth_clients.client_id"), nullable=False
        ),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.Column("family_id", sa.Uuid()),
    )
    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column(
            "client_id", sa.String(64), sa.ForeignKey("oauth_clients.client_id"), nullable=False
        ),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id")),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_oauth_refresh_tokens_family_id", "oauth_refresh_tokens", ["family_id"])
    op.create_table(
        "oauth_device_codes",
        sa.Column("device_digest", sa.String(64), primary_key=True),
        sa.Column("user_code", sa.String(16), nullable=False, unique=True),
        sa.Column(
            "client_id", sa.String(64), sa.ForeignKey("oauth_clients.client_id"), nullable=False
        ),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("last_polled_at", UTCDateTime()),
        sa.Column("approved_user_id", sa.Uuid(), sa.ForeignKey("users.id")),
        sa.Column("denied_at", UTCDateTime()),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_table(
        "oauth_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id")),
        sa.Column("client_id", sa.String(64)),
        sa.Column("name", sa.String(200)),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("family_id", sa.Uuid()),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_oauth_tokens_user_id", "oauth_tokens", ["user_id"])
    op.create_index("ix_oauth_tokens_family_id", "oauth_tokens", ["family_id"])
    op.create_index("ix_oauth_tokens_revoked_at", "oauth_tokens", ["revoked_at"])
    op.create_table(
        "oauth_signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_jwk", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retires_at", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_digest", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf_secret", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(500)),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.bulk_insert(clients, [{**CLI_CLIENT, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("oauth_signing_keys")
    op.drop_index("ix_oauth_tokens_revoked_at", table_name="oauth_tokens")
    op.drop_index("ix_oauth_tokens_family_id", table_name="oauth_tokens")
    op.drop_index("ix_oauth_tokens_user_id", table_name="oauth_tokens")
    op.drop_table("oauth_tokens")
    op.drop_table("oauth_device_codes")
    op.drop_index("ix_oauth_refresh_tokens_family_id", table_name="oauth_refresh_tokens")
    op.drop_table("oauth_refresh_tokens")
    op.drop_table("oauth_codes")
    op.drop_table("oauth_clients")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("password_hash")
