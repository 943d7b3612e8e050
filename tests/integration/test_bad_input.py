"""Every public method of the facade and the generators, driven with bad arguments, refuses
them with PersonalizerError subclasses and nothing else. Methods and parameters are found by
introspection, so a new entry point is covered as soon as it exists (add a valid value for a
new parameter name to ``valid``).

A bad value that is silently accepted is caught too: each call first succeeds with valid
arguments only (so a refusal is the bad value's doing), and what each parameter accepts of
BAD is compared with an explicit allowlist (the ``ACCEPTS_*`` tables below, each entry with
its reason); a value accepted and not listed, or listed and refused, fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from support import tiny

from personalizer import Personalizer, PersonalizerError, ProfileNotFound
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

# the bad values, by the names the allowlists use
BAD: dict[str, Any] = {
    "42": 42, "-1": -1, "1e12": 10**12, "1e308": 1e308, "nan": float("nan"),
    "-inf": float("-inf"), "empty": "", "5000x": "x" * 5000, "None": None, "object": object(),
    "list": ["x"], "dict": {"k": 1}, "bytes": b"bytes", "True": True, "tuple": ("a", "b", "c"),
}
Accepted = dict[str, dict[str, str]]  # method -> parameter -> the BAD names it accepts


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
        "token_heads": lambda: None, "experts": lambda: None,
        "out": lambda: os.path.join(tempfile.mkdtemp(), "features.safetensors"),
        "n_features": lambda: 1,
        "generation_id": lambda: owner.generate("alice", "hi", max_new_tokens=2).id,
    }
    if name == "model" and (owner in HOSTED or isinstance(owner, HostedGenerator)):
        return "gpt-test"
    if name not in values:
        raise AssertionError(f"add a valid value for parameter {name!r} to this test")
    return values[name]()


def extra_options(owner: Any, method: str) -> dict[str, Any]:
    """Keyword options every call gets (short answers), and the option names to spoil."""
    if owner is LocalGenerator:  # its constructor: a loaded model comes with its tokenizer
        return {"tokenizer": tiny.tokenizer()}
    if owner in HOSTED:  # a hosted generator's constructor: a server that answers
        url = SERVER[0].openai_base_url if owner is OpenAIGenerator else \
            SERVER[0].anthropic_base_url
        return {"api_key": "sk-test", "base_url": url, "max_retries": 0, "timeout": 5}
    if method == "record_feedback":  # one kind of feedback (see ONE_OF)
        return {"rating": "up"}
    if method == "learn_features":  # the fixture's crowd, and a small real encoder
        from personalizer.backends.rewards import CausalLMEncoder

        return {"min_users": 20, "encoder": CausalLMEncoder(owner.generator)}
    if isinstance(owner, (LocalGenerator, Personalizer, HostedGenerator)) and method in (
            "generate", "stream", "agenerate", "astream", "generate_batch"):
        return {"max_new_tokens": 2}
    return {}


# arguments of which a call takes exactly one: a bad value in one of them replaces the others
ONE_OF = {"record_feedback": ("preferred_over", "edited", "rating")}


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


def call_all(owner: Any, name: str, fn: Callable[..., Any],
             setup: Callable[[], None] | None = None) -> tuple[list[str], Accepted]:
    """Call ``fn`` with valid arguments (a control, which must succeed), then with each bad
    value in each parameter (``setup`` runs before every call); the failures (a control
    refused, an exception outside the tree) as text, and what was accepted."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    base = {p.name: valid(p.name, owner) for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    fixed = extra_options(owner, name)

    def attempt(kwargs: dict[str, Any]) -> Exception | None:
        if setup is not None:
            setup()
        try:
            consume(fn(**kwargs))
        except Exception as exc:  # noqa: BLE001 - sorted by the caller
            return exc
        return None

    failures: list[str] = []
    control = attempt({**base, **fixed})
    if control is not None:
        failures.append(f"{name}(valid arguments) was refused: {type(control).__name__}: "
                        f"{control}"[:300])
    targets = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        targets += option_names(owner, name)
    accepted: dict[str, str] = {}
    for target in targets:
        took = []
        for label, bad in BAD.items():
            if target not in base and target in ("steering",) and bad is None:
                continue
            exclusive = ONE_OF.get(name, ())
            others = {k: v for k, v in fixed.items()
                      if not (target in exclusive and k in exclusive)}
            exc = attempt({**base, **others, target: bad})
            if exc is None:
                took.append(label)
            elif not isinstance(exc, PersonalizerError):
                failures.append(f"{name}({target}={bad!r:.40}): {type(exc).__name__}: "
                                f"{exc}"[:300])
        if took:
            accepted[target] = " ".join(took)
    return failures, {name: accepted} if accepted else {}


