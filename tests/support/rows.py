"""Rows for the store tests: ``pref(i)`` builds a preference, ``user_rows(db, user)`` counts a
user's rows in every table, read with the database's own driver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from personalizer.profiles import Preference


def pref(i: int = 0, *, source: str = "feedback", reason: str | None = None) -> Preference:
    return Preference(
        prompt=f"question {i}", chosen=f"short answer {i}", rejected=f"a much longer answer {i}",
        source=source, reason=reason,
    )


def user_rows(db_path: Path | str, user_id: str) -> dict[str, int]:
    """Rows of ``user_id`` in every table that has a user_id column, read with the database's
    own driver (sqlite3 for a file, psycopg for a postgresql:// URL)."""
    if str(db_path).startswith("postgresql://"):
        from support.pg_server import user_rows as pg_user_rows

        return pg_user_rows(str(db_path), user_id)
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
