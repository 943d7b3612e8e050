"""Proxy-tuning identities on tiny models (and the pure logits arithmetic)."""

from __future__ import annotations

import pytest
import torch
from support import tiny

from personalizer.backends import LocalGenerator, ProxyTuning
from personalizer.backends.decoding.tensor_math import proxy_logits
from personalizer.errors import InvalidInput

PROMPTS = ["Hello there", "Tell me about sleep", "Drink water"]


def test_proxy_logits_arithmetic_leaves_inputs_alone() -> None:
    b, e, a = torch.randn(3, 11).unbind(0)
    saved = [t.clone() for t in (b, e, a)]
    assert torch.equal(proxy_logits(b, e, a, 0.0), b)
    assert torch.allclose(proxy_logits(b, e, a, 0.5), b + 0.5 * (e - a))
    assert torch.equal(proxy_logits(b, e, e, 3.0), b)
    assert all(torch.equal(x, y) for x, y in zip((b, e, a), saved, strict=True))
    with pytest.raises(ValueError):
        proxy_logits(b, e[:5], a, 1.0)


@pytest.fixture(scope="module")
def trio() -> tuple[LocalGenerator, LocalGenerator, LocalGenerator]:
    tok = tiny.tokenizer()
    base = LocalGenerator(tiny.gpt2(seed=1, n_layer=3, n_embd=96), tok)
    # the expert's embedding matrix has padding rows beyond the tokenizer, as tuned models do
    expert = LocalGenerator(tiny.gpt2(seed=2, vocab_size=len(tok) + 16), tok)
    anti = LocalGenerator(tiny.llama(seed=3), tok)
    return base, expert, anti


def test_alpha_zero_is_the_base_model(trio) -> None:  # noqa: ANN001
    base, expert, anti = trio
    for prompt in PROMPTS:
        for opts in ({}, {"do_sample": True, "seed": 5, "top_k": 8}):
            proxied = base.generate(prompt, max_new_tokens=15,
                                    proxy=ProxyTuning(expert, anti, alpha=0.0), **opts)
            assert proxied.text == base.generate(prompt, max_new_tokens=15, **opts).text


def test_expert_equal_to_antiexpert_is_the_base_model(trio) -> None:  # noqa: ANN001
    base, expert, _ = trio
    for prompt in PROMPTS:
        proxied = base.generate(prompt, max_new_tokens=15,
                                proxy=ProxyTuning(expert, expert, alpha=2.0))
        assert proxied.text == base.generate(prompt, max_new_tokens=15).text


def test_base_equal_to_antiexpert_decodes_as_the_expert(trio) -> None:  # noqa: ANN001
    base, expert, _ = trio
    for prompt in PROMPTS:
        proxied = base.generate(prompt, max_new_tokens=15, proxy=ProxyTuning(expert, base, 1.0))
        assert proxied.text == expert.generate(prompt, max_new_tokens=15).text
        pieces = list(base.stream(prompt, max_new_tokens=15, proxy=ProxyTuning(expert, base)))
        assert "".join(pieces) == proxied.text


def test_vocabularies_are_checked(trio) -> None:  # noqa: ANN001
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base, expert, _ = trio
    raw = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    other_tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="b")
    stranger = LocalGenerator(tiny.gpt2(seed=4), other_tok)
    with pytest.raises(InvalidInput, match="same vocabulary"):
        base.generate("hi", max_new_tokens=3, proxy=ProxyTuning(stranger, expert))
    with pytest.raises(InvalidInput, match="alpha"):
        ProxyTuning(expert, expert, alpha=-1.0)
    with pytest.raises(InvalidInput, match="expert must be a local model"):
        ProxyTuning("gpt2", expert)  # type: ignore[arg-type]


def test_proxy_tuning_combines_with_args(trio) -> None:  # noqa: ANN001
    from personalizer.backends import Args, Steering
    from personalizer.backends.rewards import AttributeScorer, RewardSet

    base, expert, anti = trio
    rs = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])
    for g in (base, expert):
        g.rewards = rs

    def s(w: float) -> Steering:
        return Steering(coefficients={"e_count": 1.0}, reward_set_id=rs.id,
                        reward_set_version=rs.version, strength=w,
                        strategy=Args(candidates=8, whole_answer="off"))

    try:
        for prompt in PROMPTS:
            # proxy with base == antiexpert is the expert; ARGS on top equals ARGS on the expert
            both = base.generate(prompt, max_new_tokens=12, steering=s(2.0),
                                 proxy=ProxyTuning(expert, base, 1.0))
            assert both.text == expert.generate(prompt, max_new_tokens=12, steering=s(2.0)).text
            assert both.steering.levers == ("proxy", "args", "no_repeat")
            # ARGS at w = 0 over proxy-tuned logits is plain proxy-tuning
            assert base.generate(prompt, max_new_tokens=12, steering=s(0.0),
                                 proxy=ProxyTuning(expert, anti, 1.5)).text == \
                base.generate(prompt, max_new_tokens=12, proxy=ProxyTuning(expert, anti, 1.5)).text
    finally:
        for g in (base, expert):
            g.rewards = None
