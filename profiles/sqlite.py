"""``SQLiteProfileStore``: the embedded default profile store, on sqlite-utils.

One file (``profiles.db``, or ``$PERSONALIZER_DB``) in WAL mode, so readers never block the
writer; writes take the lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_s``
for other processes, so concurrent appends from many processes all land. Every write is one
transaction: a crash mid-write leaves the file as it was before that write. Deleting a user
removes their rows from every user table with ``secure_delete`` on and then truncates the WAL,
so the deleted text does not linger in the files.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlite_utils import Database

from personalizer.errors import (
    InvalidInput,
    NotADatabase,
    ProfileExists,
    ProfileNotFound,
    SchemaTooNew,
    StoreBusy,
    StoreError,
    VersionConflict,
)

from .base import ProfilePage
from .export import ProfileExport, parse_export
from .models import OnboardingState, Preference, Profile, utcnow, validate_user_id
from .schema import MIGRATIONS, USER_TABLES

__all__ = ["DEFAULT_DB", "SQLiteProfileStore", "UserTransaction", "default_db_path"]

DEFAULT_DB = "profiles.db"

_PROFILE_COLUMNS = (
    "user_id, version, reward_set_id, reward_set_version, coefficients, covariance, summary, "
    "preference_count, created_at, updated_at"
)
_PREFERENCE_COLUMNS = "prompt, chosen, rejected, reason, source, created_at"


def default_db_path() -> str:
    """``$PERSONALIZER_DB`` if set, else ``profiles.db`` in the working directory."""
    return os.environ.get("PERSONALIZER_DB") or DEFAULT_DB


class SQLiteProfileStore:
    """Profiles and preference histories in one SQLite file.

    Safe to share between threads of a process (calls are serialised) and between processes
    (SQLite locking). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0:
            raise InvalidInput("busy_timeout_s must be positive (seconds to wait for a lock)")
        self.path = str(path) if path is not None else default_db_path()
        self._lock = threading.RLock()
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
            is_dir = self.path != ":memory:" and Path(self.path).is_dir()
        except OSError as exc:  # a name too long, a path through a file, ...
            raise StoreError(f"cannot use {self.path[:80]!r} as a database path: "
                             f"{exc.strerror or exc}") from None
        if is_dir:
            raise NotADatabase(f"{self.path} is a directory; pass a database file path")
        with self._sqlite_errors():
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        try:
            with self._sqlite_errors():
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                conn.execute("PRAGMA schema_version").fetchone()  # fails on a non-database
                if self.path != ":memory:":
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

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

    def __enter__(self) -> SQLiteProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            if "malformed" in msg:
                raise StoreError(
                    f"{self.path} is damaged ({msg}); restore it from a backup or exports"
                ) from None
            raise StoreError(f"SQLite error on {self.path}: {msg}") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at BEGIN."""
        with self._lock, self._sqlite_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot across several statements."""
        with self._lock, self._sqlite_errors():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # -- profiles ------------------------------------------------------------------------

    def get(self, user_id: str) -> Profile:
        """The stored profile of ``user_id``; :class:`ProfileNotFound` if there is none."""
        validate_user_id(user_id)
        with self._read() as conn:
            return self._get(conn, user_id)

    def create(self, profile: Profile | str) -> Profile:
        """Store a new profile (version 1); :class:`ProfileExists` if the user has one."""
        if isinstance(profile, str):
            profile = Profile(user_id=validate_user_id(profile))
        profile = _revalidate(profile)
        if profile.preference_count:
            raise InvalidInput(
                "a new profile starts with preference_count=0; add history with "
                "append_preferences, or use import_profile"
            )
        now = utcnow()
        stored = profile.model_copy(update={"version": 1, "created_at": now, "updated_at": now})
        with self._write() as conn:
            if self._exists(conn, profile.user_id):
                raise ProfileExists(profile.user_id, "; use get_or_create or update")
            self._insert_profile(conn, stored)
        return stored

    def get_or_create(self, user_id: str) -> Profile:
        """The profile of ``user_id``, created empty if missing (atomic across processes)."""
        validate_user_id(user_id)
        with self._write() as conn:
            return self._get_or_create(conn, user_id)

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage:
        """Profiles in user-id order, ``limit`` at a time, starting after user id ``after``."""
        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be between 1 and 10000, got {limit}")
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE user_id > ? "
                "ORDER BY user_id LIMIT ?",
                (after or "", limit + 1),
            ).fetchall()
        profiles = [_profile_from_row(r) for r in rows[:limit]]
        next_after = profiles[-1].user_id if len(rows) > limit else None
        return ProfilePage(profiles=profiles, next_after=next_after)

    def count(self) -> int:
        """How many profiles are stored."""
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM profiles").fetchone()[0])

    def update(self, profile: Profile) -> Profile:
        """Store a changed profile if nobody changed it since it was read.

        ``profile.version`` must equal the stored version, else :class:`VersionConflict`.
        Coefficients, covariance, reward set and summary are written; the store keeps
        ``preference_count`` and ``created_at``. Returns the stored profile (version + 1).
        """
        profile = _revalidate(profile)
        with self._write() as conn:
            current = self._get(conn, profile.user_id)
            if current.version != profile.version:
                raise VersionConflict(profile.user_id, profile.version, current.version)
            stored = profile.model_copy(
                update={
                    "version": current.version + 1,
                    "updated_at": utcnow(),
                    "preference_count": current.preference_count,
                    "created_at": current.created_at,
                }
            )
            conn.execute(
                "UPDATE profiles SET version = ?, reward_set_id = ?, reward_set_version = ?, "
                "coefficients = ?, covariance = ?, summary = ?, updated_at = ? "
                "WHERE user_id = ? AND version = ?",
                (
                    stored.version, stored.reward_set_id, stored.reward_set_version,
                    json.dumps(stored.coefficients), _json_or_none(stored.covariance),
                    stored.summary, stored.updated_at.isoformat(), stored.user_id,
                    current.version,
                ),
            )
        return stored

    def modify(self, user_id: str, change: Callable[[Profile], Profile], *,
               retries: int = 20) -> Profile:
        """Read, apply ``change`` and update, re-reading and re-applying on a conflict.

        ``change`` receives the current profile and returns the new one (for example
        ``lambda p: p.model_copy(update={"summary": "..."})``); it may run more than once.
        """
        for attempt in range(retries + 1):
            current = self.get(user_id)
            try:
                return self.update(change(current))
            except VersionConflict:
                if attempt == retries:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- preferences ---------------------------------------------------------------------

    def append_preferences(self, user_id: str, preferences: Sequence[Preference], *,
                           create: bool = True) -> Profile:
        """Append preferences to a user's history in one transaction.

        Creates the profile if missing (unless ``create=False``), bumps ``preference_count``
        and the version. Returns the stored profile.
        """
        with self.transaction(user_id, create=create) as tx:
            tx.append(preferences)
        return tx.result

    @contextmanager
    def transaction(self, user_id: str, *, create: bool = True) -> Iterator[UserTransaction]:
        """One atomic change to one user: read, append preferences, change the profile and the
        onboarding state, all committed together (or not at all, on an exception).

        >>> with store.transaction("alice") as tx:            # doctest: +SKIP
        ...     tx.append([pref])
        ...     tx.update(coefficients=..., covariance=...)
        >>> tx.result                                          # doctest: +SKIP
        """
        validate_user_id(user_id)
        with self._write() as conn:
            current = self._get_or_create(conn, user_id) if create else self._get(conn, user_id)
            tx = UserTransaction(conn, current)
            yield tx
            tx._flush()

    def append_preference(self, user_id: str, preference: Preference, *,
                          create: bool = True) -> Profile:
        """Append one preference; see :meth:`append_preferences`."""
        return self.append_preferences(user_id, [preference], create=create)

    def preferences(self, user_id: str) -> list[Preference]:
        """The user's preference history, oldest first."""
        validate_user_id(user_id)
        with self._read() as conn:
            self._get(conn, user_id)
            return self._preferences(conn, user_id)

    # -- export, import, delete ----------------------------------------------------------

    def export_profile(self, user_id: str) -> dict[str, Any]:
        """One user's profile and history as a JSON-ready dict (schema in ``export.py``)."""
        validate_user_id(user_id)
        with self._read() as conn:  # one snapshot: the count matches the rows
            profile = self._get(conn, user_id)
            prefs = self._preferences(conn, user_id)
            onboarding = _read_onboarding(conn, user_id)
        return ProfileExport(profile=profile, preferences=prefs,
                             onboarding=onboarding).to_json_dict()

    def import_profile(self, data: Mapping[str, Any] | str | bytes, *,
                       replace: bool = False) -> Profile:
        """Store a profile and its history from an export, exactly as exported.

        Refuses an existing user unless ``replace=True`` (which swaps the old rows for the
        imported ones in one transaction). Invalid data raises before anything is written.
        """
        doc = parse_export(data)
        profile = doc.profile
        with self._write() as conn:
            if self._exists(conn, profile.user_id):
                if not replace:
                    raise ProfileExists(
                        profile.user_id, "; pass replace=True (CLI: --replace) to overwrite it"
                    )
                self._delete_rows(conn, profile.user_id)
            self._insert_profile(conn, profile)
            conn.executemany(
                f"INSERT INTO preferences (user_id, {_PREFERENCE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(profile.user_id, *_preference_row(p)) for p in doc.preferences],
            )
            if doc.onboarding is not None:
                _write_onboarding(conn, profile.user_id, doc.onboarding)
        return profile

    def delete(self, user_id: str) -> int:
        """Delete the user's profile and every row of theirs; returns the rows removed.

        Touches nothing of any other user. :class:`ProfileNotFound` if there was nothing.
        """
        validate_user_id(user_id)
        with self._write() as conn:
            removed = self._delete_rows(conn, user_id)
            if removed == 0:
                raise ProfileNotFound(user_id)
        self._checkpoint()
        return removed

    def _checkpoint(self) -> None:
        """Copy the WAL into the (secure-deleted) main file and truncate it, best effort:
        a reader in another process may keep part of it until its next checkpoint."""
        if self.path == ":memory:":
            return
        with self._lock, self._sqlite_errors():
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    # -- row helpers ---------------------------------------------------------------------

    def _exists(self, conn: sqlite3.Connection, user_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        return row is not None

    def _get(self, conn: sqlite3.Connection, user_id: str) -> Profile:
        row = conn.execute(
            f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            raise ProfileNotFound(user_id)
        return _profile_from_row(row)

    def _get_or_create(self, conn: sqlite3.Connection, user_id: str) -> Profile:
        try:
            return self._get(conn, user_id)
        except ProfileNotFound:
            now = utcnow()
            profile = Profile(user_id=user_id, version=1, created_at=now, updated_at=now)
            self._insert_profile(conn, profile)
            return profile

    def _insert_profile(self, conn: sqlite3.Connection, p: Profile) -> None:
        conn.execute(
            f"INSERT INTO profiles ({_PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.user_id, p.version, p.reward_set_id, p.reward_set_version,
                json.dumps(p.coefficients), _json_or_none(p.covariance), p.summary,
                p.preference_count, p.created_at.isoformat(), p.updated_at.isoformat(),
            ),
        )

    def _preferences(self, conn: sqlite3.Connection, user_id: str) -> list[Preference]:
        rows = conn.execute(
            f"SELECT {_PREFERENCE_COLUMNS} FROM preferences WHERE user_id = ? ORDER BY id",
            (user_id,),
        ).fetchall()
        return [_preference_from_row(r) for r in rows]

    def _delete_rows(self, conn: sqlite3.Connection, user_id: str) -> int:
        removed = 0
        for table in USER_TABLES:
            cur = conn.execute(f"DELETE FROM [{table}] WHERE user_id = ?", (user_id,))
            removed += cur.rowcount
        return removed


class UserTransaction:
    """The handle of :meth:`SQLiteProfileStore.transaction` (all writes land at commit)."""

    def __init__(self, conn: sqlite3.Connection, profile: Profile) -> None:
        self._conn = conn
        self.profile = profile  # as read at the start of the transaction
        self._appended: list[Preference] = []
        self._removed = 0
        self._changes: dict[str, Any] = {}
        self._onboarding: OnboardingState | None | bool = False  # False: untouched
        self.result: Profile = profile

    @property
    def preferences(self) -> list[Preference]:
        """The user's stored history (before this transaction's appends), oldest first."""
        rows = self._conn.execute(
            f"SELECT {_PREFERENCE_COLUMNS} FROM preferences WHERE user_id = ? ORDER BY id",
            (self.profile.user_id,)).fetchall()
        return [_preference_from_row(r) for r in rows]

    @property
    def onboarding(self) -> OnboardingState | None:
        if self._onboarding is not False:
            return self._onboarding  # type: ignore[return-value]
        return _read_onboarding(self._conn, self.profile.user_id)

    def append(self, preferences: Sequence[Preference]) -> None:
        self._appended += [_revalidate(p) for p in preferences]

    def update(self, **fields: Any) -> None:
        """Stage changes to coefficients, covariance, reward set or summary."""
        allowed = {"coefficients", "covariance", "reward_set_id", "reward_set_version",
                   "summary"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)} of a profile; changeable: "
                               f"{sorted(allowed)}")
        self._changes.update(fields)

    def set_onboarding(self, state: OnboardingState | None) -> None:
        self._onboarding = state

    def remove(self, index: int) -> None:
        """Delete the ``index``-th stored preference (0 = oldest) now."""
        row = self._conn.execute(
            "SELECT id FROM preferences WHERE user_id = ? ORDER BY id LIMIT 1 OFFSET ?",
            (self.profile.user_id, index)).fetchone()
        if row is None or index < 0:
            raise InvalidInput(f"no preference at index {index}")
        self._conn.execute("DELETE FROM preferences WHERE id = ?", (row[0],))
        self._removed += 1

    def _flush(self) -> None:
        if not (self._appended or self._removed or self._changes
                or self._onboarding is not False):
            return
        p = self.profile
        uid = p.user_id
        if self._appended:
            self._conn.executemany(
                f"INSERT INTO preferences (user_id, {_PREFERENCE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(uid, *_preference_row(x)) for x in self._appended],
            )
        new = _revalidate(p.model_copy(update={
            **self._changes,
            "preference_count": p.preference_count + len(self._appended) - self._removed,
            "version": p.version + 1,
            "updated_at": utcnow(),
        }))
        self._conn.execute(
            "UPDATE profiles SET version = ?, reward_set_id = ?, reward_set_version = ?, "
            "coefficients = ?, covariance = ?, summary = ?, preference_count = ?, "
            "updated_at = ? WHERE user_id = ? AND version = ?",
            (new.version, new.reward_set_id, new.reward_set_version,
             json.dumps(new.coefficients), _json_or_none(new.covariance), new.summary,
             new.preference_count, new.updated_at.isoformat(), uid, p.version),
        )
        if self._onboarding is not False:
            if self._onboarding is None:
                self._conn.execute("DELETE FROM onboarding WHERE user_id = ?", (uid,))
            else:
                _write_onboarding(self._conn, uid, self._onboarding)  # type: ignore[arg-type]
        self.result = new


