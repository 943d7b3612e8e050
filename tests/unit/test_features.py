"""Learning base reward features (linear heads) from many simulated users' preferences."""

from __future__ import annotations

import numpy as np
import pytest

from personalizer.errors import InvalidInput
from personalizer.profiles.learning.features import learn_heads
from personalizer.profiles.onboarding.simulate import sample_coefficients


def _simulate(n_texts: int = 2000, dim: int = 32, j: int = 3, users: int = 300,
              per_user: int = 60, seed: int = 0):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n_texts, dim)).astype(np.float32)
    true_w = rng.standard_normal((j, dim)) / np.sqrt(dim)
    phi = emb @ true_w.T
    coeffs = sample_coefficients(users, j, seed=seed + 1) * 3
    who = np.repeat(np.arange(users), per_user)
    a, b = rng.integers(0, n_texts, who.size), rng.integers(0, n_texts, who.size)
    margins = ((phi[a] - phi[b]) * coeffs[who]).sum(1)
    first = rng.random(who.size) < 1 / (1 + np.exp(-margins))
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    train = rng.random(who.size) < 0.75
    return emb, true_w, who, a, b, chosen, rejected, train, margins > 0


def test_learned_heads_recover_the_true_feature_space() -> None:
    """2,000 texts, 300 simulated users: heads learned from their preferences alone come
    within 3 points of the held-out accuracy of the true features (each user's coefficients
    fitted on the same answers). The texts' embeddings are synthetic (32-d) so that the true
    features are exactly linear in them; bench/heads.py measures the MiniLM case."""
    from personalizer.profiles.learning.posterior import Posterior, fit_posterior

    emb, true_w, who, a, b, chosen, rejected, train, truth = _simulate()
    assert len(emb) >= 2000
    heads = learn_heads(emb, who[train], chosen[train], rejected[train], 3, seed=0)
    feats = heads.features(emb)
    pred = ((feats[a] - feats[b]) * heads.user_coefficients[who]).sum(1) > 0
    accuracy = np.mean(pred[~train] == truth[~train])
    true_phi = emb @ true_w.T
    true_acc = []
    for u in range(int(who.max()) + 1):
        tr, te = train & (who == u), ~train & (who == u)
        post = fit_posterior(Posterior.standard(3), true_phi[chosen[tr]] - true_phi[rejected[tr]])
        true_acc.append(np.mean(((true_phi[a[te]] - true_phi[b[te]]) @ post.mean > 0)
                                == truth[te]))
    assert accuracy >= np.mean(true_acc) - 0.03, (accuracy, np.mean(true_acc))
    # the learned heads span the true heads' space: regress true features on learned ones
    fit, *_ = np.linalg.lstsq(feats, true_phi, rcond=None)
    r2 = 1 - ((true_phi - feats @ fit) ** 2).sum(0) / ((true_phi - true_phi.mean(0)) ** 2).sum(0)
    assert r2.min() > 0.8


def test_learn_heads_refuses_bad_input() -> None:
    emb = np.zeros((10, 4), np.float32)
    with pytest.raises(InvalidInput, match="n_heads"):
        learn_heads(emb, np.array([0]), np.array([1]), np.array([2]), 9)
    with pytest.raises(InvalidInput, match="out of range"):
        learn_heads(emb, np.array([0]), np.array([1]), np.array([20]), 2)
    with pytest.raises(InvalidInput, match="equal-length"):
        learn_heads(emb, np.array([0, 1]), np.array([1]), np.array([2]), 2)


def test_heads_on_an_lm_trunk_become_a_versioned_reward_set(tmp_path, store) -> None:  # noqa: ANN001
    from support import tiny

    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import CausalLMEncoder, EmbeddingHeads, RewardSet
    from personalizer.profiles import Onboarding, SimulatedUser
    from personalizer.profiles.learning.features import learned_reward_set
    from personalizer.profiles.onboarding.simulate import synthetic_texts

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())
    encoder = CausalLMEncoder(gen, pooling="mean")
    texts = synthetic_texts(200, seed=3)
    emb = encoder.encode(texts)
    rng = np.random.default_rng(0)
    who = rng.integers(0, 20, 2000)
    a, b = rng.integers(0, 200, 2000), rng.integers(0, 200, 2000)
    longer = np.array([len(texts[i]) > len(texts[j]) for i, j in zip(a, b, strict=True)])
    chosen, rejected = np.where(longer, a, b), np.where(longer, b, a)  # everyone likes length
    heads = learn_heads(emb, who, chosen, rejected, 2, steps=200)
    rs = learned_reward_set(encoder, heads, id="learned-tiny", version="1",
                            texts=[("q", t) for t in texts[:50]])
    assert rs.names == ("learned_0", "learned_1") and rs.version.startswith("1-")
    rs.rewards[0].save(tmp_path / "heads.safetensors")
    again = RewardSet("learned-tiny", [EmbeddingHeads.load(tmp_path / "heads.safetensors",
                                                           encoder)],
                      version="1", normalization=rs.normalization)
    assert again.version == rs.version  # same heads, same normalisation: same version
    np.testing.assert_allclose(again.features("q", texts[:3]), rs.features("q", texts[:3]),
                               rtol=1e-5)
    ob = Onboarding(store, rs, "uses-learned",
                    pool=[{"prompt": "q", "responses": texts[:4]}], min_questions=1)
    user = SimulatedUser(np.ones(2), seed=0)
    while not ob.done:
        q = ob.next_question()
        f = rs.features(q.prompt, list(q.options))
        ob.answer(q.id, user.answer(f[0], f[1]))
    assert ob.profile.reward_set_id == "learned-tiny"


