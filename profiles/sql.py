"""What every SQL profile store shares: the contract's operations written once, over a connection.

:class:`SQLProfileStore` implements the :class:`~personalizer.profiles.ProfileStore` contract on
top of four primitives a concrete store supplies: ``_read_op(fn)`` runs ``fn(conn)`` in one
read snapshot (``single=True``: ``fn`` runs a single statement),
``_write_op(fn, landed=..., idempotent=...)`` runs it in one write transaction
(retrying where the store can lose a connection), ``_write()`` is the write transaction as a
context manager (for :meth:`SQLProfileStore.transaction`, whose body cannot be re-run) and
``_population_sums(...)`` is the population aggregate in the database's own JSON dialect.
SQL here uses ``?`` placeholders and only syntax SQLite and PostgreSQL share; a store whose
driver wants another placeholder translates it in its connection adapter.

Every write transaction locks the user's profile row first (``SELECT ... FOR UPDATE`` where the
database has row locks; SQLite locks the whole file at ``BEGIN IMMEDIATE``), so the changes of
one user are serialised and versions never skip or repeat.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from personalizer._input import text_problem
from personalizer.errors import (
    CorruptProfile,
    InvalidInput,
    InvalidProfileData,
    ProfileExists,
    ProfileNotFound,
    VersionConflict,
)

from .base import PopulationSums, ProfilePage
from .export import ProfileExport, parse_export
from .learning import is_positive_definite
from .models import (
    OnboardingState,
    Preference,
    Profile,
    Rating,
    StoredGeneration,
    history_digest,
    summary_by_person,
    utcnow,
    validate_user_id,
)
from .schema import USER_TABLES

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["Connection", "SQLProfileStore", "UserTransaction"]

PROFILE_COLUMNS = (
    "user_id, version, reward_set_id, reward_set_version, coefficients, covariance, summary, "
    "preference_count, created_at, updated_at, summary_source, summary_written_at, "
    "summary_preferences, summary_stale, summary_digest"
)
PREFERENCE_COLUMNS = "prompt, chosen, rejected, reason, source, created_at, judgement"
_INSERT_GENERATION = ("INSERT INTO generations (id, user_id, prompt, answer, created_at) "
                      "VALUES (?, ?, ?, ?, ?)")
_INSERT_RATING = ("INSERT INTO ratings (user_id, prompt, answer, rating, created_at) "
                  "VALUES (?, ?, ?, ?, ?)")
_INSERT_PREFERENCE = (f"INSERT INTO preferences (user_id, {PREFERENCE_COLUMNS}, append_key) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

# Profiles that count towards a reward set's population: learned ones of that exact version.
POPULATION_FILTER = ("reward_set_id = ? AND reward_set_version = ? AND covariance IS NOT NULL "
                     "AND user_id <> ?")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The slice of a DB-API connection the shared SQL needs (``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


Op = Callable[[Connection], Any]

# What a ``landed`` check returns when it cannot tell whether a commit landed (another writer
# changed the row since): the store then says so instead of guessing.
UNKNOWN: Any = object()


class SQLProfileStore:
    """The profile-store contract in SQL; subclasses supply connections and the dialect."""

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

    # -- profiles ------------------------------------------------------------------------

    def get(self, user_id: str) -> Profile:
        """The stored profile of ``user_id``; :class:`ProfileNotFound` if there is none."""
        validate_user_id(user_id)
        return self._read_op(lambda conn: self._get(conn, user_id), single=True)

    def create(self, profile: Profile | str) -> Profile:
        """Store a new profile (version 1); :class:`ProfileExists` if the user has one."""
        if not isinstance(profile, Profile):  # a user id (bytes, None, ...: InvalidUserId)
            profile = Profile(user_id=validate_user_id(profile))
        profile = revalidate(profile)
        if profile.preference_count:
            raise InvalidInput(
                "a new profile starts with preference_count=0; add history with "
                "append_preferences, or use import_profile"
            )
        now = utcnow()
        stored = profile.model_copy(update={"version": 1, "created_at": now, "updated_at": now})

        def op(conn: Connection) -> Profile:
            if not self._insert_profile(conn, stored):
                raise ProfileExists(profile.user_id, "; use get_or_create or update")
            return stored

        def landed(conn: Connection) -> Profile | None:
            found = self._find(conn, profile.user_id)  # created_at is ours alone, never changed
            return found if found is not None and found.created_at == now else None

        return self._write_op(op, landed=landed)

    def get_or_create(self, user_id: str) -> Profile:
        """The profile of ``user_id``, created empty if missing (atomic across processes)."""
        validate_user_id(user_id)
        return self._write_op(lambda conn: self._get_or_create(conn, user_id), idempotent=True)

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage:
        """Profiles in user-id order, ``limit`` at a time, starting after user id ``after``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be a whole number between 1 and 10000, got "
                               f"{limit!r:.40}")
        _check_text("after", after, optional=True)
        rows = self._read_op(lambda conn: conn.execute(
            f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE user_id > ? "
            "ORDER BY user_id LIMIT ?",
            (after or "", limit + 1),
        ).fetchall(), single=True)
        profiles: list[Profile] = []
        damaged: list[str] = []
        for r in rows[:limit]:
            try:
                profiles.append(profile_from_row(r))
            except CorruptProfile as exc:  # one damaged row: named, not in everyone's way
                damaged.append(exc.user_id)
        # an id that is not text (a damaged SQLite row: a BLOB sorts after every text) ends
        # the paging there; a page after it would start before it again
        last = rows[limit - 1][0] if len(rows) > limit else None
        next_after = last if isinstance(last, str) else None
        return ProfilePage(profiles=profiles, next_after=next_after, damaged=damaged)

    def count(self) -> int:
        """How many profiles are stored."""
        return self._read_op(
            lambda conn: int(conn.execute("SELECT count(*) FROM profiles").fetchone()[0]),
            single=True)

    def population_sums(self, reward_set_id: str, reward_set_version: str, *,
                        exclude: str | None = None) -> PopulationSums:
        """Sums over the learned profiles of one reward set version (all but ``exclude``), from
        which :func:`~personalizer.profiles.learning.prior_from_sums` builds the population
        prior. Computed by the database on every call: a deleted user stops counting at once."""
        return self._read_op(lambda conn: self._population_sums(
            conn, reward_set_id, reward_set_version, exclude or ""))

    def update(self, profile: Profile) -> Profile:
        """Store a changed profile if nobody changed it since it was read.

        ``profile.version`` must equal the stored version, else :class:`VersionConflict`.
        Coefficients, covariance, reward set and summary are written; the store keeps
        ``preference_count`` and ``created_at``. A summary whose text changes while its
        ``summary_source`` does not is a person's (or the app's) own: it is marked
        ``"user"``, so the summarizer never overwrites it. Returns the stored profile
        (version + 1).
        """
        profile = revalidate(profile)
        now = utcnow()

        def op(conn: Connection) -> Profile:
            current = self._get(conn, profile.user_id, lock=True)
            if current.version != profile.version:
                raise VersionConflict(profile.user_id, profile.version, current.version)
            summary: dict[str, Any] = {}
            if (profile.summary != current.summary
                    and profile.summary_source == current.summary_source):
                summary = summary_by_person(profile.summary, current.preference_count, now)
            stored = profile.model_copy(update={
                "version": current.version + 1,
                "updated_at": now,
                "preference_count": current.preference_count,
                "created_at": current.created_at,
                **summary,
            })
            write_profile(conn, revalidate(stored), current.version)
            return stored

        def landed(conn: Connection) -> Any:
            stored = self._find(conn, profile.user_id)
            if stored is None:
                return UNKNOWN
            if stored.version == profile.version:
                return None  # untouched: ours did not land
            same = (stored.version, stored.updated_at) == (profile.version + 1, now)
            return stored if same else UNKNOWN  # later writes hide whether ours landed

        return self._write_op(op, landed=landed)

    def modify(self, user_id: str, change: Callable[[Profile], Profile], *,
               retries: int = 20) -> Profile:
        """Read, apply ``change`` and update, re-reading and re-applying on a conflict.

        ``change`` receives the current profile and returns the new one (for example
        ``lambda p: p.model_copy(update={"coefficients": {...}})``); it may run more than once.
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
                           create: bool = True, key: str | None = None) -> Profile:
        """Append preferences to a user's history in one transaction.

        Creates the profile if missing (unless ``create=False``), bumps ``preference_count``
        and the version. Returns the stored profile.

        ``key`` makes the append idempotent: an append whose key is already stored for this
        user writes nothing and returns the current profile, so a request retried after a lost
        reply cannot add the preferences twice. Without a key the store makes one, which keeps
        its own retries (after a dropped connection) from doubling rows.
        """
        validate_user_id(user_id)
        staged = [revalidate(p) for p in preferences]
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= 100):
            raise InvalidInput("key must be a non-empty string of at most 100 characters")
        fresh = key is None  # our own new key cannot be stored yet, until a retry
        key = key or uuid.uuid4().hex
        runs = 0

        def op(conn: Connection) -> Profile:
            nonlocal runs
            runs += 1
            current = (self._get_or_create(conn, user_id) if create
                       else self._get(conn, user_id, lock=True))
            if staged and not (fresh and runs == 1) and _key_stored(conn, user_id, key):
                return current
            tx = UserTransaction(conn, current, key=key)
            tx.append(staged)
            tx._flush()
            return tx.result

        return self._write_op(op, idempotent=True)

    def append_preference(self, user_id: str, preference: Preference, *,
                          create: bool = True, key: str | None = None) -> Profile:
        """Append one preference; see :meth:`append_preferences`."""
        return self.append_preferences(user_id, [preference], create=create, key=key)

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
        box: list[UserTransaction] = []

        def landed(conn: Connection) -> Any:
            tx = box[0]
            stored = self._find(conn, user_id)
            if stored is None:
                return UNKNOWN
            if tx._appended:  # its rows carry the transaction's key: a sure answer
                return stored if _key_stored(conn, user_id, tx._key) else None
            if stored.version == tx.profile.version:
                return None
            same = (stored.version, stored.updated_at) == (tx.result.version,
                                                           tx.result.updated_at)
            return stored if same else UNKNOWN

        with self._write(landed=landed) as conn:
            current = (self._get_or_create(conn, user_id) if create
                       else self._get(conn, user_id, lock=True))
            tx = UserTransaction(conn, current, key=uuid.uuid4().hex)
            box.append(tx)
            yield tx
            tx._flush()

    def save_generation(self, user_id: str, generation: StoredGeneration, *, keep: int = 100,
                        max_age_s: float = 30 * 86400) -> None:
        """Keep an answer given to ``user_id`` for later feedback, then drop the user's kept
        answers beyond the newest ``keep`` or older than ``max_age_s`` (in one transaction).
        Saving the same id twice writes it once."""
        validate_user_id(user_id)
        if not isinstance(generation, StoredGeneration):
            raise InvalidInput(f"generation must be a StoredGeneration, not "
                               f"{type(generation).__name__}")
        generation = revalidate(generation)  # model_construct / model_copy skip validation
        if keep < 1:
            raise InvalidInput("keep must be at least 1 (to keep none, do not save)")
        cutoff = _cutoff(max_age_s)

        def op(conn: Connection) -> None:
            if self._insert_generation(conn, user_id, generation, keep, cutoff):
                return
            stored = conn.execute("SELECT 1 FROM generations WHERE id = ? AND user_id = ?",
                                  (generation.id, user_id)).fetchone()
            if stored is None:  # not a retry of ours: the profile is gone
                raise ProfileNotFound(user_id)

        self._write_op(op, idempotent=True, single=True)

    def _insert_generation(self, conn: Connection, user_id: str, g: StoredGeneration,
                           keep: int, cutoff: str) -> bool:
        """Insert ``g`` if the profile exists, then drop the user's kept answers beyond the
        newest ``keep`` or older than ``cutoff``; whether a row was inserted. (One local
        transaction here; PostgreSQL does it in one statement.)"""
        inserted = conn.execute(
            "INSERT INTO generations (id, user_id, prompt, answer, created_at) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM profiles WHERE user_id = ?) "
            "ON CONFLICT (user_id, id) DO NOTHING",
            (g.id, user_id, g.prompt, g.answer, g.created_at.isoformat(), user_id)).rowcount
        conn.execute(
            "DELETE FROM generations WHERE user_id = ? AND (created_at < ? OR id NOT IN "
            "(SELECT id FROM generations WHERE user_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?))",
            (user_id, cutoff, user_id, keep))
        return inserted == 1

    def generation(self, user_id: str, generation_id: str, *,
                   max_age_s: float | None = None) -> StoredGeneration | None:
        """A kept answer of ``user_id`` by id, or None (unknown, another user's, older than
        ``max_age_s``, or dropped by the retention limits)."""
        validate_user_id(user_id)
        _check_text("generation_id", generation_id)
        cutoff = None if max_age_s is None else _cutoff(max_age_s)

        def op(conn: Connection) -> StoredGeneration | None:
            row = conn.execute("SELECT id, prompt, answer, created_at FROM generations "
                               "WHERE id = ? AND user_id = ?",
                               (generation_id, user_id)).fetchone()
            if row is None:
                return None
            kept = generation_from_row(row, user_id)
            return None if cutoff is not None and kept.created_at.isoformat() < cutoff \
                else kept

        return self._read_op(op, single=True)

    def prune_generations(self, *, max_age_s: float, user_id: str | None = None) -> int:
        """Delete kept answers older than ``max_age_s`` (of one user, or of everyone: run it
        now and then, for users who stopped asking); returns how many."""
        if user_id is not None:
            validate_user_id(user_id)
        cutoff = _cutoff(max_age_s)

        def op(conn: Connection) -> int:
            if user_id is None:
                return conn.execute("DELETE FROM generations WHERE created_at < ?",
                                    (cutoff,)).rowcount
            return conn.execute("DELETE FROM generations WHERE user_id = ? AND created_at < ?",
                                (user_id, cutoff)).rowcount

        return self._write_op(op, idempotent=True)

    def ratings(self, user_id: str) -> list[Rating]:
        """The user's thumbs up/down, oldest first."""
        validate_user_id(user_id)
        return self._read_op(lambda conn: read_ratings(conn, user_id), single=True)

    def onboarding_state(self, user_id: str) -> OnboardingState | None:
        """The user's stored onboarding state, or None (no profile, or none started). Reads
        only: no profile is created and no lock is taken."""
        validate_user_id(user_id)
        return self._read_op(lambda conn: read_onboarding(conn, user_id), single=True)

    def preferences(self, user_id: str) -> list[Preference]:
        """The user's preference history, oldest first."""
        validate_user_id(user_id)

        def op(conn: Connection) -> list[Preference]:
            self._get(conn, user_id)
            return read_preferences(conn, user_id)

        return self._read_op(op)

    # -- export, import, delete ----------------------------------------------------------

    def export_profile(self, user_id: str) -> dict[str, Any]:
        """One user's profile and history as a JSON-ready dict (schema in ``export.py``)."""
        validate_user_id(user_id)

        def op(conn: Connection) -> ProfileExport:  # one snapshot: the count matches the rows
            return ProfileExport(profile=self._get(conn, user_id),
                                 preferences=read_preferences(conn, user_id),
                                 onboarding=read_onboarding(conn, user_id),
                                 generations=read_generations(conn, user_id),
                                 ratings=read_ratings(conn, user_id))

        return self._read_op(op).to_json_dict()

    def import_profile(self, data: Mapping[str, Any] | str | bytes, *,
                       replace: bool = False) -> Profile:
        """Store a profile and its history from an export, exactly as exported.

        Refuses an existing user unless ``replace=True`` (which swaps the old rows for the
        imported ones in one transaction). Invalid data raises before anything is written.
        """
        doc = parse_export(data)
        profile = doc.profile
        if profile.covariance is not None and not is_positive_definite(profile.covariance):
            raise InvalidProfileData(
                "profile.covariance must be positive definite (symmetric, every eigenvalue "
                "above zero), as a posterior covariance is; this one is singular or "
                "indefinite. Import the file exactly as export_profile wrote it, or set "
                "covariance to null to learn the uncertainty again")
        if profile.summary_source == "summarizer" and not profile.summary_stale and \
                history_digest(doc.preferences[:profile.summary_preferences]) != \
                profile.summary_digest:  # not the history it was folded from: redo it
            profile = profile.model_copy(update={"summary_stale": True})

        def op(conn: Connection) -> Profile:
            if self._exists(conn, profile.user_id, lock=True):
                if not replace:
                    raise ProfileExists(
                        profile.user_id, "; pass replace=True (CLI: --replace) to overwrite it"
                    )
                self._delete_rows(conn, profile.user_id)
            if not self._insert_profile(conn, profile):  # another writer created it meanwhile
                raise ProfileExists(profile.user_id, "; it was created during the import")
            conn.executemany(_INSERT_PREFERENCE, [
                (profile.user_id, *preference_row(p), None) for p in doc.preferences])
            if doc.onboarding is not None:
                write_onboarding(conn, profile.user_id, doc.onboarding)
            conn.executemany(_INSERT_GENERATION, [
                (g.id, profile.user_id, g.prompt, g.answer, g.created_at.isoformat())
                for g in doc.generations])
            conn.executemany(_INSERT_RATING, [(profile.user_id, *rating_row(r))
                                              for r in doc.ratings])
            return profile

        def landed(conn: Connection) -> Any:
            stored = self._find(conn, profile.user_id)
            if stored is None:
                return None
            same = (stored.version, stored.updated_at) == (profile.version, profile.updated_at)
            return stored if same else UNKNOWN

        return self._write_op(op, landed=landed)

    def delete(self, user_id: str) -> int:
        """Delete the user's profile and every row of theirs; returns the rows removed.

        Touches nothing of any other user. :class:`ProfileNotFound` if there was nothing.
        Reads nothing of the rows it deletes (only the profile's creation time, as stored),
        so a damaged row deletes like any other.
        """
        validate_user_id(user_id)
        removed = 0
        created: Any = None  # the removed profile's created_at as stored (None: no profile)

        def op(conn: Connection) -> int:
            nonlocal removed, created
            row = conn.execute("SELECT created_at FROM profiles WHERE user_id = ?"
                               + self._lock_row, (user_id,)).fetchone()
            created = None if row is None else row[0]
            removed = self._delete_rows(conn, user_id) if row is not None else \
                self._delete_orphans(conn, user_id)
            if removed == 0:
                raise ProfileNotFound(user_id)
            return removed

        def landed(conn: Connection) -> Any:
            if not removed:
                return None
            again = conn.execute("SELECT created_at FROM profiles WHERE user_id = ?",
                                 (user_id,)).fetchone()
            # the same profile still there: ours did not land; none, or a newer one (the user
            # was created again after it): it did
            if created is None:  # rows without a profile (a damaged user id): any left?
                left = any(self._has_rows(conn, t, user_id) for t in USER_TABLES)
                return None if left else removed
            return None if again is not None and again[0] == created else removed

        count = self._write_op(op, landed=landed)
        self._after_delete()
        return count

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

    @staticmethod
    def _delete_orphans(conn: Connection, user_id: str) -> int:
        """Delete the user's rows that no profile row names (one whose user id was damaged
        left them behind). Each statement sees one snapshot, where a profile and its rows
        come and go together: rows of a profile created meanwhile are never touched."""
        removed = 0
        for table in USER_TABLES:
            if table != "profiles":
                removed += conn.execute(
                    f'DELETE FROM "{table}" WHERE user_id = ? AND NOT EXISTS '
                    "(SELECT 1 FROM profiles WHERE user_id = ?)", (user_id, user_id)).rowcount
        return removed

    @staticmethod
    def _has_rows(conn: Connection, table: str, user_id: str) -> bool:
        return conn.execute(f'SELECT 1 FROM "{table}" WHERE user_id = ? LIMIT 1',
                            (user_id,)).fetchone() is not None

    @staticmethod
    def _delete_rows(conn: Connection, user_id: str) -> int:
        removed = 0
        for table in USER_TABLES:
            removed += conn.execute(f'DELETE FROM "{table}" WHERE user_id = ?',
                                    (user_id,)).rowcount
        return removed


