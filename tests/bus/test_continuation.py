"""The request that continues an answer after a takeover (a pure function)."""

from __future__ import annotations

from sidechat.bus import ContinuationStyle, continuation_request
from sidechat.bus.continuation import CONTINUE_INSTRUCTION
from sidechat.providers.base import ChatRequest, Message

REQUEST = ChatRequest([Message("user", "Why?")], "Be brief.", 100, 0.2, ("</s>",))


def test_prefix_and_prefill_end_with_the_answer_so_far() -> None:
    styles: tuple[ContinuationStyle, ...] = ("prefix", "prefill")
    for style in styles:
        out = continuation_request(REQUEST, "Because the sky", style)
        assert list(out.messages) == [
            Message("user", "Why?"),
            Message("assistant", "Because the sky"),
        ]
        assert (out.system, out.temperature, tuple(out.stop)) == ("Be brief.", 0.2, ("</s>",))


def test_instruction_asks_to_continue_without_repeating() -> None:
    out = continuation_request(REQUEST, "Because", "instruction")
    assert list(out.messages)[-2:] == [
        Message("assistant", "Because"),
        Message("user", CONTINUE_INSTRUCTION),
    ]
    assert "do not repeat" in CONTINUE_INSTRUCTION


def test_the_budget_shrinks_by_what_was_written_but_not_to_nothing() -> None:
    assert continuation_request(REQUEST, "x" * 40, "prefix").max_tokens == 90
    assert continuation_request(REQUEST, "x" * 4000, "prefix").max_tokens == 16


def test_nothing_sent_is_the_original_request() -> None:
    assert continuation_request(REQUEST, "", "instruction") is REQUEST
    assert list(REQUEST.messages) == [Message("user", "Why?")]  # not modified


def test_a_completion_prompt_ends_with_the_answer_so_far_exactly() -> None:
    from sidechat.providers._prompt import completion_prompt

    original = completion_prompt(REQUEST)
    partial = " Because the  sky\nis"
    continued = completion_prompt(continuation_request(REQUEST, partial, "prefix"))
    # The prompt the model saw, then what it wrote: it goes on from the last character.
    assert continued == original + partial
