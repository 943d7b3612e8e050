"""Attribute experts on tiny models: the hooked LoRA equals PEFT's, weight 0 is plain decoding,
weight 1 is the expert itself, rows of one batch equal their own runs, experts refuse
another model."""

from __future__ import annotations

import copy

import pytest
import torch
from support import tiny

from personalizer.backends import LocalGenerator
from personalizer.backends.experts import Expert, ExpertSet
from personalizer.backends.rewards.attributes import attribute_reward_set
from personalizer.errors import InvalidInput
from personalizer.steering import Steering

peft = pytest.importorskip("peft")

REWARDS = attribute_reward_set()
PROMPTS = ["Hello there", "Tell me about sleep", "Drink water"]


def _lora(model, seed: int):
    """A PEFT LoRA copy of ``model`` with random (nonzero) B: an expert that moves."""
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(Expert.TARGETS),
                             init_lora_weights=False)
    return peft.get_peft_model(copy.deepcopy(model), config).eval()


@pytest.fixture(scope="module")
def setup():
    base = tiny.llama(seed=0)
    tuned = {"verbosity": _lora(base, 1), "warmth": _lora(base, 2)}
    experts = ExpertSet([
        Expert.from_peft_state(name, peft.get_peft_model_state_dict(m), rank=4, alpha=8,
                               base_model=base, dtype="float32")
        for name, m in tuned.items()])
    gen = LocalGenerator(base, tiny.tokenizer(), rewards=REWARDS, quality=None,
                         experts=experts)
    return gen, tuned, experts


def _steer(strength: float = 1.0, **coefficients: float) -> Steering:
    return Steering(coefficients=_full(**coefficients), strength=strength, relative=False,
                    strategy="experts", **_SET)


_SET = {"reward_set_id": REWARDS.id, "reward_set_version": REWARDS.version}


def _full(**coefficients: float) -> dict[str, float]:
    return {n: coefficients.get(n, 0.0) for n in REWARDS.names}


def test_hooked_lora_equals_peft_and_leaves_other_rows_alone(setup) -> None:
    gen, tuned, experts = setup
    ids = torch.tensor([gen.prompt_ids(PROMPTS[0])] * 3)
    with torch.inference_mode():
        plain = gen.model(input_ids=ids).logits
        with experts.routed(torch.tensor([-1, 0, 1])):
            routed = gen.model(input_ids=ids).logits
        own = [tuned[n](input_ids=ids[:1]).logits[0] for n in experts.names]
    assert torch.equal(routed[0], plain[0])  # the base row is untouched
    for i, name in enumerate(experts.names):
        assert torch.allclose(routed[i + 1], own[experts.index(name)], atol=1e-5)
        assert not torch.allclose(routed[i + 1], plain[0], atol=1e-3)


def test_weight_zero_is_plain_decoding_token_for_token(setup) -> None:
    gen, _, _ = setup
    for prompt in PROMPTS:
        plain = gen.generate(prompt, max_new_tokens=12)
        for steering in (_steer(0.0, verbosity=1.0), _steer(1.0, formality=1.0)):
            steered = gen.generate(prompt, max_new_tokens=12, steering=steering)
            assert steered.token_ids == plain.token_ids
            assert steered.steering.experts == {}
        # the default strategy with its experts scale at 0 is the default without experts
        off = Steering(coefficients=_full(verbosity=-1.0), **_SET, strategy={
            "kind": "best_of_n", "n": 1, "block": "sentence", "draw": "branch",
            "experts": 0.0})
        assert gen.generate(prompt, max_new_tokens=12, steering=off).token_ids == \
            gen.with_experts(None).generate(prompt, max_new_tokens=12,
                                            steering=off).token_ids


def test_weight_one_decodes_the_expert_itself(setup) -> None:
    gen, tuned, _ = setup
    for name in ("verbosity", "warmth"):
        own = LocalGenerator(_merged(tuned[name]), tiny.tokenizer(), quality=None)
        for prompt in PROMPTS:
            steered = gen.generate(prompt, max_new_tokens=12, repetition_guard=False,
                                   steering=_steer(1.0, **{name: 1.0}))
            assert steered.token_ids == own.generate(prompt, max_new_tokens=12).token_ids
            assert steered.steering.experts == {name: 1.0}
            assert "experts" in steered.steering.levers


