"""PersonalizedChatModel: LangChain's own standard test suites (unit and integration), once on a
tiny local model and once on the hosted OpenAI generator against the local wire-format server;
then what is ours: the user from the run's config, LCEL chains, batches, plain answers without
a user."""

from __future__ import annotations

import atexit
import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from support import tiny
from support.provider_server import ProviderServer, echo_reply

from personalizer import Personalizer
from personalizer.backends import LocalGenerator, OpenAIGenerator
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.integrations.langchain import PersonalizedChatModel
from personalizer.profiles import BLOCK_END, BLOCK_START

REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])
_TMP = tempfile.TemporaryDirectory(prefix="personalizer-langchain-")
atexit.register(_TMP.cleanup)


@functools.lru_cache(maxsize=None)
def local_personalizer() -> Personalizer:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)
    return Personalizer(Path(_TMP.name) / "local.db", rewards=REWARDS, generator=gen)


@functools.lru_cache(maxsize=None)
def server() -> ProviderServer:
    srv = ProviderServer().start()
    atexit.register(srv.close)
    return srv


@functools.lru_cache(maxsize=None)
def hosted_personalizer() -> Personalizer:
    gen = OpenAIGenerator("gpt-test", base_url=server().openai_base_url, api_key="sk-test",
                          max_retries=0, timeout=10)
    return Personalizer(Path(_TMP.name) / "hosted.db", generator=gen)


class _Local:
    @property
    def chat_model_class(self) -> type[PersonalizedChatModel]:
        return PersonalizedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"personalizer": local_personalizer()}

    @property
    def returns_usage_metadata(self) -> bool:
        return True  # local generations count their tokens, streamed or not

    @property
    def has_tool_calling(self) -> bool:
        return False  # bind_tools is overridden only to say so

    @property
    def has_structured_output(self) -> bool:
        return False


class _Hosted(_Local):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"personalizer": hosted_personalizer()}


class TestLocalUnit(_Local, ChatModelUnitTests):
    pass


class TestLocalIntegration(_Local, ChatModelIntegrationTests):
    pass


class TestHostedUnit(_Hosted, ChatModelUnitTests):
    pass


class TestHostedIntegration(_Hosted, ChatModelIntegrationTests):
    pass


# -- ours ---------------------------------------------------------------------------------


@pytest.fixture
def hosted(tmp_path: Path) -> Personalizer:
    srv = server()
    srv.clear()
    srv.reply = echo_reply
    gen = OpenAIGenerator("gpt-test", base_url=srv.openai_base_url, api_key="sk-test",
                          max_retries=0, timeout=10)
    return Personalizer(tmp_path / "p.db", generator=gen)


def sent() -> dict[str, list[dict[str, Any]]]:
    """The messages of each request the server got, by the text of its last user turn."""
    out = {r.body["messages"][-1]["content"]: r.body["messages"] for r in server().requests}
    assert len(out) == len(server().requests)  # one request per question
    return out


def personalized(system: str, summary: str, app_prompt: str | None = None) -> bool:
    """Whether ``system`` is the application's prompt (if any) followed by a profile block
    that quotes ``summary``."""
    head = "" if app_prompt is None else f"{app_prompt}\n\n"
    return (system.startswith(f"{head}{BLOCK_START}\n") and system.endswith(f"\n{BLOCK_END}")
            and f'"{summary}"' in system)


def test_the_user_comes_from_the_run_config_in_an_lcel_chain(hosted: Personalizer) -> None:
    summaries = {"alice": "Likes answers about tea.", "bob": "Likes answers about chess."}
    questions = {"alice": "What should I brew?", "bob": "Which opening should I learn?"}
    for user, summary in summaries.items():
        hosted.set_summary(user, summary)
    prompt = ChatPromptTemplate.from_messages([("system", "You help with hobbies."),
                                               ("human", "{question}")])
    chain = prompt | PersonalizedChatModel(personalizer=hosted) | StrOutputParser()
    answers = chain.batch([{"question": q} for q in questions.values()], config=[
        {"configurable": {"user_id": user}} for user in questions])
    assert answers == [f"Echo: {q}" for q in questions.values()]
    requests = sent()
    assert sorted(requests) == sorted(questions.values())
    for user, other in (("alice", "bob"), ("bob", "alice")):
        system, human = requests[questions[user]]
        assert system["role"] == "system" and human["role"] == "user"
        assert personalized(system["content"], summaries[user], "You help with hobbies.")
        assert summaries[other] not in system["content"]  # each got only their own


