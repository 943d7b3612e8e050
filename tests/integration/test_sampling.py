"""do_sample through the facade, on every strategy: asked to sample, a strategy samples (seeded:
different seeds give different answers); told not to, it gives one answer for every seed; an
option none of them can honour is refused, never dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from support import tiny
from support.provider_server import ProviderServer, echo_reply

from personalizer import Personalizer
from personalizer.backends import (
    AnthropicGenerator,
    BestOfN,
    LocalGenerator,
    OpenAIGenerator,
    TokenHeads,
)
from personalizer.backends.heads.token import model_fingerprint
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput, UnsupportedRequest

REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])
PROMPT = "Hello there, how are you?"
SEEDS = range(4)
ASK = {"temperature": 1.0, "max_new_tokens": 16}

# name: (strategy, strength, the path a sampled answer reports)
STRATEGIES: dict[str, tuple[Any, float | None, str]] = {
    "default": (None, None, "best-of-n"),  # LOCAL_STRATEGY: n=1 greedy sentence blocks
    "plain": (None, 0.0, "plain"),  # strength 0: the generator's own decoding
    "args": ("args", None, "args-text"),
    "best_of_n": (BestOfN(n=3), None, "best-of-n"),
    "best_of_n-sentence": (BestOfN(n=2, block="sentence", block_tokens=6), None, "best-of-n"),
    "branch": (BestOfN(n=3, block="sentence", draw="branch", block_tokens=6), None,
               "best-of-n"),
    "branch-answer": (BestOfN(n=2, draw="branch"), None, "best-of-n"),
    "token_rewards": ("token_rewards", None, "token-rewards"),
}
GREEDY = {"default": "branch", "plain": "plain", "args": "args-text", "branch": "branch",
          "branch-answer": "branch", "token_rewards": "token-rewards"}


@pytest.fixture(scope="module")
def local() -> LocalGenerator:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None,
                         prompt_rewards=None)
    g = torch.Generator().manual_seed(0)
    d = gen.model.get_output_embeddings().weight.shape[1]
    heads = TokenHeads(down=torch.randn(1, d, 4, generator=g) / d ** 0.5,
                       up=torch.randn(1, 4, d, generator=g), bias=torch.zeros(1, d),
                       names=tuple(REWARDS.names), reward_set_id=REWARDS.id,
                       reward_set_version=REWARDS.version, model=model_fingerprint(gen.model))
    return gen.with_token_heads(heads)


@pytest.fixture
def p(tmp_path: Path, local: LocalGenerator) -> Iterator[Personalizer]:
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=local) as p:
        assert p.record_preference("eve", "Any tips?", "eeee eee", "a").coefficients
        yield p


def answers(p: Personalizer, name: str, **options: Any) -> list[Any]:
    strategy, strength, _ = STRATEGIES[name]
    return [p.generate("eve", PROMPT, strategy=strategy, strength=strength, seed=s,
                       **ASK, **options) for s in SEEDS]


@pytest.mark.parametrize("name", STRATEGIES)
def test_do_sample_true_samples_on_every_strategy(p: Personalizer, name: str) -> None:
    sampled = answers(p, name, do_sample=True)
    assert {o.steering.path for o in sampled} == {STRATEGIES[name][2]}
    assert len({o.text for o in sampled}) >= 2  # the seeds give different answers
    strategy, strength, _ = STRATEGIES[name]
    again = p.generate("eve", PROMPT, strategy=strategy, strength=strength, seed=SEEDS[0],
                       do_sample=True, **ASK)
    assert again.text == sampled[0].text  # a seed gives one answer


@pytest.mark.parametrize("name", STRATEGIES)
def test_do_sample_false_gives_one_answer_or_is_refused(p: Personalizer, name: str) -> None:
    if name not in GREEDY:  # draw='sample': n greedy samples would be one answer n times
        with pytest.raises(InvalidInput, match=r"do_sample=False.*draw='branch'"):
            answers(p, name, do_sample=False)
        return
    greedy = answers(p, name, do_sample=False)
    assert {o.steering.path for o in greedy} == {GREEDY[name]}
    assert len({o.text for o in greedy}) == 1
    unset = answers(p, name)  # do_sample unset: the strategy's default, greedy here
    assert [o.text for o in unset] == [o.text for o in greedy]


def test_one_sampled_sentence_per_block_is_the_models_own_sampling(
        p: Personalizer, local: LocalGenerator) -> None:
    one = BestOfN(n=1, block="sentence", draw="branch", block_tokens=5)  # no early end
    for s in SEEDS:
        out = p.generate("eve", PROMPT, strategy=one, prompt_profile=False, do_sample=True,
                         seed=s, repetition_guard=False, **ASK)
        plain = local.generate(PROMPT, do_sample=True, seed=s, **ASK)
        assert out.token_ids == plain.token_ids and out.text == plain.text
        assert out.steering.path == "best-of-n" and out.steering.levers == ()
        # strength 0 is plain decoding token for token, sampled or not
        for sample in (True, False):
            zero = p.generate("eve", PROMPT, strength=0.0, prompt_profile=False,
                              do_sample=sample, seed=s, **ASK)
            ref = local.generate(PROMPT, do_sample=sample, seed=s, **ASK)
            assert zero.token_ids == ref.token_ids and zero.steering.path == "plain"


# -- hosted generators: the provider samples --------------------------------------------------


@pytest.fixture
def fresh(server: ProviderServer) -> ProviderServer:
    server.clear()
    server.reply = echo_reply
    return server


def hosted(kind: str, server: ProviderServer) -> Any:
    if kind == "openai":
        return OpenAIGenerator("gpt-test", base_url=server.openai_base_url, api_key="sk-test",
                               timeout=5, max_retries=0)
    return AnthropicGenerator("claude-test", base_url=server.anthropic_base_url,
                              api_key="sk-ant-test", timeout=5, max_retries=0)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("strategy", [None, BestOfN(n=2)])
def test_hosted_models_sample_and_refuse_what_they_cannot(
        tmp_path: Path, fresh: ProviderServer, kind: str, strategy: Any) -> None:
    with Personalizer(tmp_path / "p.db", rewards=REWARDS, generator=hosted(kind, fresh),
                      strategy=strategy) as p:
        p.record_preference("eve", "Any tips?", "eeee eee", "a")
        with pytest.raises(UnsupportedRequest, match="always sample.*temperature=0"):
            p.generate("eve", PROMPT, do_sample=False)
        with pytest.raises(InvalidInput, match="give one of them"):
            p.generate("eve", PROMPT, do_sample=True, temperature=0)
        assert fresh.requests == []  # refused before any call
        out = p.generate("eve", PROMPT, do_sample=True, temperature=0.7)
    assert out.steering.path == ("plain" if strategy is None else "best-of-n")
    bodies = [r.body for r in fresh.requests]
    assert bodies and all(b["temperature"] == 0.7 and "do_sample" not in b for b in bodies)