def _merged(model):
    return copy.deepcopy(model).merge_and_unload().eval()


def test_mixed_people_in_one_batch_equal_their_own_runs(setup) -> None:
    gen, _, _ = setup
    people = [_steer(1.0, verbosity=1.5, warmth=-0.5), None, _steer(1.0, warmth=2.0),
              Steering(coefficients=_full(verbosity=-1.0, structure=0.5), **_SET)]
    requests = [(p, s) for p in PROMPTS[:2] for s in people]
    batch = gen.generate_batch(requests, max_new_tokens=10)
    for (prompt, steering), got in zip(requests, batch, strict=True):
        alone = gen.generate(prompt, max_new_tokens=10, steering=steering)
        assert got.token_ids == alone.token_ids
    # and a stream joins to the same answer
    stream = gen.stream(PROMPTS[0], max_new_tokens=10, steering=people[0])
    assert "".join(stream) == batch[0].text


async def test_the_async_paths_give_the_same_answer(setup) -> None:
    gen, _, _ = setup
    steering = _steer(1.0, verbosity=1.5, warmth=-0.5)
    want = gen.generate(PROMPTS[2], max_new_tokens=10, steering=steering)
    got = await gen.agenerate(PROMPTS[2], max_new_tokens=10, steering=steering)
    pieces = [p async for p in gen.astream(PROMPTS[2], max_new_tokens=10, steering=steering)]
    assert got.token_ids == want.token_ids and "".join(pieces) == want.text
    assert got.steering.experts == {"verbosity": 1.5, "warmth": -0.5}


def test_experts_refuse_another_model_and_bad_input(setup) -> None:
    _, _, experts = setup
    other = tiny.llama(seed=7)
    with pytest.raises(InvalidInput, match="trained on another model"):
        LocalGenerator(other, tiny.tokenizer(), quality=None, experts=experts)
    with pytest.raises(InvalidInput, match="ExpertSet"):
        LocalGenerator(other, tiny.tokenizer(), quality=None, experts="verbosity.safetensors")
    plain = LocalGenerator(other, tiny.tokenizer(), rewards=REWARDS, quality=None)
    with pytest.raises(InvalidInput, match="needs attribute experts"):
        plain.generate("Hi", max_new_tokens=3, steering=_steer(1.0, verbosity=1.0))
    assert plain.with_experts("auto").experts is None  # SmolLM2's experts fit no tiny model


def test_expert_files_round_trip(setup, tmp_path) -> None:
    gen, _, experts = setup
    for e in experts.experts:
        e.save(tmp_path / f"{e.attribute}.safetensors")
    again = ExpertSet.load(tmp_path)
    assert again.names == experts.names and again.base_model == experts.base_model
    ids = torch.tensor([gen.prompt_ids(PROMPTS[1])] * 2)
    with torch.inference_mode():
        with experts.routed(torch.tensor([0, 1])):
            a = gen.model(input_ids=ids).logits
        fresh = copy.deepcopy(gen.model)
        again.attach(fresh)
        with again.routed(torch.tensor([0, 1])):
            b = fresh(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-6)
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(InvalidInput, match="not an expert file"):
        ExpertSet.load(tmp_path)


