"""Reading, creating and changing profiles (optimistic, versioned updates)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from personalizer.errors import CorruptProfile, InvalidInput, ProfileExists, VersionConflict

from ..base import PopulationSums, ProfilePage
from ..models import Profile, summary_by_person, utcnow, validate_user_id
from .core import SQLCore
from .rows import (
    PROFILE_COLUMNS,
    UNKNOWN,
    Connection,
    check_text,
    profile_from_row,
    revalidate,
    write_profile,
)

__all__ = ["ProfileQueries"]


class ProfileQueries(SQLCore):
    """The profile operations of the store contract."""

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
        check_text("after", after, optional=True)
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
        which :func:`~personalizer.profiles.learning.priors.prior_from_sums` builds the population
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

