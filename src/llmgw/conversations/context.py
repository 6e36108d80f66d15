"""Fitting a conversation's history to the model's context window.

The strategy (docs/chat.md): the system prompt and the new turn are always sent; the history is
cut into *turns* (a user message and everything after it up to the next user message: the
answer, tool calls and their results, so a tool call is never separated from its result), and
the oldest turns are dropped until the prompt fits ``context_window - reserve`` tokens, where
``reserve`` is the answer's ``max_tokens`` (else a quarter of the window, at most 1024). When
even the newest turn alone does not fit, nothing more can be dropped: it is sent as it is and
``fits`` says so (the upstream answers for itself). A model whose window is not known gets the
whole history.

Tokens are counted by the provider where it offers a count (GigaChat's ``POST /tokens/count``),
else estimated (``estimate``: about four characters per token, plus four per message for the
role and framing, leaning high).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Fitted", "estimate", "fit", "message_text", "turns_of"]

PER_MESSAGE = 4
"""Tokens added per message for its role and framing, by the estimate."""


def message_text(m: dict[str, Any]) -> str:
    """The text of one OpenAI-shaped message that counts against the window."""
    parts: list[str] = []
    content = m.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    return "\n".join(parts)


def estimate(texts: Sequence[str]) -> list[int]:
    """About four characters per token, plus ``PER_MESSAGE``, per text."""
    return [len(t) // 4 + 1 + PER_MESSAGE for t in texts]


def turns_of(history: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``history`` cut before each user message (leading non-user messages form a turn)."""
    turns: list[list[dict[str, Any]]] = []
    for m in history:
        if m.get("role") == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


@dataclass(frozen=True, slots=True)
class Fitted:
    """The messages to send and what was trimmed."""

    messages: list[dict[str, Any]]
    report: dict[str, Any]


def fit(
    system: str | None,
    history: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    *,
    window: int | None,
    reserve: int | None,
    counts: Sequence[int],
    counted_by: str,
    max_messages: int | None = None,
) -> Fitted:
    """``[system?, *kept history, *new]`` and the report. ``counts`` are the tokens of
    ``[system?, *history, *new]`` in that order (one per message). ``max_messages`` (a request's
    limit) also drops oldest turns, whatever the window."""
    sys_msgs = [{"role": "system", "content": system}] if system else []
    every = [*sys_msgs, *history, *new]
    if len(counts) != len(every):
        raise ValueError("one count per message")
    n_sys = len(sys_msgs)
    fixed = sum(counts[:n_sys]) + sum(counts[n_sys + len(history) :])
    turns = turns_of(history)
    sizes: list[int] = []
    i = n_sys
    for turn in turns:
        sizes.append(sum(counts[i : i + len(turn)]))
        i += len(turn)
    if reserve is None and window is not None:
        reserve = min(1024, window // 4)
    budget = None if window is None else window - (reserve or 0)
    dropped = 0
    total = fixed + sum(sizes)
    sent = len(every)
    while dropped < len(turns) and (
        (budget is not None and total > budget)
        or (max_messages is not None and sent > max_messages)
    ):
        total -= sizes[dropped]
        sent -= len(turns[dropped])
        dropped += 1
    kept_turns = turns[dropped:]
    kept = [m for t in kept_turns for m in t]
    report = {
        "strategy": "drop_oldest_turns",
        "context_window": window,
        "reserved_for_answer": reserve if window is not None else None,
        "prompt_tokens": total,
        "counted_by": counted_by,
        "dropped_turns": dropped,
        "dropped_messages": sum(len(t) for t in turns[:dropped]),
        "kept_messages": len(kept) + len(new),
        "fits": budget is None or total <= budget,
    }
    return Fitted([*sys_msgs, *kept, *new], report)
