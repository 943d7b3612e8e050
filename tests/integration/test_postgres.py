"""What is particular to PostgresProfileStore, on a real PostgreSQL server: secrets, migrations
under concurrent starts, dropped connections, a server restart, and delete leaving no trace.
(The contract every store keeps runs against it in tests/contract/test_store_contract.py, and
the concurrency tests in test_concurrency.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from support.pg_server import PostgresServer, rows_mentioning, running
from support.rows import pref

from personalizer import Personalizer
from personalizer.cli import main
from personalizer.errors import (
    InvalidInput,
    StoreAuthFailed,
    StoreError,
    StoreUnavailable,
)
from personalizer.profiles import PostgresProfileStore, open_store
from personalizer.profiles.models import StoredGeneration
from personalizer.profiles.store.pg_connection import ConnectionLost, redact_url
from personalizer.profiles.store.pg_schema import STEPS
from personalizer.types import SteeringRecord


def test_the_password_never_shows(pg_url: str, pg_server: Any) -> None:
    secret = pg_server.password
    with PostgresProfileStore(pg_url) as store:
        assert secret not in repr(store) and "***" in repr(store)
        assert secret not in store.url
    wrong = pg_url.replace(secret, "not-the-password")
    with pytest.raises(StoreAuthFailed, match="check the user name and password") as info:
        PostgresProfileStore(wrong)
    assert "not-the-password" not in str(info.value)
    assert redact_url("host=x password='a b' user=u") == "host=x password=*** user=u"
    odd = "postgresql://u:pa?ss#word@db.example:5433/app"  # libpq takes ? and # in a password
    assert redact_url(odd) == "postgresql://u:***@db.example:5433/app"
    with pytest.raises(InvalidInput, match="percent-encoded") as info:
        PostgresProfileStore("postgresql://u:se%zzcret@h/db")
    assert "zzcret" not in str(info.value)


def test_unreachable_server_and_missing_database_are_clear(pg_server: Any) -> None:
    closed = pg_server.url().replace(f":{pg_server.port}/", ":1/")
    with pytest.raises(StoreUnavailable, match="(?i)is the server running"):
        PostgresProfileStore(closed, connect_timeout_s=1)
    with pytest.raises(StoreError, match="createdb"):
        PostgresProfileStore(pg_server.url("no_such_db"))
    with pytest.raises(InvalidInput, match="postgresql://"):
        PostgresProfileStore("mysql://x")


def test_migrations_run_once_when_servers_start_together(pg_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with PostgresProfileStore(pg_url) as s:
                s.get_or_create("shared")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM personalizer_migrations ORDER BY name")]
        assert names == [name for name, _ in STEPS]


def test_delete_leaves_no_row_mentioning_the_user(pg_url: str) -> None:
    marker = "zebra-unique-user-7c1e"
    with PostgresProfileStore(pg_url) as store:
        store.append_preferences(marker, [pref(0), pref(1, reason="because")])
        store.modify(marker, lambda p: p.model_copy(update={"summary": "likes it short"}))
        with store.transaction(marker) as tx:
            from personalizer.profiles import OnboardingState

            tx.set_onboarding(OnboardingState(reward_set_id="s", reward_set_version="1",
                                             pool_id="p", max_questions=5))
        store.append_preferences("bystander", [pref(2)])
        assert sum(rows_mentioning(pg_url, marker).values()) == 4
        assert store.delete(marker) == 4
    assert set(rows_mentioning(pg_url, marker).values()) == {0}
    with PostgresProfileStore(pg_url) as store:
        assert store.get("bystander").preference_count == 1


class _LosesReplies(PostgresProfileStore):
    """Commits for real, then reports the connection lost, ``drops`` times: a commit whose
    acknowledgement never reached the client."""

    drops = 0
    meanwhile: Any = None  # another server's write between the commit and the check

    @contextmanager
    def _tx(self, begin: str, deadline: float) -> Iterator[Any]:
        with super()._tx(begin, deadline) as conn:
            yield conn
        if begin == "BEGIN" and self.drops:
            self.drops -= 1
            if self.meanwhile is not None:
                self.meanwhile()
            raise ConnectionLost(ConnectionError("server closed the connection"), at_commit=True)


def test_a_write_retried_after_a_lost_commit_reply_lands_once(pg_url: str) -> None:
    with _LosesReplies(pg_url) as store:
        store.drops = 1
        profile = store.append_preferences("alice", [pref(0), pref(1)])
        assert store.drops == 0  # the reply was lost once ...
        assert profile.preference_count == 2  # ... and the append landed once
        assert len(store.preferences("alice")) == 2

        store.drops = 1
        updated = store.update(store.get("alice").model_copy(update={"summary": "short"}))
        assert updated.version == 3 and store.get("alice") == updated  # not a VersionConflict

        store.drops = 1
        with store.transaction("alice") as tx:
            tx.append([pref(2)])
        assert store.get("alice").preference_count == 3 == len(store.preferences("alice"))

        store.drops = 1
        assert store.delete("alice") == 4


def test_a_lost_commit_reply_hidden_by_a_later_write_is_reported_not_guessed(pg_url: str) -> None:
    with _LosesReplies(pg_url) as store, PostgresProfileStore(pg_url) as other:
        store.append_preferences("alice", [pref(0)])
        store.meanwhile = lambda: other.modify(
            "alice", lambda p: p.model_copy(update={"summary": "other server"}))
        store.drops = 1
        with pytest.raises(StoreUnavailable, match="cannot be told"):
            store.update(store.get("alice").model_copy(update={"summary": "mine"}))
        assert store.get("alice").summary == "other server"  # and ours was not applied twice

        store.drops = 1  # appends carry their key: a sure answer despite the other write
        with store.transaction("alice") as tx:
            tx.append([pref(1)])
        assert store.get("alice").preference_count == 2 == len(store.preferences("alice"))


def test_a_connection_killed_before_commit_writes_nothing_and_says_so(pg_url: str) -> None:
    with PostgresProfileStore(pg_url, retry_s=2) as store:
        store.append_preferences("alice", [pref(0)])
        before = store.export_profile("alice")
        admin = psycopg.connect(pg_url, autocommit=True)
        with pytest.raises(StoreUnavailable, match="nothing was written"), \
                store.transaction("alice") as tx:
            tx.append([pref(1)])
            tx.update(summary="half")
            pid = tx._conn._raw.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        after = store.export_profile("alice")  # and the store works on, on a new connection
        assert {k: v for k, v in after.items() if k != "exported_at"} == \
            {k: v for k, v in before.items() if k != "exported_at"}


@pytest.fixture
def own_server(pg_server: Any) -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start."""
    with running(pg_server.bindir) as server:
        yield server


