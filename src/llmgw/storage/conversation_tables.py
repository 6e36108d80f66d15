"""Conversations and their messages (issue 16). Migration ``0011_conversations`` creates them.

A conversation belongs to a user (``user_id``) or, for a key without a user, to that key
(``key_id``, ``user_id`` null); every query names the owner, so nobody reads another's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import JSONType, Money, UTCDateTime

__all__ = ["Conversation", "ConversationMessage"]


class Conversation(SQLModel, table=True):
    """One conversation: its owner, title, current model and settings, and its totals."""

    __tablename__ = "conversations"
    __table_args__ = (
        sa.Index("ix_conversations_user_updated", "user_id", "updated_at"),
        sa.Index("ix_conversations_key_updated", "key_id", "updated_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None)
    key_id: uuid.UUID | None = Field(default=None)
    title: str = Field(default="", max_length=200)
    model: str = Field(default="", max_length=200)
    """The model or alias of the last turn (a turn may name another: the context is kept)."""
    system: str | None = Field(default=None, sa_type=sa.Text())
    settings: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    """Generation settings kept for the next turns (temperature, top_p, max_tokens...)."""
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    messages: int = Field(default=0)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    cost: Decimal = Field(default=Decimal(0), sa_type=Money(), nullable=False)


class ConversationMessage(SQLModel, table=True):
    """One message of a conversation, in order (``seq``)."""

    __tablename__ = "conversation_messages"
    __table_args__ = (sa.UniqueConstraint("conversation_id", "seq"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid(), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
        )
    )
    seq: int = Field(nullable=False)
    role: str = Field(max_length=16)
    content: str | None = Field(default=None, sa_type=sa.Text())
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONType)
    tool_call_id: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=200)
    """The ``provider/model`` that answered (assistant messages)."""
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    cost: Decimal = Field(default=Decimal(0), sa_type=Money(), nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
