"""The context strategy of docs/chat.md, ``drop_oldest_turns``, on its own (pure function)."""

from __future__ import annotations

from typing import Any

from llmgw.conversations.context import estimate, fit, turns_of


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "12"}


def test_a_turn_is_a_user_message_and_everything_up_to_the_next() -> None:
    history = [u("1"), CALL, RESULT, a("done"), u("2"), a("two")]
    assert turns_of(history) == [[u("1"), CALL, RESULT, a("done")], [u("2"), a("two")]]


def test_the_oldest_whole_turns_go_first_and_the_system_prompt_and_new_turn_stay() -> None:
    history = [u("1"), CALL, RESULT, a("done"), u("2"), a("two"), u("3"), a("three")]
    new = [u("4")]
    counts = [10, *[10] * len(history), 10]  # system, history, new: 10 tokens each
    out = fit("sys", history, new, window=100, reserve=40, counts=counts, counted_by="test")
    # budget 60: system 10 + new 10 leave 40 for history: the last two turns (20 + 20)
    assert out.messages == [{"role": "system", "content": "sys"}, *history[4:], u("4")]
    assert out.report == {
        "strategy": "drop_oldest_turns",
        "context_window": 100,
        "reserved_for_answer": 40,
        "prompt_tokens": 60,
        "counted_by": "test",
        "dropped_turns": 1,
        "dropped_messages": 4,  # the tool call and its result went with their turn
        "kept_messages": 5,
        "fits": True,
    }


def test_the_default_reserve_is_a_quarter_of_the_window_at_most_1024() -> None:
    assert (
        fit(None, [], [u("x")], window=400, reserve=None, counts=[1], counted_by="t").report[
            "reserved_for_answer"
        ]
        == 100
    )
    assert (
        fit(None, [], [u("x")], window=128000, reserve=None, counts=[1], counted_by="t").report[
            "reserved_for_answer"
        ]
        == 1024
    )


def test_a_new_turn_too_big_is_sent_anyway_and_says_it_does_not_fit() -> None:
    out = fit(None, [u("old"), a("a")], [u("huge")], window=50, reserve=10, counts=[5, 5, 100],
              counted_by="t")  # fmt: skip
    assert out.messages == [u("huge")] and out.report["fits"] is False
    assert out.report["dropped_turns"] == 1


def test_an_unknown_window_keeps_everything_but_the_message_limit() -> None:
    history = [u("1"), a("1"), u("2"), a("2")]
    out = fit(None, history, [u("3")], window=None, reserve=None, counts=[1] * 5, counted_by="t")
    assert out.messages == [*history, u("3")] and out.report["reserved_for_answer"] is None
    capped = fit(None, history, [u("3")], window=None, reserve=None, counts=[1] * 5,
                 counted_by="t", max_messages=3)  # fmt: skip
    assert capped.messages == [u("2"), a("2"), u("3")]


def test_the_estimate_leans_high() -> None:
    assert estimate(["", "abcd" * 100]) == [5, 105]
