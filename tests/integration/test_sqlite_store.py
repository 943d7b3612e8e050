"""What is particular to SQLiteProfileStore, on real SQLite files: deleted text leaves the
files, a file that is not a database is refused untouched, WAL and secure_delete, ``:memory:``,
``PERSONALIZER_DB``, and NULs stored by older releases cleaned on open. (The contract every
store keeps runs against it in tests/contract/test_store_contract.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support.rows import pref

from personalizer.errors import NotADatabase, StoreError
from personalizer.profiles import SQLiteProfileStore
from personalizer.profiles.models import StoredGeneration


def test_deleted_text_does_not_linger_in_the_files(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    marker = "zebra-unique-secret-7c1e"
    with SQLiteProfileStore(path) as store:
        store.append_preferences("bob", [pref(0)])
        store.append_preference("bob", pref(1).model_copy(update={"reason": marker}))
        store.append_preferences("alice", [pref(2)])
        store.delete("bob")
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert marker.encode() not in raw
        assert store.get("alice").preference_count == 1


def test_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(NotADatabase, match="not an SQLite database"):
        SQLiteProfileStore(path)
    assert path.read_text().startswith("these are my notes")  # untouched
    with pytest.raises(NotADatabase, match="directory"):
        SQLiteProfileStore(tmp_path)
    with pytest.raises(StoreError, match="folder exist"):
        SQLiteProfileStore(tmp_path / "missing" / "p.db")


def test_store_opens_in_wal_with_secure_delete(db_path: Path) -> None:
    with SQLiteProfileStore(db_path) as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000


def test_in_memory_store_works() -> None:
    with SQLiteProfileStore(":memory:") as s:
        s.append_preferences("alice", [pref(0)])
        assert s.get("alice").preference_count == 1


def test_env_var_sets_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZER_DB", str(tmp_path / "from-env.db"))
    with SQLiteProfileStore() as s:
        assert s.path == str(tmp_path / "from-env.db")
        s.create("alice")
    assert (tmp_path / "from-env.db").exists()


def test_text_with_nul_from_before_it_was_refused_is_cleaned_on_open(db_path: Path) -> None:
    """Releases before m007 stored NUL in SQLite texts; every stored string is now checked
    when read, so opening such a database drops the NULs (and keeps everything else)."""
    with SQLiteProfileStore(db_path) as s:
        s.append_preferences("alice", [pref(0, reason="why")])
        s.save_generation("alice", StoredGeneration(id="a" * 32, prompt="q", answer="ans"))
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE profiles SET summary = ? WHERE user_id = 'alice'",
                 ("short\x00 answers",))
    conn.execute("UPDATE preferences SET reason = ?, chosen = ?", ("too\x00 long", "\x00yes"))
    conn.execute("UPDATE generations SET answer = ?", ("an\x00swer",))
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_no_nul_in_text'")  # older
    conn.commit()
    conn.close()
    with SQLiteProfileStore(db_path) as s:
        assert s.get("alice").summary == "short answers"
        [p] = s.preferences("alice")
        assert (p.reason, p.chosen, p.prompt) == ("too long", "yes", "question 0")
        assert s.generation("alice", "a" * 32).answer == "answer"
        assert s.export_profile("alice")["preferences"][0]["reason"] == "too long"