class UserTransaction:
    """The handle of :meth:`SQLProfileStore.transaction` (all writes land at commit)."""

    def __init__(self, conn: Connection, profile: Profile, *, key: str) -> None:
        self._conn = conn
        self._key = key
        self.profile = profile  # as read (and locked) at the start of the transaction
        self._appended: list[Preference] = []
        self._rated: list[Rating] = []
        self._removed = 0
        self._folded = profile.summary_preferences  # the summary's preferences still stored
        self._changes: dict[str, Any] = {}
        self._onboarding: OnboardingState | None | bool = False  # False: untouched
        self.result: Profile = profile

    @property
    def preferences(self) -> list[Preference]:
        """The user's stored history (before this transaction's appends), oldest first."""
        return read_preferences(self._conn, self.profile.user_id)

    @property
    def onboarding(self) -> OnboardingState | None:
        if self._onboarding is not False:
            return self._onboarding  # type: ignore[return-value]
        return read_onboarding(self._conn, self.profile.user_id)

    def append(self, preferences: Sequence[Preference]) -> None:
        self._appended += [revalidate(p) for p in preferences]

    def update(self, **fields: Any) -> None:
        """Stage changes to coefficients, covariance, reward set or summary."""
        allowed = {"coefficients", "covariance", "reward_set_id", "reward_set_version",
                   "summary", "summary_source", "summary_written_at", "summary_preferences",
                   "summary_stale", "summary_digest"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)} of a profile; changeable: "
                               f"{sorted(allowed)}")
        self._changes.update(fields)

    @property
    def ratings(self) -> list[Rating]:
        """The user's stored ratings (before this transaction's), oldest first."""
        return read_ratings(self._conn, self.profile.user_id)

    def rate(self, ratings: Sequence[Rating]) -> None:
        """Stage thumbs up/down ratings for the history."""
        self._rated += [revalidate(r) for r in ratings]

    def set_onboarding(self, state: OnboardingState | None) -> None:
        self._onboarding = state

    def remove(self, index: int) -> None:
        """Delete the ``index``-th stored preference (0 = oldest) now."""
        row = None if index < 0 else self._conn.execute(
            "SELECT id FROM preferences WHERE user_id = ? ORDER BY id LIMIT 1 OFFSET ?",
            (self.profile.user_id, index)).fetchone()
        if row is None:
            raise InvalidInput(f"no preference at index {index}")
        self._conn.execute("DELETE FROM preferences WHERE id = ?", (row[0],))
        self._removed += 1
        if index < self._folded:  # the summary was folded from it: redo on the next refresh
            self._folded -= 1
            self._changes.setdefault("summary_stale",
                                     self.profile.summary_source == "summarizer")

    def _flush(self) -> None:
        if not (self._appended or self._removed or self._changes or self._rated
                or self._onboarding is not False):
            return
        p = self.profile
        uid = p.user_id
        if self._appended:
            self._conn.executemany(_INSERT_PREFERENCE, [
                (uid, *preference_row(x), f"{self._key}:{i}")
                for i, x in enumerate(self._appended)])
        if self._rated:
            self._conn.executemany(_INSERT_RATING, [(uid, *rating_row(r))
                                                    for r in self._rated])
        new = revalidate(p.model_copy(update={
            "summary_preferences": self._folded,
            **self._changes,
            "preference_count": p.preference_count + len(self._appended) - self._removed,
            "version": p.version + 1,
            "updated_at": utcnow(),
        }))
        write_profile(self._conn, new, p.version, count=True)
        if self._onboarding is not False:
            if self._onboarding is None:
                self._conn.execute("DELETE FROM onboarding WHERE user_id = ?", (uid,))
            else:
                write_onboarding(self._conn, uid, self._onboarding)  # type: ignore[arg-type]
        self.result = new


