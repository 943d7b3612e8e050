"""A user's data as a whole: export it, import it exactly as exported, delete every row of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personalizer.errors import InvalidProfileData, ProfileExists, ProfileNotFound

from ..export import ProfileExport, parse_export
from ..learning.posterior import is_positive_definite
from ..models import Profile, history_digest, validate_user_id
from .core import SQLCore
from .rows import (
    INSERT_GENERATION,
    INSERT_PREFERENCE,
    INSERT_RATING,
    UNKNOWN,
    Connection,
    generation_row,
    preference_row,
    rating_row,
    read_generations,
    read_onboarding,
    read_preferences,
    read_ratings,
    write_onboarding,
)
from .schema import USER_TABLES

__all__ = ["PortabilityQueries"]


class PortabilityQueries(SQLCore):
    """Export, import and delete, of the store contract."""

    def export_profile(self, user_id: str) -> dict[str, Any]:
        """One user's profile and history as a JSON-ready dict (the format:
        :mod:`personalizer.profiles.export`)."""
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
            conn.executemany(INSERT_PREFERENCE, [
                (profile.user_id, *preference_row(p), None) for p in doc.preferences])
            if doc.onboarding is not None:
                write_onboarding(conn, profile.user_id, doc.onboarding)
            conn.executemany(INSERT_GENERATION, [(profile.user_id, *generation_row(g))
                                                  for g in doc.generations])
            conn.executemany(INSERT_RATING, [(profile.user_id, *rating_row(r))
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
