"""The ``Personalizer`` facade: what an application embeds."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from personalizer.profiles import (
    Onboarding,
    Preference,
    Profile,
    ProfileLearner,
    ProfilePage,
    ProfileStore,
    SQLiteProfileStore,
    validate_user_id,
)
from personalizer.profiles.learner import make_preference

from ._boundary import Unchecked, public_api
from .errors import BackendError, InvalidInput
from .types import Generation, Generator, MessagesLike, check_pairs

__all__ = ["Personalizer"]


@public_api
class Personalizer:
    """Per-user personalization for an LLM application.

    ``db`` is a path to the embedded SQLite store (default ``$PERSONALIZER_DB`` or
    ``profiles.db``) or any :class:`~personalizer.profiles.ProfileStore` you built yourself.
    ``rewards`` is the :class:`~personalizer.backends.rewards.RewardSet` that profiles'
    coefficients are learned over (for example
    :func:`personalizer.profiles.default_reward_set`); without it preferences are only stored.

    >>> p = Personalizer(db=":memory:")
    >>> p.record_preference("alice", "Hi?", chosen="Hi!", rejected="Hello there, friend!")
    ... # doctest: +ELLIPSIS
    Profile(user_id='alice', ...)
    """

    def __init__(self, db: Unchecked[str | os.PathLike[str] | ProfileStore | None] = None, *,
                 rewards: Any = None, generator: Generator | None = None) -> None:
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
        self.rewards = rewards
        self.generator = generator
        self._learner = ProfileLearner(self.store, rewards) if rewards is not None else None

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

        Creates the profile on first use. With ``rewards``, the coefficients' posterior is
        updated in the same transaction. Returns the updated profile.
        """
        validate_user_id(user_id)
        if self._learner is not None:
            return self._learner.record_preference(user_id, prompt, chosen, rejected,
                                                   reason=reason, source=source)
        pref = make_preference(prompt, chosen, rejected, reason=reason, source=source)
        return self.store.append_preferences(user_id, [pref])

    def delete_preference(self, user_id: str, index: int) -> Profile:
        """Remove one preference (0 = oldest) and learn the coefficients again without it."""
        return self._need_learner("delete_preference").delete_preference(user_id, index)

    def preference_probability(self, user_id: str, prompt: str, a: str, b: str) -> float:
        """The calibrated chance that the user prefers answer ``a`` over ``b``."""
        return self._need_learner("preference_probability").preference_probability(
            user_id, prompt, a, b)

    def onboarding(self, user_id: str, pool: Any = None, **options: Any) -> Onboarding:
        """Start or resume the user's onboarding (active-learning pairwise questions)."""
        self._need_learner("onboarding")
        return Onboarding(self.store, self.rewards, user_id, pool, **options)

    def generate(self, user_id: str, messages: MessagesLike, *, strength: float = 1.0,
                 strategy: Any = None, **options: Any) -> Generation:
        """Answer ``messages`` for ``user_id``: reward-guided decoding toward their profile.

        ``strength`` weighs the user's reward (0: plain decoding); ``strategy`` is how to
        search (:class:`~personalizer.backends.Args`, the default, or
        :class:`~personalizer.backends.BestOfN`, or their names ``"args"``/``"best_of_n"``).
        A user without coefficients yet gets the generator's plain answer. ``options`` go to
        the generator (``max_new_tokens``, ``stop``, sampling options, ``proxy``, ...); the
        generation's ``steering`` record says which decoding path ran.
        """
        steering = self._steering(user_id, strength, strategy)
        if steering is None:
            return self.generator.generate(messages, **options)
        return self.generator.generate(messages, steering=steering, **options)

    def generate_batch(self, requests: Unchecked[Sequence[tuple[str, MessagesLike]]], *,
                       strength: float = 1.0, strategy: Any = None,
                       **options: Any) -> list[Generation]:
        """Answer many users at once: ``requests`` are ``(user_id, messages)`` pairs, decoded
        together in one batch, each row steered toward its own user's profile (needs a
        generator with ``generate_batch``, such as a LocalGenerator)."""
        if self.generator is None:
            raise InvalidInput("generate_batch needs a generator: Personalizer(db, generator=...)")
        batch = getattr(self.generator, "generate_batch", None)
        if batch is None:
            raise BackendError(f"{type(self.generator).__name__} does not decode batches; "
                               "call generate() once per request")
        requests = check_pairs(requests, "(user_id, messages)")
        rows = [(messages, self._steering(user_id, strength, strategy))
                for user_id, messages in requests]
        return batch(rows, **options)

    def _steering(self, user_id: str, strength: float, strategy: Any) -> Any:
        """The user's Steering, or None while their profile has no coefficients."""
        if self.generator is None:
            raise InvalidInput("generate needs a generator: Personalizer(db, generator=...)")
        profile = self.profile(user_id)
        if not profile.coefficients:
            return None
        from personalizer.backends import Steering

        if getattr(self.generator, "rewards", None) is None:
            raise BackendError(
                f"{type(self.generator).__name__} cannot steer toward {user_id!r}'s reward: "
                "give a LocalGenerator the reward set of the profiles (rewards=...)")
        extra = {} if strategy is None else {"strategy": strategy}
        return Steering.from_profile(profile, strength=strength, **extra)

    def _need_learner(self, what: str) -> ProfileLearner:
        if self._learner is None:
            raise InvalidInput(
                f"{what} needs a reward set: Personalizer(db, rewards=...), for example "
                "rewards=personalizer.profiles.default_reward_set()")
        return self._learner

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
