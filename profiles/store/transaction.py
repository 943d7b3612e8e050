"""``UserTransaction``: one atomic change to one user, staged and written at commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personalizer.errors import InvalidInput

from ..models import OnboardingState, Preference, Profile, Rating, utcnow
from .rows import (
    INSERT_PREFERENCE,
    INSERT_RATING,
    Connection,
    preference_row,
    rating_row,
    read_onboarding,
    read_preferences,
    read_ratings,
    revalidate,
    write_onboarding,
    write_profile,
)

__all__ = ["UserTransaction"]


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
            self._conn.executemany(INSERT_PREFERENCE, [
                (uid, *preference_row(x), f"{self._key}:{i}")
                for i, x in enumerate(self._appended)])
        if self._rated:
            self._conn.executemany(INSERT_RATING, [(uid, *rating_row(r))
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

