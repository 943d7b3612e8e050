"""A user's history: appending preferences (idempotently), the transaction, and reading the
preferences, ratings and onboarding state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from personalizer.errors import InvalidInput

from ..models import OnboardingState, Preference, Profile, Rating, validate_user_id
from .core import SQLCore
from .rows import (
    UNKNOWN,
    Connection,
    key_stored,
    read_onboarding,
    read_preferences,
    read_ratings,
    revalidate,
)
from .transaction import UserTransaction

__all__ = ["HistoryQueries"]


class HistoryQueries(SQLCore):
    """The history operations of the store contract."""

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
            if staged and not (fresh and runs == 1) and key_stored(conn, user_id, key):
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
                return stored if key_stored(conn, user_id, tx._key) else None
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