def unexpected(accepted: Accepted, allowed: Accepted) -> list[str]:
    """Where ``accepted`` differs from the allowlist, as text."""
    out = []
    for method in sorted(set(accepted) | set(allowed)):
        got, want = accepted.get(method, {}), allowed.get(method, {})
        for param in sorted(set(got) | set(want)):
            g, w = set(got.get(param, "").split()), set(want.get(param, "").split())
            if g - w:
                out.append(f"{method}({param}=...) accepted {sorted(g - w)}, not in the "
                           "allowlist: refuse it, or list it with its reason")
            if w - g:
                out.append(f"{method}({param}=...) refused {sorted(w - g)}, listed as "
                           "accepted: update the allowlist")
    return out


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
    def alice_has_a_preference() -> None:  # deleting methods take it away; put it back
        try:
            there = personalizer.store.get("alice").preference_count > 0
        except ProfileNotFound:
            there = False
        if not there:
            personalizer.record_preference("alice", "p", "short", "a longer answer")

    def a_crowd() -> None:  # learn_features needs 20 people with 5 choices each
        alice_has_a_preference()
        for u in range(20):
            with contextlib.suppress(ProfileNotFound):
                if personalizer.store.get(f"crowd-{u}").preference_count >= 5:
                    continue
            for i in range(5):
                personalizer.record_preference(f"crowd-{u}", f"q{i}?", "e" * (u % 3 + i),
                                               "x" * (i + 2))

    def no_alice() -> None:  # for the methods that create her
        with contextlib.suppress(ProfileNotFound):
            personalizer.store.delete("alice")

    failures: list[str] = []
    accepted: Accepted = {}
    for name, fn in public_methods(personalizer):
        if name in ("close",):
            continue
        setup = no_alice if name in ("create_profile", "import_profile") else \
            a_crowd if name == "learn_features" else alice_has_a_preference
        more, took = call_all(personalizer, name, fn, setup)
        failures += more
        accepted |= took
    assert not failures, "\n".join(failures)
    assert not unexpected(accepted, ACCEPTS_FACADE), "\n".join(
        unexpected(accepted, ACCEPTS_FACADE))


