"""Hosted generators: the real openai / anthropic SDKs against a local server that speaks their
wire formats (tests/support/provider_server.py). No network. What every generator does
(generate, stream, agenerate and astream agree; streams run once; left early, no generation)
is the generator contract, tests/contract/test_generator_contract.py, run on these two too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.provider_server import ProviderServer, Scripted, echo_reply

from personalizer.backends import AnthropicGenerator, Args, BestOfN, OpenAIGenerator, Steering
from personalizer.errors import (
    InvalidInput,
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    RewardSetMismatch,
    UnsupportedRequest,
)
from personalizer.profiles import default_reward_set
from personalizer.seams import Generator, SteerableGenerator
from personalizer.streams import Stream

CHAT = [{"role": "system", "content": "You are the app's helpful assistant."},
        {"role": "user", "content": "How do I get better sleep?"}]

# Candidate answers of increasing length: a terse user's reward prefers the first.
CANDIDATES = [
    "Keep a fixed bedtime.",
    "Keep a fixed bedtime, and avoid screens for an hour before you go to bed.",
    "Keep a fixed bedtime, avoid screens for an hour before bed, keep the room cool and "
    "dark, skip caffeine after noon, and get some daylight early in the morning.",
    "Sleep comes more easily with habits: keep a fixed bedtime and wake time every day, "
    "avoid screens for an hour before bed, keep the bedroom cool, dark and quiet, skip "
    "caffeine after noon and alcohol at night, and get daylight and exercise during the day.",
]


@pytest.fixture(autouse=True)
def _fresh(server: ProviderServer) -> None:
    server.clear()
    server.reply = echo_reply


@pytest.fixture(scope="module")
def rewards() -> Any:
    return default_reward_set()


def openai_gen(server: ProviderServer, **kw: Any) -> OpenAIGenerator:
    kw.setdefault("max_retries", 0)
    return OpenAIGenerator("gpt-test", base_url=server.openai_base_url, api_key="sk-test",
                           timeout=5, **kw)


def anthropic_gen(server: ProviderServer, **kw: Any) -> AnthropicGenerator:
    kw.setdefault("max_retries", 0)
    return AnthropicGenerator("claude-test", base_url=server.anthropic_base_url,
                              api_key="sk-ant-test", timeout=5, **kw)


GENERATORS = {"openai": openai_gen, "anthropic": anthropic_gen}


def terse(rewards: Any, strategy: Any = "best_of_n") -> Steering:
    coefficients = {n: 0.0 for n in rewards.names} | {"verbosity": -1.5}
    return Steering(coefficients=coefficients, reward_set_id=rewards.id,
                    reward_set_version=rewards.version, strategy=strategy)


# -- requests and replies ----------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_hosted_generator_is_a_generator_that_does_not_steer_decoding(
        server: ProviderServer, kind: str) -> None:
    gen = GENERATORS[kind](server)
    assert isinstance(gen, Generator) and not isinstance(gen, SteerableGenerator)
    assert gen.profile_prompt.where == "system" and gen.default_strategy is None
    assert gen.rewards is None and not hasattr(gen, "steers_decoding")


@pytest.mark.parametrize("kind", GENERATORS)
def test_generate_fills_text_usage_and_timings(server: ProviderServer, kind: str) -> None:
    out = GENERATORS[kind](server).generate(CHAT)
    assert out.text == "Echo: How do I get better sleep?"
    assert out.completion_tokens == 7 and out.prompt_tokens == 12  # the server counts words
    assert out.finish_reason == "stop" and out.timings.total_s > 0
    assert out.model in ("gpt-test", "claude-test")


def test_openai_sends_only_the_options_the_caller_set(server: ProviderServer) -> None:
    gen = openai_gen(server)
    gen.generate(CHAT)
    gen.generate(CHAT, max_new_tokens=3, temperature=0.2, stop="\n")
    plain, tuned = (r.body for r in server.requests)
    assert set(plain) == {"model", "messages"}
    assert plain["messages"] == CHAT
    assert {k: tuned[k] for k in ("max_completion_tokens", "temperature", "stop")} == \
        {"max_completion_tokens": 3, "temperature": 0.2, "stop": ["\n"]}
    out = gen.generate(CHAT, max_new_tokens=3)
    assert out.finish_reason == "length" and out.text == "Echo: How do"


def test_openai_developer_role_and_older_token_parameter(server: ProviderServer) -> None:
    openai_gen(server, system_role="developer", token_parameter="max_tokens").generate(
        CHAT, max_new_tokens=5)
    body = server.requests[0].body
    assert body["messages"][0]["role"] == "developer" and body["max_tokens"] == 5


def test_anthropic_system_goes_top_level_and_max_tokens_is_always_sent(
        server: ProviderServer) -> None:
    gen = anthropic_gen(server)
    gen.generate([*CHAT, {"role": "user", "content": "And naps?"}])
    gen.generate(CHAT, max_new_tokens=7, top_k=5, stop=["###"])
    first, second = (r.body for r in server.requests)
    assert first["system"] == "You are the app's helpful assistant."
    assert first["max_tokens"] == 1024  # the API requires it: the documented default
    assert "temperature" not in first and "top_p" not in first
    # consecutive user turns merged: the API wants alternating roles
    assert first["messages"] == [{"role": "user",
                                  "content": "How do I get better sleep?\n\nAnd naps?"}]
    assert (second["max_tokens"], second["top_k"], second["stop_sequences"]) == (7, 5, ["###"])


@pytest.mark.parametrize("option,kind,words", [
    ("top_k", "openai", "no top_k"), ("seed", "openai", "seed-exact"),
    ("seed", "anthropic", "seed-exact"), ("do_sample", "anthropic", "temperature=0"),
    ("proxy", "openai", "LocalGenerator")])
def test_options_a_provider_lacks_are_refused_not_dropped(
        server: ProviderServer, option: str, kind: str, words: str) -> None:
    with pytest.raises(UnsupportedRequest, match=words):
        GENERATORS[kind](server).generate(CHAT, **{option: 1})
    assert server.requests == []


def test_unknown_or_bad_options_name_the_known_ones(server: ProviderServer) -> None:
    gen = openai_gen(server)
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        gen.generate(CHAT, max_length=5)
    with pytest.raises(InvalidInput, match="temperature"):
        gen.generate(CHAT, temperature=-1)


# -- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS)
def test_stream_yields_the_text_of_generate_with_usage(server: ProviderServer, kind: str
                                                       ) -> None:
    gen = GENERATORS[kind](server)
    whole = gen.generate(CHAT)
    stream = gen.stream(CHAT)
    assert isinstance(stream, Stream)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == whole.text
    done = stream.generation
    assert done is not None and done.text == whole.text
    assert (done.completion_tokens, done.prompt_tokens) == (whole.completion_tokens,
                                                            whole.prompt_tokens)
    assert done.finish_reason == "stop" and done.timings.first_token_s is not None
    assert stream.wait() is done
    waited = gen.stream(CHAT).wait()  # waited for without iterating: the same answer
    assert waited.text == whole.text and waited.completion_tokens == whole.completion_tokens


def test_stream_usage_is_none_where_the_server_sends_none(server: ProviderServer) -> None:
    server.send_stream_usage = False
    stream = openai_gen(server).stream(CHAT)
    assert "".join(stream) == "Echo: How do I get better sleep?"
    assert stream.generation.completion_tokens is None
    assert server.requests[0].body["stream_options"] == {"include_usage": True}
    openai_gen(server, stream_usage=False).generate(CHAT)
    list(openai_gen(server, stream_usage=False).stream(CHAT))
    assert "stream_options" not in server.requests[-1].body


# -- best-of-n reranking ----------------------------------------------------------------------


def by_choice(body: dict[str, Any]) -> str:
    return CANDIDATES[(body["_choice"] + body["_call"]) % len(CANDIDATES)]


@pytest.mark.parametrize("kind", GENERATORS)
def test_best_of_n_returns_the_candidate_the_users_reward_likes_best(
        server: ProviderServer, rewards: Any, kind: str) -> None:
    server.reply = by_choice
    gen = GENERATORS[kind](server, rewards=rewards)
    out = gen.generate(CHAT, steering=terse(rewards, BestOfN(n=4)))
    record = out.steering
    assert record.path == "best-of-n" and record.levers == ("best_of_n",)
    assert sorted(c.text for c in record.candidates) == sorted(CANDIDATES)
    scores = [c.reward for c in record.candidates]
    assert out.text == CANDIDATES[0] == record.candidates[record.chosen].text
    assert record.candidates[record.chosen].reward == max(scores) > min(scores)
    assert {t.name for t in record.terms} == set(rewards.names)
    if kind == "openai":  # n in one call
        assert len(server.requests) == 1 and server.requests[0].body["n"] == 4
    else:  # the Messages API answers once per call: n calls
        assert len(server.requests) == 4 and all("n" not in r.body for r in server.requests)
    # a thorough user's reward picks the longest from the same candidates
    thorough = terse(rewards, BestOfN(n=4)).model_copy(update={
        "coefficients": {n: 0.0 for n in rewards.names} | {"verbosity": 1.5}})
    server.clear()
    server.reply = echo_reply
    server.reply = by_choice
    assert gen.generate(CHAT, steering=thorough).text == CANDIDATES[-1]


def test_a_server_that_ignores_n_still_gives_n_candidates(server: ProviderServer,
                                                          rewards: Any) -> None:
    server.supports_n = False
    server.reply = by_choice
    out = openai_gen(server, rewards=rewards).generate(CHAT, steering=terse(rewards))
    assert len(out.steering.candidates) == 4 and out.text == CANDIDATES[0]
    assert len(server.requests) == 4  # the n call, then one call per missing candidate
    assert server.requests[0].body["n"] == 4 and "n" not in server.requests[1].body


def test_streaming_best_of_n_emits_the_chosen_answer_once_chosen(server: ProviderServer,
                                                                  rewards: Any) -> None:
    server.reply = by_choice
    gen = anthropic_gen(server, rewards=rewards)
    stream = gen.stream(CHAT, steering=terse(rewards))
    assert list(stream) == [CANDIDATES[0]]
    assert stream.generation.steering.chosen is not None

    async def run() -> list[str]:
        return [p async for p in gen.astream(CHAT, steering=terse(rewards))]

    server.clear()
    server.reply = echo_reply
    server.reply = by_choice
    assert asyncio.run(run()) == [CANDIDATES[0]]


@pytest.mark.parametrize("kind", GENERATORS)
def test_the_core_plans_without_io(kind: str, rewards: Any) -> None:
    """The sans-I/O core on its own: a plan yields its calls and its scoring, and is sent
    back what a driver would send (here: replies made up in the test)."""
    from personalizer.backends.hosted.core import Calls, Compute, plan, prepare
    from personalizer.backends.hosted.provider import Reply
    from personalizer.backends.hosted.providers import AnthropicMessages, OpenAIChat

    provider = OpenAIChat() if kind == "openai" else AnthropicMessages()
    req = prepare(CHAT, terse(rewards, BestOfN(n=4)), {"temperature": 0.5},
                  provider=provider, owner="test", rewards=rewards, judge=None,
                  judge_weight=1.0)
    steps = plan(req, provider, "m")
    calls = next(steps)
    assert isinstance(calls, Calls)
    if kind == "openai":  # n candidates in one call
        assert len(calls.requests) == 1 and calls.requests[0]["n"] == 4
        replies = [[Reply(t, "stop", 10, 5 if i == 0 else 0) for i, t in enumerate(CANDIDATES)]]
    else:  # one call per candidate
        assert len(calls.requests) == 4 and "n" not in calls.requests[0]
        replies = [[Reply(t, "stop", 10, 5)] for t in CANDIDATES]
    assert all(r["temperature"] == 0.5 and r["model"] == "m" for r in calls.requests)
    scoring = steps.send(replies)
    assert isinstance(scoring, Compute)
    with pytest.raises(StopIteration) as done:
        steps.send(scoring.fn())
    out = done.value.value
    assert out.text == CANDIDATES[0] and out.steering.path == "best-of-n"
    assert out.completion_tokens == (5 if kind == "openai" else 20) and out.model == "m"


def test_what_a_hosted_model_cannot_do_is_refused_naming_what_works(
        server: ProviderServer, rewards: Any) -> None:
    gen = openai_gen(server, rewards=rewards)
    with pytest.raises(UnsupportedRequest, match="best-of-n") as err:
        gen.generate(CHAT, steering=terse(rewards, Args()))
    assert "LocalGenerator" in str(err.value)
    with pytest.raises(UnsupportedRequest, match="block='answer'"):
        gen.generate(CHAT, steering=terse(rewards, BestOfN(block="sentence")))
    with pytest.raises(UnsupportedRequest, match="draw='sample'"):
        gen.generate(CHAT, steering=terse(rewards, BestOfN(draw="branch")))
    with pytest.raises(UnsupportedRequest, match="system prompt"):
        gen.generate(CHAT, steering=terse(rewards).model_copy(
            update={"instruction": "Keep it short."}))
    with pytest.raises(UnsupportedRequest, match="rewards=reward_set"):
        openai_gen(server).generate(CHAT, steering=terse(rewards))
    other = terse(rewards).model_copy(update={"reward_set_version": "other"})
    with pytest.raises(RewardSetMismatch):
        gen.generate(CHAT, steering=other)
    assert server.requests == []


def test_a_steering_without_a_strategy_asks_only_the_prompt(server: ProviderServer,
                                                           rewards: Any) -> None:
    from personalizer.steering import Steering as SeamSteering

    gen = openai_gen(server, rewards=rewards)
    steering = SeamSteering(coefficients=terse(rewards).coefficients,
                            reward_set_id=rewards.id, reward_set_version=rewards.version)
    assert steering.strategy is None  # the generator's default: no reranking
    out = gen.generate(CHAT, steering=steering)
    assert out.steering.path == "plain" and out.text == "Echo: How do I get better sleep?"
    assert "".join(gen.stream(CHAT, steering=steering)) == out.text
    assert len(server.requests) == 2 and all("n" not in r.body for r in server.requests)


def test_best_of_n_with_nothing_to_rank_by_is_one_plain_call(server: ProviderServer,
                                                             rewards: Any) -> None:
    from personalizer.backends.rewards import JudgeReward
    from personalizer.testing import ScriptedGenerator

    server.reply = by_choice
    no_coefficients = terse(rewards, BestOfN(n=4)).model_copy(update={"coefficients": {}})
    out = openai_gen(server, rewards=rewards).generate(CHAT, steering=no_coefficients)
    assert out.steering.path == "plain" and out.steering.candidates == ()
    # a judge without the user's principles has nothing of theirs to judge by
    judge = JudgeReward(ScriptedGenerator(lambda m: "Score: 5"))
    judged = openai_gen(server, judge=judge)
    assert judged.generate(CHAT, steering=terse(rewards)).steering.path == "plain"
    assert len(server.requests) == 2 and all("n" not in r.body for r in server.requests)
    # with principles the judge reranks
    principled = terse(rewards).model_copy(update={"principles": "Likes short answers."})
    record = judged.generate(CHAT, steering=principled).steering
    assert record.path == "best-of-n" and len(record.candidates) == 4 and record.terms == ()


def test_a_steering_may_hand_in_the_reward_set(server: ProviderServer, rewards: Any) -> None:
    from personalizer.steering import Steering as SeamSteering

    server.reply = by_choice
    gen = anthropic_gen(server)  # built without a reward set
    handed = SeamSteering(coefficients=terse(rewards).coefficients, rewards=rewards,
                          reward_set_id=rewards.id, reward_set_version=rewards.version)
    # until best_of_n is in the strategy table here, the strategy is set on a copy
    handed = handed.model_copy(update={"strategy": BestOfN(n=4)})
    out = gen.generate(CHAT, steering=handed)
    assert out.text == CANDIDATES[0] and out.steering.path == "best-of-n"
    assert out.steering.reward_set_id == rewards.id and gen.rewards is None
    with pytest.raises(UnsupportedRequest, match="rewards=reward_set"):
        gen.generate(CHAT, steering=handed.model_copy(update={"rewards": None}))


# -- provider errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_429_then_200_is_retried_by_the_sdk_and_succeeds(server: ProviderServer,
                                                            kind: str) -> None:
    server.script(Scripted(429, headers={"retry-after-ms": "1"}))
    out = GENERATORS[kind](server, max_retries=2).generate(CHAT)
    assert out.text.startswith("Echo:") and len(server.requests) == 2


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_401_is_the_auth_error_saying_to_check_the_key(server: ProviderServer,
                                                         kind: str) -> None:
    server.script(Scripted(401))
    with pytest.raises(ProviderAuthFailed, match="check the API key") as err:
        GENERATORS[kind](server).generate(CHAT)
    assert err.value.status_code == 401 and err.value.provider_message
    assert "sk-test" not in str(err.value) and "sk-ant-test" not in str(err.value)


@pytest.mark.parametrize("status,error", [(429, ProviderRateLimited), (500, ProviderServerError),
                                          (400, ProviderBadRequest)])
@pytest.mark.parametrize("kind", GENERATORS)
def test_provider_statuses_map_into_the_tree_with_the_providers_message(
        server: ProviderServer, kind: str, status: int, error: type) -> None:
    server.script(Scripted(status))
    with pytest.raises(error) as err:
        GENERATORS[kind](server).generate(CHAT)
    assert err.value.status_code == status
    assert err.value.provider_message in str(err.value) and err.value.provider_message


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_slow_server_gives_the_timeout_error(server: ProviderServer, kind: str) -> None:
    server.delay_s = 1.0
    gen = (OpenAIGenerator("m", base_url=server.openai_base_url, api_key="k", timeout=0.2,
                           max_retries=0) if kind == "openai" else
           AnthropicGenerator("m", base_url=server.anthropic_base_url, api_key="k",
                              timeout=0.2, max_retries=0))
    with pytest.raises(ProviderTimeout, match="timeout"):
        gen.generate(CHAT)

    async def run() -> None:
        await gen.agenerate(CHAT)

    with pytest.raises(ProviderTimeout):
        asyncio.run(run())


def test_errors_while_streaming_are_ours_too(server: ProviderServer) -> None:
    server.script(Scripted(401))
    with pytest.raises(ProviderAuthFailed):
        list(openai_gen(server).stream(CHAT))


def test_an_unreachable_server_is_unavailable() -> None:
    gen = OpenAIGenerator("m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0,
                          timeout=2)
    with pytest.raises(ProviderUnavailable, match="base_url"):
        gen.generate(CHAT)


def test_keys_come_from_the_environment_and_stay_secret(server: ProviderServer,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(InvalidInput, match="OPENAI_API_KEY"):
        OpenAIGenerator("gpt-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    gen = OpenAIGenerator("gpt-test", base_url=server.openai_base_url, max_retries=0)
    gen.generate(CHAT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert "sk-from-env" not in repr(gen) and "sk-from-env" not in repr(vars(gen))


def test_a_ready_client_is_used_as_given(server: ProviderServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-own",
                           default_headers={"x-app": "mine"}, max_retries=0)
    gen = OpenAIGenerator("gpt-test", client=client)
    gen.generate(CHAT)
    assert server.requests[0].headers["x-app"] == "mine"
    assert server.requests[0].headers["authorization"] == "Bearer sk-own"
    # no async twin is guessed from it (it could miss its headers, proxies or auth)
    with pytest.raises(UnsupportedRequest, match="pass async_client= too"):
        asyncio.run(gen.agenerate(CHAT))
    aclient = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-own",
                                 default_headers={"x-app": "mine-async"}, max_retries=0)
    both = OpenAIGenerator("gpt-test", client=client, async_client=aclient)
    asyncio.run(both.agenerate(CHAT))
    assert server.requests[-1].headers["x-app"] == "mine-async"


def test_provider_errors_survive_pickling() -> None:
    import pickle

    err = ProviderRateLimited("OpenAI", "Rate limit reached", status_code=429)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ProviderRateLimited and str(back) == str(err)
    assert (back.status_code, back.provider_message) == (429, "Rate limit reached")


def test_reprs_show_no_credentials_and_streams_run_once(server: ProviderServer) -> None:
    gen = OpenAIGenerator("m", base_url="http://user:pw@127.0.0.1:9/v1", api_key="k")
    assert "pw" not in repr(gen) and "127.0.0.1:9" in repr(gen)
    with pytest.raises(InvalidInput, match="its value is not shown"):
        OpenAIGenerator("m", api_key=["sk-secret-in-a-list"])  # type: ignore[arg-type]
    stream = openai_gen(server).stream(CHAT)
    assert "".join(stream).startswith("Echo:")
    with pytest.raises(InvalidInput, match="iterated once"):
        list(stream)


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_stream_cut_mid_way_is_a_provider_error(server: ProviderServer, kind: str) -> None:
    server.cut_stream_after = 3
    with pytest.raises(ProviderUnavailable):
        list(GENERATORS[kind](server).stream(CHAT))

    async def run() -> None:
        async for _ in GENERATORS[kind](server).astream(CHAT):
            pass

    with pytest.raises(ProviderUnavailable):
        asyncio.run(run())
