"""Token-level base rewards on a tiny trained model: distilled from a lexical reward set, folded
into the decoding loop per row, saved and loaded with their reward set and model."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support import tiny

from personalizer.backends import (
    LocalGenerator,
    ProxyTuning,
    Steering,
    TokenHeads,
    TokenRewards,
    distill_token_heads,
)
from personalizer.backends.heads.token import (
    TOKEN_HEADS_FORMAT,
    HiddenSteer,
    model_fingerprint,
    shift_hidden,
)
from personalizer.backends.heads.training import sequence_scores
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput

LENGTH = AttributeScorer("length", "longer answers", lambda t: math.log1p(len(t.split())),
                         per_token=False)
EXCLAIM = AttributeScorer("exclaim", "more exclamation marks", lambda t: float(t.count("!")))
REWARDS = RewardSet("lexical", [LENGTH, EXCLAIM])
TOPICS = ["sleep", "water", "food", "rest", "dogs", "cats", "news", "work", "music", "books",
          "rain", "sun", "tea", "bikes", "cars", "art"]
TRAIN = [f"Tell me about {w}" for w in TOPICS[:10]]
HELD_OUT = [f"Tell me about {w}" for w in TOPICS[10:]]


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)


@pytest.fixture(scope="module")
def heads(gen: LocalGenerator) -> TokenHeads:
    samples = [(p, gen.generate(p, max_new_tokens=60, do_sample=True, seed=s).text)
               for p in TRAIN for s in range(8)]
    return distill_token_heads(gen, REWARDS, samples, steps=300, lr=0.01)


def steering(coefficients: dict[str, float], strength: float = 1.0, **kw: Any) -> Steering:
    return Steering(coefficients=dict.fromkeys(REWARDS.names, 0.0) | coefficients,
                    reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strength=strength,
                    strategy=TokenRewards(**kw))


def mean_reward(gen: LocalGenerator, s: Steering | None, name: str) -> float:
    j = REWARDS.names.index(name)
    return float(np.mean([REWARDS.raw_features(p, [gen.generate(
        p, max_new_tokens=60, steering=s).text])[0][j] for p in HELD_OUT]))


def test_distilled_heads_raise_their_reward_on_held_out_prompts(gen: LocalGenerator,
                                                                heads: TokenHeads) -> None:
    g = gen.with_token_heads(heads)
    plain_length, plain_exclaim = mean_reward(g, None, "length"), mean_reward(g, None, "exclaim")
    assert mean_reward(g, steering({"length": 1.0}), "length") > plain_length
    assert mean_reward(g, steering({"length": -1.0}), "length") < plain_length
    assert mean_reward(g, steering({"exclaim": 1.0}), "exclaim") > plain_exclaim
    out = g.generate(HELD_OUT[0], max_new_tokens=20, steering=steering({"length": 1.0}))
    assert (out.steering.path, out.steering.levers) == ("token-rewards",
                                                         ("token_rewards", "no_repeat"))
    assert gen.token_heads is None  # with_token_heads leaves the generator as it was


def test_sequence_scores_rank_held_out_answers_like_the_reward(gen: LocalGenerator,
                                                               heads: TokenHeads) -> None:
    scores, features = [], []
    for p in HELD_OUT:
        answers = list(dict.fromkeys(gen.generate(p, max_new_tokens=60, do_sample=True,
                                                  seed=s).text for s in range(8)))
        sc = sequence_scores(gen, heads, p, answers).numpy()
        f = np.asarray(REWARDS.features(p, answers))
        scores.append(sc - sc.mean(0))
        features.append(f - f.mean(0))
    sc, f = np.concatenate(scores), np.concatenate(features)
    assert sc.shape[1] == 2
    for j in range(2):  # measured 0.37 (length) and 0.80 (exclamation marks)
        assert np.corrcoef(sc[:, j], f[:, j])[0, 1] > 0.2
    zero = TokenHeads(down=heads.down, up=torch.zeros_like(heads.up),
                      bias=torch.zeros_like(heads.bias), names=heads.names,
                      reward_set_id=heads.reward_set_id,
                      reward_set_version=heads.reward_set_version, model=heads.model)
    assert torch.equal(sequence_scores(gen, zero, HELD_OUT[0], ["Hello! How are you?"]),
                       torch.zeros(1, 2))


def test_strength_0_or_no_coefficients_is_plain_decoding(gen: LocalGenerator,
                                                         heads: TokenHeads) -> None:
    g = gen.with_token_heads(heads)
    for p in HELD_OUT[:3]:
        plain = g.generate(p, max_new_tokens=30)
        for s in (steering({"length": 1.0}, strength=0.0), steering({})):
            out = g.generate(p, max_new_tokens=30, steering=s)
            assert out.text == plain.text and out.steering.path == "plain"
        sampled = g.generate(p, max_new_tokens=30, seed=3, do_sample=True)
        assert g.generate(p, max_new_tokens=30, seed=3, do_sample=True,
                          steering=steering({"length": 1.0}, strength=0.0)).text == sampled.text
    batch = g.generate_batch([(p, steering({"length": 1.0}, strength=0.0)) for p in HELD_OUT],
                             max_new_tokens=30)
    assert [b.text for b in batch] == [g.generate(p, max_new_tokens=30).text for p in HELD_OUT]


def test_a_batch_of_users_equals_each_decoded_alone(gen: LocalGenerator,
                                                    heads: TokenHeads) -> None:
    g = gen.with_token_heads(heads)
    users = [steering({"length": 1.0}), steering({"length": -1.0}),
             steering({"exclaim": 1.0}, strength=2.0), None,
             steering({"length": 0.5, "exclaim": -0.5})]
    requests = [(HELD_OUT[i % len(HELD_OUT)], s) for i, s in enumerate(users)]
    batch = g.generate_batch(requests, max_new_tokens=40)
    alone = [g.generate(p, max_new_tokens=40, steering=s) for p, s in requests]
    assert [b.text for b in batch] == [a.text for a in alone]
    assert len({a.text for a in alone}) > 2  # the users' answers differ
    streamed = "".join(g.stream(requests[0][0], max_new_tokens=40, steering=users[0]))
    assert streamed == alone[0].text


def proxy_pair(alpha: float) -> ProxyTuning:
    """A tiny expert/antiexpert pair (two untrained models)."""
    return ProxyTuning(LocalGenerator(tiny.gpt2(seed=5), tiny.tokenizer(), quality=None),
                       LocalGenerator(tiny.gpt2(seed=6), tiny.tokenizer(), quality=None),
                       alpha=alpha)


def test_combined_with_proxy_tuning(gen: LocalGenerator, heads: TokenHeads) -> None:
    g = gen.with_token_heads(heads)
    proxy = proxy_pair(alpha=1.0)
    p = HELD_OUT[0]
    proxied = g.generate(p, max_new_tokens=30, proxy=proxy)
    same = g.generate(p, max_new_tokens=30, proxy=proxy,
                      steering=steering({"length": 1.0}, strength=0.0))
    assert same.text == proxied.text
    out = g.generate(p, max_new_tokens=30, proxy=proxy,
                     steering=steering({"length": -1.0}, strength=4.0))
    assert out.steering.levers == ("proxy", "token_rewards", "no_repeat")

    def words(s: Steering | None) -> float:
        return float(np.mean([len(g.generate(q, max_new_tokens=30, proxy=proxy,
                                             steering=s).text.split()) for q in HELD_OUT]))

    assert words(steering({"length": -1.0}, strength=4.0)) < words(None)


class AfterWords:
    """A quality model for tests: an answer says something once it has ``n`` words."""

    name, description, floor = "words", "number of words", 1.0

    def __init__(self, n: int) -> None:
        self.n = n

    def score(self, prompt: str, responses: list[str]) -> list[float]:
        return [float(len(r.split()) >= self.n) for r in responses]


def test_the_reward_may_not_end_an_answer_below_the_quality_floor(heads: TokenHeads) -> None:
    g = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=REWARDS,
                       quality=AfterWords(6), token_heads=heads)
    terse = steering({"length": -1.0}, strength=8.0)  # ends at once without a floor
    free = g.generate(HELD_OUT[0], max_new_tokens=60, steering=steering(
        {"length": -1.0}, strength=8.0, floor=False))
    kept = g.generate(HELD_OUT[0], max_new_tokens=60, steering=terse)
    plain = g.generate(HELD_OUT[0], max_new_tokens=60)
    assert len(free.text.split()) < 6 <= len(kept.text.split())
    assert len(kept.text.split()) < len(plain.text.split())
    q = kept.steering.quality
    assert (q.name, q.floor, q.weight, q.score) == ("words", 1.0, 0.0, 1.0)
    assert free.steering.quality is None


def test_save_and_load_round_trip_refusing_another_model_or_reward_set(
        tmp_path: Path, gen: LocalGenerator, heads: TokenHeads) -> None:
    path = tmp_path / "heads.safetensors"
    heads.save(path)
    back = TokenHeads.load(path, gen)
    for name in ("down", "up", "bias"):
        assert torch.equal(getattr(back, name), getattr(heads, name))
    assert (back.names, back.reward_set_id, back.reward_set_version, back.model) == (
        heads.names, heads.reward_set_id, heads.reward_set_version, heads.model)
    other_model = LocalGenerator(tiny.gpt2(seed=9), tiny.tokenizer(), rewards=REWARDS,
                                 quality=None)
    with pytest.raises(InvalidInput, match="another model"):
        TokenHeads.load(path, other_model)
    with pytest.raises(InvalidInput, match="another model"):
        other_model.with_token_heads(heads)
    other_rewards = RewardSet("lexical", [LENGTH])
    with pytest.raises(InvalidInput, match="distilled from reward set"):
        TokenHeads.load(path, gen.with_rewards(other_rewards))
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InvalidInput, match="not a personalizer token-heads file"):
        TokenHeads.load(tmp_path / "junk.safetensors", gen)
    from safetensors.torch import save_file

    for old in ("0", "1"):  # "1": fingerprints of the model's own dtype, before bfloat16
        save_file({"down": heads.down, "up": heads.up, "bias": heads.bias},
                  str(tmp_path / "old.safetensors"),
                  metadata={"kind": "token-heads", "format": old, "names": "[]"})
        with pytest.raises(InvalidInput, match=f"has token-heads format '{old}'; this "
                           f"version reads '{TOKEN_HEADS_FORMAT}'") as err:
            TokenHeads.load(tmp_path / "old.safetensors", gen)
        assert "not a personalizer token-heads file" not in str(err.value)
    save_file({"down": heads.down, "up": heads.up[:1], "bias": heads.bias},
              str(tmp_path / "broken.safetensors"),
              metadata={"kind": "token-heads", "format": TOKEN_HEADS_FORMAT,
                        "names": '["length", "exclaim"]', "reward_set_id": REWARDS.id,
                        "reward_set_version": REWARDS.version, "model": heads.model})
    with pytest.raises(InvalidInput, match="broken.safetensors holds broken token heads: up "
                       "must be"):
        TokenHeads.load(tmp_path / "broken.safetensors", gen)


def test_bad_requests_get_clear_errors(gen: LocalGenerator, heads: TokenHeads) -> None:
    with pytest.raises(InvalidInput, match="needs token heads"):
        gen.generate("hi", max_new_tokens=4, steering=steering({"length": 1.0}))
    with pytest.raises(InvalidInput, match="TokenHeads"):
        gen.with_token_heads("heads.safetensors")
    with pytest.raises(InvalidInput, match="two different responses"):
        distill_token_heads(gen, REWARDS, [("hi", "a"), ("ho", "b")])
    g = gen.with_token_heads(heads).with_rewards(RewardSet("lexical", [EXCLAIM]))
    with pytest.raises(InvalidInput, match="distilled from reward set"):
        g.generate("hi", max_new_tokens=4, steering=Steering(
            coefficients={"exclaim": 1.0}, reward_set_id=g.rewards.id,
            reward_set_version=g.rewards.version, strategy="token_rewards"))
    assert Steering(strategy="token_rewards").strategy == TokenRewards()


def test_through_the_personalizer_facade(tmp_path: Path, gen: LocalGenerator,
                                         heads: TokenHeads) -> None:
    from personalizer import Personalizer

    with Personalizer(str(tmp_path / "p.db"), rewards=REWARDS,
                      generator=gen.with_token_heads(heads)) as p:
        for _ in range(3):
            p.record_preference("ann", "Tell me about tea", "Great! Wonderful tea!",
                                "Tea is a drink.")
        out = p.generate("ann", HELD_OUT[1], strategy="token_rewards", max_new_tokens=20)
        assert out.steering.path == "token-rewards"
        assert [t.name for t in out.steering.terms] == ["length", "exclaim"]
        assert p.generate("ann", HELD_OUT[1], strategy="token_rewards", strength=0.0,
                          max_new_tokens=20, prompt_profile=False).text == \
            gen.generate(HELD_OUT[1], max_new_tokens=20).text


def test_shift_hidden_folds_only_steered_rows_in_the_hidden_dtype() -> None:
    from personalizer.backends.decoding.tensor_math import fold_token_rewards

    g = torch.Generator().manual_seed(0)
    j, d, r = 2, 8, 3
    heads = TokenHeads(down=torch.randn(j, d, r, generator=g), up=torch.randn(j, r, d, generator=g),
                       bias=torch.randn(j, d, generator=g), names=("a", "b"),
                       reward_set_id="x", reward_set_version="1", model="m")
    hidden = torch.randn(3, d, generator=g).to(torch.bfloat16)
    steer = HiddenSteer(heads=heads, coefficients=torch.tensor([1.0, -0.5]), strength=2.0)
    out = shift_hidden(hidden, [None, steer, None])
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[0], hidden[0]) and torch.equal(out[2], hidden[2])
    expected = fold_token_rewards(hidden[1:2].float(), heads.down, heads.up, heads.bias,
                                  torch.tensor([[1.0, -0.5]]), 2.0)
    assert torch.equal(out[1], expected[0].to(torch.bfloat16))
    assert shift_hidden(hidden, [None, None, None]) is hidden


def test_shift_hidden_folds_non_adjacent_rows_each_as_alone() -> None:
    g = torch.Generator().manual_seed(1)
    j, d, r = 2, 8, 3

    def random_heads() -> TokenHeads:
        return TokenHeads(down=torch.randn(j, d, r, generator=g),
                          up=torch.randn(j, r, d, generator=g),
                          bias=torch.randn(j, d, generator=g), names=("a", "b"),
                          reward_set_id="x", reward_set_version="1", model="m")

    one, two = random_heads(), random_heads()
    hidden = torch.randn(5, d, generator=g)
    steers = [HiddenSteer(heads=one, coefficients=torch.tensor([1.0, -0.5]), strength=2.0),
              None,
              HiddenSteer(heads=one, coefficients=torch.tensor([-0.3, 0.8]), strength=0.5),
              None,
              HiddenSteer(heads=two, coefficients=torch.tensor([0.6, 0.6]), strength=1.0)]
    out = shift_hidden(hidden, steers)
    for b, s in enumerate(steers):
        if s is None:
            assert torch.equal(out[b], hidden[b])
        else:  # rows 0 and 2 are folded together (same heads), row 4 on its own
            alone = shift_hidden(hidden[b:b + 1], [s])[0]
            assert torch.allclose(out[b], alone, rtol=1e-6, atol=1e-6)
            assert not torch.allclose(out[b], hidden[b])


def test_the_model_fingerprint_ignores_the_dtype_but_not_the_model(
        tmp_path: Path, heads: TokenHeads) -> None:
    model = tiny.gpt2(seed=3, vocab_size=1000)  # 1000 rows: the fingerprint reads every 3rd
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert model_fingerprint(half) == model_fingerprint(model)
    assert model_fingerprint(tiny.gpt2(seed=4, vocab_size=1000)) != model_fingerprint(model)
    heads.save(tmp_path / "heads.safetensors")  # distilled in float32, used in bfloat16
    lm = copy.deepcopy(tiny.trained_gpt2()).to(torch.bfloat16)
    g = LocalGenerator(lm, tiny.tokenizer(), rewards=REWARDS, quality=None)
    assert TokenHeads.load(tmp_path / "heads.safetensors", g).model == heads.model


def test_sequence_scores_refuse_another_model_and_answers_past_the_context(
        gen: LocalGenerator, heads: TokenHeads) -> None:
    narrow = TokenHeads(down=torch.zeros(2, 32, 4), up=torch.zeros(2, 4, 32),
                        bias=torch.zeros(2, 32), names=heads.names,
                        reward_set_id=heads.reward_set_id,
                        reward_set_version=heads.reward_set_version, model=heads.model)
    with pytest.raises(InvalidInput, match="hidden states of size 32, but the model's are "
                       "of size 64"):
        sequence_scores(gen, narrow, "hi", ["Hello!"])
    with pytest.raises(InvalidInput, match="another model"):
        sequence_scores(gen, dataclasses.replace(heads, model="0" * 16), "hi", ["Hello!"])
    long = "water " * 600
    with pytest.raises(InvalidInput, match="do not fit .* context of 512"):
        sequence_scores(gen, heads, "hi", ["Hello!", long])
    with pytest.raises(InvalidInput, match="do not fit .* context of 512"):
        distill_token_heads(gen, REWARDS, [("hi", "Hello!"), ("hi", long)], steps=1)


def by_hand(g: LocalGenerator, proxy: ProxyTuning, prompt: str, s: Steering,
            quality: AfterWords, max_new_tokens: int) -> list[int]:
    """Greedy token-rewards decoding with proxy-tuning and the quality floor, written out:
    whole forwards of the three models every step (no cache), the steered logits as
    ``proxy(W (h + w sum_j c_j (U_j D_j^T h + b_j)), expert, antiexpert)``."""
    from personalizer.backends.decoding.tensor_math import fold_token_rewards, proxy_logits
    from personalizer.steering import reward_scale

    heads, tok = g.token_heads, g.tokenizer
    coef = [s.coefficients[n] for n in REWARDS.names]
    user = torch.tensor([coef], dtype=torch.float32) / reward_scale(coef, s.relative)
    n = len(tok)

    def logits(m: LocalGenerator, ids: list[int], steer: bool = False) -> torch.Tensor:
        x = torch.tensor([m.prompt_ids(prompt) + ids])
        h = m.model.base_model(input_ids=x).last_hidden_state[0, -1:].float()
        if steer:
            h = fold_token_rewards(h, heads.down, heads.up, heads.bias, user, s.strength)
        return (h @ m.model.get_output_embeddings().weight.float().T)[0, :n]

    ids: list[int] = []
    with torch.inference_mode():
        while len(ids) < max_new_tokens:
            e, a = logits(proxy.expert, ids), logits(proxy.antiexpert, ids)
            steered = proxy_logits(logits(g, ids, steer=True), e, a, proxy.alpha)
            own = proxy_logits(logits(g, ids), e, a, proxy.alpha)
            tid = int(steered.argmax())
            text = tok.decode(ids, skip_special_tokens=True)
            if tid in g.eos_ids and int(own.argmax()) not in g.eos_ids and \
                    quality.score(prompt, [text])[0] < quality.floor:
                steered[sorted(g.eos_ids)] = float("-inf")
                tid = int(steered.argmax())
            ids.append(tid)
            if tid in g.eos_ids:
                break
    return ids


def test_proxy_tuning_with_the_quality_floor_steers_as_the_formula_says(
        heads: TokenHeads) -> None:
    floor = AfterWords(6)
    g = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=floor,
                       token_heads=heads)
    proxy = proxy_pair(alpha=0.5)
    p = HELD_OUT[0]
    proxied = g.generate(p, max_new_tokens=40, proxy=proxy)
    off = g.generate(p, max_new_tokens=40, proxy=proxy,
                     steering=steering({"length": 1.0}, strength=0.0))
    assert off.token_ids == proxied.token_ids
    terse = steering({"length": -1.0}, strength=8.0)
    out = g.generate(p, max_new_tokens=40, proxy=proxy, steering=terse)
    assert out.steering.levers == ("proxy", "token_rewards", "no_repeat")
    assert list(out.token_ids) == by_hand(g, proxy, p, terse, floor, 40)
    assert out.token_ids != proxied.token_ids
    free = g.generate(p, max_new_tokens=40, proxy=proxy, steering=steering(
        {"length": -1.0}, strength=8.0, floor=False))
    assert len(free.text.split()) < 6 <= len(out.text.split())  # the floor acted


def test_the_floor_in_a_batch_whose_rows_end_at_different_steps(heads: TokenHeads) -> None:
    g = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=REWARDS,
                       quality=AfterWords(6), token_heads=heads)
    terse = steering({"length": -1.0}, strength=8.0)
    bikes, rain, cars, art = HELD_OUT[3], HELD_OUT[0], HELD_OUT[4], HELD_OUT[5]
    requests = [(bikes, steering({"length": -1.0}, strength=8.0, floor=False)),
                (bikes, terse), (rain, None), (cars, terse),
                (art, steering({"exclaim": 1.0}, strength=2.0))]
    batch = g.generate_batch(requests, max_new_tokens=60)
    alone = [g.generate(p, max_new_tokens=60, steering=s) for p, s in requests]
    assert [b.token_ids for b in batch] == [a.token_ids for a in alone]
    # without the floor the first row ends at once and leaves the batch; the floored rows
    # (now at other positions in it) go on until they clear the floor
    assert batch[0].completion_tokens < min(b.completion_tokens for b in batch[1:])
    assert len(batch[0].text.split()) < 6
    assert all(len(batch[i].text.split()) >= 6 for i in (1, 3))


# -- token rules: length and structure through their own tokens ------------------------------

LISTS = AttributeScorer("lists", "more list lines", lambda t: float(sum(
    line.lstrip().startswith(("-", "*", "+", "•")) for line in t.splitlines())),
    token_rule="list_marker")
RULED = RewardSet("ruled", [dataclasses.replace(LENGTH, token_rule="end_of_turn"), LISTS])


def zero_heads(g: LocalGenerator, rewards: RewardSet) -> TokenHeads:
    """Heads that add nothing: only the token rules act."""
    d = g.model.get_output_embeddings().weight.shape[1]
    j = len(rewards)
    return TokenHeads(down=torch.zeros(j, d, 2), up=torch.zeros(j, 2, d),
                      bias=torch.zeros(j, d), names=tuple(rewards.names),
                      reward_set_id=rewards.id, reward_set_version=rewards.version,
                      model=model_fingerprint(g.model))


def ruled(coefficients: dict[str, float], **kw: Any) -> Steering:
    return Steering(coefficients=dict.fromkeys(RULED.names, 0.0) | coefficients,
                    reward_set_id=RULED.id, reward_set_version=RULED.version, strength=1.0,
                    strategy=TokenRewards(**kw))


def test_token_rules_sum_the_coefficients_of_their_rewards() -> None:
    from personalizer.backends.heads.rules import ruled_mask, token_rules
    from personalizer.profiles import default_reward_set

    rs = default_reward_set()
    c = np.zeros(len(rs))
    c[rs.names.index("verbosity")], c[rs.names.index("structure")] = -1.5, 0.5
    c[rs.names.index("warmth")] = 3.0  # a lexicon: no end-of-turn or marker bias
    assert token_rules(rs, c, 2.0) == {"end_of_turn": 3.0, "list_marker": 1.0}
    assert token_rules(REWARDS, np.ones(2), 2.0) == {"end_of_turn": 0.0, "list_marker": 0.0}
    mask = ruled_mask(rs)
    assert [n for n, m in zip(rs.names, mask, strict=True) if m] == [
        "verbosity", "formality", "warmth", "structure", "examples", "hedging"]


def test_a_reward_with_a_token_rule_acts_through_its_tokens_not_its_head() -> None:
    base = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=RULED, quality=None)
    zero = zero_heads(base, RULED)
    g = torch.Generator().manual_seed(0)
    noisy = dataclasses.replace(zero, down=torch.randn(zero.down.shape, generator=g),
                                up=torch.randn(zero.up.shape, generator=g))
    terse = ruled({"length": -1.0}, rule_scale=5.0)
    with_heads = base.with_token_heads(noisy).generate(HELD_OUT[2], max_new_tokens=30,
                                                       steering=terse)
    rules_only = base.with_token_heads(zero).generate(HELD_OUT[2], max_new_tokens=30,
                                                      steering=terse)
    assert with_heads.token_ids == rules_only.token_ids  # the length head is left out
    by_head = base.with_token_heads(noisy).generate(
        HELD_OUT[2], max_new_tokens=30, steering=ruled({"length": -1.0}, rule_scale=0.0))
    plain = base.generate(HELD_OUT[2], max_new_tokens=30)
    assert by_head.token_ids != plain.token_ids  # rule_scale=0: the head acts again


def test_line_tokens_find_line_ends_and_list_markers() -> None:
    from personalizer.backends.heads.rules import line_tokens

    tok = tiny.tokenizer()
    lines = line_tokens(tok)
    assert lines.newline and lines.markers
    assert all(tok.decode([i]).endswith("\n") for i in lines.newline)
    assert {tok.decode([i]).strip(" ") for i in lines.markers} <= {"-", "*", "+", "•", "1",
                                                                    "1."}
    assert tok.convert_tokens_to_ids("-") in lines.markers


def test_length_and_structure_act_through_their_tokens() -> None:
    base = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=RULED, quality=None)
    g = base.with_token_heads(zero_heads(base, RULED))
    p = HELD_OUT[1]
    plain = g.generate(p, max_new_tokens=40)
    off = g.generate(p, max_new_tokens=40, steering=ruled({"length": -1.0}, rule_scale=0.0))
    assert off.token_ids == plain.token_ids  # zero heads and no rule: plain decoding
    long_plain = g.generate(HELD_OUT[0], max_new_tokens=40)
    short = g.generate(HELD_OUT[0], max_new_tokens=40,
                       steering=ruled({"length": -1.0}, rule_scale=1.0, end_scale=30))
    assert len(short.token_ids) < len(long_plain.token_ids)
    assert short.token_ids[-1] in g.eos_ids
    assert short.text.rstrip().endswith((".", "!", "?"))  # ended after a whole sentence
    assert long_plain.text.startswith(short.text)
    # "Here are three tips:" has no finished sentence: ending sooner is not pushed there
    assert g.generate(p, max_new_tokens=40, steering=ruled({"length": -1.0}, rule_scale=30)
                      ).token_ids == plain.token_ids
    plain_len = len(g.generate(HELD_OUT[1], max_new_tokens=60).token_ids)
    assert plain_len < 60  # plain ends by itself, so "longer" can show
    longer = g.generate(HELD_OUT[1], max_new_tokens=60,
                        steering=ruled({"length": 1.0}, rule_scale=30))
    assert len(longer.token_ids) > plain_len
    listed = g.generate(p, max_new_tokens=40, steering=ruled({"lists": 1.0}, rule_scale=30))
    assert listed.text.lstrip()[:1] in {"-", "*", "+", "•", "1"}  # the answer starts a list
    assert RULED.raw_features(p, [listed.text])[0][1] > RULED.raw_features(p, [plain.text])[0][1]


def test_list_markers_are_raised_only_at_the_start_of_a_line() -> None:
    from types import SimpleNamespace

    from personalizer.backends.decoding.strategies.token_rewards import TokenRewardPolicy
    from personalizer.backends.heads.rules import line_tokens

    tok = tiny.tokenizer()
    lines = line_tokens(tok)
    newline, marker = next(iter(lines.newline)), tok.convert_tokens_to_ids("-")
    word = tok.convert_tokens_to_ids("s")
    policy = TokenRewardPolicy(steer=None, marker_bias=3.0, lines=lines)
    logits = torch.zeros(len(tok))

    def ruled_at(ids: list[int], starts_line: bool = True) -> torch.Tensor:
        p = dataclasses.replace(policy, starts_line=starts_line)
        return p._ruled(logits, SimpleNamespace(token_ids=ids), {2})

    assert ruled_at([])[marker] == 3.0  # the answer starts a line
    assert ruled_at([], starts_line=False)[marker] == 0.0  # after a prefill ending mid-line
    assert ruled_at([word])[marker] == 0.0 and torch.equal(ruled_at([word]), logits)
    after = ruled_at([word, newline])
    assert after[marker] == 3.0 and after[word] == 0.0
    assert float(logits.sum()) == 0.0  # the row's logits are not changed in place
    with pytest.raises(InvalidInput, match="token_rule must be"):
        AttributeScorer("x", "x", len, token_rule="eos")  # type: ignore[arg-type]


BANG = AttributeScorer("bang", "more '!'", lambda t: float(t.count("!")), token_rule="lexicon",
                       lexicon={"!": 1.0})
WELL = AttributeScorer("well", "says 'well'", lambda t: float(t.lower().split().count("well")),
                       token_rule="lexicon", lexicon=lambda: {"well": 1.0})
LEXICAL = RewardSet("lexical-rules", [BANG, WELL])


def test_a_lexicon_weighs_whole_words_and_punctuation_only() -> None:
    from personalizer.backends.heads.rules import lexicon_bias, lexicon_matrix, token_texts

    tok = tiny.tokenizer()
    texts = token_texts(tok)
    m = lexicon_matrix(LEXICAL, tok)
    assert m is not None and m.shape == (2, len(tok))
    bangs = {texts[i] for i in m[0].nonzero().flatten().tolist()}
    wells = {texts[i] for i in m[1].nonzero().flatten().tolist()}
    assert bangs == {t for t in texts if t.strip() == "!"} and "!" in bangs
    assert wells and all(t.strip().lower() == "well" for t in wells)
    assert all(t[0].isspace() or t[0].isupper() for t in wells)  # never a piece of a word
    assert torch.equal(lexicon_matrix(LEXICAL, tok), m)  # type: ignore[arg-type]
    assert lexicon_matrix(REWARDS, tok) is None  # no lexicon in the set
    bias = lexicon_bias(LEXICAL, np.array([2.0, -1.0]), 1.5, tok)
    assert bias is not None and torch.allclose(bias.bias, 1.5 * (2.0 * m[0] - m[1]))
    words = {int(bias.word[i]) for i in m[1].nonzero().flatten().tolist()}
    assert len(words) == 1 and -1 not in words  # every form of "well" is one word
    assert lexicon_bias(LEXICAL, np.zeros(2), 1.5, tok) is None
    assert lexicon_bias(LEXICAL, np.ones(2), 0.0, tok) is None


def test_a_lexical_reward_acts_through_its_words() -> None:
    base = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=LEXICAL, quality=None)
    g = base.with_token_heads(zero_heads(base, LEXICAL))

    def steer(c: float, scale: float) -> Steering:
        return Steering(coefficients={"bang": c, "well": 0.0}, reward_set_id=LEXICAL.id,
                        reward_set_version=LEXICAL.version, strength=1.0,
                        strategy=TokenRewards(rule_scale=scale))

    def bangs(s: Steering | None, **options: bool) -> tuple[int, list[list[int]]]:
        outs = [g.generate(p, max_new_tokens=30, steering=s, **options) for p in HELD_OUT]
        return sum(o.text.count("!") for o in outs), [o.token_ids for o in outs]

    plain, plain_ids = bangs(None)
    # zero heads, no rule (and no repetition guard): plain decoding
    assert bangs(steer(1.0, 0.0), repetition_guard=False)[1] == plain_ids
    more, _ = bangs(steer(1.0, 8.0))  # the tiny model is sure of itself: large biases
    assert more > plain
    fewer, _ = bangs(steer(-1.0, 10.0))
    assert plain > 0 and fewer < plain


def test_a_lexicon_rule_needs_its_lexicon() -> None:
    from personalizer.backends.rewards.attributes import attribute_scorers

    with pytest.raises(InvalidInput, match="go together"):
        AttributeScorer("x", "x", len, token_rule="lexicon")
    with pytest.raises(InvalidInput, match="go together"):
        AttributeScorer("x", "x", len, lexicon={"x": 1.0})
    by_name = {s.name: s for s in attribute_scorers()}
    hedges = by_name["hedging"].lexicon()  # type: ignore[misc,operator]
    assert hedges["might"] == 1.0 and "it depends" not in hedges
    formality = by_name["formality"].lexicon()  # type: ignore[misc,operator]
    assert formality["however"] == 1.0 and formality["!"] == -1.0 and formality["'t"] == -1.0
    warmth = by_name["warmth"].lexicon()  # type: ignore[misc,operator]
    assert warmth["great"] > 0 > warmth["terrible"] and min(map(len, warmth)) >= 4


def test_word_biases_raise_a_word_once_and_ending_waits_for_a_whole_sentence() -> None:
    from types import SimpleNamespace

    from personalizer.backends.decoding.strategies.token_rewards import TokenRewardPolicy
    from personalizer.backends.heads.rules import line_tokens, token_texts

    tok = tiny.tokenizer()
    texts, lines = token_texts(tok), line_tokens(tok)
    period = next(i for i, t in enumerate(texts) if t == ".")
    assert period in lines.sentence_end and tok.convert_tokens_to_ids("s") not in \
        lines.sentence_end
    assert all(texts[i].strip() not in {"1.", "2."} for i in lines.sentence_end)
    from personalizer.backends.heads.rules import WordBias

    up, sibling, down, other = 10, 13, 11, 12  # "up" and "sibling": two forms of one word
    bias, word = torch.zeros(len(tok)), torch.full((len(tok),), -1)
    bias[up], bias[sibling], bias[down] = 2.0, 2.0, -3.0
    word[up], word[sibling], word[down] = 0, 0, 1
    policy = TokenRewardPolicy(steer=None, word_bias=WordBias(bias, word), end_bias=4.0,
                               lines=lines)
    logits = torch.zeros(len(tok) + 3)  # the model's vocabulary may be padded

    def row(ids: list[int]) -> SimpleNamespace:
        return SimpleNamespace(token_ids=ids, tracker=SimpleNamespace(
            decode=lambda: "Rest well" + tok.decode(ids)))

    def ruled_at(ids: list[int]) -> torch.Tensor:
        return policy._ruled(logits, row(ids), {2})

    fresh = ruled_at([other])
    assert (fresh[up], fresh[sibling], fresh[down], fresh[2]) == (2.0, 2.0, -3.0, 0.0)
    used = ruled_at([up, down, period])  # mid-sentence above: no end; here it may end
    assert (used[up], used[sibling], used[down], used[2]) == (0.0, 0.0, -3.0, 4.0)
    assert float(logits.abs().sum()) == 0.0
    thorough = dataclasses.replace(policy, end_bias=-4.0, word_bias=None)
    assert thorough._ruled(logits, row([other]), {2})[2] == -4.0
    from personalizer.backends.heads.rules import ends_whole

    assert ends_whole("Sleep well.") and ends_whole("Here are tips:\n") and ends_whole("Go!")
    for cut in ("Tips:\n\n1.", "Tips:\n 2.", "Use oats, e.g.", "It costs 3.", "Ask Dr.",
                "Sleep well", "Sleep well:"):
        assert not ends_whole(cut), cut


def test_heads_and_coefficients_learned_jointly_from_preferences(
        gen: LocalGenerator, heads: TokenHeads) -> None:
    """PReF's offline step on token heads: people who like '!' and people who do not, with
    unknown coefficients; after learning, each person's coefficients predict their choices
    on held-out prompts and steer their answers their way."""
    from itertools import combinations

    from personalizer.backends import learn_token_heads
    from personalizer.backends.heads.training import PreferencePair

    def answers(prompts: list[str]) -> dict[str, list[str]]:
        return {p: list(dict.fromkeys(gen.generate(p, max_new_tokens=40, do_sample=True,
                                                   seed=s).text for s in range(6)))
                for p in prompts}

    def judged(user: str, loud: bool, by_prompt: dict[str, list[str]]) -> list[PreferencePair]:
        out = []
        for p, texts in by_prompt.items():
            for a, b in combinations(texts, 2):
                if a.count("!") != b.count("!"):
                    more, less = (a, b) if a.count("!") > b.count("!") else (b, a)
                    out.append(PreferencePair(user, p, *((more, less) if loud
                                                          else (less, more))))
        return out

    people = {"ann": True, "bo": True, "cy": False, "di": False}
    train, held = answers(TRAIN), answers(HELD_OUT)
    pairs = [x for u, loud in people.items() for x in judged(u, loud, train)]
    _, start = learn_token_heads(gen, heads, pairs, steps=1, lr=1e-9)  # where they start
    learned, coef = learn_token_heads(gen, heads, pairs)
    learned.check(REWARDS)  # still the reward set's heads, for the same model
    assert set(coef) == set(people)

    def accuracy(h: TokenHeads, c: dict[str, np.ndarray], user: str, loud: bool) -> float:
        test = judged(user, loud, held)
        assert len(test) >= 10
        right = 0
        for x in test:
            s = sequence_scores(gen, h, x.prompt, [x.chosen, x.rejected]).numpy()
            right += float(c[user] @ (s[0] - s[1])) > 0
        return right / len(test)

    before = np.mean([accuracy(heads, start, u, loud) for u, loud in people.items()])
    after = [accuracy(learned, coef, u, loud) for u, loud in people.items()]
    assert min(after) > 0.8 and np.mean(after) > before + 0.2, (before, after)
    g = gen.with_token_heads(learned)

    def bangs(user: str) -> int:
        s = Steering(coefficients=dict(zip(REWARDS.names, coef[user].tolist(), strict=True)),
                     reward_set_id=REWARDS.id, reward_set_version=REWARDS.version,
                     strength=2.0, strategy=TokenRewards())
        return sum(g.generate(p, max_new_tokens=40, steering=s).text.count("!")
                   for p in HELD_OUT)

    assert min(bangs("ann"), bangs("bo")) > max(bangs("cy"), bangs("di"))
    with pytest.raises(InvalidInput, match="at least one pair"):
        learn_token_heads(gen, heads, [])
    with pytest.raises(InvalidInput, match="coefficients of user 'ann'"):
        learn_token_heads(gen, heads, pairs[:2], {"ann": [1.0]})
    with pytest.raises(InvalidInput, match="coefficients of user 'ann'"):
        learn_token_heads(gen, heads, pairs[:2], {"ann": ["x", "y"]})
    with pytest.raises(InvalidInput, match="with itself"):
        learn_token_heads(gen, heads, [PreferencePair("ann", "p", "same", "same")])


def test_a_lexicon_finds_word_starts_that_decoding_drops() -> None:
    """SentencePiece vocabularies mark a word start with '▁', which decoding one token alone
    drops: the rule reads the marker from the vocabulary entry."""
    from personalizer.backends.heads.rules import lexicon_bias

    class Pieces:  # a SentencePiece-style tokenizer: "▁might" decodes to "might"
        vocab = ["<s>", "▁might", "might", "▁Well", "!", "▁may"]

        def __len__(self) -> int:
            return len(self.vocab)

        def batch_decode(self, ids: list[list[int]]) -> list[str]:
            return [self.vocab[i[0]].replace("▁", "") for i in ids]

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return [self.vocab[i] for i in ids]

    hedges = AttributeScorer("hedges", "hedges", len, token_rule="lexicon",
                             lexicon={"might": 1.0, "may": 0.5})
    rs = RewardSet("pieces", [hedges])
    bias = lexicon_bias(rs, np.array([2.0]), 1.0, Pieces())
    assert bias is not None
    assert bias.bias.tolist() == [0.0, 2.0, 0.0, 0.0, 0.0, 1.0]  # "might" inside a word: 0
