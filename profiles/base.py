"""The ``ProfileStore`` seam: what any profile store (embedded SQLite, a server DB) offers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from personalizer.types import SteeringRecord

from .models import OnboardingState, Preference, Profile, Rating, StoredGeneration

__all__ = ["PopulationSums", "ProfilePage", "ProfileStore"]


class ProfilePage(BaseModel):
    """One page of profiles in user-id order; pass ``next_after`` to get the next page.

    ``damaged`` names the users on this page whose stored profile cannot be read (see
    :class:`~personalizer.errors.CorruptProfile`): they are left out of ``profiles`` instead
    of failing the whole listing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: list[Profile]
    next_after: str | None
    damaged: list[str] = Field(default_factory=list, description="Users on this page whose "
                               "stored profile is damaged (left out of profiles).")


@dataclass(frozen=True)
class PopulationSums:
    """Sums over the learned profiles of one reward set version: what the population prior
    needs, computed by the store (a SQL aggregate) without reading every profile out.

    ``linear[name]`` sums a coefficient over users, ``outer[(a, b)]`` sums the products of two
    coefficients, ``covariance[(i, j)]`` sums entry (i, j) of the users' covariances (in the
    reward set's name order); ``count`` users took part.
    """

    count: int
    linear: Mapping[str, float]
    outer: Mapping[tuple[str, str], float]
    covariance: Mapping[tuple[int, int], float]


@runtime_checkable
class ProfileStore(Protocol):
    """Per-user profiles and preference histories, with atomic, versioned updates."""

    def get(self, user_id: str) -> Profile: ...

    def create(self, profile: Profile | str) -> Profile: ...

    def get_or_create(self, user_id: str) -> Profile: ...

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage: ...

    def count(self) -> int: ...

    def population_sums(self, reward_set_id: str, reward_set_version: str, *,
                        exclude: str | None = None) -> PopulationSums: ...

    def update(self, profile: Profile) -> Profile: ...

    def modify(
        self, user_id: str, change: Callable[[Profile], Profile], *, retries: int = 20
    ) -> Profile: ...

    def append_preferences(
        self, user_id: str, preferences: Sequence[Preference], *, create: bool = True,
        key: str | None = None
    ) -> Profile: ...

    def preferences(self, user_id: str) -> list[Preference]: ...

    def onboarding_state(self, user_id: str) -> OnboardingState | None: ...

    def save_generation(self, user_id: str, generation: StoredGeneration, *, keep: int = ...,
                        max_age_s: float = ..., model: str | None = None,
                        options: Mapping[str, Any] | BaseModel | None = None,
                        strategy: Mapping[str, Any] | BaseModel | None = None,
                        steering: SteeringRecord | None = None) -> None: ...

    def generation(self, user_id: str, generation_id: str, *,
                   max_age_s: float | None = None) -> StoredGeneration | None: ...

    def prune_generations(self, *, max_age_s: float, user_id: str | None = None) -> int: ...

    def ratings(self, user_id: str) -> list[Rating]: ...

    def transaction(self, user_id: str, *, create: bool = True
                    ) -> AbstractContextManager[Any]: ...

    def export_profile(self, user_id: str) -> dict[str, Any]: ...

    def import_profile(
        self, data: Mapping[str, Any] | str | bytes, *, replace: bool = False
    ) -> Profile: ...

    def delete(self, user_id: str) -> int: ...
