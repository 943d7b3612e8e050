"""The reward seam and ``RewardSet``: named base rewards, frozen normalisation, user rewards.

A user's reward is linear in the base rewards (PReF): ``r_u(x, y) = sum_j c_uj * phi_j(x, y)``,
where ``phi_j`` is base reward ``j`` normalised by a mean and scale fitted once and then frozen
with the set. A set's ``version`` carries a digest of its reward names and normalisation, so
coefficients fitted against one set can never be silently applied to another.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from personalizer.errors import BackendError, InvalidInput, RewardSetMismatch

__all__ = ["MultiRewardModel", "Normalization", "RewardModel", "RewardSet", "check_scores"]


@runtime_checkable
class RewardModel(Protocol):
    """One base reward: higher means more of what ``description`` says."""

    name: str
    description: str

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """One finite score per response, batched."""
        ...


@runtime_checkable
class MultiRewardModel(Protocol):
    """Several base rewards computed together (a multi-label classifier, a bank of heads)."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...]

    def score_many(self, prompt: str, responses: Sequence[str]) -> list[list[float]]:
        """One row per response, one column per name."""
        ...


def check_scores(values: Iterable[float], who: str, n: int) -> list[float]:
    """Return ``values`` as floats if there are ``n`` finite ones, else :class:`BackendError`."""
    out = [float(v) for v in values]
    if len(out) != n:
        raise BackendError(f"reward {who!r} returned {len(out)} scores for {n} responses")
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise BackendError(f"reward {who!r} returned a non-finite score ({bad[0]}); "
                           "a NaN or inf is an error, not a score")
    return out


class Normalization:
    """Per-reward ``(value - mean) / scale``, frozen once fitted."""

    __slots__ = ("mean", "scale")

    def __init__(self, mean: Sequence[float], scale: Sequence[float]) -> None:
        m, s = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
        if m.shape != s.shape or m.ndim != 1:
            raise InvalidInput("normalization mean and scale must be equal-length vectors")
        if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
            raise InvalidInput("normalization needs finite means and positive finite scales")
        self.mean, self.scale = m, s
        self.mean.setflags(write=False)
        self.scale.setflags(write=False)

    @classmethod
    def identity(cls, n: int) -> Normalization:
        return cls([0.0] * n, [1.0] * n)

    @classmethod
    def fit(cls, raw: np.ndarray) -> Normalization:
        """Mean and standard deviation per column; a constant column gets scale 1."""
        if raw.ndim != 2 or raw.shape[0] < 2:
            raise InvalidInput("fitting a normalization needs at least 2 scored responses")
        std = raw.std(axis=0)
        return cls(raw.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.scale

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}


