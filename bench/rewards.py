"""Reward backend throughput (responses/s) on 256 synthetic responses of ~100 words.

    .venv/bin/python bench/rewards.py [--judge-responses 16] [--skip-judge]

Rows: the nine attribute scorers together, 8 embedding heads on the shipped MiniLM, a random
GPT-2-small-shaped (12 layers, 768 wide, 50257 vocab) sequence classifier, and the
reasoning-before-scoring judge on SmolLM2-135M-Instruct at samples=1 and samples=4 (64-token
critiques; the judge reports how many verdicts it parsed from text, the rest were read from the
model's score probabilities: a 135M model rarely keeps to the format).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from personalizer.backends import LocalGenerator  # noqa: E402
from personalizer.backends.rewards import (  # noqa: E402
    ClassifierReward,
    EmbeddingHeads,
    JudgeReward,
    RewardSet,
    SentenceEncoder,
    attribute_reward_set,
)

SENTENCES = [
    "Keep a fixed bedtime and wake up at the same hour every day.",
    "Caffeine has a half-life of about five hours, so avoid it after noon.",
    "For example, a short walk after dinner can help you relax.",
    "I think it might help, but it depends on your routine.",
    "Absolutely wonderful idea, you will love the results!",
    "The algorithm runs in O(n log n) time using a binary heap.",
    "- Drink water\n- Stretch for five minutes\n- Read a paper book",
    "However, the evidence is mixed and further research is needed.",
    "Dim the lights an hour before bed to let melatonin rise.",
    "Hey, that's gonna be super easy, trust me 🙂",
]
PROMPT = "How do I get better sleep?"


def responses(n: int = 256, words: int = 100, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text: list[str] = []
        while sum(len(s.split()) for s in text) < words:
            text.append(rng.choice(SENTENCES))
        out.append(" ".join(text))
    return out


def rate(fn, n: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def bench_tokenizer(texts: list[str]):  # noqa: ANN201
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts * 4, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge-responses", type=int, default=16)
    ap.add_argument("--judge-tokens", type=int, default=64)
    ap.add_argument("--skip-judge", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    texts = responses()
    n = len(texts)
    mean_words = np.mean([len(t.split()) for t in texts])
    print(f"{n} responses, {mean_words:.0f} words on average; torch threads "
          f"{torch.get_num_threads()}")
    rows = []

    attrs = attribute_reward_set()
    rows.append(("attribute scorers (9 together)", rate(lambda: attrs.raw_features(PROMPT, texts),
                                                        n)))

    encoder = SentenceEncoder()
    heads = EmbeddingHeads(encoder, np.random.default_rng(0).normal(size=(8, encoder.dim)),
                           None, [f"h{j}" for j in range(8)])
    heads_set = RewardSet("heads", [heads])
    heads_set.raw_features(PROMPT, texts[:8])  # warm-up
    rows.append(("MiniLM + 8 embedding heads", rate(lambda: heads_set.raw_features(PROMPT, texts),
                                                    n)))

    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = bench_tokenizer(texts)
    torch.manual_seed(0)
    clf = GPT2ForSequenceClassification(GPT2Config(num_labels=1, pad_token_id=0)).eval()
    reward = ClassifierReward(clf, tok, batch_size=16)
    n_tokens = np.mean([len(reward._encode(PROMPT, t)) for t in texts])
    reward.score(PROMPT, texts[:4])  # warm-up
    rows.append((f"GPT-2-small classifier ({n_tokens:.0f} tokens each)",
                 rate(lambda: reward.score(PROMPT, texts), n)))

    if not args.skip_judge:
        gen = LocalGenerator.smollm2()
        subset = texts[:args.judge_responses]
        for samples in (1, 4):
            judge = JudgeReward(gen, samples=samples, max_retries=0,  # finish="auto"
                                generation_options={"max_new_tokens": args.judge_tokens,
                                                    **({"do_sample": True, "temperature": 0.8}
                                                       if samples > 1 else {})})
            judgements = []

            def run(judge: JudgeReward = judge) -> None:
                for t in subset:
                    judgements.extend(judge.judge(PROMPT, [t]))

            r = rate(run, len(subset))
            texts = [x for j in judgements for x in j.rationales]
            parsed = sum("(expected value)" not in x for x in texts)
            rows.append((f"SmolLM2 judge, samples={samples} ({parsed}/{len(texts)} parsed "
                         "from text)", r))

    width = max(len(name) for name, _ in rows) + 2
    print(f"{'backend':<{width}}{'responses/s':>12}")
    for name, value in rows:
        print(f"{name:<{width}}{value:>12.2f}")


if __name__ == "__main__":
    main()