def test_a_server_restart_gives_a_clear_error_then_works_again(own_server: Any) -> None:
    with PostgresProfileStore(own_server.url(), retry_s=1, connect_timeout_s=1) as store:
        store.append_preferences("alice", [pref(0)])
        own_server.stop()
        with pytest.raises(StoreUnavailable, match="nothing was written"):
            store.append_preferences("alice", [pref(1)])
        with pytest.raises(StoreUnavailable, match="(?i)is the server running"):
            store.get("alice")
        own_server.start()
        deadline = time.monotonic() + 60
        while True:  # the pool reconnects in the background, with back-off
            try:
                profile = store.append_preferences("alice", [pref(2)])
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store never came back"
        assert profile.preference_count == 2
        assert [p.prompt for p in store.preferences("alice")] == ["question 0", "question 2"]


def test_the_facade_and_the_cli_take_a_url(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Personalizer(db=pg_url) as p:
        p.record_preference("alice", "Hi?", chosen="Hi!", rejected="Hello there, friend!")
        assert type(p.store).__name__ == "PostgresProfileStore"
    monkeypatch.setenv("PERSONALIZER_DB", pg_url)
    with open_store() as store:
        assert store.get("alice").preference_count == 1
    out = CliRunner().invoke(main, ["profiles", "list"])
    assert out.exit_code == 0, out.output
    assert "alice" in out.output
    out = CliRunner().invoke(main, ["profiles", "show", "alice", "--db", pg_url])
    assert out.exit_code == 0 and "alice" in out.output


def test_a_profile_moves_from_sqlite_to_postgresql_and_back_equal(tmp_path: Any,
                                                                   pg_url: str) -> None:
    from personalizer.profiles import OnboardingState, SQLiteProfileStore

    def same(doc: dict) -> dict:
        return {k: v for k, v in doc.items() if k != "exported_at"}

    with SQLiteProfileStore(tmp_path / "a.db") as lite:
        lite.append_preferences("alice", [pref(0), pref(1, reason="shorter, please")])
        lite.modify("alice", lambda p: p.model_copy(update={
            "coefficients": {"warmth": 0.4, "verbosity": -1.25}, "covariance": [[0.5, 0.1],
                                                                               [0.1, 0.25]],
            "reward_set_id": "attributes", "reward_set_version": "3", "summary": "Brief."}))
        with lite.transaction("alice") as tx:
            tx.set_onboarding(OnboardingState(reward_set_id="attributes", reward_set_version="3",
                                              pool_id="p", asked=["q1"], max_questions=5))
        lite.save_generation("alice", StoredGeneration(id="a" * 32, prompt="q", answer="Brief."),
                             model="m", options={"max_new_tokens": 8, "stop": ["\n"]},
                             strategy={"kind": "args", "k": 4},
                             steering=SteeringRecord(path="args-text", levers=("args",),
                                                     strategy={"kind": "args", "k": 4},
                                                     strength=1.5))
        original = lite.export_profile("alice")
        assert original["generations"][0]["steering"]["path"] == "args-text"
    with PostgresProfileStore(pg_url) as pg:
        pg.import_profile(original)
        via_pg = pg.export_profile("alice")
    assert same(via_pg) == same(original)
    with SQLiteProfileStore(tmp_path / "b.db") as back:
        back.import_profile(via_pg)
        assert same(back.export_profile("alice")) == same(original)
