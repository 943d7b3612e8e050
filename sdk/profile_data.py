"""The facade's profile data methods: read, list, export, import, delete (a base class of
:class:`~personalizer.Personalizer`, guarded at the boundary with it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from personalizer.profiles import Preference, Profile, ProfilePage, ProfileStore, validate_user_id
from personalizer.profiles.export import export_texts, parse_export
from personalizer.profiles.models import UserId
from personalizer.profiles.training_sets import stored_records

from ._input import Limits

__all__ = ["ProfileData"]


class ProfileData:
    """What is stored about each person, as the facade shows it (``store``, ``limits`` and
    the answers' retention come from :class:`~personalizer.Personalizer`)."""

    store: ProfileStore
    limits: Limits
    _feedback: Any

    def profile(self, user_id: UserId) -> Profile:
        """The user's profile (coefficients, uncertainty, summary, history size)."""
        return self.store.get(user_id)

    def create_profile(self, user_id: UserId) -> Profile:
        """Create an empty profile; :class:`~personalizer.errors.ProfileExists` if present."""
        return self.store.create(user_id)

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage:
        """One page of profiles in user-id order (``after``: the ``next_after`` of the page
        before)."""
        self.limits.check("Personalizer.list_profiles", [("after", after)])
        return self.store.list_profiles(limit=limit, after=after)

    def preferences(self, user_id: UserId) -> list[Preference]:
        """The user's preference history, oldest first."""
        return self.store.preferences(user_id)

    def export_preferences(self, user_id: UserId | None = None, *,
                           format: Literal["dpo", "sft"] = "dpo") -> list[dict[str, Any]]:
        """One person's or everyone's choices as records TRL reads directly, naming no one
        (:func:`~personalizer.profiles.training_sets.stored_records`)."""
        return stored_records(self.store, user_id, format)

    def export_profile(self, user_id: UserId) -> dict[str, Any]:
        """Everything stored about the user, as a JSON-ready dict (see ``profiles/export.py``);
        kept answers past the age limit are deleted first, never exported."""
        self.store.prune_generations(user_id=validate_user_id(user_id),
                                     max_age_s=self._feedback.retention.max_age_s)
        return self.store.export_profile(user_id)

    def prune_generations(self) -> int:
        """Delete every user's kept answers older than ``keep_generations_days`` (answers are
        otherwise pruned when their user gets a new one; run this now and then for users who
        stopped asking). Returns how many were deleted."""
        return self.store.prune_generations(max_age_s=self._feedback.retention.max_age_s)

    def import_profile(self, data: Mapping[str, Any] | str | bytes, *,
                       replace: bool = False) -> Profile:
        """Restore a profile from :meth:`export_profile` output (dict or JSON text). Each
        text in it is held to ``max_text_chars`` (a whole history has no total limit)."""
        self.limits.check("Personalizer.import_profile", export_texts(parse_export(data)),
                          one_request=False)
        return self.store.import_profile(data, replace=replace)

    def delete_profile(self, user_id: UserId) -> int:
        """Delete every stored row of the user; returns how many rows were removed."""
        return self.store.delete(user_id)
