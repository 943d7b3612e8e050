"""Many users at once: 8 requests in one batch vs the same 8 one after another.

    .venv/bin/python bench/batch.py [--tokens 48]

Random GPT-2-small-shaped LM (124M), 8 prompts of ~32 tokens, greedy, 48 new tokens (end of
turn disabled), median of 3, one run. Rows: plain decoding, and ARGS with shared-trunk heads
(8 heads, k=10), each user with their own coefficients. Throughput = tokens per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny import tokenizer  # noqa: E402

from personalizer.backends import LocalGenerator, Steering  # noqa: E402
from personalizer.backends.rewards import RewardSet  # noqa: E402
from personalizer.backends.trunk import TrunkHeads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gen = LocalGenerator(GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval(), tokenizer())
    gen.eos_ids = {-1}
    rng = np.random.default_rng(0)
    heads = TrunkHeads(gen, rng.standard_normal((8, 768)) / 30, np.zeros(8),
                       [f"h{j}" for j in range(8)])
    gen.rewards = RewardSet("bench", [heads])
    prompts = [" ".join(["water", "sleep", "bread", "dog"][i % 4] for i in range(j, j + 24))
               for j in range(8)]
    users = [Steering(coefficients={f"h{j}": float(rng.normal()) for j in range(8)},
                      reward_set_id=gen.rewards.id, reward_set_version=gen.rewards.version,
                      strength=1.0, top_k=10, whole_answer="off") for _ in range(8)]
    print(f"8 users, GPT-2-small (random), {args.tokens} tokens each, greedy, median of "
          f"{args.repeats}")
    print(f"{'decoding':<22}{'one by one tok/s':>18}{'batched tok/s':>15}{'speed-up':>10}")
    for label, steerings in (("plain", [None] * 8), ("shared-trunk ARGS", users)):
        seq, bat = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for p, s in zip(prompts, steerings, strict=True):
                gen.generate(p, max_new_tokens=args.tokens, steering=s)
            seq.append(8 * args.tokens / (time.perf_counter() - t))
            t = time.perf_counter()
            out = gen.generate_batch(list(zip(prompts, steerings, strict=True)),
                                     max_new_tokens=args.tokens)
            bat.append(sum(o.completion_tokens for o in out) / (time.perf_counter() - t))
        a, b = statistics.median(seq), statistics.median(bat)
        print(f"{label:<22}{a:>18.1f}{b:>15.1f}{b / a:>9.2f}x")


if __name__ == "__main__":
    main()
