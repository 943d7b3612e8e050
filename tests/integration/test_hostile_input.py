"""Hostile input at the public API (issue #30, items 1-4 and 9): each reproduction of the
issue either succeeds or raises a PersonalizerError subclass saying what was wrong, and a
refused call writes nothing (the SQLite file's ``iterdump()`` is the same before and after)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from personalizer import (
    InvalidInput,
    InvalidProfileData,
    InvalidUserId,
    Personalizer,
    PersonalizerError,
    StoreError,
)
from personalizer.backends import OpenAIGenerator
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.cli import main
from personalizer.profiles import Preference, SQLiteProfileStore
from personalizer.settings import PersonalizerSettings
from personalizer.testing import ScriptedGenerator

SURROGATE = json.loads('"\\ud800"')  # what a JSON body from any web client can carry
REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "p.db"


@pytest.fixture
def p(path: Path) -> Iterator[Personalizer]:
    answers = itertools.count()
    with Personalizer(path, rewards=REWARDS,
                      generator=ScriptedGenerator(lambda m: f"Answer {next(answers)}.")) as p:
        p.record_preference("alice", "q", "short", "a longer answer")
        yield p


def refused(path: Path, call: Callable[[], Any],
            kind: type[PersonalizerError] = InvalidInput, match: str | None = None) -> str:
    """``call`` raises ``kind`` and leaves the database as it was; returns the message."""
    before = dump(path)
    with pytest.raises(kind, match=match) as info:
        call()
    assert dump(path) == before, "a refused call wrote to the database"
    return str(info.value)


def hosted() -> OpenAIGenerator:
    """A hosted generator whose server is never reached: every call here is refused first."""
    return OpenAIGenerator("gpt-test", api_key="sk-test", base_url="http://127.0.0.1:9",
                           max_retries=0, timeout=1)


# -- item 1: text that cannot be encoded as UTF-8 ---------------------------------------------

@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected", "reason"])
def test_a_lone_surrogate_in_a_preference_is_refused(p: Personalizer, path: Path,
                                                     field: str) -> None:
    args = {"prompt": "q", "chosen": "a", "rejected": "b", "reason": "why"} | {
        field: "x" + SURROGATE}
    message = refused(path, lambda: p.record_preference("alice", **args))
    assert field in message and "surrogate" in message
    refused(path, lambda: p.record_preference("bob", **args))  # a newcomer: not created


def test_a_nul_in_text_is_refused_on_both_stores_alike(p: Personalizer, path: Path) -> None:
    assert "NUL" in refused(path, lambda: p.record_preference("alice", "q\x00", "a", "b"))


def test_list_profiles_after_a_surrogate(p: Personalizer, path: Path) -> None:
    assert "after" in refused(path, lambda: p.list_profiles(after=SURROGATE))


def test_feedback_with_a_surrogate_id_or_edit(p: Personalizer, path: Path) -> None:
    out = p.generate("alice", "hi")
    refused(path, lambda: p.record_feedback("alice", SURROGATE, rating="up"),
            match="generation_id")
    refused(path, lambda: p.record_feedback("alice", out.id, preferred_over=SURROGATE),
            match="preferred_over")
    refused(path, lambda: p.record_feedback("alice", out.id, edited="x" + SURROGATE),
            match="edited")
    assert p.record_feedback("alice", out.id, edited="A better answer.").preference_count == 2


def test_import_with_a_surrogate_escape(p: Personalizer, path: Path) -> None:
    text = json.dumps(p.export_profile("alice"))
    assert '"q"' in text
    refused(path, lambda: p.import_profile(text.replace('"q"', '"\\udc80"'), replace=True),
            InvalidProfileData, match="surrogate")
    other = json.loads(text)  # the same export, as bob, without the surrogate: fine
    other["profile"]["user_id"] = "bob"
    assert p.import_profile(other).user_id == "bob"


def test_a_surrogate_in_onboarding_state(p: Personalizer, path: Path) -> None:
    doc = p.export_profile("alice")
    doc["onboarding"] = {"reward_set_id": REWARDS.id, "reward_set_version": REWARDS.version,
                         "pool_id": "abc", "asked": ["\udc80"], "max_questions": 3}
    refused(path, lambda: p.import_profile(doc, replace=True), InvalidProfileData,
            match="onboarding")
    pool = [{"prompt": "Hi" + SURROGATE, "responses": ["Hello.", "Hello there, friend!"]}]
    refused(path, lambda: p.onboarding("carol", pool=pool).next_question(),
            match="surrogate")


def test_a_database_path_with_a_surrogate_or_nul(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="surrogate"):
        Personalizer(str(tmp_path / "\ud800.db"))
    with pytest.raises(InvalidInput, match="NUL"):
        Personalizer("a\x00b")
    with pytest.raises(InvalidInput):  # the store itself, opened directly
        SQLiteProfileStore(str(tmp_path / "\ud800.db"))
    with pytest.raises(PersonalizerError):  # (Python 3.11's Path.exists says False)
        SQLiteProfileStore(str(tmp_path / "a\x00b"), create=False)
    assert list(tmp_path.iterdir()) == []


def test_the_store_called_directly_refuses_unstorable_text(path: Path) -> None:
    with SQLiteProfileStore(path) as store:
        store.create("alice")
        bad = Preference.model_construct(prompt="\udc80", chosen="a", rejected="b",
                                         reason=None, source="feedback",
                                         created_at=Preference(prompt="q", chosen="a",
                                                               rejected="b").created_at,
                                         judgement="better")
        refused(path, lambda: store.append_preferences("alice", [bad]))
        with pytest.raises(ValueError, match="NUL"):
            Preference(prompt="q", chosen="a\x00", rejected="b")


# -- item 2: imports that escaped the tree ----------------------------------------------------

def test_import_of_deeply_nested_json(p: Personalizer, path: Path) -> None:
    refused(path, lambda: p.import_profile("[" * 100_000 + "]" * 100_000),
            InvalidProfileData, match="nested too deeply")


def test_import_of_huge_numbers(p: Personalizer, path: Path) -> None:
    doc = p.export_profile("alice")
    doc["profile"]["version"] = 10**30
    refused(path, lambda: p.import_profile(doc, replace=True), InvalidProfileData,
            match="version")
    refused(path, lambda: p.import_profile(json.dumps(doc), replace=True), InvalidProfileData,
            match="version")
    digits = '{"schema": "personalizer.profile-export", "schema_version": ' + "9" * 5000 + "}"
    refused(path, lambda: p.import_profile(digits), InvalidProfileData)


def test_cli_import_of_deeply_nested_json(path: Path, tmp_path: Path) -> None:
    Personalizer(path).close()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    before = dump(path)
    out = CliRunner().invoke(main, ["profiles", "import", str(deep), "--db", str(path)])
    assert out.exit_code == 1 and "InvalidProfileData" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
    assert dump(path) == before


# -- item 3: paths ---------------------------------------------------------------------------

def test_a_path_too_long(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="database path"):
        Personalizer(str(tmp_path / ("x" * 5000)))
    with pytest.raises(StoreError, match="database path"):
        Personalizer(str(tmp_path / ("x" * 5000)), create=False)


@pytest.mark.parametrize("verb", [("profiles", "list"), ("profiles", "show", "alice"),
                                  ("profiles", "export", "alice"),
                                  ("profiles", "delete", "alice", "--yes"),
                                  ("profiles", "summary", "alice")])
def test_cli_read_verbs_on_a_bad_path_say_one_line(tmp_path: Path,
                                                   verb: tuple[str, ...]) -> None:
    for db in (str(tmp_path / ("x" * 5000)), "a\x00b"):
        out = CliRunner().invoke(main, [*verb, "--db", db])
        assert out.exit_code == 1, out.output
        assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
        assert "StoreError" in out.output or "InvalidInput" in out.output


def test_cli_export_to_a_folder_that_does_not_exist(p: Personalizer, path: Path,
                                                    tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "out.json"
    out = CliRunner().invoke(main, ["profiles", "export", "alice", "-o", str(target),
                                    "--db", str(path)])
    assert out.exit_code == 1 and "cannot write the export" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1


# -- item 4: validation before any write ------------------------------------------------------

def test_set_summary_refused_writes_nothing(p: Personalizer, path: Path) -> None:
    refused(path, lambda: p.set_summary("new1", "x\ud800"), match="surrogate")
    refused(path, lambda: p.set_summary("new1", "x" * 30_000), match="at most")
    assert p.set_summary("new1", "Prefers lists.").summary == "Prefers lists."


def test_a_request_the_generator_refuses_creates_no_user(path: Path) -> None:
    with Personalizer(path, generator=hosted()) as p:
        refused(path, lambda: p.generate("new1", "hi", temperature=5), match="temperature")
        refused(path, lambda: p.generate("new1", "hi", top_k=3), PersonalizerError,
                match="top_k")
        refused(path, lambda: list(p.stream("new1", "hi", max_new_tokens=-1)),
                match="max_new_tokens")
        refused(path, lambda: p.generate_batch([("new1", "hi")]), PersonalizerError)
    with Personalizer(path, generator=ScriptedGenerator(lambda m: "Hi.")) as p:
        out = p.generate("new1", "hi")  # answered: now the newcomer is stored, with it
        assert out.steering is not None and out.steering.new_user
        assert p.profile("new1").version >= 1 and p.record_feedback("new1", out.id,
                                                                    rating="up")
        assert "".join(p.stream("new2", "hi")) == "Hi." and p.profile("new2")


# -- item 9: limits, bytes ids, reasons, bounded summaries -------------------------------------

def test_a_10_mb_text_is_refused_at_once(p: Personalizer, path: Path) -> None:
    huge = "x" * 10_000_000
    start = time.perf_counter()
    for call in (lambda: p.record_preference("alice", huge, "a", "b"),
                 lambda: p.record_preference("alice", "q", huge, "b"),
                 lambda: p.generate("alice", huge),
                 lambda: p.generate("alice", [{"role": "user", "content": huge}]),
                 lambda: p.preference_probability("alice", "q", huge, "b")):
        assert "65,536" in refused(path, call, match="max_text_chars")
    assert time.perf_counter() - start < 5  # ~4 s of CPU per MB before the limit


def test_limits_are_settings_and_arguments(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.db"
    with Personalizer(path, max_text_chars=100, max_request_chars=150,
                      generator=ScriptedGenerator(lambda m: "Hi.")) as p:
        p.record_preference("alice", "q" * 100, "a", "b")
        refused(path, lambda: p.record_preference("alice", "q" * 101, "a", "b"),
                match="max_text_chars")
        refused(path, lambda: p.record_preference("alice", "q" * 100, "a" * 60, "b"),
                match="max_request_chars")
        refused(path, lambda: p.generate("alice", ["x" * 80, "y" * 80]),
                match="max_request_chars")
    with pytest.raises(InvalidInput, match="max_request_chars"):
        Personalizer(":memory:", max_text_chars=100, max_request_chars=50)
    monkeypatch.setenv("PERSONALIZER_MAX_TEXT_CHARS", "10")
    monkeypatch.setenv("PERSONALIZER_MAX_REQUEST_CHARS", "20")
    assert PersonalizerSettings.load().max_text_chars == 10
    with Personalizer.from_settings(db=str(path), rewards="none") as p:
        assert (p.limits.max_text_chars, p.limits.max_request_chars) == (10, 20)
        refused(path, lambda: p.record_preference("alice", "q" * 11, "a", "b"))


def test_a_long_history_imports_without_a_total(path: Path) -> None:
    with Personalizer(path, max_text_chars=100, max_request_chars=100) as p:
        p.record_preference("alice", "q" * 40, "a" * 40, "b")
        doc = p.export_profile("alice")
        doc["profile"]["user_id"] = "bob"
        doc["preferences"] = doc["preferences"] * 1 + [
            dict(doc["preferences"][0], prompt=f"q{i}" * 20) for i in range(5)]
        doc["profile"]["preference_count"] = 6
        assert p.import_profile(doc).preference_count == 6  # 6 x 40 characters: fine
        doc["profile"]["user_id"] = "carol"
        doc["preferences"][3]["chosen"] = "c" * 101
        refused(path, lambda: p.import_profile(doc), match=r"preferences\[3\]\.chosen")


def test_bytes_user_ids_are_refused(p: Personalizer, path: Path) -> None:
    for call in (lambda: p.create_profile(b"x"), lambda: p.profile(b"alice"),
                 lambda: p.record_preference(b"x", "q", "a", "b"),
                 lambda: p.set_summary(b"x", "Prefers lists."),
                 lambda: p.generate(b"x", "hi"), lambda: p.delete_profile(b"alice")):
        assert "bytes" in refused(path, call, InvalidUserId)


def test_a_reason_with_a_rating_is_refused_not_dropped(p: Personalizer, path: Path) -> None:
    out = p.generate("alice", "hi")
    refused(path, lambda: p.record_feedback("alice", out.id, rating="down", reason="too long"),
            match="reason")
    other = p.generate("alice", "hi")
    p.record_feedback("alice", out.id, preferred_over=other.id, reason="clearer")
    assert p.preferences("alice")[-1].reason == "clearer"


def test_summary_refresh_runs_one_model_call_per_write(path: Path) -> None:
    calls: list[int] = []

    def write(messages: Any) -> str:
        calls.append(1)
        return "Prefers short answers."

    with Personalizer(path, rewards=REWARDS, generator=ScriptedGenerator(write),
                      summary_every=10) as p:
        p.store.append_preferences("alice", [
            Preference(prompt=f"q{i}", chosen="short", rejected=f"a longer answer {i}")
            for i in range(200)])
        p.refit("alice")
        p.update_summary("alice")  # the whole history folded: 10 batches of 20
        assert len(calls) == 10 and p.profile("alice").summary_preferences == 200
        p.delete_preference("alice", 0)
        assert p.profile("alice").summary_stale
        calls.clear()
        profile = p.record_preference("alice", "q", "short", "a longer answer")
        assert len(calls) == 1, "a write call ran the whole rewrite"  # was 11
        assert not profile.summary_stale and profile.summary_preferences == 20
        for _ in range(15):  # the rest is folded a batch per write
            calls.clear()
            profile = p.record_preference("alice", "q", "short", "a longer answer")
            assert len(calls) <= 1
        assert profile.preference_count - profile.summary_preferences < 10
