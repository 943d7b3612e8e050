"""ARGS: pure tensor functions on synthetic tensors, then the loop on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import tiny

from personalizer.backends import Args, LocalGenerator, Steering
from personalizer.backends.decoding.tensor_math import (
    args_scores,
    choose_next,
    scatter_scores,
    top_candidates,
)
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput, RewardSetMismatch

# -- pure functions ---------------------------------------------------------------------------


def test_args_scores_add_weighted_rewards_without_touching_inputs() -> None:
    logits = torch.tensor([2.0, 1.0, 0.5])
    rewards = torch.tensor([0.0, 3.0, -1.0])
    before = (logits.clone(), rewards.clone())
    assert torch.equal(args_scores(logits, rewards, 0.0), logits)
    assert torch.allclose(args_scores(logits, rewards, 0.5), torch.tensor([2.0, 2.5, 0.0]))
    assert torch.equal(logits, before[0]) and torch.equal(rewards, before[1])
    with pytest.raises(ValueError):
        args_scores(logits, rewards[:2], 1.0)


def test_greedy_choice_takes_the_best_score() -> None:
    ids = torch.tensor([7, 3, 9])
    scores = scatter_scores(ids, torch.tensor([0.1, 0.9, 0.5]), 10)
    assert int(choose_next(scores, do_sample=False)[0]) == 3
    assert torch.isinf(scores[[0, 1, 2, 4, 5, 6, 8]]).all()


def test_sampling_matches_transformers_top_k_sampling() -> None:
    torch.manual_seed(0)
    logits = torch.randn(50)
    k, temperature = 5, 0.7
    for seed in range(20):
        values, ids = top_candidates(logits, k)
        ours = int(choose_next(scatter_scores(ids, args_scores(values, torch.zeros(k), 0.0), 50),
                               do_sample=True, temperature=temperature,
                               generator=torch.Generator().manual_seed(seed))[0])
        # transformers: temperature, then top-k to -inf, softmax, multinomial
        scaled = logits / temperature
        kth = torch.topk(scaled, k).values[-1]
        probs = scaled.masked_fill(scaled < kth, float("-inf")).softmax(-1)
        ref = torch.multinomial(probs[None], 1, generator=torch.Generator().manual_seed(seed))
        assert ours == int(ref)


# -- the loop on tiny models ------------------------------------------------------------------

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("letters", [E_COUNT])
PROMPTS = ["Hello there", "How are you today?", "Tell me about sleep", "Drink water"]


def steering(strength: float, c: float = 1.0, **kw) -> Steering:  # noqa: ANN003
    return Steering(coefficients={"e_count": c}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strength=strength, strategy=Args(**kw))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def gen(request) -> LocalGenerator:  # noqa: ANN001
    model = tiny.gpt2() if request.param == "gpt2" else tiny.llama()
    return LocalGenerator(model, tiny.tokenizer(), rewards=REWARDS)


def test_w0_greedy_equals_plain_greedy_token_for_token(gen: LocalGenerator) -> None:
    for prompt in PROMPTS:
        ids = gen.prompt_ids(prompt)
        ref = gen.model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                                 pad_token_id=0, eos_token_id=sorted(gen.eos_ids))
        steered = gen.generate(prompt, max_new_tokens=20, steering=steering(0.0))
        plain = gen.generate(prompt, max_new_tokens=20)
        assert steered.text == plain.text
        assert steered.text == gen.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
        assert steered.completion_tokens == plain.completion_tokens


def test_w0_sampling_equals_transformers_generate_with_the_same_seed(gen: LocalGenerator) -> None:
    for seed in range(3):
        ids = gen.prompt_ids(PROMPTS[seed])
        torch.manual_seed(seed)
        ref = gen.model.generate(torch.tensor([ids]), max_new_tokens=15, do_sample=True,
                                 top_k=6, temperature=0.8, top_p=1.0, pad_token_id=0,
                                 eos_token_id=sorted(gen.eos_ids))
        out = gen.generate(PROMPTS[seed], max_new_tokens=15, steering=steering(0.0, candidates=6),
                           do_sample=True, temperature=0.8, seed=seed)
        want = gen.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
        assert out.text == want
        assert out.steering.path == "plain"  # w = 0 cannot change the answer: the fast path


def test_steering_raises_the_reward(gen: LocalGenerator) -> None:
    def mean_reward(strength: float) -> float:
        texts = [gen.generate(p, max_new_tokens=20, steering=steering(strength)).text
                 for p in PROMPTS]
        return float(np.mean([E_COUNT.fn(t) for t in texts]))

    plain, steered = mean_reward(0.0), mean_reward(2.0)
    assert steered > plain + 1.0
    # steering away from the letter plain answers are fullest of brings it down
    plain_texts = "".join(gen.generate(p, max_new_tokens=20).text for p in PROMPTS)
    letter = max("abcdefghijklmnopqrstuvwxyz", key=plain_texts.count)
    o_count = AttributeScorer("o_count", "more of a letter",
                              lambda t: float(t.count(letter)))
    o_set = RewardSet("letter", [o_count])
    o_gen = LocalGenerator(gen.model, gen.tokenizer, rewards=o_set)

    def o_mean(c: float) -> float:
        s = Steering(coefficients={"o_count": c}, reward_set_id=o_set.id,
                     reward_set_version=o_set.version, strength=2.0, strategy="args")
        return float(np.mean([o_count.fn(o_gen.generate(p, max_new_tokens=20, steering=s).text)
                              for p in PROMPTS]))

    plain_o, away = o_mean(0.0), o_mean(-1.0)
    assert plain_o > 2.0  # room to go down
    assert away < plain_o - 1.0


def test_switching_user_is_a_new_steering_not_a_reload(gen: LocalGenerator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def no_loading(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    model = gen.model
    likes_e = gen.generate(PROMPTS[0], max_new_tokens=20, steering=steering(3.0, c=1.0))
    hates_e = gen.generate(PROMPTS[0], max_new_tokens=20, steering=steering(3.0, c=-1.0))
    assert gen.model is model
    assert likes_e.text.count("e") > hates_e.text.count("e")
    assert likes_e.steering is not None and likes_e.steering.strength == 3.0
    assert likes_e.steering.path == "args-text"
    assert [(t.name, t.coefficient, t.description) for t in likes_e.steering.terms] == \
        [("e_count", 1.0, "more letter e")]


def test_stream_equals_generate_when_steered(gen: LocalGenerator) -> None:
    s = steering(2.0)
    opts = {"max_new_tokens": 20, "do_sample": True, "seed": 4}
    assert "".join(gen.stream(PROMPTS[1], steering=s, **opts)) == \
        gen.generate(PROMPTS[1], steering=s, **opts).text


def test_sampling_options_are_honoured_for_steered_users(gen: LocalGenerator) -> None:
    s = steering(2.0)
    texts = {gen.generate(PROMPTS[2], max_new_tokens=20, steering=s, do_sample=True,
                          seed=seed).text for seed in range(4)}
    assert len(texts) > 1  # four seeds, more than one text
    again = gen.generate(PROMPTS[2], max_new_tokens=20, steering=s, do_sample=True, seed=0)
    assert again.text == gen.generate(PROMPTS[2], max_new_tokens=20, steering=s,
                                      do_sample=True, seed=0).text
    # top_k=1 on the rescored candidates: sampling takes the best score, as greedy does
    assert gen.generate(PROMPTS[2], max_new_tokens=20, steering=s, do_sample=True, seed=3,
                        top_k=1).text == gen.generate(PROMPTS[2], max_new_tokens=20,
                                                      steering=s).text


def test_bad_steering_is_refused(gen: LocalGenerator) -> None:
    wrong = Steering(coefficients={"e_count": 1.0}, reward_set_id="letters",
                     reward_set_version="1-deadbeef")
    with pytest.raises(RewardSetMismatch):
        gen.generate(PROMPTS[0], max_new_tokens=5, steering=wrong)
    bare = LocalGenerator(gen.model, gen.tokenizer)
    with pytest.raises(InvalidInput, match="rewards="):
        bare.generate(PROMPTS[0], max_new_tokens=5, steering=steering(1.0))
    with pytest.raises(ValueError):
        steering(-1.0)
    with pytest.raises(ValueError):
        Steering(coefficients={"e_count": float("nan")}, reward_set_id="x",
                 reward_set_version="1")
    with pytest.raises(ValueError, match="candidates"):  # an ARGS field on best-of-n
        Steering(coefficients={}, reward_set_id="x", reward_set_version="1",
                 strategy={"kind": "best_of_n", "candidates": 4})
    with pytest.raises(ValueError, match="block"):  # a best-of-n field on ARGS
        Steering(coefficients={}, reward_set_id="x", reward_set_version="1",
                 strategy={"kind": "args", "block": "sentence"})
    assert Steering(coefficients={}, reward_set_id="x", reward_set_version="1",
                    strategy="best_of_n").strategy.kind == "best_of_n"


# -- tree-attention scoring with a separate reward model --------------------------------------


def _rm_setup(seed: int = 3):  # noqa: ANN202
    from personalizer.backends.rewards import ClassifierReward

    rm = tiny.gpt2_classifier(seed=seed)
    rs = RewardSet("rm", [ClassifierReward(rm, tiny.tokenizer(), name="rm")])
    rs = rs.fit_normalization(("q", t) for t in ["a b c", "hello there", "drink water", "xyz"])
    return rm, rs


@pytest.mark.parametrize("lm_name", ["gpt2", "llama"])
def test_tree_scoring_picks_the_tokens_of_a_no_cache_reference(lm_name: str) -> None:
    rm, rs = _rm_setup()
    lm = tiny.gpt2(seed=5) if lm_name == "gpt2" else tiny.llama(seed=5)
    gen = LocalGenerator(lm, tiny.tokenizer(), rewards=rs)
    w, k = 4.0, 5
    s = Steering(coefficients={"rm": 1.0}, reward_set_id=rs.id, reward_set_version=rs.version,
                 strength=w, strategy=Args(candidates=k, whole_answer="off", scoring="fast"))
    scale, mean = float(rs.normalization.scale[0]), float(rs.normalization.mean[0])
    for prompt in PROMPTS[:2]:
        prompt_ids = gen.prompt_ids(prompt)
        ids: list[int] = []
        with torch.no_grad():
            for _ in range(12):  # the reference: full forwards, no cache, one candidate at a time
                logits = lm(torch.tensor([prompt_ids + ids])).logits[0, -1]
                values, cands = torch.topk(logits, k)
                r = torch.stack([rm.score(rm.base_model(torch.tensor(
                    [prompt_ids + ids + [int(c)]])).last_hidden_state)[0, -1, 0] for c in cands])
                best = int(cands[int(torch.argmax(values + w * (r - mean) / scale))])
                if best in gen.eos_ids:
                    break
                ids.append(best)
        # the formula alone: the repetition guard off
        out = gen.generate(prompt, max_new_tokens=12, steering=s, repetition_guard=False)
        assert out.text == gen.tokenizer.decode(ids, skip_special_tokens=True)
        assert out.steering.path == "args-tree"


def test_a_reward_model_offers_its_fast_path_and_each_path_raises_its_reward() -> None:
    rm, rs = _rm_setup()
    gen = LocalGenerator(tiny.gpt2(seed=5), tiny.tokenizer(), rewards=rs)

    def on_tokens(prompt: str, text: str) -> float:  # the RM on the LM's own token sequence
        ids = gen.prompt_ids(prompt) + gen.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return float(rm.score(rm.base_model(torch.tensor([ids])).last_hidden_state)[0, -1, 0])

    def on_text(prompt: str, text: str) -> float:  # the reward set on the answer's text
        return float(rs.raw_features(prompt, [text])[0, 0])

    def run(scoring: str, strength: float) -> tuple[dict[str, float], set[str]]:
        s = Steering(coefficients={"rm": 1.0}, reward_set_id=rs.id,
                     reward_set_version=rs.version, strength=strength,
                     strategy=Args(candidates=6, whole_answer="off", scoring=scoring))
        outs = [gen.generate(p, max_new_tokens=12, steering=s) for p in PROMPTS]
        return {name: float(np.mean([f(p, o.text) for p, o in zip(PROMPTS, outs, strict=True)]))
                for name, f in (("tokens", on_tokens), ("text", on_text))}, \
            {o.steering.path for o in outs}

    plain, paths = run("auto", 0.0)
    assert paths == {"plain"}
    tree, paths = run("auto", 4.0)
    assert paths == {"args-tree"}  # auto takes the reward's own tree scorer
    assert tree["tokens"] > plain["tokens"]  # the reward as the tree pass measures it
    text, paths = run("text", 4.0)
    assert paths == {"args-text"}  # asked for: candidate texts scored by the reward set
    assert text["text"] > plain["text"]  # the reward as the text path measures it
    other = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS)
    with pytest.raises(InvalidInput, match="scoring='fast' needs"):
        other.generate("hi", max_new_tokens=3, steering=steering(1.0, scoring="fast"))


def test_facade_generate_steers_toward_the_stored_profile(tmp_path) -> None:  # noqa: ANN001
    from personalizer import Personalizer
    from personalizer.errors import BackendError

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS)
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=gen) as p:
        p.create_profile("newbie")
        plain = p.generate("newbie", PROMPTS[0], max_new_tokens=15)
        assert plain.steering.path == "plain"  # no coefficients yet: the plain answer
        assert plain.steering.terms == ()
        p.store.modify("newbie", lambda prof: prof.model_copy(update={
            "coefficients": {"e_count": 1.0}, "reward_set_id": REWARDS.id,
            "reward_set_version": REWARDS.version}))
        steered = p.generate("newbie", PROMPTS[0], strength=3.0, strategy="args",
                             max_new_tokens=15)
        assert steered.steering.strength == 3.0 and steered.steering.path == "args-text"
        default = p.generate("newbie", PROMPTS[0], max_new_tokens=15)
        assert default.steering.path == "branch"  # LOCAL_STRATEGY, measured on SmolLM2
        assert steered.text.count("e") > plain.text.count("e")
        best = p.generate("newbie", PROMPTS[0], strategy="best_of_n", max_new_tokens=15, seed=1)
        assert best.steering.path == "best-of-n" and len(best.steering.candidates) == 4
    with Personalizer(tmp_path / "p.db", generator=LocalGenerator(gen.model, gen.tokenizer)) as p:
        with pytest.raises(BackendError, match="cannot steer"):
            p.generate("newbie", PROMPTS[0], max_new_tokens=5)


def test_facade_generate_batch_steers_each_user_as_alone(tmp_path) -> None:  # noqa: ANN001
    from personalizer import Personalizer
    from personalizer.testing import ScriptedGenerator

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS)
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=gen) as p:
        for user, c in (("more-e", 1.0), ("less-e", -1.0), ("new", None)):
            p.create_profile(user)
            if c is not None:
                p.store.modify(user, lambda prof, c=c: prof.model_copy(update={
                    "coefficients": {"e_count": c}, "reward_set_id": REWARDS.id,
                    "reward_set_version": REWARDS.version}))
        requests = [("more-e", PROMPTS[0]), ("less-e", PROMPTS[0]), ("new", PROMPTS[1])]
        batch = p.generate_batch(requests, strength=3.0, strategy="args", max_new_tokens=12)
        for (user, prompt), out in zip(requests, batch, strict=True):
            assert out.text == p.generate(user, prompt, strength=3.0, strategy="args",
                                          max_new_tokens=12).text
        default = p.generate_batch(requests, max_new_tokens=12)  # sentence blocks, one by one
        for (user, prompt), out in zip(requests, default, strict=True):
            assert out.text == p.generate(user, prompt, max_new_tokens=12).text
        assert batch[0].text.count("e") > batch[1].text.count("e")
        assert batch[2].steering.path == "plain" and batch[2].steering.strength is None
    with Personalizer(tmp_path / "p.db", generator=ScriptedGenerator(["hi"])) as p:
        from personalizer.errors import BackendError

        with pytest.raises(BackendError, match="does not decode batches"):
            p.generate_batch([("new", "hi")])
    with Personalizer(tmp_path / "p.db", generator=gen) as p:
        with pytest.raises(InvalidInput, match="request 0 must be a"):
            p.generate_batch(["new"])  # type: ignore[list-item]
    with Personalizer(tmp_path / "p.db") as p, pytest.raises(InvalidInput, match="generator"):
        p.generate_batch([("new", "hi")])


# -- shared-trunk heads -----------------------------------------------------------------------


@pytest.mark.parametrize("lm_name", ["gpt2", "llama"])
def test_trunk_heads_pick_the_tokens_of_a_no_cache_reference(lm_name: str) -> None:
    from personalizer.backends.heads.trunk import TrunkHeads

    lm = tiny.gpt2(seed=6) if lm_name == "gpt2" else tiny.llama(seed=6)
    gen = LocalGenerator(lm, tiny.tokenizer())
    heads = TrunkHeads(gen, np.random.default_rng(0).standard_normal((2, 64)),
                       np.array([0.1, -0.2]), ["h0", "h1"])
    rs = RewardSet("trunk", [heads])
    gen.rewards = rs
    coef = {"h0": 1.0, "h1": -0.5}
    w, k = 3.0, 6
    s = Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                 strength=w, strategy=Args(candidates=k, whole_answer="off"))
    prompt_ids = gen.prompt_ids(PROMPTS[2])
    ids: list[int] = []
    with torch.no_grad():
        for _ in range(12):  # reference: full forwards, no cache, each candidate on its own
            logits = lm(torch.tensor([prompt_ids + ids])).logits[0, -1]
            values, cands = torch.topk(logits, k)
            feats = torch.stack([lm.base_model(torch.tensor([prompt_ids + ids + [int(c)]]))
                                 .last_hidden_state[0, -1] for c in cands]).numpy()
            r = (feats @ heads.weight.T + heads.bias) @ np.array([1.0, -0.5])
            best = int(cands[int(np.argmax(values.numpy() + w * r))])
            if best in gen.eos_ids:
                break
            ids.append(best)
    out = gen.generate(PROMPTS[2], max_new_tokens=12, steering=s, repetition_guard=False)
    assert out.text == gen.tokenizer.decode(ids, skip_special_tokens=True)
    assert out.steering.path == "args-trunk"
    # the same heads through the text-level path agree on what a finished text scores
    text_scores = heads.score_many(PROMPTS[2], ["hello there"])
    h = lm.base_model(torch.tensor([prompt_ids + gen.tokenizer(
        "hello there", add_special_tokens=False)["input_ids"]])).last_hidden_state[0, -1]
    np.testing.assert_allclose(text_scores[0], h.detach().numpy() @ heads.weight.T + heads.bias,
                               rtol=1e-4, atol=1e-4)
    zero = Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                    strength=0.0, strategy=Args(candidates=k, whole_answer="off"))
    assert gen.generate(PROMPTS[2], max_new_tokens=12, steering=zero).text == \
        gen.generate(PROMPTS[2], max_new_tokens=12).text


def test_distilled_heads_predict_the_attribute_they_copy() -> None:
    from personalizer.backends.heads.trunk import distill_heads

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())
    texts = [" ".join(["word"] * n) for n in range(1, 40)] + ["e" * n for n in range(1, 40)]
    heads = distill_heads(gen, REWARDS, [("q", t) for t in texts], ridge=1e-3)
    pred = np.array(heads.score_many("q", texts))[:, 0]
    truth = REWARDS.raw_features("q", texts)[:, 0]
    assert np.corrcoef(pred, truth)[0, 1] > 0.9


def test_every_path_is_reachable_from_the_facade(tmp_path) -> None:  # noqa: ANN001
    from personalizer import Personalizer
    from personalizer.backends import BestOfN, ProxyTuning
    from personalizer.backends.heads.trunk import TrunkHeads

    rm, rm_set = _rm_setup()
    lm = tiny.gpt2(seed=5)
    trunk_gen = LocalGenerator(lm, tiny.tokenizer())
    trunk_set = RewardSet("trunk", [TrunkHeads(trunk_gen, np.ones((1, 64)) / 8, np.zeros(1),
                                               ["h0"])])
    cases = [(REWARDS, "args-text"), (rm_set, "args-tree"), (trunk_set, "args-trunk")]
    for rs, path in cases:
        gen = LocalGenerator(lm, tiny.tokenizer(), rewards=rs)
        with Personalizer(tmp_path / f"{rs.id}.db", rewards=rs, generator=gen) as p:
            p.create_profile("u")
            p.store.modify("u", lambda prof, rs=rs: prof.model_copy(update={
                "coefficients": {n: 1.0 for n in rs.names}, "reward_set_id": rs.id,
                "reward_set_version": rs.version}))
            assert p.generate("u", "Hello there", strategy="args",
                              max_new_tokens=6).steering.path == path
            assert p.generate("u", "Hello there", strength=0.0,
                              max_new_tokens=6).steering.path == "plain"
            best = p.generate("u", "Hello there", strategy=BestOfN(n=2), max_new_tokens=6)
            assert best.steering.path == "best-of-n"
            proxied = p.generate("u", "Hello there", max_new_tokens=6, strategy="args",
                                 proxy=ProxyTuning(trunk_gen, trunk_gen))
            assert proxied.steering.levers[:2] == ("proxy", "args")