# -- rows <-> models ---------------------------------------------------------------------


def write_profile(conn: Connection, new: Profile, expected_version: int, *,
                  count: bool = False) -> None:
    """Write ``new`` over the stored profile of version ``expected_version`` (locked by the
    caller); :class:`VersionConflict` if that version is gone."""
    cur = conn.execute(
        "UPDATE profiles SET version = ?, reward_set_id = ?, reward_set_version = ?, "
        "coefficients = ?, covariance = ?, summary = ?, updated_at = ?, summary_source = ?, "
        "summary_written_at = ?, summary_preferences = ?, summary_stale = ?, "
        "summary_digest = ?"
        + (", preference_count = ?" if count else "")
        + " WHERE user_id = ? AND version = ?",
        (new.version, new.reward_set_id, new.reward_set_version, json.dumps(new.coefficients),
         json_or_none(new.covariance), new.summary, new.updated_at.isoformat(),
         *summary_row(new), *((new.preference_count,) if count else ()), new.user_id,
         expected_version),
    )
    if cur.rowcount != 1:
        raise VersionConflict(new.user_id, expected_version, -1)


def _key_stored(conn: Connection, user_id: str, key: str) -> bool:
    return conn.execute("SELECT 1 FROM preferences WHERE user_id = ? AND append_key = ?",
                        (user_id, f"{key}:0")).fetchone() is not None


