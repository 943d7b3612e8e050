"""Every public method of the facade and the generators, driven with bad arguments, raises
nothing but PersonalizerError subclasses. Methods and parameters are found by introspection,
so a new entry point is covered as soon as it exists (add a valid value for a new parameter
name to VALID)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import tiny

from personalizer import Personalizer, PersonalizerError
from personalizer.backends import (
    AnthropicGenerator,
    GenerationOptions,
    HostedGenerator,
    LocalGenerator,
    OpenAIGenerator,
    Steering,
)
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.testing import ScriptedGenerator

HOSTED = (OpenAIGenerator, AnthropicGenerator)
SERVER: list[Any] = []  # the wire-format server of the hosted generators' test

REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])

BAD: tuple[Any, ...] = (42, -1, 10**12, 1e308, float("nan"), float("-inf"), "", "x" * 5000,
                        None, object(), ["x"], {"k": 1}, b"bytes", True, ("a", "b", "c"))


def steering() -> Steering:
    return Steering(coefficients={"e_count": 1.0}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strength=1.0)


def valid(name: str, owner: Any) -> Any:
    """A valid argument for a parameter of this name."""
    values: dict[str, Callable[[], Any]] = {
        "user_id": lambda: "alice", "messages": lambda: "hi", "prompt": lambda: "p",
        "chosen": lambda: "short", "rejected": lambda: "a longer answer", "a": lambda: "a",
        "b": lambda: "b", "reason": lambda: None, "source": lambda: "feedback",
        "index": lambda: 0, "strength": lambda: 1.0, "strategy": lambda: None,
        "requests": lambda: [("alice", "hi")] if isinstance(owner, Personalizer)
        else [("hi", None)],
        "data": lambda: owner.export_profile("alice"), "replace": lambda: True,
        "limit": lambda: 10, "after": lambda: None, "pool": lambda: None,
        "steering": steering, "proxy": lambda: None, "options": lambda: ["yes", "no"],
        "db": lambda: ":memory:", "rewards": lambda: REWARDS, "generator": lambda: None,
        "model": lambda: tiny.gpt2(), "tokenizer": lambda: tiny.tokenizer(),
        "gguf_file": lambda: None, "dtype": lambda: "float32", "device": lambda: "cpu",
        "cache_dir": lambda: None, "defaults": lambda: None, "replies": lambda: ["ok"],
        "text": lambda: "Prefers short answers.", "heads": lambda: None,
        "token_heads": lambda: None,
        "generation_id": lambda: owner.generate("alice", "hi", max_new_tokens=2).id,
    }
    if name == "model" and (owner in HOSTED or isinstance(owner, HostedGenerator)):
        return "gpt-test"
    if name not in values:
        raise AssertionError(f"add a valid value for parameter {name!r} to this test")
    return values[name]()


def extra_options(owner: Any, method: str) -> dict[str, Any]:
    """Keyword options every call gets (short answers), and the option names to spoil."""
    if owner in HOSTED:  # a hosted generator's constructor: a server that answers
        url = SERVER[0].openai_base_url if owner is OpenAIGenerator else \
            SERVER[0].anthropic_base_url
        return {"api_key": "sk-test", "base_url": url, "max_retries": 0, "timeout": 5}
    if isinstance(owner, (LocalGenerator, Personalizer, HostedGenerator)) and method in (
            "generate", "stream", "agenerate", "astream", "generate_batch"):
        return {"max_new_tokens": 2}
    return {}


def option_names(owner: Any, method: str) -> list[str]:
    if method == "onboarding":
        return ["max_questions", "min_questions", "stop_gain", "restart", "bogus"]
    if method in ("generate", "stream", "agenerate", "astream", "generate_batch"):
        return [*GenerationOptions.model_fields, "bogus"]
    return ["bogus"]


def consume(result: Any) -> None:
    """Run whatever was returned to the end (streams, coroutines)."""
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if isinstance(result, (AsyncIterator, AsyncIterable)):
        async def drain() -> None:
            async for _ in result:
                pass

        asyncio.run(drain())
    elif isinstance(result, Iterable) and not isinstance(result, (str, bytes, list, tuple,
                                                                  dict)):
        for _ in result:
            pass


def call_all(owner: Any, name: str, fn: Callable[..., Any]) -> list[str]:
    """Call ``fn`` with each bad value in each parameter; the escapes as text."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    base = {p.name: valid(p.name, owner) for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    fixed = extra_options(owner, name)
    escapes: list[str] = []
    targets = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        targets += option_names(owner, name)
    for target in targets:
        for bad in BAD:
            kwargs = {**base, **fixed, target: bad}
            if target not in base and target in ("steering",) and bad is None:
                continue
            try:
                consume(fn(**kwargs))
            except PersonalizerError:
                pass
            except Exception as exc:  # noqa: BLE001 - what this test looks for
                escapes.append(f"{name}({target}={bad!r:.40}): {type(exc).__name__}: {exc}"[:300])
    return escapes


