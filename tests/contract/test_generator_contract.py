"""The generator contract: what every ``personalizer.seams.Generator`` does, written once and run
on each generator we ship and on the public test double, all real parts:

* ``local``: LocalGenerator on a tiny GPT-2 built here (tests/support/tiny.py), greedy;
* ``openai`` and ``anthropic``: the hosted generators, their real SDKs talking to the local
  wire-format server (tests/support/provider_server.py), which echoes the last user turn;
* ``scripted``: personalizer.testing.ScriptedGenerator, replying with a function of the chat.

generate, stream, agenerate and astream answer the same chat with the same text; a stream is
iterated once and holds its ``.generation`` after the last piece (none when left early);
``steering=None`` is a plain answer; a bad message, steering or option is refused with a
PersonalizerError subclass. Few tokens each: the whole contract takes seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import tiny
from support.provider_server import ProviderServer, echo_reply

from personalizer.backends import AnthropicGenerator, LocalGenerator, OpenAIGenerator
from personalizer.errors import InvalidInput, PersonalizerError
from personalizer.seams import Generator, ProfilePrompt, RewardSet
from personalizer.steering import Strategy
from personalizer.streams import AsyncStream, Stream
from personalizer.testing import ScriptedGenerator
from personalizer.types import Generation

CHAT = [{"role": "system", "content": "You are the app's helpful assistant."},
        {"role": "user", "content": "How do I get better sleep?"}]
OPTIONS = {"max_new_tokens": 8}  # short answers; greedy everywhere (deterministic)


@functools.cache
def _tiny_model() -> Any:
    return tiny.gpt2()  # read-only here: built once for every local case


def _local(server: ProviderServer) -> LocalGenerator:
    return LocalGenerator(_tiny_model(), tiny.tokenizer(), quality=None)


def _openai(server: ProviderServer) -> OpenAIGenerator:
    return OpenAIGenerator("gpt-test", base_url=server.openai_base_url, api_key="sk-test",
                           timeout=5, max_retries=0)


def _anthropic(server: ProviderServer) -> AnthropicGenerator:
    return AnthropicGenerator("claude-test", base_url=server.anthropic_base_url,
                              api_key="sk-ant-test", timeout=5, max_retries=0)


def _scripted(server: ProviderServer) -> ScriptedGenerator:
    return ScriptedGenerator(lambda messages: f"Echo: {messages[-1].content}")


GENERATORS: dict[str, Callable[[ProviderServer], Any]] = {
    "local": _local, "openai": _openai, "anthropic": _anthropic, "scripted": _scripted}

# What a bad option does, per generator. The scripted double decodes nothing: it records each
# call's options in ``calls`` and checks none (as tests/integration/test_bad_input.py's
# allowlist says); every other generator refuses a bad option with the error tree.
CHECKS_OPTIONS = {"local": True, "openai": True, "anthropic": True, "scripted": False}


@pytest.fixture(params=list(GENERATORS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def generator(kind: str, server: ProviderServer) -> Iterator[Any]:
    """A fresh generator of each kind (the hosted ones on the session's server, reset)."""
    server.clear()
    server.reply = echo_reply
    yield GENERATORS[kind](server)


def test_it_is_a_generator(generator: Any) -> None:
    assert isinstance(generator, Generator)
    assert isinstance(generator.profile_prompt, ProfilePrompt)
    assert generator.default_strategy is None or isinstance(generator.default_strategy,
                                                            Strategy)
    assert generator.rewards is None or isinstance(generator.rewards, RewardSet)


def test_stream_joins_to_the_text_of_generate(generator: Any) -> None:
    whole = generator.generate(CHAT, **OPTIONS)
    assert isinstance(whole, Generation) and whole.text
    stream = generator.stream(CHAT, **OPTIONS)
    assert isinstance(stream, Stream) and stream.generation is None  # not before the end
    pieces = list(stream)
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == whole.text
    done = stream.generation
    assert isinstance(done, Generation) and done.text == whole.text
    assert (done.completion_tokens, done.prompt_tokens, done.finish_reason) == (
        whole.completion_tokens, whole.prompt_tokens, whole.finish_reason)
    assert stream.wait() is done


def test_a_stream_is_iterated_once(generator: Any) -> None:
    stream = generator.stream(CHAT, **OPTIONS)
    text = "".join(stream)
    with pytest.raises(InvalidInput, match="iterated once"):
        list(stream)
    assert stream.generation is not None and stream.generation.text == text
    waited = generator.stream(CHAT, **OPTIONS)  # waited for without iterating: the answer
    assert waited.wait().text == text and waited.generation is not None
    with pytest.raises(InvalidInput, match="iterated once"):
        list(waited)


def test_a_stream_left_early_has_no_generation(generator: Any) -> None:
    stream = generator.stream(CHAT, **OPTIONS)
    for _ in stream:
        break
    stream.close()
    assert stream.generation is None
    with pytest.raises(InvalidInput, match="left before its end"):
        stream.wait()
    assert generator.generate(CHAT, **OPTIONS).text  # and the generator answers on


async def test_agenerate_and_astream_agree_with_generate(generator: Any) -> None:
    whole = generator.generate(CHAT, **OPTIONS)
    out = await generator.agenerate(CHAT, **OPTIONS)
    assert isinstance(out, Generation) and out.text == whole.text
    stream = generator.astream(CHAT, **OPTIONS)
    assert isinstance(stream, AsyncStream) and stream.generation is None
    pieces = [p async for p in stream]
    assert "".join(pieces) == whole.text
    done = stream.generation
    assert isinstance(done, Generation) and done.text == whole.text
    assert done.completion_tokens == whole.completion_tokens
    assert await stream.wait() is done
    with pytest.raises(InvalidInput, match="iterated once"):
        async for _ in stream:
            pass
    assert (await generator.astream(CHAT, **OPTIONS).wait()).text == whole.text


async def test_an_async_stream_left_early_has_no_generation(generator: Any) -> None:
    stream = generator.astream(CHAT, **OPTIONS)
    got = []
    async for piece in stream:
        got.append(piece)
        break
    await stream.aclose()
    assert len(got) == 1 and stream.generation is None
    with pytest.raises(InvalidInput, match="left before its end"):
        await stream.wait()


async def test_steering_none_is_a_plain_answer(generator: Any) -> None:
    plain = generator.generate(CHAT, **OPTIONS)
    assert generator.generate(CHAT, steering=None, **OPTIONS).text == plain.text
    assert "".join(generator.stream(CHAT, steering=None, **OPTIONS)) == plain.text
    assert (await generator.agenerate(CHAT, steering=None, **OPTIONS)).text == plain.text
    assert "".join([p async for p in generator.astream(CHAT, steering=None, **OPTIONS)]) == \
        plain.text


async def _each_door(generator: Any, messages: Any, **options: Any) -> list[str]:
    """Call generate, stream, agenerate and astream with these arguments, each to its end;
    the names of the doors that let them through."""
    let_through = []
    for door in ("generate", "stream", "agenerate", "astream"):
        try:
            result = getattr(generator, door)(messages, **options)
            if door == "stream":
                list(result)
            elif door == "agenerate":
                await result
            elif door == "astream":
                async for _ in result:
                    pass
        except PersonalizerError:
            continue
        let_through.append(door)
    return let_through


@pytest.mark.parametrize(("messages", "options"), [
    ([{"role": "wizard", "content": "x"}], {}),
    ([], {}),
    ([{"role": "user"}], {}),
    (CHAT, {"steering": "not a steering"}),
    (CHAT, {"steering": {"coefficients": "many"}}),
], ids=["unknown-role", "no-messages", "no-content", "steering-text", "steering-bad-dict"])
async def test_a_bad_message_or_steering_is_refused_with_the_tree(
        generator: Any, messages: Any, options: dict[str, Any]) -> None:
    assert await _each_door(generator, messages, **options, **OPTIONS) == []


@pytest.mark.parametrize("bad", [{"bogus": 1}, {"max_new_tokens": 0}, {"temperature": -1.0},
                                 {"max_new_tokens": "eight"}],
                         ids=["unknown", "no-tokens", "negative-temperature", "not-a-number"])
async def test_a_bad_option_is_refused_with_the_tree(generator: Any, kind: str,
                                                     bad: dict[str, Any]) -> None:
    """Refused at every door, by every generator but the scripted double, which records it
    untouched at every door (``CHECKS_OPTIONS``)."""
    let_through = await _each_door(generator, CHAT, **bad)
    if CHECKS_OPTIONS[kind]:
        assert let_through == []
    else:  # recorded as given, every time
        assert let_through == ["generate", "stream", "agenerate", "astream"]
        assert [options for _, options in generator.calls] == [bad] * 4
