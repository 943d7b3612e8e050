"""The facade an application embeds: one planning step behind generate, agenerate, stream,
astream and generate_batch; newcomers served at once; concurrent users on one model."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support import tiny

from personalizer import Personalizer
from personalizer.backends import LocalGenerator
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.profiles import Profile
from personalizer.testing import ScriptedGenerator

REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"),
                                                more="Use the letter e.")])
CHAT = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture(scope="module")
def local() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None,
                          prompt_rewards=None)


def with_coefficients(p: Personalizer, user: str, value: float) -> Profile:
    p.store.get_or_create(user)
    return p.store.modify(user, lambda prof: prof.model_copy(update={
        "coefficients": {"e_count": value}, "reward_set_id": REWARDS.id,
        "reward_set_version": REWARDS.version}))


def test_a_user_never_seen_is_served_at_once_and_told_about_onboarding(
        tmp_path: Path, local: LocalGenerator) -> None:
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=local) as p:
        out = p.generate("newcomer", CHAT, max_new_tokens=8)
        plain = local.generate(CHAT, max_new_tokens=8)
        assert out.text == plain.text  # not steered: nothing is known about them
        record = out.steering
        assert record.new_user and "onboarding" in record.hint
        assert p.profile("newcomer").preference_count == 0  # created on first use
        p.record_preference("newcomer", "q", "short", "a longer answer")
        again = p.generate("newcomer", CHAT, max_new_tokens=8).steering
        assert not again.new_user and again.hint is None


def test_concurrent_first_requests_create_one_profile(db: str) -> None:
    gen = ScriptedGenerator(lambda m: "ok")
    with Personalizer(db, generator=gen) as p:
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda _: p.generate("rush", "hi"), range(16)))
        assert all(o.text == "ok" and o.steering.new_user and o.id for o in outs)
        assert p.store.count() == 1 and p.profile("rush").version == 1
        assert len(p.export_profile("rush")["generations"]) == 16


def test_stream_agenerate_and_astream_answer_as_generate_does(
        tmp_path: Path, local: LocalGenerator) -> None:
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=local,
                      strategy="args") as p:
        with_coefficients(p, "eve", 2.0)
        whole = p.generate("eve", CHAT, max_new_tokens=12)
        assert whole.steering.path.startswith("args")  # steered, so the paths must agree
        pieces = list(p.stream("eve", CHAT, max_new_tokens=12))

        async def run() -> tuple[Any, list[str]]:
            out = await p.agenerate("eve", CHAT, max_new_tokens=12)
            return out, [x async for x in p.astream("eve", CHAT, max_new_tokens=12)]

        out, apieces = asyncio.run(run())
    assert "".join(pieces) == whole.text == out.text == "".join(apieces)
    assert out.steering == whole.steering


def test_async_facade_works_with_a_generator_that_has_only_sync_methods(
        tmp_path: Path) -> None:
    gen = ScriptedGenerator(lambda m: f"seen {len(m)} messages")
    with Personalizer(tmp_path / "p.db", generator=gen) as p:
        p.set_summary("ann", "Likes tea.")

        async def run() -> tuple[Any, list[str]]:
            out = await p.agenerate("ann", "hi")
            return out, [x async for x in p.astream("ann", "hi")]

        out, pieces = asyncio.run(run())
    assert out.text == "seen 2 messages" == "".join(pieces)  # the profile block was added
    assert out.steering.levers == ("prompt",)


def test_different_users_on_one_loaded_model_concurrently(tmp_path: Path,
                                                          local: LocalGenerator) -> None:
    users = {f"u{i}": (-2.0 if i % 2 else 2.0) for i in range(6)}
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=local,
                      strategy="args") as p:
        for user, value in users.items():
            with_coefficients(p, user, value)
        alone = {u: p.generate(u, CHAT, max_new_tokens=10).text for u in users}
        assert len(set(alone.values())) == 2  # the two tastes answer differently
        start = threading.Barrier(len(users))

        def ask(user: str) -> str:
            start.wait()
            return p.generate(user, CHAT, max_new_tokens=10).text

        with ThreadPoolExecutor(len(users)) as pool:
            together = dict(zip(users, pool.map(ask, users), strict=True))
    assert together == alone


def test_streams_report_the_whole_generation_after_the_last_piece(
        tmp_path: Path, local: LocalGenerator) -> None:
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=local,
                      strategy="args") as p:
        with_coefficients(p, "eve", 2.0)
        whole = p.generate("eve", CHAT, max_new_tokens=12, prompt_profile=True)
        stream = p.stream("eve", CHAT, max_new_tokens=12, prompt_profile=True)
        assert stream.generation is None
        assert "".join(stream) == whole.text
        done = stream.generation
        assert done.steering.levers == whole.steering.levers == ("prompt", "args", "lookahead",
                                                                   "no_repeat")
        assert (done.completion_tokens, done.token_ids) == (whole.completion_tokens,
                                                            whole.token_ids)

        async def run() -> Any:
            s = p.astream("newbie", CHAT, max_new_tokens=5)
            text = "".join([x async for x in s])
            return text, s.generation

        text, newbie = asyncio.run(run())
    assert newbie.text == text and newbie.steering.new_user


def test_the_reward_set_is_given_once(tmp_path: Path) -> None:
    bare = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), quality=None)
    with Personalizer(tmp_path / "a.db", rewards=REWARDS, generator=bare) as p:
        # the caller's generator, as given and untouched: each request hands the set over
        assert p.generator is bare and bare.rewards is None and p.rewards is REWARDS
        with_coefficients(p, "eve", 2.0)
        assert p.generate("eve", CHAT, max_new_tokens=4).steering.path == "branch"
    owned = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)
    with Personalizer(tmp_path / "b.db", generator=owned) as p:
        assert p.rewards is REWARDS  # the generator's set, for learning too
        assert p.record_preference("bob", "q", "eee", "a").coefficients
    other = RewardSet("other", [AttributeScorer("a_count", "more a", lambda t: t.count("a"))])
    from personalizer import InvalidInput

    with pytest.raises(InvalidInput, match="give the reward set once"):
        Personalizer(tmp_path / "c.db", rewards=other, generator=owned)


def test_preferences_stored_before_a_reward_set_are_learned_from(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with Personalizer(db) as p:  # an app that only collected preferences at first
        for i in range(3):
            p.record_preference("ann", f"q{i}", "eeee", "a")
        assert p.profile("ann").coefficients == {}
    with Personalizer(db, rewards=REWARDS) as p:
        later = p.record_preference("ann", "q3", "a", "ee")  # one the other way round
        assert later.preference_count == 4
        assert later.coefficients["e_count"] > 0  # three earlier answers outweigh it
        assert p.refit("ann").coefficients == pytest.approx(later.coefficients)
    with Personalizer(tmp_path / "alone.db", rewards=REWARDS) as p:
        only = p.record_preference("ann", "q3", "a", "ee")
    assert only.coefficients["e_count"] < 0  # what the last answer alone would say


# -- feedback on answers ---------------------------------------------------------------------

LONG = ("Sleep improves with a fixed bedtime and wake time, a dark and cool bedroom, no "
        "screens for an hour before bed, no caffeine after noon, daylight in the morning, "
        "regular exercise, a light dinner, and a short wind-down routine such as reading.")


def test_answers_carry_an_id_and_feedback_learns_from_choices_edits_and_ratings(
        tmp_path: Path) -> None:
    from personalizer.profiles import default_reward_set

    rewards = default_reward_set()
    replies = iter(["Keep a fixed bedtime.", LONG] * 20)
    gen = ScriptedGenerator(lambda m: next(replies))
    with Personalizer(tmp_path / "p.db", rewards=rewards, generator=gen) as p:
        short, long = p.generate("ann", "How do I sleep better?"), p.generate(
            "ann", "How do I sleep better?")
        assert short.id and long.id and short.id != long.id
        chose = p.record_feedback("ann", short.id, preferred_over=long.id)
        edit = p.record_feedback("ann", long.id, edited="Keep a fixed bedtime and no screens.")
        history = p.preferences("ann")
        assert [(h.source, h.chosen, h.rejected) for h in history] == [
            ("choice", short.text, long.text),
            ("edit", "Keep a fixed bedtime and no screens.", LONG)]
        assert edit.preference_count == chose.preference_count + 1 == 2

        # thumbs down on long answers, again and again: verbosity goes down each time
        verbosity = []
        for _ in range(4):
            out = p.generate("bob", "How do I sleep better?")
            if out.text != LONG:
                out = p.generate("bob", "How do I sleep better?")
            verbosity.append(p.record_feedback("bob", out.id, rating="down")
                             .coefficients["verbosity"])
        assert all(b < a for a, b in zip(verbosity, verbosity[1:])) and verbosity[0] < 0
        assert len(p.store.ratings("bob")) == 4
        assert p.refit("bob").coefficients["verbosity"] == pytest.approx(verbosity[-1],
                                                                        abs=0.05)
        # why this answer: each base reward's part; together, the user's reward of it
        out = p.generate("bob", "How do I sleep better?")
        why = out.steering.terms
        assert {t.name for t in why} == set(rewards.names)
        total = rewards.user_reward("How do I sleep better?", [out.text],
                                    p.profile("bob").coefficients, reward_set_id=rewards.id,
                                    reward_set_version=rewards.version)[0]
        assert sum(t.contribution for t in why) == pytest.approx(total) and total != 0


def test_feedback_refuses_what_it_cannot_learn_from(tmp_path: Path, db: str) -> None:
    from personalizer import InvalidInput

    gen = ScriptedGenerator(lambda m: "An answer.")
    with Personalizer(db, rewards=REWARDS, generator=gen, keep_generations=2) as p:
        outs = [p.generate("ann", "q") for _ in range(3)]
        theirs = p.generate("bob", "q")
        with pytest.raises(InvalidInput, match="exactly one"):
            p.record_feedback("ann", outs[2].id, rating="up", edited="x")
        with pytest.raises(InvalidInput, match="retention"):
            p.record_feedback("ann", outs[0].id, rating="up")  # beyond the newest 2
        with pytest.raises(InvalidInput, match="no kept answer"):
            p.record_feedback("ann", theirs.id, rating="up")  # another user's answer
        assert len(p.export_profile("ann")["generations"]) == 2
        assert p.record_feedback("ann", outs[2].id, rating="up").coefficients
        p.delete_profile("ann")
        with pytest.raises(InvalidInput, match="no kept answer"):
            p.record_feedback("ann", outs[2].id, rating="up")  # deleted with her
        assert p.store.count() == 1  # and feedback did not bring her back
    with Personalizer(tmp_path / "q.db", generator=gen, keep_generations=0) as p:
        assert p.generate("ann", "q").id is None  # nothing kept, nothing to refer to


def backdate(db: str, generation_id: str, seconds: float) -> None:
    """Make a kept answer ``seconds`` old (the database's own driver writes its time)."""
    when = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()
    sql = "UPDATE generations SET created_at = {p} WHERE id = {p}"
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            assert conn.execute(sql.format(p="%s"), (when, generation_id)).rowcount == 1
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            assert conn.execute(sql.format(p="?"), (when, generation_id)).rowcount == 1


def test_kept_answers_older_than_the_age_limit_are_dropped(db: str) -> None:
    from support.rows import user_rows

    gen = ScriptedGenerator(lambda m: "An answer.")
    with Personalizer(db, generator=gen, keep_generations_days=1) as p:
        past, within = p.generate("ann", "q"), p.generate("ann", "q")
        backdate(db, past.id, 86400 + 60)  # a minute past the age limit
        backdate(db, within.id, 86400 - 60)  # a minute inside it
        new = p.generate("ann", "q")  # saving it drops the one past the age limit
        assert user_rows(db, "ann")["generations"] == 2
        kept = [g["id"] for g in p.export_profile("ann")["generations"]]
    assert sorted(kept) == sorted([within.id, new.id])


def test_deleting_a_user_while_they_are_answered_loses_nothing_else(db: str) -> None:
    from support.rows import user_rows

    from personalizer import ProfileNotFound

    gen = ScriptedGenerator(lambda m: "ok")
    errors: list[BaseException] = []
    with Personalizer(db, generator=gen) as p:
        p.generate("bystander", "hi")

        def ask() -> None:
            for _ in range(25):
                try:
                    p.generate("eve", "hi")
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

        def delete() -> None:
            for _ in range(25):
                try:
                    p.delete_profile("eve")
                except ProfileNotFound:
                    pass
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(3)]
        threads.append(threading.Thread(target=delete))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        try:
            p.delete_profile("eve")
        except ProfileNotFound:
            pass
        assert set(user_rows(db, "eve").values()) == {0}
        assert p.profile("bystander").version == 1
        assert len(p.export_profile("bystander")["generations"]) == 1


