"""Learning the base reward features from many users' preferences (PReF's offline step).

Given text embeddings ``e`` from a frozen encoder and many users' pairwise preferences, fit J
linear heads ``phi(y) = W e(y)`` jointly with every user's coefficients ``c_u``, maximising the
Bradley-Terry likelihood ``P(chosen > rejected | u) = sigmoid(c_u . W (e_chosen - e_rejected))``
with a small L2 penalty (Adam, full batch). Initialisation by SVD: the top-J singular vectors
of the users' mean preference directions.

The learned heads are shared model parameters: deleting a user removes their rows from the
profile store, not their past influence on heads already trained (retrain to remove it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from personalizer._optional import require
from personalizer.errors import InvalidInput

__all__ = ["LearnedHeads", "learn_heads", "learned_reward_set", "learned_trunk_reward_set"]


@dataclass(frozen=True)
class LearnedHeads:
    """Fitted heads ``weight`` (J, D) and the training users' coefficients (U, J)."""

    weight: np.ndarray
    user_coefficients: np.ndarray
    final_loss: float

    def features(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings) @ self.weight.T


def learn_heads(embeddings: np.ndarray, users: np.ndarray, chosen: np.ndarray,
                rejected: np.ndarray, n_heads: int, *, steps: int = 600, lr: float = 0.05,
                l2: float = 1e-4, validation: float = 0.1, seed: int = 0,
                whiten: bool = True, whiten_floor: float = 1e-2,
                fixed: np.ndarray | None = None) -> LearnedHeads:
    """Fit ``n_heads`` linear heads and per-user coefficients from comparisons.

    ``users[i]`` preferred text ``chosen[i]`` over ``rejected[i]`` (indices into the rows of
    ``embeddings``). A ``validation`` share of the comparisons is held out to stop early at
    the best held-out likelihood (the bilinear model overfits otherwise). With ``whiten``
    the heads are learned in whitened embedding coordinates (the returned heads include
    that map and apply to raw embeddings).

    ``fixed`` (comparisons, J0): feature differences of rewards the app already has (the
    attribute scorers), weighed by per-user coefficients learned alongside: the heads then
    learn what those rewards do not already explain, and ``user_coefficients`` is
    ``(U, J0 + n_heads)``, the fixed rewards first.
    """
    torch = require("torch", extra="local", feature="learning reward heads")

    e = np.asarray(embeddings, dtype=np.float32)
    u, c, r = (np.asarray(a, dtype=np.int64) for a in (users, chosen, rejected))
    if e.ndim != 2 or not (u.shape == c.shape == r.shape) or u.ndim != 1 or not u.size:
        raise InvalidInput("need embeddings (N, D) and equal-length users/chosen/rejected")
    if not 1 <= n_heads <= e.shape[1]:
        raise InvalidInput(f"n_heads must be between 1 and {e.shape[1]}")
    if min(c.min(), r.min()) < 0 or max(c.max(), r.max()) >= len(e) or u.min() < 0:
        raise InvalidInput("text or user indices out of range")
    n_users = int(u.max()) + 1
    base = np.zeros((len(u), 0), np.float32) if fixed is None else \
        np.asarray(fixed, dtype=np.float32)
    if base.ndim != 2 or base.shape[0] != len(u) or not np.isfinite(base).all():
        raise InvalidInput(f"fixed must be finite feature differences, one row per "
                           f"comparison: ({len(u)}, J), not {base.shape}")
    j0 = base.shape[1]
    # learn in whitened coordinates, then fold the map back into the heads so they apply to
    # raw embeddings. Encoder embeddings are strongly anisotropic: unwhitened, the SVD start
    # follows the directions where texts vary most (mostly answer noise), not where users'
    # preferences do, and the L2 penalty weighs directions unevenly.
    basis = _whitening(e, whiten_floor) if whiten else np.eye(e.shape[1], dtype=np.float32)
    diffs = (e[c] - e[r]) @ basis
    # SVD initialisation: each user's mean preference direction, stacked
    if n_heads > diffs.shape[1]:
        raise InvalidInput(f"the embeddings span only {diffs.shape[1]} directions; ask for at "
                           "most that many heads")
    means = np.zeros((n_users, diffs.shape[1]), np.float32)
    np.add.at(means, u, diffs)
    means /= np.maximum(np.bincount(u, minlength=n_users), 1)[:, None]
    left, sing, right = np.linalg.svd(means, full_matrices=False)
    root = np.sqrt(sing[:n_heads] + 1e-8)
    w0 = right[:n_heads] * root[:, None]
    c0 = left[:, :n_heads] * root[None, :]
    c0 = np.concatenate([np.zeros((n_users, j0), np.float32), c0], axis=1)
    gen = torch.Generator().manual_seed(seed)
    weight = torch.tensor(w0, requires_grad=True)
    coeffs = torch.tensor(c0 + 0.01 * torch.randn(c0.shape, generator=gen).numpy(),
                          requires_grad=True)
    held = np.random.default_rng(seed).random(len(u)) < validation
    d, ut, bt = torch.tensor(diffs[~held]), torch.tensor(u[~held]), torch.tensor(base[~held])
    dv, uv, bv = torch.tensor(diffs[held]), torch.tensor(u[held]), torch.tensor(base[held])

    def margins(d: Any, b: Any, users: Any) -> Any:
        return (torch.cat([b, d @ weight.T], dim=1) * coeffs[users]).sum(-1)

    opt = torch.optim.Adam([weight, coeffs], lr=lr)
    best = (float("inf"), w0, c0)
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-margins(d, bt, ut)).mean() + l2 * (
            weight.pow(2).sum() + coeffs.pow(2).sum() / n_users)
        loss.backward()
        opt.step()
        if held.any() and (step % 10 == 9 or step == steps - 1):
            with torch.no_grad():
                val = float(torch.nn.functional.softplus(-margins(dv, bv, uv)).mean())
            if val < best[0]:
                best = (val, weight.detach().numpy().copy(), coeffs.detach().numpy().copy())
    if not held.any():
        best = (float(loss.item()), weight.detach().numpy().copy(),
                coeffs.detach().numpy().copy())
    return LearnedHeads((best[1] @ basis.T).astype(np.float32), best[2], best[0])


