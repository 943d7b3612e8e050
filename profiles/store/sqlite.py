"""``SQLiteProfileStore``: the embedded default profile store, on sqlite-utils.

One file (``profiles.db``, or ``$PERSONALIZER_DB``) in WAL mode, so readers never block the
writer; writes take the lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_s``
for other processes, so concurrent appends from many processes all land. Every write is one
transaction: a crash mid-write leaves the file as it was before that write. Deleting a user
removes their rows from every user table with ``secure_delete`` on and then truncates the WAL,
so the deleted text does not linger in the files.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from personalizer.errors import (
    DatabaseNotFound,
    InvalidInput,
    NotADatabase,
    SchemaTooNew,
    StoreBusy,
    StoreError,
)

from ..base import PopulationSums
from .rows import POPULATION_FILTER, Connection, Op, sums_from_rows
from .schema import MIGRATIONS
from .sql import SQLProfileStore

__all__ = ["DEFAULT_DB", "SQLiteProfileStore", "default_db_path"]

DEFAULT_DB = "profiles.db"

# A learned profile as the population aggregate reads it: coefficients a JSON object and
# covariance a JSON array (CASE branches run in order: no JSON function sees malformed JSON).
_WELL_FORMED = (
    "CASE WHEN NOT (json_valid(coefficients) AND json_valid(covariance)) THEN 0 "
    "ELSE json_type(coefficients) = 'object' AND json_type(covariance) = 'array' END"
)
# How many profiles count, and how many of them are well formed (checked once per row).
_COUNT = (f"SELECT count(*), total(CASE WHEN {_WELL_FORMED} THEN 1 ELSE 0 END) FROM profiles "
          f"WHERE {POPULATION_FILTER}")


def _number(entry: str) -> str:
    return (f"CASE WHEN {entry}.type IN ('integer', 'real') AND abs({entry}.value) < 1e150 "
            f"THEN {entry}.value END")


def _sums(where: str, value: Callable[[str], str], json: Callable[[str], str]
          ) -> tuple[str, ...]:
    """The population aggregate's sums over the profiles ``where`` selects, reading each JSON
    entry ``e`` as ``value(e)`` and each JSON column ``c`` as ``json(c)``."""
    return (
        (
            f"SELECT a.key, total({value('a')}) FROM profiles, "
            f"json_each({json('coefficients')}) a WHERE {where} GROUP BY a.key"
        ),
        (
            f"SELECT a.key, b.key, total({value('a')} * {value('b')}) FROM profiles, "
            f"json_each({json('coefficients')}) a, json_each({json('coefficients')}) b "
            f"WHERE {where} GROUP BY a.key, b.key"
        ),
        (
            f"SELECT r.key, c.key, total({value('c')}) FROM profiles, "
            f"json_each({json('covariance')}) r, "
            "json_each(CASE WHEN r.type = 'array' THEN r.value ELSE '[]' END) c "
            f"WHERE {where} GROUP BY r.key, c.key"
        ),
    )


# When every profile that counts is well formed (the rule), the plain sums; else (or when a sum
# fails or overflows), the guarded ones: damaged rows left out, and of the others' entries only
# numbers below 1e150 read, so one damaged row never fails everyone's prior.
_SUMS = _sums(POPULATION_FILTER, lambda e: f"{e}.value", lambda c: c)
_SUMS_GUARDED = _sums(
    f"{POPULATION_FILTER} AND {_WELL_FORMED}", _number,
    lambda c: f"CASE WHEN json_valid({c}) THEN {c} ELSE '[]' END")


def default_db_path() -> str:
    """``$PERSONALIZER_DB`` if set, else ``profiles.db`` in the working directory."""
    return os.environ.get("PERSONALIZER_DB") or DEFAULT_DB


def _bad_path(path: str, exc: OSError | ValueError) -> StoreError | InvalidInput:
    """The error for a path the operating system or sqlite3 refused to open: InvalidInput for
    a name no file can have (a NUL byte, a lone surrogate), else StoreError."""
    shown = repr(path[:80]) + ("..." if len(path) > 80 else "")
    if isinstance(exc, ValueError):  # UnicodeEncodeError included
        return InvalidInput(f"{shown} cannot be a database path ({exc}); pass a file name "
                            "without NUL bytes or lone surrogates")
    return StoreError(f"cannot use {shown} as a database path: {exc.strerror or exc}")


class SQLiteProfileStore(SQLProfileStore):
    """Profiles and preference histories in one SQLite file.

    Safe to share between threads of a process (calls are serialised) and between processes
    (SQLite locking). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 busy_timeout_s: float = 30.0, create: bool = True) -> None:
        if busy_timeout_s <= 0:
            raise InvalidInput("busy_timeout_s must be positive (seconds to wait for a lock)")
        self.path = str(path) if path is not None else default_db_path()
        try:
            missing = not create and self.path != ":memory:" and not Path(self.path).exists()
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long, ...
            raise _bad_path(self.path, exc) from None
        if missing:
            raise DatabaseNotFound(
                f"no database at {self.path!r}; check the path (--db or $PERSONALIZER_DB), "
                "or create one by recording a preference")
        self._lock = threading.RLock()
        self._depth = 0  # transactions open in the thread holding _lock (0 or 1)
        self._conn = self._connect(busy_timeout_s)
        self.db = Database(self._conn, execute_plugins=False)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- connection and schema ---------------------------------------------------------

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            if self.path != ":memory:" and Path(self.path).is_dir():
                raise NotADatabase(f"{self.path} is a directory; pass a database file path")
            with self._sqlite_errors():
                conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a surrogate, ...
            raise _bad_path(self.path, exc) from None
        try:
            with self._sqlite_errors():
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                self._until_unlocked(busy_timeout_s, lambda: (
                    conn.execute("PRAGMA schema_version").fetchone(),  # fails on a non-db
                    self.path == ":memory:"
                    or conn.execute("PRAGMA journal_mode = WAL").fetchone()))
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _until_unlocked(timeout_s: float, step: Callable[[], object]) -> None:
        """Run ``step``, retrying while the file is locked: switching a new file to WAL
        needs a moment alone with it, and SQLite answers "locked" at once instead of
        waiting when processes race to create the same database."""
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _migrate(self) -> None:
        with self._sqlite_errors():
            known = {m.name for m in MIGRATIONS._migrations}
            unknown = [m.name for m in MIGRATIONS.applied(self.db) if m.name not in known]
            if unknown:
                raise SchemaTooNew(
                    f"{self.path} was written by a newer personalizer (schema steps "
                    f"{', '.join(unknown)}); upgrade personalizer to open it"
                )
            if not MIGRATIONS.pending(self.db):
                return
        with self._write():  # one writer migrates; others wait, then find nothing pending
            MIGRATIONS.apply(self.db)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteProfileStore({self.path!r})"

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Turn sqlite3 errors into StoreError subclasses that say what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            msg = str(exc)
            if "not a database" in msg or "file is encrypted" in msg:
                raise NotADatabase(
                    f"{self.path} is not an SQLite database; point the store (--db or "
                    "PERSONALIZER_DB) at a personalizer database or at a new file name"
                ) from None
            if "locked" in msg or "busy" in msg:
                raise StoreBusy(
                    f"{self.path} stayed locked by other writers past the busy timeout; "
                    "retry, or raise busy_timeout_s"
                ) from None
            if "unable to open" in msg:
                raise StoreError(
                    f"cannot open {self.path}: does its folder exist and is it writable?"
                ) from None
            if "readonly" in msg or "read-only" in msg:
                raise StoreError(
                    f"{self.path} is read-only ({msg}): nothing was written; make the file "
                    "and its folder writable by this process, or point the store elsewhere"
                ) from None
            if "disk is full" in msg:
                raise StoreError(
                    f"cannot write to {self.path} ({msg}): nothing was written and the stored "
                    "data is as it was; free disk space and retry"
                ) from None
            if "malformed" in msg:
                raise StoreError(
                    f"{self.path} is damaged ({msg}); restore it from a backup or exports"
                ) from None
            raise StoreError(f"SQLite error on {self.path}: {msg}") from None

    @contextmanager
    def _write(self, *, landed: Op | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at BEGIN. A failed statement or
        COMMIT (a full disk, a read-only file) rolls the whole transaction back."""
        with self._lock, self._sqlite_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._depth -= 1

    def _rollback(self) -> None:
        """Roll back what is open (SQLite may have rolled back already, on a full disk)."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error being raised says more than this one

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot across several statements. Inside a
        transaction of this store in the same thread (a transaction body reading through the
        store), it reads in that transaction: what it wrote so far, and no second BEGIN."""
        with self._lock, self._sqlite_errors():
            if self._depth:  # only the thread holding the lock can be inside one
                yield self._conn
                return
            self._conn.execute("BEGIN")
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    # -- the primitives of SQLProfileStore (one local file: no connection to lose) -------------

    def _read_op(self, fn: Op, *, single: bool = False) -> Any:
        with self._read() as conn:
            return fn(conn)

    def _write_op(self, fn: Op, *, landed: Op | None = None, idempotent: bool = False,
                  single: bool = False) -> Any:
        with self._write() as conn:
            return fn(conn)

    def _population_sums(self, conn: Connection, reward_set_id: str, reward_set_version: str,
                         exclude: str) -> PopulationSums:
        args = (reward_set_id, reward_set_version, exclude)
        count, well_formed = conn.execute(_COUNT, args).fetchone()
        if count == well_formed:
            try:
                sums = sums_from_rows(count, *(conn.execute(sql, args).fetchall()
                                               for sql in _SUMS))
            except (sqlite3.Error, TypeError, ValueError):  # a damaged entry
                pass
            else:
                if all(map(math.isfinite, (*sums.linear.values(), *sums.outer.values(),
                                           *sums.covariance.values()))):
                    return sums
        return sums_from_rows(int(well_formed), *(conn.execute(sql, args).fetchall()
                                                  for sql in _SUMS_GUARDED))

    def _after_delete(self) -> None:
        """Copy the WAL into the (secure-deleted) main file and truncate it, best effort:
        a reader in another process may keep part of it until its next checkpoint."""
        if self.path == ":memory:":
            return
        with self._lock, self._sqlite_errors():
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