def _read_onboarding(conn: sqlite3.Connection, user_id: str) -> OnboardingState | None:
    row = conn.execute("SELECT state FROM onboarding WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else OnboardingState.model_validate_json(row[0])


def _write_onboarding(conn: sqlite3.Connection, user_id: str, state: OnboardingState) -> None:
    conn.execute(
        "INSERT INTO onboarding (user_id, state, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(user_id) DO UPDATE SET state = excluded.state, "
        "updated_at = excluded.updated_at",
        (user_id, state.model_dump_json(), utcnow().isoformat()),
    )


def _preference_from_row(r: Sequence[Any]) -> Preference:
    return Preference(prompt=r[0], chosen=r[1], rejected=r[2], reason=r[3], source=r[4],
                      created_at=datetime.fromisoformat(r[5]))


def _revalidate(model: Any) -> Any:
    """Validate a model again: ``model_copy(update=...)`` skips validation."""
    try:
        return type(model).model_validate(model.model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or type(model).__name__
        raise InvalidInput(f"invalid {type(model).__name__}: {where}: {err['msg']}") from None


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _preference_row(p: Preference) -> tuple[Any, ...]:
    return (p.prompt, p.chosen, p.rejected, p.reason, p.source, p.created_at.isoformat())


def _profile_from_row(r: Sequence[Any]) -> Profile:
    return Profile(
        user_id=r[0],
        version=r[1],
        reward_set_id=r[2],
        reward_set_version=r[3],
        coefficients=json.loads(r[4]),
        covariance=None if r[5] is None else json.loads(r[5]),
        summary=r[6],
        preference_count=r[7],
        created_at=datetime.fromisoformat(r[8]),
        updated_at=datetime.fromisoformat(r[9]),
    )