def test_facade_constructor_refuses_bad_arguments(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    failures, accepted = call_all(None, "Personalizer", Personalizer)
    assert not failures, "\n".join(failures)
    assert not unexpected(accepted, ACCEPTS_CONSTRUCTOR), "\n".join(
        unexpected(accepted, ACCEPTS_CONSTRUCTOR))


@pytest.mark.parametrize("kind", ["local", "scripted", "openai", "anthropic"])
def test_every_generator_method_refuses_bad_arguments_with_the_tree(kind: str) -> None:
    from support.provider_server import ProviderServer

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
        failures: list[str] = []
        accepted: Accepted = {}
        for name, fn in public_methods(gen):
            if name == "smollm2":
                continue  # loads the real model: its arguments are LocalGenerator's (below)
            more, took = call_all(gen, name, fn)
            failures += more
            accepted |= took
        cls = type(gen)
        more, took = call_all(cls, cls.__name__, cls)
        failures += more
        accepted |= took
    assert not failures, "\n".join(failures)
    allowed = ACCEPTS_GENERATOR[kind]
    assert not unexpected(accepted, allowed), "\n".join(unexpected(accepted, allowed))


# -- what each entry point accepts of BAD, and why; everything else must be refused ----------

ALL = " ".join(BAD)
CALLS = ("generate", "agenerate", "stream", "astream")
TEXT = "empty 5000x bytes"  # lax validation decodes bytes to text (only a UserId refuses them)
# a text, or a list of texts or messages (5000 characters overflow the tiny model's context)
MESSAGES = "empty list tuple"
LOCAL_OPTIONS = {  # GenerationOptions in range; None: the default
    "do_sample": "None True", "max_new_tokens": "42", "seed": "42 1e12 None",
    "stop": "5000x list tuple", "temperature": "42", "top_k": "42 None", "top_p": "None",
    "repetition_guard": "True"}  # a switch: True is a value
PERSONALIZED = {"messages": MESSAGES, "prompt_profile": "None True", "strategy": "None",
                "strength": "42 None", **LOCAL_OPTIONS}  # strength: 0 to 1000

ACCEPTS_FACADE: Accepted = {
    **{m: PERSONALIZED for m in CALLS},
    "generate_batch": {k: v for k, v in PERSONALIZED.items() if k != "messages"},
    "from_settings": {"toml_file": "None"},
    "export_preferences": {"user_id": "None"},  # None: everyone's
    "import_profile": {"replace": "True"},
    # a file name (bytes are read as text, like every str argument); None: the MiniLM encoder
    "learn_features": {"out": "bytes", "encoder": "None"},
    "list_profiles": {"after": "empty 5000x None bytes", "limit": "42"},  # after: any text
    "onboarding": {"max_questions": "42", "min_questions": "None", "pool": "None",
                   "restart": "True"},
    "preference_probability": {"a": TEXT, "b": TEXT, "prompt": TEXT},
    "record_feedback": {"edited": "5000x bytes", "reason": "None"},  # an edit: not empty
    "record_preference": {"chosen": TEXT, "prompt": TEXT, "reason": "empty None bytes",
                          "rejected": TEXT, "source": "bytes"},
    "set_summary": {"text": TEXT},
}
ACCEPTS_CONSTRUCTOR: Accepted = {"Personalizer": {
    "create": "True", "db": "None", "generator": "None", "keep_generations": "42",
    "keep_generations_days": "42", "max_text_chars": "42", "prompt_profile": "None True",
    "rewards": "None", "strategy": "None", "strength": "42", "summarizer": "None",
    "summary_every": "None",
    "max_request_chars": "1e12",  # a limit may be raised as far as the caller likes
}}
# a hosted request sends only the options set: None is not set, do_sample=True is the default
HOSTED_CALL = {"bogus": "None", "do_sample": "None True", "max_new_tokens": "42 None",
                  "seed": "None", "stop": "5000x None list tuple", "temperature": "None",
                  "top_k": "None", "top_p": "None", "truncate": "None", "repetition_guard": "None",
                  "messages": "empty 5000x list tuple"}  # the provider knows its context


def hosted(cls: str, call: dict[str, str], **own: str) -> Accepted:
    return {cls: {"model": "bytes", **own}, **{m: call for m in CALLS},
            "with_rewards": {"rewards": "None"}}


ACCEPTS_GENERATOR: dict[str, Accepted] = {
    "local": {
        "LocalGenerator": {"cache_dir": "None", "defaults": "None", "gguf_file": "None",
                           "prompt_rewards": "None list tuple", "quality": "None",
                           "rewards": "None", "token_heads": "None",
                           "strategy": "None",  # None: DEFAULT_STRATEGY
                           "experts": "None"},  # None: no experts
        **{m: {"messages": MESSAGES, "proxy": "None", **LOCAL_OPTIONS}
           for m in CALLS},
        "generate_batch": {"proxy": "None", **LOCAL_OPTIONS},
        "option_logprobs": {"messages": MESSAGES, "options": "list tuple"},
        "prompt_ids": {"messages": "empty 5000x list tuple"},  # no decoding: no context limit
        "with_rewards": {"rewards": "None"}, "with_token_heads": {"heads": "None"},
        "with_experts": {"experts": "None"},
    },
    "scripted": {  # the test double records each call's options (calls) and checks none
        "ScriptedGenerator": {"replies": "list tuple"},
        **{m: {"messages": "empty 5000x list tuple",
               **{o: ALL for o in option_names(None, m) if o != "steering"}}
           for m in ("generate", "stream", "agenerate", "astream")},
    },
    "openai": hosted("OpenAIGenerator", HOSTED_CALL, stream_usage="True"),
    "anthropic": hosted("AnthropicGenerator", {**HOSTED_CALL, "top_k": "42 None"},
                        max_tokens="42"),  # Anthropic has top_k
}


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


@pytest.mark.parametrize("user", ["alice", "newcomer"])  # with a reward to steer by, without
def test_strength_is_a_number_from_0_to_1000_for_every_user(personalizer: Personalizer,
                                                           user: str) -> None:
    from personalizer import InvalidInput

    for bad in (True, False, -1, 1000.5, 10**12, 1e308, float("nan"), float("inf")):
        for call in (personalizer.generate, personalizer.stream):
            with pytest.raises(InvalidInput, match="'strength'"):
                consume(call(user, "hi", strength=bad, max_new_tokens=2))
    for good in (0, 0.5, 1000):
        out = personalizer.generate(user, "hi", strength=good, max_new_tokens=2)
        # a newcomer has no reward to steer by yet: their strength was checked all the same
        assert out.steering.strength == (good if user == "alice" else None)


def test_a_number_argument_refuses_true_and_false(personalizer: Personalizer) -> None:
    from personalizer import InvalidInput

    for flag in (True, False):
        with pytest.raises(InvalidInput, match="'limit'.*not True or False"):
            personalizer.list_profiles(limit=flag)
        with pytest.raises(InvalidInput, match="'index'.*not True or False"):
            personalizer.delete_preference("alice", index=flag)
        with pytest.raises(InvalidInput, match="'max_questions'.*not True or False"):
            personalizer.onboarding("bob", max_questions=flag)
        with pytest.raises(InvalidInput, match="'keep_generations'.*not True or False"):
            Personalizer(":memory:", keep_generations=flag)
        with pytest.raises(InvalidInput, match="max_new_tokens.*not True or False"):
            personalizer.generate("alice", "hi", max_new_tokens=flag)
    assert personalizer.list_profiles(limit=1).profiles  # a number is still a number
    assert len(personalizer.preferences("alice")) == 1  # nothing was deleted


def test_a_failure_inside_torch_becomes_a_backend_error() -> None:
    from personalizer import BackendError

    too_small = LocalGenerator(tiny.gpt2(vocab_size=8), tiny.tokenizer())  # ids beyond vocab
    with pytest.raises(BackendError, match="inside the model library") as info:
        too_small.generate("Hello there", max_new_tokens=2)
    assert isinstance(info.value.__cause__, IndexError)  # the original is kept as the cause
    with pytest.raises(BackendError, match="inside the model library"):
        list(too_small.stream("Hello there", max_new_tokens=2))
