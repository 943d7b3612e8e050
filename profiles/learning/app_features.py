"""Features an application learns from its own users: PReF's offline step as a product path.

The attribute scorers name the tastes most people have (length, lists, warmth, ...). An app
whose users share a taste the attributes have no word for can learn extra features from its
own preference history: linear heads on a frozen sentence encoder (MiniLM by default), fitted
jointly with every user's coefficients *next to* the attributes, so that they learn only what
the attributes do not already explain (:func:`~.features.learn_heads` with ``fixed``).

>>> report = learn_features(store, rewards, "features.safetensors")   # doctest: +SKIP
>>> report.accuracy_base, report.accuracy_learned                      # doctest: +SKIP
>>> rewards = extended_reward_set("features.safetensors")              # doctest: +SKIP

The extended set is a new version of the same reward set (``extends`` names the version it
grew from). A profile fitted against that version is read as migrated (:func:`migrate_profile`:
zero coefficients on the new features, the population's uncertainty about them), and its next
write learns everything again from its whole history. A newcomer starts from the population
prior the file carries (fitted on the users the features were learned from) until the app has
enough users of the new version for its own.

The heads are shared parameters learned from many people: deleting a person removes their
rows, not their past influence on a heads file already written (learn the features again).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from personalizer._optional import require
from personalizer.backends.rewards.base import Normalization, RewardSet
from personalizer.errors import InvalidInput

from ..models import Profile
from ..training_sets import TIES, stored_histories
from .features import learn_heads
from .posterior import Posterior, fit_posterior, preference_probability
from .priors import POPULATION_FLOOR, population_prior

__all__ = ["ExtendedRewardSet", "LearnedFeatures", "extended_reward_set", "learn_features",
           "migratable", "migrate_profile"]

# The population prior a features file carries needs as many people as the app's own does.
MIN_USERS = 20


class ExtendedRewardSet(RewardSet):
    """A reward set extended with learned features: ``extends`` is the ``(id, version)`` it
    grew from, ``base_names`` its rewards, ``prior`` the population prior of the people the
    features were learned from."""

    def __init__(self, base: Any, heads: Any, normalization: Normalization, digest: str,
                 prior: Posterior) -> None:
        super().__init__(base.id, [*base.rewards, heads],
                         version=f"{base.base_version}+learned.{digest}",
                         normalization=normalization)
        self.extends: tuple[str, str] = (base.id, base.version)
        self.base_names: tuple[str, ...] = tuple(base.names)
        self.family = f"{base.base_version}+learned."  # every learned version of the base
        self.prior = prior


class LearnedFeatures(BaseModel):
    """What :func:`learn_features` wrote and what it measured: held-out choices of the app's
    own users (every fifth of each person's comparisons, features learned without them)
    predicted from the rest with the reward set alone and with the learned features."""

    model_config = ConfigDict(frozen=True)

    path: str
    features: tuple[str, ...]
    reward_set_version: str
    users: int
    comparisons: int
    held_out: int
    accuracy_base: float
    accuracy_learned: float


class _History:
    """Every person's ordered comparisons, as indices into unique texts."""

    def __init__(self, store: Any, min_comparisons: int) -> None:
        index: dict[tuple[str, str], int] = {}
        users: list[int] = []
        chosen: list[int] = []
        rejected: list[int] = []
        self.n_users = 0
        for _, history in stored_histories(store):
            ordered = [p for p in history if p.judgement not in TIES]
            if len(ordered) < min_comparisons:
                continue
            u, self.n_users = self.n_users, self.n_users + 1
            for p in ordered:
                for text in (p.chosen, p.rejected):
                    index.setdefault((p.prompt, text), len(index))
                users.append(u)
                chosen.append(index[(p.prompt, p.chosen)])
                rejected.append(index[(p.prompt, p.rejected)])
        self.texts = list(index)
        self.users, self.chosen, self.rejected = (np.array(a, dtype=np.int64) for a in
                                                  (users, chosen, rejected))


def learn_features(store: Any, rewards: Any, out: str | os.PathLike[str], *,
                   n_features: int = 1, encoder: Any = None, min_users: int = 50,
                   min_comparisons: int = 5, l2: float = 1e-2, steps: int = 300,
                   seed: int = 0) -> LearnedFeatures:
    """Learn ``n_features`` features from every stored person's choices, next to
    ``rewards`` (the set their profiles use), and write them to ``out`` (safetensors).

    People with fewer than ``min_comparisons`` (5 or more: every fifth is held out to
    measure) ordered choices (ties carry no order) are left out; fewer than ``min_users``
    (20 or more) such people is an :class:`InvalidInput` (features learned from a handful of
    people describe those people, and the population prior the file carries needs 20).
    ``encoder`` embeds answers (default: the MiniLM ``SentenceEncoder``, the ``local``
    extra).
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or \
            not 1 <= n_features <= 8:
        raise InvalidInput("n_features must be a whole number from 1 to 8: a few features "
                           "learned from the app's users, next to the reward set")
    if not isinstance(out, (str, os.PathLike)) or not Path(out).name:
        raise InvalidInput(f"out must be the path of the file to write, not {out!r:.60}")
    if encoder is not None and not (isinstance(getattr(encoder, "dim", None), int)
                                    and callable(getattr(encoder, "encode", None))):
        raise InvalidInput("encoder must embed texts: an object with dim and encode(texts), "
                           "such as SentenceEncoder() (the default) or CausalLMEncoder(gen)")
    if isinstance(min_users, bool) or not isinstance(min_users, int) or \
            min_users < MIN_USERS:
        raise InvalidInput(f"min_users must be a whole number >= {MIN_USERS}: the population "
                           "prior a features file carries needs as many people as the app's own")
    if isinstance(min_comparisons, bool) or not isinstance(min_comparisons, int) or \
            min_comparisons < 5:
        raise InvalidInput("min_comparisons must be a whole number >= 5: every fifth choice "
                           "of a person is held out to measure the features")
    target = Path(out)
    if not target.parent.is_dir():
        raise InvalidInput(f"cannot write {str(target)!r:.200}: its folder does not exist")
    data = _History(store, min_comparisons)
    if data.n_users < min_users:
        raise InvalidInput(
            f"learning features needs at least {min_users} people with {min_comparisons} "
            f"or more choices each; the store has {data.n_users}. Let the app collect more "
            f"preferences first (or lower min_users, {MIN_USERS} at least, knowing the features "
            "then describe those few people)")
    if encoder is None:
        from personalizer.backends.rewards import SentenceEncoder

        encoder = SentenceEncoder()
    base = _base_features(rewards, data.texts)
    emb = encoder.encode([text for _, text in data.texts])
    held = _held_out(data.users, seed)
    fit = {"n_features": n_features, "l2": l2, "steps": steps, "seed": seed}
    heads = _fit(emb, base, data, ~held, **fit)
    acc_base, acc_learned = _accuracy(emb, base, data, held, heads)
    heads = _fit(emb, base, data, np.ones(len(held), bool), **fit)
    names = [f"learned_{i + 1}" for i in range(n_features)]
    extended = _write(out, rewards, encoder, heads, emb, base, data, names)
    return LearnedFeatures(
        path=str(out), features=tuple(names), reward_set_version=extended.version,
        users=data.n_users, comparisons=len(data.users), held_out=int(held.sum()),
        accuracy_base=acc_base, accuracy_learned=acc_learned)


def _base_features(rewards: Any, texts: Sequence[tuple[str, str]]) -> np.ndarray:
    """The reward set's normalised features of every text, one batch per prompt."""
    out = np.zeros((len(texts), len(rewards)))
    by_prompt: dict[str, list[int]] = {}
    for i, (prompt, _) in enumerate(texts):
        by_prompt.setdefault(prompt, []).append(i)
    for prompt, rows in by_prompt.items():
        out[rows] = rewards.features(prompt, [texts[i][1] for i in rows])
    return out


def _held_out(users: np.ndarray, seed: int) -> np.ndarray:
    """Every fifth comparison of each person (in a seeded order) held out."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(users), bool)
    for u in np.unique(users):
        rows = rng.permutation(np.flatnonzero(users == u))
        held[rows[4::5]] = True
    return held


def _fit(emb: np.ndarray, base: np.ndarray, data: _History, rows: np.ndarray, *,
         n_features: int, l2: float, steps: int, seed: int) -> np.ndarray:
    """Heads ``(n_features, D)`` learned from the comparisons in ``rows``."""
    c, r, u = data.chosen[rows], data.rejected[rows], data.users[rows]
    return learn_heads(emb, u, c, r, n_features, fixed=base[c] - base[r], l2=l2,
                       steps=steps, seed=seed, whiten=False).weight


def _extended(emb: np.ndarray, base: np.ndarray, heads: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every text's features over the extended set (the heads' outputs normalised over
    these texts), and that normalisation's mean and scale."""
    raw = emb @ heads.T
    std = raw.std(axis=0)
    mean, scale = raw.mean(axis=0), np.where(std > 1e-12, std, 1.0)
    return np.concatenate([base, (raw - mean) / scale], axis=1), mean, scale


def _posteriors(feats: np.ndarray, data: _History, rows: np.ndarray) -> list[Posterior]:
    """Each person's posterior from ``N(0, I)`` and their comparisons in ``rows``."""
    d = feats[data.chosen] - feats[data.rejected]
    prior = Posterior.standard(feats.shape[1])
    return [fit_posterior(prior, d[rows & (data.users == u)]) for u in range(data.n_users)]


def _accuracy(emb: np.ndarray, base: np.ndarray, data: _History, held: np.ndarray,
              heads: np.ndarray) -> tuple[float, float]:
    """Held-out accuracy with the reward set alone and with the learned features: each
    person's posterior from the population prior (of everyone's training comparisons)."""
    results = []
    for feats in (base, _extended(emb, base, heads)[0]):
        prior = population_prior(_posteriors(feats, data, ~held), min_users=1,
                                 shrink=POPULATION_FLOOR)
        d = feats[data.chosen] - feats[data.rejected]
        right = []
        for u in range(data.n_users):
            test = held & (data.users == u)
            if test.any():
                post = fit_posterior(prior, d[~held & (data.users == u)])
                right += list(preference_probability(post, d[test]) > 0.5)
        results.append(float(np.mean(right)))
    return results[0], results[1]


def _write(out: str | os.PathLike[str], rewards: Any, encoder: Any, heads: np.ndarray,
           emb: np.ndarray, base: np.ndarray, data: _History, names: list[str]) -> Any:
    """Write the heads, their normalisation and the population prior; the extended set."""
    st = require("safetensors.numpy", extra="local", feature="saving learned features")
    feats, mean, scale = _extended(emb, base, heads)
    prior = population_prior(_posteriors(feats, data, np.ones(len(data.users), bool)),
                             min_users=1, shrink=POPULATION_FLOOR)
    meta = {"names": json.dumps(names), "base_id": rewards.id,
            "base_version": rewards.version, "encoder_dim": str(encoder.dim),
            "mean": json.dumps(mean.tolist()), "scale": json.dumps(scale.tolist()),
            "prior_mean": json.dumps(prior.mean.tolist()),
            "prior_cov": json.dumps(np.asarray(prior.cov).tolist()),
            "users": str(data.n_users)}
    target, tmp = Path(out), None
    try:  # whole or not at all: a server loading the file never reads half of it
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".features.", suffix=".tmp")
        os.close(fd)
        st.save_file({"weight": heads.astype(np.float32)}, tmp, metadata=meta)
        os.replace(tmp, target)
    except OSError as exc:
        raise InvalidInput(f"cannot write {str(target)!r:.200}: {exc.strerror}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return extended_reward_set(target, rewards, encoder=encoder)


def extended_reward_set(path: str | os.PathLike[str], rewards: Any = None, *,
                        encoder: Any = None) -> Any:
    """``rewards`` (default: the built-in attributes) plus the features learned into
    ``path`` by :func:`learn_features`: a new version of the same set, whose ``extends`` is
    the version it grew from and whose ``prior`` is the population prior of the people the
    features were learned from."""
    from personalizer.backends.rewards import EmbeddingHeads, SentenceEncoder

    from ..rewards import default_reward_set

    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInput(f"path must be a learned-features file's path, not "
                           f"{type(path).__name__}")
    if rewards is not None and not isinstance(rewards, RewardSet):
        raise InvalidInput(f"rewards must be the RewardSet the features were learned next to "
                           f"(default: the built-in attributes), not {type(rewards).__name__}")
    st = require("safetensors", extra="local", feature="loading learned features")
    rewards = default_reward_set() if rewards is None else rewards
    where = f"{str(path)!r:.200}"
    if not os.path.isfile(path):
        raise InvalidInput(f"no learned-features file at {where}; write one with "
                           "Personalizer.learn_features or `personalizer features learn`")
    try:
        with st.safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            weight = f.get_tensor("weight")
        names = json.loads(meta["names"])
        base = (meta["base_id"], meta["base_version"])
        mean, scale = json.loads(meta["mean"]), json.loads(meta["scale"])
        prior = Posterior(np.array(json.loads(meta["prior_mean"])),
                          np.array(json.loads(meta["prior_cov"])))
    except KeyError as exc:
        raise InvalidInput(f"{where} is not a learned-features file of personalizer: it has "
                           f"no {exc}") from None
    except (OSError, ValueError, st.SafetensorError) as exc:
        raise InvalidInput(f"{where} is not a learned-features file of personalizer: "
                           f"{type(exc).__name__}") from None
    if base != (rewards.id, rewards.version):
        raise InvalidInput(
            f"{where} extends reward set {base[0]!r} version {base[1]!r}, not "
            f"{rewards.id!r} version {rewards.version!r}; learn the features again against "
            "this set")
    n = len(rewards) + len(names)
    if weight.ndim != 2 or weight.shape[0] != len(names) or len(mean) != len(names) or \
            len(scale) != len(names) or prior.dim != n:
        raise InvalidInput(f"{where} is damaged: its heads, normalisation and prior do not "
                           "agree; learn the features again")
    encoder = SentenceEncoder() if encoder is None else encoder
    if weight.shape[1] != encoder.dim:
        raise InvalidInput(f"{where} was learned on a {weight.shape[1]}-dimensional encoder, "
                           f"this one has {encoder.dim}: pass the encoder it was learned with "
                           "(encoder=...)")
    heads = EmbeddingHeads(encoder, weight, None, names,
                           [f"a preference learned from this app's users ({n})"
                            for n in names])
    digest = hashlib.sha256(weight.tobytes()).hexdigest()[:8]
    norm = Normalization([*rewards.normalization.mean, *mean],
                         [*rewards.normalization.scale, *scale])
    return ExtendedRewardSet(rewards, heads, norm, digest, prior)


def migratable(rewards: Any, reward_set_id: str | None, version: str | None) -> bool:
    """Whether coefficients fitted against ``(reward_set_id, version)`` migrate to
    ``rewards``: it extends that version, or an earlier learned extension of the same base
    (features learned again)."""
    if not isinstance(rewards, ExtendedRewardSet) or version is None or \
            version == rewards.version:
        return False
    return (reward_set_id, version) == rewards.extends or (
        reward_set_id == rewards.id and version.startswith(rewards.family))


def migrate_profile(profile: Profile, rewards: Any) -> Profile:
    """``profile`` as read against ``rewards`` when its coefficients were fitted against the
    version ``rewards`` extends: zero on the new features, with the population's variance
    (not stored: the next write learns everything again from the history). Any other
    profile is returned as it is."""
    if not profile.coefficients or not migratable(rewards, profile.reward_set_id,
                                                  profile.reward_set_version):
        return profile
    j0, names = len(rewards.base_names), list(profile.coefficients)
    if names[:j0] != list(rewards.base_names):
        return profile  # not this base's rewards after all: refused as another set
    n = len(rewards)
    prior_cov = np.asarray(rewards.prior.cov)
    cov = np.zeros((n, n))
    cov[j0:, j0:] = prior_cov[j0:, j0:]
    old = np.asarray(profile.covariance) if profile.covariance is not None else None
    cov[:j0, :j0] = old[:j0, :j0] if old is not None and old.shape[0] >= j0 else \
        prior_cov[:j0, :j0]
    return profile.model_copy(update={
        "coefficients": {**{k: float(profile.coefficients[k]) for k in rewards.base_names},
                         **{k: 0.0 for k in rewards.names[j0:]}},
        "covariance": cov.tolist(), "reward_set_id": rewards.id,
        "reward_set_version": rewards.version})
