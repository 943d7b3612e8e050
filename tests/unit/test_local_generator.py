"""LocalGenerator on tiny models built from configs (and one real SmolLM2 check)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import tiny

from personalizer import Generator, InvalidInput
from personalizer.backends import LocalGenerator
from personalizer.errors import BackendError

PROMPT = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def gen(request) -> LocalGenerator:  # noqa: ANN001
    model = tiny.gpt2() if request.param == "gpt2" else tiny.llama()
    return LocalGenerator(model, tiny.tokenizer())


def test_is_a_generator(gen: LocalGenerator) -> None:
    assert isinstance(gen, Generator)


def test_greedy_equals_transformers_generate(gen: LocalGenerator) -> None:
    ids = gen.prompt_ids(PROMPT)
    ours = gen.generate(PROMPT, max_new_tokens=20)
    ref = gen.model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                             pad_token_id=gen.tokenizer.pad_token_id,
                             eos_token_id=sorted(gen.eos_ids))
    assert ours.text == gen.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert ours.completion_tokens == ref.shape[1] - len(ids)


def test_sampling_is_seeded_and_top_k_1_is_greedy(gen: LocalGenerator) -> None:
    a = gen.generate(PROMPT, do_sample=True, seed=3, max_new_tokens=15).text
    b = gen.generate(PROMPT, do_sample=True, seed=3, max_new_tokens=15).text
    c = gen.generate(PROMPT, do_sample=True, seed=4, max_new_tokens=15).text
    assert a == b and a != c
    greedy = gen.generate(PROMPT, max_new_tokens=15).text
    assert gen.generate(PROMPT, do_sample=True, top_k=1, seed=9, max_new_tokens=15).text == greedy


def test_stream_equals_generate(gen: LocalGenerator) -> None:
    for opts in ({}, {"do_sample": True, "seed": 1}, {"stop": ["e"]}):
        whole = gen.generate(PROMPT, max_new_tokens=25, **opts)
        pieces = list(gen.stream(PROMPT, max_new_tokens=25, **opts))
        assert "".join(pieces) == whole.text
        assert all(pieces)  # no empty pieces
        assert len(pieces) > 1 or len(whole.text) <= 3  # streamed piece by piece


def test_stop_strings_cut_the_text(gen: LocalGenerator) -> None:
    full = gen.generate(PROMPT, max_new_tokens=30)
    assert full.finish_reason == "length" and full.completion_tokens == 30
    stop = full.text.strip()[3:6]
    cut = gen.generate(PROMPT, max_new_tokens=30, stop=stop)
    assert cut.finish_reason == "stop"
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert cut.completion_tokens < 30


def test_end_of_turn_id_stops(gen: LocalGenerator) -> None:
    first_text = next(iter(gen.stream(PROMPT, max_new_tokens=1)))
    first = gen.tokenizer(first_text, add_special_tokens=False)["input_ids"][0]
    saved = gen.eos_ids
    gen.eos_ids = {first}
    try:
        out = gen.generate(PROMPT, max_new_tokens=10)
    finally:
        gen.eos_ids = saved
    assert out.finish_reason == "stop" and out.completion_tokens == 1 and out.text == ""


def test_generation_record(gen: LocalGenerator) -> None:
    out = gen.generate("hi", max_new_tokens=5)
    assert out.prompt_tokens == len(gen.prompt_ids("hi"))
    assert out.timings.total_s >= (out.timings.first_token_s or 0) > 0
    assert out.steering.path == "plain" and out.steering.levers == ()
    assert out.prompt_tokens_dropped == 0


def test_a_prompt_longer_than_the_context_is_refused_or_truncated_when_asked() -> None:
    gen = LocalGenerator(tiny.gpt2(n_positions=64), tiny.tokenizer())
    long = "the quick brown fox " * 40
    assert len(gen.prompt_ids(long)) > 64
    with pytest.raises(InvalidInput, match="truncate='left'"):
        gen.generate(long, max_new_tokens=5)
    out = gen.generate(long, max_new_tokens=5, truncate="left")
    assert out.prompt_tokens_dropped == len(gen.prompt_ids(long)) - out.prompt_tokens
    assert out.prompt_tokens + 5 <= 64 and out.completion_tokens == 5
    # a prompt that fits, with a token limit past the context: the answer stops at its end
    short = gen.prompt_ids("hi")
    fits = gen.generate("hi", max_new_tokens=500)
    assert fits.completion_tokens == 64 - len(short) and fits.finish_reason == "length"


def test_bad_options_are_refused(gen: LocalGenerator) -> None:
    with pytest.raises(InvalidInput, match="temprature"):
        gen.generate(PROMPT, temprature=0.5)
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        gen.generate(PROMPT, max_new_tokens=0)
    with pytest.raises(InvalidInput, match="message 0"):
        gen.generate([{"role": "wizard", "content": "x"}])


def test_load_from_a_folder(tmp_path: Path) -> None:
    model, tok = tiny.gpt2(), tiny.tokenizer()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded = LocalGenerator(tmp_path / "m")
    direct = LocalGenerator(model, tok)
    assert loaded.generate(PROMPT, max_new_tokens=10).text == \
        direct.generate(PROMPT, max_new_tokens=10).text
    with pytest.raises(BackendError, match="could not load"):
        LocalGenerator(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="tokenizer"):
        LocalGenerator(model)


def test_prompt_rewards_take_names_or_one_direction() -> None:
    model, tok = tiny.gpt2(), tiny.tokenizer()
    assert LocalGenerator(model, tok).prompt_rewards == ("structure", "verbosity:less")
    assert LocalGenerator(model, tok, prompt_rewards=["warmth:more"]).prompt_rewards == \
        ("warmth:more",)
    for bad in (["verbosity:shorter"], [":less"], ["verbosity:"], [" verbosity:less"]):
        with pytest.raises(InvalidInput, match="prompt_rewards entry"):
            LocalGenerator(model, tok, prompt_rewards=bad)
    with pytest.raises(InvalidInput, match="prompt_rewards"):  # a name, not a list of names
        LocalGenerator(model, tok, prompt_rewards="warmth")


@pytest.mark.slow
def test_smollm2_real_model_answers_and_streams(smollm2: LocalGenerator) -> None:
    out = smollm2.generate("What is the capital of France? Answer in one word.",
                           max_new_tokens=12)
    assert "Paris" in out.text
    streamed = "".join(smollm2.stream("What is the capital of France? Answer in one word.",
                                      max_new_tokens=12))
    assert streamed == out.text