def test_history_stored_before_a_reward_set_is_learned_from_by_a_rating_or_an_answer(
        tmp_path: Path) -> None:
    from personalizer.profiles import default_reward_set

    rewards = default_reward_set()
    db = tmp_path / "p.db"
    gen = ScriptedGenerator(lambda m: "Keep a fixed bedtime.")
    with Personalizer(db, generator=gen) as p:  # preferences collected, nothing learned
        for i in range(3):
            p.record_preference("ann", f"q{i}", "Short.", "A much longer answer with filler.")
            p.record_preference("bob", f"q{i}", "Short.", "A much longer answer with filler.")
        kept = p.generate("ann", "Sleep?")
    with Personalizer(db, rewards=rewards, generator=gen) as p:
        rated = p.record_feedback("ann", kept.id, rating="up")  # first learned: a rating
        assert rated.coefficients == pytest.approx(p.refit("ann").coefficients)
        session = p.onboarding("bob", max_questions=3)  # first learned: an onboarding answer
        q = session.next_question()
        answered = session.answer(q.id, 0)
        assert answered.coefficients == pytest.approx(p.refit("bob").coefficients)
        assert answered.coefficients["verbosity"] < 0  # the three earlier choices count


def test_feedback_for_a_user_deleted_meanwhile_does_not_bring_them_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personalizer import ProfileNotFound

    gen = ScriptedGenerator(lambda m: "An answer.")
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=gen) as p:
        found = p.store.generation

        def read_then_delete(user_id: str, generation_id: str, **kw: Any) -> Any:
            kept = found(user_id, generation_id, **kw)
            p.store.delete(user_id)  # she deletes herself between the read and the write
            return kept

        monkeypatch.setattr(p.store, "generation", read_then_delete)
        for feedback in ({"rating": "up"}, {"edited": "Mine."}):
            answer = p.generate("ann", "q")  # (a new user again on each round)
            with pytest.raises(ProfileNotFound):
                p.record_feedback("ann", answer.id, **feedback)
            assert p.store.count() == 0  # the feedback did not re-create her


def test_leaving_a_stream_early_stops_the_generators_work(tmp_path: Path) -> None:
    closed: list[str] = []

    class Counting:
        def generate(self, messages: Any, **options: Any) -> Any:
            raise AssertionError("not used")

        def stream(self, messages: Any, **options: Any) -> Any:
            def pieces() -> Any:
                try:
                    for i in range(1000):
                        yield f"{i} "
                finally:
                    closed.append("sync")
            return pieces()

    with Personalizer(tmp_path / "p.db", generator=Counting()) as p:
        for i, _ in enumerate(p.stream("ann", "hi")):
            if i == 2:
                break
        assert closed == ["sync"]

        async def run() -> None:
            stream = p.astream("ann", "hi")
            async for i, _ in _enumerate(stream):
                if i == 2:
                    break
            await stream.aclose()

        asyncio.run(run())
    assert closed == ["sync", "sync"]


async def _enumerate(stream: Any) -> Any:
    i = 0
    async for item in stream:
        yield i, item
        i += 1