def _whitening(e: np.ndarray, floor: float) -> np.ndarray:
    """``(D, r)`` map to whitened coordinates over the embeddings' non-degenerate directions;
    ``floor`` (a share of the largest variance) keeps faint directions from being blown up."""
    x = (e - e.mean(0)).astype(np.float64)
    lam, vec = np.linalg.eigh(x.T @ x / max(len(x) - 1, 1))
    top = max(float(lam.max()), 1e-12)
    keep = lam > 1e-6 * top
    return (vec[:, keep] / np.sqrt(lam[keep] + floor * top)).astype(np.float32)


def learned_reward_set(encoder: Any, heads: LearnedHeads, *, id: str, version: str,  # noqa: A002
                       texts: Sequence[tuple[str, str]] | None = None,
                       names: Sequence[str] | None = None) -> Any:
    """The learned heads as a versioned :class:`~personalizer.backends.rewards.RewardSet`
    over ``encoder`` (a ``SentenceEncoder`` or ``CausalLMEncoder``), normalised on ``texts``
    (``(prompt, response)`` pairs) when given. Save its heads with
    ``reward_set.rewards[0].save(path)``; load them with ``EmbeddingHeads.load``."""
    from personalizer.backends.rewards import EmbeddingHeads

    return _reward_set(heads, names, id, version, texts,
                       lambda n, d: EmbeddingHeads(encoder, heads.weight, None, n, d))


def learned_trunk_reward_set(generator: Any, heads: LearnedHeads, *, id: str,  # noqa: A002
                             version: str, texts: Sequence[tuple[str, str]] | None = None,
                             names: Sequence[str] | None = None) -> Any:
    """Heads learned on a causal LM's own states (embeddings from
    :func:`~personalizer.backends.heads.trunk.trunk_states`) as shared-trunk reward heads: a
    versioned reward set of one :class:`~personalizer.backends.heads.trunk.TrunkHeads` that
    ARGS steers with at about one k-token body pass per token. Save the heads with
    ``reward_set.rewards[0].save(path)``, load them with ``TrunkHeads.load(path, generator)``."""
    require("torch", extra="local", feature="trunk reward heads")
    from personalizer.backends.heads.trunk import TrunkHeads

    bias = np.zeros(heads.weight.shape[0], np.float32)
    return _reward_set(heads, names, id, version, texts,
                       lambda n, d: TrunkHeads(generator, heads.weight, bias, n, d))


def _reward_set(heads: LearnedHeads, names: Sequence[str] | None, id: str,  # noqa: A002
                version: str, texts: Sequence[tuple[str, str]] | None,
                build: Callable[[list[str], list[str]], Any]) -> Any:
    """One reward set of the heads ``build(names, descriptions)`` makes, normalised on
    ``texts`` when given."""
    from personalizer.backends.rewards import RewardSet

    j = heads.weight.shape[0]
    names = list(names or (f"learned_{i}" for i in range(j)))
    rs = RewardSet(id, [build(names, [f"learned preference feature {i}" for i in range(j)])],
                   version=version)
    return rs.fit_normalization(texts) if texts else rs