def read_preferences(conn: Connection, user_id: str) -> list[Preference]:
    rows = conn.execute(
        f"SELECT {PREFERENCE_COLUMNS} FROM preferences WHERE user_id = ? ORDER BY id",
        (user_id,),
    ).fetchall()
    return [_row(user_id, "preferences", lambda r=r: Preference(
        prompt=r[0], chosen=r[1], rejected=r[2], reason=r[3], source=r[4],
        created_at=_when(user_id, "preferences.created_at", r[5]), judgement=r[6]))
        for r in rows]


def _cutoff(max_age_s: float) -> str:
    """The oldest kept-answer time a ``max_age_s`` allows, as stored text."""
    if not isinstance(max_age_s, (int, float)) or isinstance(max_age_s, bool) or \
            not 0 < max_age_s <= 36500 * 86400:
        raise InvalidInput("max_age_s must be a number of seconds, more than 0 and at most "
                           "100 years")
    return (utcnow() - timedelta(seconds=max_age_s)).isoformat()


def read_generations(conn: Connection, user_id: str) -> list[StoredGeneration]:
    rows = conn.execute("SELECT id, prompt, answer, created_at FROM generations "
                        "WHERE user_id = ? ORDER BY created_at, id", (user_id,)).fetchall()
    return [generation_from_row(r, user_id) for r in rows]


