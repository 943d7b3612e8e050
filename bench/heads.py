"""Learning base features from many users (PReF's offline step): held-out accuracy of heads
learned on MiniLM embeddings against the true features, on the same simulated users.

    .venv/bin/python bench/heads.py [--texts 2400] [--users 200 1000 2000] [--per-user 60]
                                    [--encoders minilm smollm2]

Texts are recombined from the question bank (``synthetic_texts``), embedded with the shipped
MiniLM. Two kinds of truth: ``attributes`` (users weigh the nine attribute scorers) and
``projected`` (the part of each attribute that is linear in the MiniLM embedding, so the best
heads can match it exactly). Users answer with ~85% agreement; 75% of each user's answers
train, the rest measure accuracy against the noise-free preference. "true" fits each user's
coefficients on the true features with the same training answers. Encoders: the shipped
MiniLM sentence encoder, and SmolLM2's own last hidden state at each answer's last token with
a chat prompt before it (what shared-trunk heads read while decoding); the SmolLM2 heads
learned from the largest user count are saved as a trunk reward set to
``bench/out/smollm2_trunk_heads.safetensors``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from personalizer.backends.rewards import SentenceEncoder
from personalizer.profiles import default_reward_set
from personalizer.profiles.learning.features import learn_heads
from personalizer.profiles.learning.posterior import Posterior, fit_posterior
from personalizer.profiles.onboarding.simulate import (
    calibrate_beta,
    sample_coefficients,
    synthetic_texts,
)

PROMPT = "Answer my question."


def evaluate(phi: np.ndarray, emb: np.ndarray, users: int, per_user: int, seed: int = 2,
             ) -> tuple[float, float, Any]:
    j = phi.shape[1]
    coeffs = sample_coefficients(users, j, seed=1)
    rng = np.random.default_rng(seed)
    who = np.repeat(np.arange(users), per_user)
    a = rng.integers(0, len(phi), who.size)
    b = rng.integers(0, len(phi), who.size)
    keep = a != b
    who, a, b = who[keep], a[keep], b[keep]
    margins = ((phi[a] - phi[b]) * coeffs[who]).sum(1)
    beta = calibrate_beta(coeffs, (phi[a] - phi[b])[:3000], 0.85)
    first = rng.random(who.size) < 1 / (1 + np.exp(-beta * margins))
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    train = rng.random(who.size) < 0.75
    truth = margins > 0
    heads = learn_heads(emb, who[train], chosen[train], rejected[train], j, l2=1e-3)
    feats = heads.features(emb)
    pred = ((feats[a] - feats[b]) * heads.user_coefficients[who]).sum(1) > 0
    learned = float(np.mean(pred[~train] == truth[~train]))
    true_acc = []
    for u in range(users):
        tr, te = train & (who == u), ~train & (who == u)
        post = fit_posterior(Posterior.standard(j), phi[chosen[tr]] - phi[rejected[tr]])
        true_acc.append(np.mean(((phi[a[te]] - phi[b[te]]) @ post.mean > 0) == truth[te]))
    return learned, float(np.mean(true_acc)), heads


def embed(encoder: str, texts: list[str]) -> tuple[np.ndarray, Any]:
    if encoder == "minilm":
        return SentenceEncoder(max_length=128, batch_size=128).encode(texts), None
    from personalizer.backends import LocalGenerator
    from personalizer.backends.heads.trunk import trunk_states

    gen = LocalGenerator.smollm2()
    return trunk_states(gen, PROMPT, texts, batch_size=32), gen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2400)
    ap.add_argument("--users", type=int, nargs="+", default=[200, 1000, 2000])
    ap.add_argument("--per-user", type=int, default=60)
    ap.add_argument("--encoders", nargs="+", choices=["minilm", "smollm2"],
                    default=["minilm", "smollm2"])
    args = ap.parse_args()
    texts = synthetic_texts(args.texts, seed=0)
    phi_raw = default_reward_set().features(PROMPT, texts)
    print(f"{'encoder':<9}{'truth':<12}{'users':>7}{'learned heads':>15}{'true features':>15}"
          f"{'gap':>7}")
    for encoder in args.encoders:
        t = time.perf_counter()
        emb, gen = embed(encoder, texts)
        print(f"({len(texts)} texts embedded with {encoder} in {time.perf_counter() - t:.0f}s)")
        w = np.linalg.solve(emb.T @ emb + 1e-2 * np.eye(emb.shape[1]), emb.T @ phi_raw)
        projected = emb @ w
        projected = (projected - projected.mean(0)) / projected.std(0)
        heads = None
        for name, phi in (("attributes", phi_raw), ("projected", projected)):
            for users in args.users:
                learned, true_acc, heads_ = evaluate(phi, emb, users, args.per_user)
                if name == "attributes":
                    heads = heads_
                print(f"{encoder:<9}{name:<12}{users:>7}{learned:>15.3f}{true_acc:>15.3f}"
                      f"{100 * (true_acc - learned):>6.1f}p")
        if gen is not None and heads is not None:
            from personalizer.profiles.learning.features import learned_trunk_reward_set

            rs = learned_trunk_reward_set(gen, heads, id="smollm2-learned", version="1",
                                          texts=[(PROMPT, x) for x in texts[:200]])
            out = Path("bench/out/smollm2_trunk_heads.safetensors")
            out.parent.mkdir(parents=True, exist_ok=True)
            rs.rewards[0].save(out)
            print(f"saved {rs.id} {rs.version} ({len(rs.names)} trunk heads) to {out}")


if __name__ == "__main__":
    main()