def public_methods(obj: Any) -> list[tuple[str, Callable[..., Any]]]:
    """The public methods of ``obj``'s class (not attributes that happen to be callable)."""
    return [(n, getattr(obj, n)) for n in dir(type(obj))
            if not n.startswith("_") and inspect.isroutine(getattr(type(obj), n))]


@pytest.fixture
def personalizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Personalizer:
    monkeypatch.chdir(tmp_path)
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS)
    p = Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=gen)
    p.record_preference("alice", "p", "short", "a longer answer")
    return p


def test_every_facade_method_refuses_bad_arguments_with_the_tree(
        personalizer: Personalizer) -> None:
    escapes: list[str] = []
    for name, fn in public_methods(personalizer):
        if name in ("close",):
            continue
        escapes += call_all(personalizer, name, fn)
    assert not escapes, "\n".join(escapes)


def test_facade_constructor_refuses_bad_arguments(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    escapes = call_all(None, "Personalizer", Personalizer)
    assert not escapes, "\n".join(escapes)


@pytest.mark.parametrize("kind", ["local", "scripted", "openai", "anthropic"])
def test_every_generator_method_refuses_bad_arguments_with_the_tree(kind: str) -> None:
    from provider_server import ProviderServer

    with ProviderServer() as server:
        SERVER[:] = [server]
        gen: Any = {
            "local": lambda: LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS),
            "scripted": lambda: ScriptedGenerator(lambda m: "ok"),
            "openai": lambda: OpenAIGenerator("gpt-test", base_url=server.openai_base_url,
                                              api_key="k", max_retries=0, rewards=REWARDS),
            "anthropic": lambda: AnthropicGenerator(
                "claude-test", base_url=server.anthropic_base_url, api_key="k",
                max_retries=0, rewards=REWARDS),
        }[kind]()
        escapes: list[str] = []
        for name, fn in public_methods(gen):
            if name == "smollm2":
                continue  # loads the real model: its arguments are LocalGenerator's (below)
            escapes += call_all(gen, name, fn)
        cls = type(gen)
        escapes += call_all(cls if cls in HOSTED else None, cls.__name__, cls)
    assert not escapes, "\n".join(escapes)


def test_the_issue_examples_name_the_argument(personalizer: Personalizer) -> None:
    from personalizer import InvalidInput

    with pytest.raises(InvalidInput, match="strength"):
        personalizer.generate("alice", "hi", strength=-1, max_new_tokens=2)
    with pytest.raises(InvalidInput, match="top_k"):
        personalizer.generate("alice", "hi", top_k=0, max_new_tokens=2)
    with pytest.raises(InvalidInput, match="max_questions"):
        personalizer.onboarding("bob", max_questions=2000)
    with pytest.raises(InvalidInput, match="messages"):
        personalizer.generate("alice", 42, max_new_tokens=2)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="'a'"):
        personalizer.preference_probability("alice", "p", 3, "b")  # type: ignore[arg-type]


def test_a_failure_inside_torch_becomes_a_backend_error() -> None:
    from personalizer import BackendError

    too_small = LocalGenerator(tiny.gpt2(vocab_size=8), tiny.tokenizer())  # ids beyond vocab
    with pytest.raises(BackendError, match="inside the model library") as info:
        too_small.generate("Hello there", max_new_tokens=2)
    assert isinstance(info.value.__cause__, IndexError)  # the original is kept as the cause
    with pytest.raises(BackendError, match="inside the model library"):
        list(too_small.stream("Hello there", max_new_tokens=2))