def generation_from_row(r: Sequence[Any], user_id: str) -> StoredGeneration:
    return _row(user_id, "generations", lambda: StoredGeneration(
        id=r[0], prompt=r[1], answer=r[2],
        created_at=_when(user_id, "generations.created_at", r[3])))


def read_ratings(conn: Connection, user_id: str) -> list[Rating]:
    rows = conn.execute("SELECT prompt, answer, rating, created_at FROM ratings "
                        "WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
    return [_row(user_id, "ratings", lambda r=r: Rating(
        prompt=r[0], answer=r[1], rating=r[2],
        created_at=_when(user_id, "ratings.created_at", r[3]))) for r in rows]


def rating_row(r: Rating) -> tuple[Any, ...]:
    return (r.prompt, r.answer, r.rating, r.created_at.isoformat())


def read_onboarding(conn: Connection, user_id: str) -> OnboardingState | None:
    row = conn.execute("SELECT state FROM onboarding WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else _row(
        user_id, "onboarding.state", lambda: OnboardingState.model_validate_json(row[0]))


def write_onboarding(conn: Connection, user_id: str, state: OnboardingState) -> None:
    conn.execute(
        "INSERT INTO onboarding (user_id, state, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, "
        "updated_at = excluded.updated_at",
        (user_id, state.model_dump_json(), utcnow().isoformat()),
    )


def revalidate(model: Any) -> Any:
    """Validate a model again: ``model_copy(update=...)`` skips validation."""
    try:
        return type(model).model_validate(model.model_dump(warnings=False))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or type(model).__name__
        raise InvalidInput(f"invalid {type(model).__name__}: {where}: {err['msg']}") from None


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def preference_row(p: Preference) -> tuple[Any, ...]:
    return (p.prompt, p.chosen, p.rejected, p.reason, p.source, p.created_at.isoformat(),
            p.judgement)


# What a damaged stored value raises while it is parsed (ValidationError and JSONDecodeError
# are ValueErrors; deep JSON raises RecursionError).
_DAMAGE = (ValueError, TypeError, RecursionError, OverflowError)


def _row(user_id: Any, where: str, parse: Callable[[], Any]) -> Any:
    """``parse()`` of one stored row of ``user_id``; a value that does not parse is a
    :class:`CorruptProfile` naming the user and the field (``where``: the table, or the
    table.column), never the parser's own error."""
    try:
        return parse()
    except CorruptProfile:
        raise
    except _DAMAGE as exc:
        raise _corrupt(user_id, where, exc) from None


def _corrupt(user_id: Any, where: str, exc: BaseException) -> CorruptProfile:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        field = f"{where}.{loc}" if loc and "." not in where else where
        problem = err["msg"]
    else:
        field, problem = where, f"{type(exc).__name__}: {exc}"
    shown = user_id if isinstance(user_id, str) else repr(user_id)
    return CorruptProfile(shown[:200], field, problem[:160])


def _when(user_id: Any, field: str, value: Any) -> datetime:
    """A stored timestamp: ISO text (SQLite) or a datetime (PostgreSQL's timestamptz); one
    that is neither is a :class:`CorruptProfile` naming ``field``."""
    if isinstance(value, datetime):
        return value
    return _row(user_id, field, lambda: datetime.fromisoformat(value))


def _json(user_id: Any, field: str, value: Any) -> Any:
    return _row(user_id, field, lambda: json.loads(value))


def profile_from_row(r: Sequence[Any]) -> Profile:
    """The profile of a ``PROFILE_COLUMNS`` row; :class:`CorruptProfile` naming the user and
    the field for a row whose values do not make a valid profile."""
    uid = r[0]
    return _row(uid, "profiles", lambda: Profile(
        user_id=uid,
        version=r[1],
        reward_set_id=r[2],
        reward_set_version=r[3],
        coefficients=_json(uid, "profiles.coefficients", r[4]),
        covariance=None if r[5] is None else _json(uid, "profiles.covariance", r[5]),
        summary=r[6],
        preference_count=r[7],
        created_at=_when(uid, "profiles.created_at", r[8]),
        updated_at=_when(uid, "profiles.updated_at", r[9]),
        summary_source=r[10],
        summary_written_at=None if r[11] is None else _when(uid, "profiles.summary_written_at",
                                                            r[11]),
        summary_preferences=r[12],
        summary_stale=r[13],
        summary_digest=r[14],
    ))


def summary_row(p: Profile) -> tuple[Any, ...]:
    """The summary's metadata columns of ``p``."""
    return (p.summary_source,
            None if p.summary_written_at is None else p.summary_written_at.isoformat(),
            p.summary_preferences, p.summary_stale, p.summary_digest)


def sums_from_rows(count: int, linear: Sequence[Sequence[Any]],
                   outer: Sequence[Sequence[Any]], cov: Sequence[Sequence[Any]]
                   ) -> PopulationSums:
    """:class:`PopulationSums` from the aggregate queries' rows (name, sum), (name, name, sum)
    and (row index, column index, sum) with 0-based indices."""
    return PopulationSums(
        count=count,
        linear={str(k): float(v) for k, v in linear},
        outer={(str(a), str(b)): float(v) for a, b, v in outer},
        covariance={(int(i), int(j)): float(v) for i, j, v in cov},
    )


def _check_text(name: str, value: object, *, optional: bool = False) -> None:
    """Refuse an argument that is not text a store can hold (InvalidInput, naming it)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{name} {problem}")
