"""Seams: messages, generations and the public scripted generator."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from personalizer import Generation, Generator, InvalidInput, Message, as_messages
from personalizer.errors import BackendError
from personalizer.testing import ScriptedGenerator


def test_as_messages_normalises() -> None:
    assert as_messages("hi") == [Message(role="user", content="hi")]
    msgs = as_messages([{"role": "system", "content": "be brief"}, "hello"])
    assert [m.role for m in msgs] == ["system", "user"]
    with pytest.raises(InvalidInput, match="message 0"):
        as_messages([{"role": "robot", "content": "x"}])
    with pytest.raises(InvalidInput, match="no messages"):
        as_messages([])


def test_messages_are_immutable_and_strict() -> None:
    def refused(call: Callable[[], object]) -> list[tuple[str, tuple[str | int, ...]]]:
        with pytest.raises(ValidationError) as info:
            call()
        return [(e["type"], e["loc"]) for e in info.value.errors()]

    m = Message(role="user", content="x")
    assert refused(lambda: setattr(m, "content", "y")) == [("frozen_instance", ("content",))]
    assert refused(lambda: setattr(m, "role", "system")) == [("frozen_instance", ("role",))]
    assert m == Message(role="user", content="x")  # unchanged
    assert refused(lambda: Message(role="user", content="x", name="bob")) == \
        [("extra_forbidden", ("name",))]
    assert refused(lambda: Message(role="robot", content="x")) == [("literal_error", ("role",))]
    assert refused(lambda: Message(role="user", content=5)) == [("string_type", ("content",))]


def test_scripted_generator_is_a_generator() -> None:
    g = ScriptedGenerator(["one two three", "four"])
    assert isinstance(g, Generator)
    gen = g.generate([Message(role="user", content="q")], max_new_tokens=5)
    assert isinstance(gen, Generation) and gen.text == "one two three"
    assert gen.completion_tokens == 3 and gen.finish_reason == "stop"
    assert g.calls[0][1] == {"max_new_tokens": 5}
    assert "".join(g.stream("q")) == "four"
    with pytest.raises(BackendError, match="ran out"):
        g.generate("q")


def test_scripted_generator_with_a_function() -> None:
    g = ScriptedGenerator(lambda msgs: msgs[-1].content.upper())
    assert g.generate("shout").text == "SHOUT"
    assert "".join(g.stream("a b  c")) == "A B  C"


def test_why_says_what_the_answer_did_for_the_person_largest_first() -> None:
    from personalizer.types import RewardTerm, SteeringRecord

    record = SteeringRecord(path="plain", terms=(
        RewardTerm(name="warmth", description="warmer tone: ...", coefficient=0.5,
                   contribution=-0.1),            # a cooler answer for a warm person
        RewardTerm(name="verbosity", description="longer answers: ...", coefficient=-0.8,
                   contribution=0.49),            # a short answer for a terse person
        RewardTerm(name="custom", description="mentions keywords: count", coefficient=1.0,
                   contribution=0.2),
        RewardTerm(name="emoji", description="more emoji: ...", coefficient=0.3),
        RewardTerm(name="hedging", description="more hedging: ...", coefficient=0.3,
                   contribution=0.001)))         # rounds to +0.00: not worth a line
    assert record.why() == [
        "shorter than usual, as you prefer: +0.49",
        "higher on 'mentions keywords' than usual, as you prefer: +0.20",
        "more matter-of-fact than usual, though you prefer warmer: -0.10"]
    assert record.why(limit=1) == ["shorter than usual, as you prefer: +0.49"]
    assert SteeringRecord(path="plain").why() == []


def test_in_words_reads_as_a_sentence_against_the_person() -> None:
    from personalizer.types import RewardTerm

    fewer = RewardTerm(name="examples", description="more examples: count", coefficient=0.5,
                       contribution=-0.3)
    assert fewer.in_words() == ("with fewer examples than usual, though you prefer more "
                                "examples: -0.30")
    assert RewardTerm(name="examples", description="d", coefficient=0.5).in_words() is None
