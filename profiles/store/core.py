"""The core every SQL store builds on: the primitives a concrete store supplies, and the row
helpers that read, lock and create one user's profile inside a transaction.

A concrete store supplies four primitives: ``_read_op(fn)`` runs ``fn(conn)`` in one read
snapshot (``single=True``: ``fn`` runs a single statement), ``_write_op(fn, landed=...,
idempotent=...)`` runs it in one write transaction (retrying where the store can lose a
connection), ``_write()`` is the write transaction as a context manager (for
:meth:`~personalizer.profiles.SQLProfileStore.transaction`, whose body cannot be re-run) and
``_population_sums(...)`` is the population aggregate in the database's own JSON dialect.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from personalizer.errors import ProfileNotFound

from ..base import PopulationSums
from ..models import Profile, utcnow
from .rows import PROFILE_COLUMNS, Connection, Op, json_or_none, profile_from_row, summary_row

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["SQLCore"]


class SQLCore:
    """What the SQL operations stand on; subclasses supply connections and the dialect."""

    # " FOR UPDATE" where the database locks rows (SQLite locks the file at BEGIN instead).
    _lock_row = ""

    # -- what a concrete store supplies --------------------------------------------------

    def close(self) -> None:
        """Release the store's connections (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_op(self, fn: Op, *, single: bool = False) -> Any:
        """Run ``fn`` in one read snapshot; ``single``: ``fn`` runs one statement, which is a
        snapshot on its own (a server store may skip the transaction's round trips)."""
        raise NotImplementedError

    def _write_op(self, fn: Op, *, landed: Op | None = None, idempotent: bool = False,
                  single: bool = False) -> Any:
        """Run ``fn`` in one write transaction. Where a connection can drop, a store re-runs an
        ``idempotent`` op, and after a commit whose acknowledgement was lost calls ``landed``:
        the op's result if the commit did land, None if it surely did not (run the op again),
        :data:`UNKNOWN` if it cannot tell."""
        raise NotImplementedError

    def _write(self, *, landed: Op | None = None) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _population_sums(self, conn: Connection, reward_set_id: str, reward_set_version: str,
                         exclude: str) -> PopulationSums:
        raise NotImplementedError

    def _after_delete(self) -> None:
        """Called after a delete committed (SQLite truncates its WAL here)."""

    # -- row helpers ---------------------------------------------------------------------

    def _exists(self, conn: Connection, user_id: str, *, lock: bool = False) -> bool:
        sql = "SELECT 1 FROM profiles WHERE user_id = ?" + (self._lock_row if lock else "")
        return conn.execute(sql, (user_id,)).fetchone() is not None

    def _find(self, conn: Connection, user_id: str, *, lock: bool = False) -> Profile | None:
        """The user's stored profile, or None; ``lock``: locked until the transaction ends."""
        row = conn.execute(
            f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id = ?"
            + (self._lock_row if lock else ""), (user_id,)
        ).fetchone()
        return None if row is None else profile_from_row(row)

    def _get(self, conn: Connection, user_id: str, *, lock: bool = False) -> Profile:
        found = self._find(conn, user_id, lock=lock)
        if found is None:
            raise ProfileNotFound(user_id)
        return found

    def _get_or_create(self, conn: Connection, user_id: str) -> Profile:
        """The user's profile, created if missing, locked for the rest of the transaction
        (two first requests for one user: one inserts, the other finds it)."""
        for _ in range(10):
            found = self._find(conn, user_id, lock=True)
            if found is not None:
                return found
            now = utcnow()
            self._insert_profile(conn, Profile(user_id=user_id, version=1, created_at=now,
                                               updated_at=now))
            # (on PostgreSQL the insert may have yielded to a row that a concurrent delete
            # then removed: look again, and insert again)
        return self._get(conn, user_id, lock=True)

    @staticmethod
    def _insert_profile(conn: Connection, p: Profile) -> bool:
        """Insert ``p`` unless the user has a profile; whether it was inserted."""
        cur = conn.execute(
            f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            (
                p.user_id, p.version, p.reward_set_id, p.reward_set_version,
                json.dumps(p.coefficients), json_or_none(p.covariance), p.summary,
                p.preference_count, p.created_at.isoformat(), p.updated_at.isoformat(),
                *summary_row(p),
            ),
        )
        return cur.rowcount == 1
