"""``ProfileLearner``: keeps each profile's coefficients the posterior of its preference history.

Glue between the store, a reward set and the pure functions of :mod:`.posterior`. Recording a
preference appends it and updates the posterior in one transaction (an online Laplace update
from the current posterior); deleting one refits from the remaining history. A user without
coefficients starts from the population prior: the spread of coefficients over the other
stored users of the same reward set, once at least 20 exist (else ``N(0, prior_scale^2 I)``).
The prior is an aggregate computed on demand, so a deleted user stops counting at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from personalizer.errors import (
    InvalidInput,
    ProfileNotFound,
    RewardSetMismatch,
    StoreBusy,
    VersionConflict,
)

from ..base import ProfileStore
from ..models import JUDGEMENTS, Preference, Profile, Rating, validate_user_id
from .app_features import migrate_profile
from .posterior import Posterior, fit_posterior, judgement_bounds, preference_probability
from .priors import POPULATION_FLOOR, prior_from_sums, shipped_prior

__all__ = ["ProfileLearner", "make_preference"]

# How often a write starts over when its user is deleted between its read and its write.
_RACE_RETRIES = 20


class _Recreated(Exception):
    """The profile was deleted and created again empty during a write (rolled back)."""


def make_preference(prompt: str, chosen: str, rejected: str, *, reason: str | None = None,
                    source: str = "feedback", judgement: str = "better") -> Preference:
    """A validated :class:`Preference`, or :class:`InvalidInput` naming the problem.

    ``judgement``: ``"better"`` (a plain choice), ``"much_better"``, ``"slightly_better"``,
    or a tie, ``"both_fine"`` or ``"neither"`` (then ``chosen`` and ``rejected`` are the first
    and second response as shown)."""
    if not isinstance(judgement, str) or judgement not in JUDGEMENTS:
        raise InvalidInput(f"invalid preference: judgement {judgement!r:.60} is not one of "
                           f"{', '.join(map(repr, JUDGEMENTS))}")
    try:
        return Preference(prompt=prompt, chosen=chosen, rejected=rejected, reason=reason,
                          source=source, judgement=judgement)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "preference"
        raise InvalidInput(f"invalid preference: {where}: {err['msg']}") from None


class ProfileLearner:
    """Learns profiles' coefficients over one reward set from their preferences."""

    def __init__(self, store: ProfileStore, reward_set: Any, *, prior_scale: float = 1.0,
                 min_population: int = 20,
                 prior: Literal["shipped", "standard"] = "shipped") -> None:
        if prior_scale <= 0:
            raise InvalidInput("prior_scale must be positive")
        if prior not in ("shipped", "standard"):
            raise InvalidInput(f"prior must be 'shipped' (the built-in prior of the default "
                               f"reward set) or 'standard' (N(0, I)), not {prior!r:.40}")
        self.store, self.rewards = store, reward_set
        self.prior_scale, self.min_population = prior_scale, min_population
        self._prior_kind = prior

    @functools.cached_property
    def fallback_prior(self) -> Posterior:
        """A newcomer's prior before the population prior applies: the built-in prior
        shipped with the default reward set (:mod:`.priors`), else ``N(0, prior_scale^2 I)``."""
        if self._prior_kind == "shipped":  # learned features carry their population's
            prior = shipped_prior(self.rewards) or getattr(self.rewards, "prior", None)
            if prior is not None:
                return prior
        return Posterior.standard(len(self.rewards), self.prior_scale)

    # -- priors and posteriors -----------------------------------------------------------

    def prior(self, *, exclude: str | None = None) -> Posterior:
        """The population prior for a newcomer (other users of this reward set), from the
        store's aggregate over learned profiles of this reward set version; with fewer than
        ``min_population`` of them, :attr:`fallback_prior`: the built-in prior shipped with
        the default reward set (:mod:`.priors`), else ``N(0, prior_scale^2 I)``. Every
        variance of the population's gets :data:`~.priors.POPULATION_FLOOR`, as the shipped
        prior does, so that a taste few users have is not shrunk away."""
        sums = self.store.population_sums(self.rewards.id, self.rewards.version,
                                          exclude=exclude)
        return prior_from_sums(sums, self.rewards.names, min_users=self.min_population,
                               fallback=self.fallback_prior, shrink=POPULATION_FLOOR)

    def _matches(self, p: Profile) -> bool:
        return (p.reward_set_id == self.rewards.id
                and p.reward_set_version == self.rewards.version)

    def _to_posterior(self, p: Profile) -> Posterior:
        mean = self.rewards.coefficient_vector(p.coefficients, reward_set_id=p.reward_set_id,
                                               reward_set_version=p.reward_set_version)
        n = len(mean)
        cov = np.asarray(p.covariance) if p.covariance is not None else \
            np.eye(n) * self.prior_scale**2
        return Posterior(mean, cov)

    def posterior(self, profile: Profile, *, prior: Posterior | None = None) -> Posterior:
        """The profile's posterior; its prior if it has no coefficients yet.

        Coefficients over another reward set are refused (:class:`RewardSetMismatch`): call
        :meth:`refit` to learn them again from the history against this set. Coefficients
        over the version this set extends with learned features are read as migrated (zero on
        the new ones: :func:`~.app_features.migrate_profile`).
        """
        profile = migrate_profile(profile, self.rewards)
        if not profile.coefficients:
            return prior if prior is not None else self.prior(exclude=profile.user_id)
        if not self._matches(profile):
            raise RewardSetMismatch(
                f"{profile.user_id!r} has coefficients over reward set "
                f"{profile.reward_set_id!r} v{profile.reward_set_version}, not "
                f"{self.rewards.id!r} v{self.rewards.version}; call refit({profile.user_id!r}) "
                "to learn them again from the history"
            )
        return self._to_posterior(profile)

    def fields(self, post: Posterior) -> dict[str, Any]:
        """Profile fields that store a posterior."""
        return {
            "coefficients": dict(zip(self.rewards.names, map(float, post.mean), strict=True)),
            "covariance": np.asarray(post.cov).tolist(),
            "reward_set_id": self.rewards.id,
            "reward_set_version": self.rewards.version,
        }

    def diff(self, prompt: str, chosen: str, rejected: str) -> np.ndarray:
        """``phi(chosen) - phi(rejected)`` under the reward set."""
        f = self.rewards.features(prompt, [chosen, rejected])
        return f[0] - f[1]

    def _history_terms(self, history: Sequence[Preference], ratings: Sequence[Rating]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The rows of :func:`fit_posterior` for a history: feature differences (n, J) and
        the interval each answer asserts (n, 2), preferences first (by their judgement),
        then ratings (plain Bradley-Terry terms, ``(0, inf)``)."""
        diffs = [self.diff(p.prompt, p.chosen, p.rejected) for p in history]
        diffs += [self.rating_term(r) for r in ratings]
        bounds = np.concatenate([judgement_bounds([p.judgement for p in history]),
                                 judgement_bounds(["better"] * len(ratings))])
        return np.array(diffs).reshape(len(diffs), len(self.rewards)), bounds

    # -- operations ----------------------------------------------------------------------

    def record_preference(self, user_id: str, prompt: str, chosen: str, rejected: str, *,
                          reason: str | None = None, source: str = "feedback",
                          create: bool = True, judgement: str = "better") -> Profile:
        """Append a preference and update the posterior, in one transaction (``create``:
        make the profile if there is none, else :class:`ProfileNotFound`). ``judgement``
        grades the answer (see :func:`make_preference`); it is learned as the interval of
        the utility difference it asserts (:func:`~.posterior.judgement_bounds`)."""
        validate_user_id(user_id)
        pref = make_preference(prompt, chosen, rejected, reason=reason, source=source,
                               judgement=judgement)
        d = self.diff(prompt, chosen, rejected)  # outside the write lock: may be slow
        return self._learn(user_id, d, lambda tx: tx.append([pref]), create=create,
                           bounds=judgement_bounds([pref.judgement]))

    def rating_term(self, rating: Rating) -> np.ndarray:
        """A thumbs up/down as one Bradley-Terry term: the answer against a typical answer,
        whose normalised features are zero (see :class:`Rating`)."""
        f = self.rewards.features(rating.prompt, [rating.answer])[0]
        return f if rating.rating == "up" else -f

    def record_rating(self, user_id: str, prompt: str, answer: str,
                      rating: Literal["up", "down"], *, create: bool = True) -> Profile:
        """Store a thumbs up/down on an answer and update the posterior, in one
        transaction."""
        validate_user_id(user_id)
        try:
            entry = Rating(prompt=prompt, answer=answer, rating=rating)
        except ValidationError as exc:
            raise InvalidInput(f"invalid rating: {exc.errors()[0]['msg']}; pass 'up' or "
                               "'down'") from None
        return self._learn(user_id, self.rating_term(entry), lambda tx: tx.rate([entry]),
                           create=create)

    def _learn(self, user_id: str, term: np.ndarray, stage: Callable[[Any], None], *,
               create: bool, bounds: np.ndarray | None = None) -> Profile:
        """Store one observation (``stage`` puts its row into the transaction) and update
        the posterior with its Bradley-Terry ``term`` (``bounds``: the (1, 2) interval of a
        graded answer; None: a plain one), in one transaction; a history stored before a
        reward set was configured is learned from whole instead (refit)."""
        for _ in range(_RACE_RETRIES):
            current = self._current(user_id)
            if current is not None and self._unlearned(current):
                with self.store.transaction(user_id, create=create) as tx:
                    stage(tx)
                try:
                    return self.refit(user_id)
                except ProfileNotFound:  # deleted again since: what landed was removed
                    return tx.result
            prior = None if current is not None and current.coefficients else \
                self.prior(exclude=user_id)  # (prior_for, without reading the profile again)
            try:
                with self.store.transaction(user_id, create=create) as tx:
                    if prior is None and not tx.profile.coefficients:
                        # deleted (and created again empty) since it was read: the prior is
                        # read outside the write transaction, so start over (nothing written)
                        raise _Recreated
                    post = fit_posterior(self.posterior(tx.profile, prior=prior),
                                         term[None, :], bounds=bounds)
                    stage(tx)
                    tx.update(**self.fields(post))
            except _Recreated:
                continue
            return tx.result
        raise StoreBusy(f"user {user_id!r} was deleted and created again by other writers "
                        f"{_RACE_RETRIES} times during this write; nothing was written, retry")

    def _current(self, user_id: str) -> Profile | None:
        try:
            return self.store.get(user_id)
        except LookupError:
            return None

    def _unlearned(self, profile: Profile) -> bool:
        """A history not yet learned against this set: stored before a reward set was
        configured, or learned against the version this set extends (then the next write
        learns the new features from all of it)."""
        if profile.coefficients:
            return migrate_profile(profile, self.rewards) is not profile
        return bool(profile.preference_count or self.store.ratings(profile.user_id))

    def unlearned_history(self, user_id: str) -> bool:
        """Whether the user has a history not learned against this set (:meth:`_unlearned`:
        stored before a reward set was configured, or learned against the version this set
        extends): the next thing learned should refit from all of it."""
        current = self._current(user_id)
        return current is not None and self._unlearned(current)

    def prior_for(self, user_id: str) -> Posterior | None:
        """The population prior if ``user_id`` has no coefficients yet (else None)."""
        current = self._current(user_id)
        return None if current is not None and current.coefficients else \
            self.prior(exclude=user_id)

    def refit(self, user_id: str) -> Profile:
        """Learn the coefficients again from the whole history, against this reward set."""
        return self._refit(user_id, drop=None)

    def delete_preference(self, user_id: str, index: int) -> Profile:
        """Remove the ``index``-th preference (0 = oldest) and refit from the rest."""
        return self._refit(user_id, drop=index)

    def _refit(self, user_id: str, drop: int | None, attempts: int = 5) -> Profile:
        for _ in range(attempts):
            profile = self.store.get(user_id)
            history = self.store.preferences(user_id)
            if drop is not None and not 0 <= drop < len(history):
                raise InvalidInput(f"{user_id!r} has {len(history)} preferences; index {drop} "
                                   "is out of range")
            keep = [p for i, p in enumerate(history) if i != drop]
            diffs, bounds = self._history_terms(keep, self.store.ratings(user_id))
            post = fit_posterior(self.prior(exclude=user_id), diffs, bounds=bounds)
            with self.store.transaction(user_id, create=False) as tx:
                if tx.profile.version != profile.version:
                    continue  # changed meanwhile: nothing is written, read again
                if drop is not None:
                    tx.remove(drop)
                tx.update(**self.fields(post))
            return tx.result
        raise VersionConflict(user_id, profile.version, profile.version + 1)

    def preference_probability(self, user_id: str, prompt: str, a: str, b: str) -> float:
        """The calibrated chance that ``user_id`` prefers ``a`` over ``b`` for ``prompt``."""
        profile = self.store.get(user_id)
        post = self.posterior(profile)
        return float(preference_probability(post, self.diff(prompt, a, b)[None, :])[0])

    def predict_many(self, profile: Profile, prompt: str,
                     pairs: Sequence[tuple[str, str]]) -> list[float]:
        post = self.posterior(profile)
        d = np.array([self.diff(prompt, a, b) for a, b in pairs])
        return preference_probability(post, d).tolist()