def test_heads_learned_on_the_lm_state_steer_at_trunk_speed(tmp_path) -> None:  # noqa: ANN001
    """End to end on a tiny LM: states from the trunk -> heads learned from simulated users
    -> a reward set of TrunkHeads (saved, loaded) -> ARGS on the fast trunk path raises the
    learned reward."""
    from support import tiny

    from personalizer.backends import Args, LocalGenerator, Steering
    from personalizer.backends.heads.trunk import TrunkHeads, trunk_states
    from personalizer.backends.rewards import RewardSet
    from personalizer.profiles.learning.features import learned_trunk_reward_set
    from personalizer.profiles.onboarding.simulate import synthetic_texts

    gen = LocalGenerator(tiny.gpt2(seed=1), tiny.tokenizer())
    texts = synthetic_texts(300, seed=4)
    emb = trunk_states(gen, "q", texts)
    rng = np.random.default_rng(0)
    who = rng.integers(0, 30, 3000)
    a, b = rng.integers(0, 300, 3000), rng.integers(0, 300, 3000)
    e_rate = np.array([t.count("e") / max(len(t), 1) for t in texts])
    likes_e = e_rate[a] > e_rate[b]  # everyone prefers the text with more e's per letter
    chosen, rejected = np.where(likes_e, a, b), np.where(likes_e, b, a)
    heads = learn_heads(emb, who, chosen, rejected, 2, steps=300)
    rs = learned_trunk_reward_set(gen, heads, id="trunk-learned", version="1",
                                  texts=[("q", t) for t in texts[:100]])
    rs.rewards[0].save(tmp_path / "trunk.safetensors")
    loaded = TrunkHeads.load(tmp_path / "trunk.safetensors", gen)
    again = RewardSet("trunk-learned", [loaded], version="1", normalization=rs.normalization)
    assert again.version == rs.version
    np.testing.assert_allclose(again.features("q", texts[:3]), rs.features("q", texts[:3]),
                               rtol=1e-5)
    # the users' shared direction in the learned feature space
    direction = np.median(heads.user_coefficients, axis=0)
    gen.rewards = again
    steer = Steering(coefficients=dict(zip(again.names, direction.tolist(), strict=True)),
                     reward_set_id=again.id, reward_set_version=again.version, strength=4.0,
                     strategy=Args(candidates=8, whole_answer="off"))
    import torch

    def reward(prompt_ids: list[int], ids: list[int]) -> float:  # of the tokens themselves
        ids = [t for t in ids if t not in gen.eos_ids]
        with torch.no_grad():
            h = gen.model.base_model(torch.tensor([prompt_ids + ids])).last_hidden_state[0, -1]
        raw = h.numpy() @ loaded.weight.T + loaded.bias
        return float(again.normalization.apply(raw[None])[0] @ direction)

    gains = []
    for prompt in ["q", "Tell me about sleep", "Drink water", "Hello there"]:
        pids = gen.prompt_ids(prompt)
        plain = gen.generate(prompt, max_new_tokens=16)
        steered = gen.generate(prompt, max_new_tokens=16, steering=steer,
                               repetition_guard=False)  # the heads alone
        assert steered.steering.path == "args-trunk"  # the fast path is taken
        gains.append(reward(pids, list(steered.token_ids)) - reward(pids, list(plain.token_ids)))
    assert min(gains) > 0.1, gains  # every answer scores higher on the learned reward
    with pytest.raises(InvalidInput, match="trunk-heads file"):
        from safetensors.numpy import save_file

        save_file({"weight": heads.weight}, str(tmp_path / "other.safetensors"))
        TrunkHeads.load(tmp_path / "other.safetensors", gen)