class RewardSet:
    """A named, versioned bundle of base rewards.

    ``features(prompt, responses)`` is the normalised ``(n_responses, n_rewards)`` matrix;
    ``user_reward(prompt, responses, coefficients, ...)`` is ``features @ c`` in one call.
    Instances are immutable: :meth:`fit_normalization` returns a new set.
    """

    def __init__(self, id: str, rewards: Sequence[RewardModel | MultiRewardModel], *,  # noqa: A002
                 version: str = "1", normalization: Normalization | None = None) -> None:
        if not id or len(id) > 200:
            raise InvalidInput("a reward set needs an id of 1-200 characters")
        self.id = id
        self.rewards = tuple(rewards)
        names: list[str] = []
        descriptions: list[str] = []
        per_token: list[bool] = []
        instructions: list[tuple[str, str] | None] = []
        for r in self.rewards:
            if isinstance(r, MultiRewardModel):
                names += r.names
                descriptions += r.descriptions
                per_token += [bool(getattr(r, "per_token", True))] * len(r.names)
                instructions += [None] * len(r.names)
            elif isinstance(r, RewardModel):
                names.append(r.name)
                descriptions.append(r.description)
                per_token.append(bool(getattr(r, "per_token", True)))
                more, less = getattr(r, "more", None), getattr(r, "less", None)
                instructions.append((more, less) if more and less else None)
            else:
                raise InvalidInput(
                    f"{r!r} is not a reward model: it needs name, description and "
                    "score(prompt, responses) (or names, descriptions and score_many)"
                )
        if not names:
            raise InvalidInput("a reward set needs at least one reward")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInput(f"reward names must be unique in a set; repeated: {dupes}")
        self.names: tuple[str, ...] = tuple(names)
        self.descriptions: tuple[str, ...] = tuple(descriptions)
        # False: a whole-answer attribute, used only when finished answers are compared
        self.per_token: tuple[bool, ...] = tuple(per_token)
        # (ask for more, ask for less) per reward, when it says how to ask a model for it
        self.instructions: tuple[tuple[str, str] | None, ...] = tuple(instructions)
        self.normalization = normalization or Normalization.identity(len(names))
        if len(self.normalization.mean) != len(names):
            raise InvalidInput(f"normalization has {len(self.normalization.mean)} entries "
                               f"for {len(names)} rewards")
        self.base_version = version
        digest = hashlib.sha256(json.dumps(
            {"names": names, **self.normalization.to_dict()}, sort_keys=True
        ).encode()).hexdigest()[:8]
        self.version = f"{version}-{digest}"

    def __repr__(self) -> str:
        return f"RewardSet({self.id!r}, version={self.version!r}, names={list(self.names)})"

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> dict[str, str]:
        """Name -> human description, in order."""
        return dict(zip(self.names, self.descriptions, strict=True))

    def raw_features(self, prompt: str, responses: Sequence[str], *,
                     needed: Sequence[bool] | None = None) -> np.ndarray:
        """Unnormalised ``(n_responses, n_rewards)`` scores, checked finite. With ``needed``
        (one flag per reward name), single rewards that are not needed are skipped (their
        column is 0): decoding asks only for the rewards a user weighs."""
        if isinstance(responses, str):
            raise InvalidInput("responses must be a list of strings, not one string")
        n = len(responses)
        columns: list[np.ndarray] = []
        at = 0
        for r in self.rewards:
            width = len(r.names) if isinstance(r, MultiRewardModel) else 1
            if needed is not None and width == 1 and not needed[at]:
                columns.append(np.zeros((n, 1)))
                at += 1
                continue
            at += width
            if isinstance(r, MultiRewardModel):
                rows = r.score_many(prompt, list(responses))
                block = np.asarray(rows, dtype=np.float64).reshape(n, len(r.names))
                if not np.isfinite(block).all():
                    raise BackendError(f"rewards {list(r.names)} returned a non-finite score; "
                                       "a NaN or inf is an error, not a score")
                columns.append(block)
            else:
                vals = check_scores(r.score(prompt, list(responses)), r.name, n)
                columns.append(np.asarray(vals, dtype=np.float64)[:, None])
        return np.concatenate(columns, axis=1) if n else np.zeros((0, len(self.names)))

    def features(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """Normalised ``(n_responses, n_rewards)`` features ``phi``."""
        return self.normalization.apply(self.raw_features(prompt, responses))

    def fit_normalization(self, samples: Iterable[tuple[str, str]]) -> RewardSet:
        """A new set whose normalisation is fitted on ``(prompt, response)`` samples.

        The new set has a different :attr:`version`: coefficients of the old one do not apply.
        """
        by_prompt: dict[str, list[str]] = {}
        for prompt, response in samples:
            by_prompt.setdefault(prompt, []).append(response)
        raw = [self.raw_features(p, rs) for p, rs in by_prompt.items()]
        if not raw:
            raise InvalidInput("fit_normalization needs (prompt, response) samples")
        return RewardSet(self.id, self.rewards, version=self.base_version,
                         normalization=Normalization.fit(np.concatenate(raw)))

    def coefficient_vector(self, coefficients: Mapping[str, float], *,
                           reward_set_id: str | None, reward_set_version: str | None
                           ) -> np.ndarray:
        """Coefficients in this set's order, after checking they were fitted against it.

        Raises :class:`RewardSetMismatch` for another set, another version or other names.
        """
        if reward_set_id != self.id or reward_set_version != self.version:
            raise RewardSetMismatch(
                f"coefficients were fitted against reward set {reward_set_id!r} version "
                f"{reward_set_version!r}, not {self.id!r} version {self.version!r}; "
                "re-fit the user's coefficients against this set (or load the set they used)"
            )
        missing = [n for n in self.names if n not in coefficients]
        extra = [n for n in coefficients if n not in self.names]
        if missing or extra:
            raise RewardSetMismatch(
                f"coefficients do not match the rewards of {self.id!r}: missing {missing}, "
                f"unknown {extra}"
            )
        vec = np.array([float(coefficients[n]) for n in self.names])
        if not np.isfinite(vec).all():
            raise InvalidInput("coefficients must be finite numbers")
        return vec

    def token_scorer(self, handle: object) -> object | None:
        """A fast token scorer for decoding with ``handle``'s model, from the rewards' own
        ``token_scorer(handle)`` hooks (all of them must offer one; their features are
        concatenated in this set's order), or None: then candidate texts are scored."""
        parts = []
        for r in self.rewards:
            hook = getattr(r, "token_scorer", None)
            scorer = hook(handle) if callable(hook) else None
            if scorer is None:
                return None
            parts.append(scorer)
        if len(parts) == 1:
            return parts[0]
        from personalizer.backends.decoding.scorers import CombinedScorer

        return CombinedScorer(parts)

    def raw_weights(self, coefficients: np.ndarray) -> tuple[np.ndarray, float]:
        """A user's reward as weights on the raw (unnormalised) base rewards plus a constant:
        ``c . (raw - mean) / scale == weights . raw + offset``."""
        norm = self.normalization
        return coefficients / norm.scale, -float((coefficients * norm.mean / norm.scale).sum())

    def user_reward(self, prompt: str, responses: Sequence[str],
                    coefficients: Mapping[str, float], *, reward_set_id: str | None,
                    reward_set_version: str | None) -> list[float]:
        """``coefficients . features`` for each response, in one call."""
        c = self.coefficient_vector(coefficients, reward_set_id=reward_set_id,
                                    reward_set_version=reward_set_version)
        return (self.features(prompt, responses) @ c).tolist()
