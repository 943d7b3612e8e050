"""The ``Personalizer`` facade: what an application embeds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from personalizer.profiles import (
    Preference,
    Profile,
    ProfilePage,
    ProfileStore,
    SQLiteProfileStore,
    validate_user_id,
)

from .errors import InvalidInput

__all__ = ["Personalizer"]


class Personalizer:
    """Per-user personalization for an LLM application.

    ``db`` is a path to the embedded SQLite store (default ``$PERSONALIZER_DB`` or
    ``profiles.db``) or any :class:`~personalizer.profiles.ProfileStore` you built yourself.

    >>> p = Personalizer(db=":memory:")
    >>> p.record_preference("alice", "Hi?", chosen="Hi!", rejected="Hello there, friend!")
    ... # doctest: +ELLIPSIS
    Profile(user_id='alice', ...)
    """

    def __init__(self, db: str | os.PathLike[str] | ProfileStore | None = None) -> None:
        if db is None or isinstance(db, (str, os.PathLike)):
            self.store: ProfileStore = SQLiteProfileStore(db)
            self._owns_store = True
        elif isinstance(db, ProfileStore):
            self.store = db
            self._owns_store = False
        else:
            raise InvalidInput(
                f"db must be a path or a ProfileStore, not {type(db).__name__}"
            )

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store and hasattr(self.store, "close"):
            self.store.close()

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- profiles ------------------------------------------------------------------------

    def profile(self, user_id: str) -> Profile:
        """The user's profile (coefficients, uncertainty, summary, history size)."""
        return self.store.get(user_id)

    def create_profile(self, user_id: str) -> Profile:
        """Create an empty profile; :class:`~personalizer.errors.ProfileExists` if present."""
        return self.store.create(validate_user_id(user_id))

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage:
        """One page of profiles in user-id order."""
        return self.store.list_profiles(limit=limit, after=after)

    def record_preference(self, user_id: str, prompt: str, chosen: str, rejected: str, *,
                          reason: str | None = None, source: str = "feedback") -> Profile:
        """Remember that ``user_id`` preferred ``chosen`` over ``rejected`` for ``prompt``.

        Creates the profile on first use. Returns the updated profile.
        """
        validate_user_id(user_id)
        try:
            pref = Preference(prompt=prompt, chosen=chosen, rejected=rejected, reason=reason,
                              source=source)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "preference"
            raise InvalidInput(f"invalid preference: {where}: {err['msg']}") from None
        return self.store.append_preferences(user_id, [pref])

    def preferences(self, user_id: str) -> list[Preference]:
        """The user's preference history, oldest first."""
        return self.store.preferences(user_id)

    def export_profile(self, user_id: str) -> dict[str, Any]:
        """Everything stored about the user, as a JSON-ready dict (see ``profiles/export.py``)."""
        return self.store.export_profile(user_id)

    def import_profile(self, data: Mapping[str, Any] | str | bytes, *,
                       replace: bool = False) -> Profile:
        """Restore a profile from :meth:`export_profile` output (dict or JSON text)."""
        return self.store.import_profile(data, replace=replace)

    def delete_profile(self, user_id: str) -> int:
        """Delete every stored row of the user; returns how many rows were removed."""
        return self.store.delete(user_id)
