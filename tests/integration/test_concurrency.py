"""Many processes and crashes against one real SQLite file and one real PostgreSQL database
(each test runs on both): nothing is lost, doubled or half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personalizer.profiles import open_store

WORKER = str(Path(__file__).resolve().parents[1] / "support" / "workers.py")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, text=True)


def _consistent(db: str) -> None:
    """The database's own checks pass and every profile's count matches its rows."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            pairs = conn.execute(
                "SELECT p.user_id, p.preference_count, (SELECT count(*) FROM preferences r "
                "WHERE r.user_id = p.user_id) FROM profiles p").fetchall()
    else:
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            pairs = conn.execute(
                "SELECT p.user_id, p.preference_count, (SELECT count(*) FROM preferences r "
                "WHERE r.user_id = p.user_id) FROM profiles p").fetchall()
        finally:
            conn.close()
    for user_id, count, rows in pairs:
        assert rows == count, f"{user_id}: profile says {count}, table holds {rows}"


def test_eight_processes_appending_to_one_user_lose_nothing(db: str) -> None:
    n_procs, per_proc = 8, 40
    procs = [_spawn("append", db, "shared-user", str(per_proc), f"p{k}")
             for k in range(n_procs)]  # no profile yet: they race to create it too
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with open_store(db) as store:
        profile = store.get("shared-user")
        history = store.preferences("shared-user")
    assert profile.preference_count == n_procs * per_proc
    assert len(history) == n_procs * per_proc
    assert len({p.prompt for p in history}) == n_procs * per_proc  # every one, once
    assert profile.version == 1 + n_procs * per_proc
    _consistent(db)


def test_concurrent_modify_loses_no_update(db: str) -> None:
    with open_store(db) as store:
        store.create("counter")
    procs = [_spawn("modify", db, "counter", "25") for _ in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with open_store(db) as store:
        assert store.get("counter").summary == "100"


def test_kill_mid_transaction_leaves_a_consistent_database(db: str) -> None:
    with open_store(db) as store:
        for i in range(3):
            store.append_preference("victim", _pref(i))
        store.append_preference("bystander", _pref(99))
        before = store.export_profile("victim")
    proc = _spawn("hold", db, "victim", "5000")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "in-transaction"  # rows written, not committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _consistent(db)
    with open_store(db) as store:  # readable and writable again at once
        after = store.export_profile("victim")
        assert after["profile"] == before["profile"]
        assert after["preferences"] == before["preferences"]
        assert store.get("bystander").preference_count == 1
        store.append_preference("victim", _pref(3))
        assert store.get("victim").preference_count == 4


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_kill_during_busy_appends_keeps_counts_consistent(db: str, delay: float) -> None:
    proc = _spawn("append-forever", db, "busy")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    assert proc.stdout.readline().strip() == "committed 50"  # the kill lands after a commit
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reported = [int(line.split()[1]) for line in proc.stdout.read().splitlines()]
    last = reported[-1] if reported else 50  # the last commit the worker reported
    _consistent(db)
    with open_store(db) as store:
        count = store.get("busy").preference_count if store.count() else 0
    # whole batches only (each append is all or nothing), every reported commit kept, and at
    # most the one batch that committed after the last report but before the kill
    assert count % 50 == 0 and last <= count <= last + 50, (count, last)


def _pref(i: int):  # noqa: ANN202
    from personalizer.profiles import Preference

    return Preference(prompt=f"q{i}", chosen=f"c{i}", rejected=f"r{i}")
