"""The ``ProfileStore`` seam: what any profile store (embedded SQLite, a server DB) offers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .models import Preference, Profile

__all__ = ["ProfilePage", "ProfileStore"]


class ProfilePage(BaseModel):
    """One page of profiles in user-id order; pass ``next_after`` to get the next page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: list[Profile]
    next_after: str | None


@runtime_checkable
class ProfileStore(Protocol):
    """Per-user profiles and preference histories, with atomic, versioned updates."""

    def get(self, user_id: str) -> Profile: ...

    def create(self, profile: Profile | str) -> Profile: ...

    def get_or_create(self, user_id: str) -> Profile: ...

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage: ...

    def count(self) -> int: ...

    def update(self, profile: Profile) -> Profile: ...

    def modify(
        self, user_id: str, change: Callable[[Profile], Profile], *, retries: int = 20
    ) -> Profile: ...

    def append_preferences(
        self, user_id: str, preferences: Sequence[Preference], *, create: bool = True
    ) -> Profile: ...

    def preferences(self, user_id: str) -> list[Preference]: ...

    def transaction(self, user_id: str, *, create: bool = True
                    ) -> AbstractContextManager[Any]: ...

    def export_profile(self, user_id: str) -> dict[str, Any]: ...

    def import_profile(
        self, data: Mapping[str, Any] | str | bytes, *, replace: bool = False
    ) -> Profile: ...

    def delete(self, user_id: str) -> int: ...