async def test_async_batch_and_stream_read_the_user_too(hosted: Personalizer) -> None:
    hosted.set_summary("alice", "Likes answers about tea.")
    model = PersonalizedChatModel(personalizer=hosted)
    config = {"configurable": {"user_id": "alice"}}
    outs = await model.abatch(["Hi", "Hello"], config=config)
    assert [o.text for o in outs] == ["Echo: Hi", "Echo: Hello"]
    assert [o.response_metadata["personalized"] for o in outs] == [True, True]
    assert [o.response_metadata["steering"]["levers"] for o in outs] == [["prompt"]] * 2
    chunks = [c async for c in model.astream("Hey", config=config)]
    assert "".join(c.text for c in chunks) == "Echo: Hey"
    assert chunks[-1].response_metadata["steering"]["levers"] == ["prompt"]
    requests = sent()
    assert sorted(requests) == ["Hello", "Hey", "Hi"]  # three requests, ...
    for question, messages in requests.items():  # ... each with alice's profile block
        assert [m["role"] for m in messages] == ["system", "user"], question
        assert personalized(messages[0]["content"], "Likes answers about tea.")


def test_without_a_user_the_answer_is_plain_and_says_so(hosted: Personalizer) -> None:
    out = PersonalizedChatModel(personalizer=hosted).invoke("Hi")
    assert out.text == "Echo: Hi" and out.response_metadata["personalized"] is False
    assert "user_id" in out.response_metadata["note"]
    assert hosted.store.count() == 0  # no profile read or created
    assert server().requests[0].body["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_new_user_is_served_and_the_record_says_so(hosted: Personalizer) -> None:
    out = PersonalizedChatModel(personalizer=hosted).invoke(
        "Hi", config={"configurable": {"user_id": "newcomer"}})
    assert out.response_metadata["steering"]["new_user"] is True
    assert out.usage_metadata["output_tokens"] == 2


def test_local_steering_reaches_langchain_answers() -> None:
    p = local_personalizer()
    p.store.get_or_create("e-lover")
    p.store.modify("e-lover", lambda prof: prof.model_copy(update={
        "coefficients": {"e_count": 3.0}, "reward_set_id": REWARDS.id,
        "reward_set_version": REWARDS.version}))
    model = PersonalizedChatModel(personalizer=p, max_tokens=12, temperature=0,
                                  strategy="args")
    steered = model.invoke("Hello there", config={"configurable": {"user_id": "e-lover"}})
    plain = model.invoke("Hello there")
    assert steered.response_metadata["steering"]["path"].startswith("args")
    assert steered.text.count("e") > plain.text.count("e")
    direct = p.generate("e-lover", "Hello there", max_new_tokens=12, do_sample=False,
                        strategy="args")
    assert steered.text == direct.text


def test_feedback_on_a_runs_answer(tmp_path: Path) -> None:
    from personalizer import InvalidInput
    from personalizer.profiles import default_reward_set

    srv = server()
    srv.clear()
    long = ("Sleep improves with a fixed bedtime and wake time, a dark and cool bedroom, no "
            "screens for an hour before bed, no caffeine after noon, daylight in the morning, "
            "regular exercise, a light dinner, and a short wind-down routine such as reading.")
    srv.reply = lambda body: long
    rewards = default_reward_set()
    gen = OpenAIGenerator("gpt-test", base_url=srv.openai_base_url, api_key="sk-test",
                          max_retries=0, timeout=10)
    with Personalizer(tmp_path / "p.db", rewards=rewards, generator=gen) as p:
        model = PersonalizedChatModel(personalizer=p)
        config = {"configurable": {"user_id": "dana"}}
        answers = [model.invoke("How do I sleep better?", config=config) for _ in range(3)]
        for answer in answers:
            profile = model.record_feedback(answer, rating="down")
        assert profile.coefficients["verbosity"] < 0 and len(p.store.ratings("dana")) == 3
        edited = model.record_feedback(answers[0], edited="Keep a fixed bedtime.")
        assert p.preferences("dana")[-1].source == "edit" and edited.preference_count == 1
        with pytest.raises(InvalidInput, match="no user and generation id"):
            model.record_feedback(model.invoke("Hi"), rating="up")  # no user: nothing kept


def test_bind_tools_says_tools_are_not_supported() -> None:
    model = PersonalizedChatModel(personalizer=hosted_personalizer())
    with pytest.raises(NotImplementedError, match="does not support tool calling"):
        model.bind_tools([])