def test_a_toy_expert_trained_by_dpo_moves_answers_its_way(tmp_path) -> None:
    """train_expert (TRL's DPO on a PEFT LoRA) on a tiny Llama that answers in its corpus's
    sentences: pairs whose chosen answer is warm; weighed +1 the expert makes more answers
    open warmly than plain decoding does, weighed -1 fewer."""
    pytest.importorskip("trl")
    from personalizer.backends.experts.training import train_expert

    tok = copy.deepcopy(tiny.tokenizer())
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    gen = LocalGenerator(copy.deepcopy(tiny.trained_llama()), tok, rewards=REWARDS, quality=None)
    warm = ["Absolutely! That is wonderful, great and lovely news for you.",
            "Hello! How are you today? I am fine, thank you."]
    cold = ["The algorithm uses a transformer with attention and a cache.",
            "I think it might perhaps be a good idea, but it depends."]
    questions = ["Hello there", "Drink water", "Tell me about sleep", "Any tips?",
                 "How are you today?", "What should I do?"]
    pairs = [{"prompt": [{"role": "user", "content": q}],
              "chosen": [{"role": "assistant", "content": warm[i % 2]}],
              "rejected": [{"role": "assistant", "content": cold[i % 2]}]}
             for i, q in enumerate(questions * 3)]
    path = train_expert(gen, "warmth", pairs, tmp_path / "warmth.safetensors", rank=4,
                        alpha=8, epochs=4, learning_rate=5e-3, batch_size=8, max_length=64,
                        progress=False, dtype="float32")
    steered = gen.with_experts(ExpertSet.load(tmp_path))
    assert path.stat().st_size < 200_000

    def lean(weight: float | None) -> int:
        """Answers that open warm ("Absolutely!", "Hello!") minus answers that open cold."""
        steering = None if weight is None else _steer(1.0, warmth=weight)
        texts = [steered.generate(q, max_new_tokens=24, steering=steering,
                                  repetition_guard=False).text for q in questions]
        return sum(("Hello!" in t or "Absolutely" in t) - ("algorithm" in t or "perhaps" in t)
                   for t in texts)

    plain, up, down = lean(None), lean(1.0), lean(-1.0)
    assert down < plain < up, (down, plain, up)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_loop_and_the_experts_on_cuda_in_bfloat16(setup) -> None:
    """Device and dtype follow the model: the base, its experts and the mixed rows run on
    the GPU in bfloat16; weight 0 is still plain decoding, and rows of a batch equal their
    own runs."""
    _, _, experts = setup
    model = copy.deepcopy(tiny.llama(seed=0)).to("cuda", torch.bfloat16)
    gen = LocalGenerator(model, tiny.tokenizer(), rewards=REWARDS, quality=None,
                         experts=experts)
    assert gen.device.type == "cuda"
    plain = gen.generate(PROMPTS[0], max_new_tokens=10)
    assert gen.generate(PROMPTS[0], max_new_tokens=10,
                        steering=_steer(0.0, verbosity=1.0)).token_ids == plain.token_ids
    people = [_steer(1.0, verbosity=1.0), None, _steer(1.0, warmth=-1.0)]
    batch = gen.generate_batch([(PROMPTS[1], s) for s in people], max_new_tokens=10)
    for steering, got in zip(people, batch, strict=True):
        assert got.token_ids == gen.generate(PROMPTS[1], max_new_tokens=10,
                                             steering=steering).token_ids


def test_a_mixed_row_forked_in_the_loop_keeps_its_expert_rows(setup) -> None:
    """The loop's logits source forks a row with experts (select with a repeated index)
    into copies that each keep their base and expert rows: equal logits, and each copy
    goes on with its own token as a row decoded alone would."""
    from personalizer.backends.decoding.engine import DecodeRow, RowSpec, _Logits
    from personalizer.backends.decoding.policies import PLAIN
    from personalizer.backends.experts.lora import ExpertMix
    from personalizer.steering import GenerationOptions

    gen, _, experts = setup
    mix = ExpertMix(experts, (0, 1), (0.7, -0.4))

    def row(i: int, with_mix: bool) -> DecodeRow:
        spec = RowSpec(prompt=gen.prompt_ids(PROMPTS[i]), prompt_text=PROMPTS[i],
                       options=GenerationOptions(), policy=PLAIN, max_new_tokens=4,
                       mix=mix if with_mix else None)
        return DecodeRow(spec, gen.tokenizer, i)

    with torch.inference_mode():
        source = _Logits(gen, [row(0, True), row(1, False)], None)
        first = source.current()
        source.select([0, 0, 1])  # row 0 forked in two
        forked = source.current()
        # equal up to float32 rounding (transformers 5.25 computes a batch of three rows
        # one ulp away from a batch of two)
        assert torch.allclose(forked[0], first[0], atol=1e-6)
        assert torch.allclose(forked[1], first[0], atol=1e-6)
        assert torch.allclose(forked[2], first[1], atol=1e-6)
        source.commit(torch.tensor([5, 9, 5]), torch.tensor([-1, -1, -1]))
        after = source.current()
        alone = _Logits(gen, [row(0, True)], None)
        alone.commit(torch.tensor([9]), torch.tensor([-1]))
        assert torch.allclose(after[1], alone.current()[0], atol=1e-5)
        assert not torch.allclose(after[0], after[1], atol=1e-4)
