"""Many users at once: 8 requests in one batch vs the same 8 one after another.

    .venv/bin/python bench/batch.py [--tokens 48] [--repeats 3]

Random GPT-2-small-shaped LM (124M), 8 prompts of ~32 tokens, greedy, 48 new tokens (end of
turn disabled), median of 3, one run. Rows: plain decoding; ARGS with shared-trunk heads
(8 heads on the LM's last hidden state, k=10); ARGS with a separate same-size reward model
(GPT-2-small sequence classifier with 8 labels, tree scoring, k=10); token-level heads (8
random rank-4 heads folded into one hidden-state shift per row). Each user has their own
coefficients. Throughput = tokens per second over the 8 requests.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
USERS = 8


def _users(rs, rng: np.random.Generator) -> list:  # noqa: ANN001
    from personalizer.backends import Steering

    def one() -> Steering:
        coef = {n: float(rng.normal()) for n in rs.names}
        try:
            from personalizer.backends import Args
        except ImportError:  # the API before the one-engine change (bench/decoding.py --against)
            return Steering(coefficients=coef, reward_set_id=rs.id,
                            reward_set_version=rs.version, strength=1.0, top_k=10,
                            whole_answer="off")
        return Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                        strength=1.0, strategy=Args(candidates=10, whole_answer="off"))

    return [one() for _ in range(USERS)]


def _token_users(rs, rng: np.random.Generator) -> list:  # noqa: ANN001
    from personalizer.backends import Steering, TokenRewards

    return [Steering(coefficients={n: float(rng.normal()) for n in rs.names},
                     reward_set_id=rs.id, reward_set_version=rs.version, strength=1.0,
                     strategy=TokenRewards(floor=False)) for _ in range(USERS)]


def run(tokens: int = 48, repeats: int = 3) -> None:
    """Print the table: one by one vs batched, per decoding kind."""
    from support.tiny import tokenizer
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import ClassifierReward, RewardSet
    from personalizer.backends.heads.trunk import TrunkHeads

    torch.set_num_threads(2)
    torch.manual_seed(0)
    gen = LocalGenerator(GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval(), tokenizer())
    gen.eos_ids = {-1}
    rng = np.random.default_rng(0)
    trunk = RewardSet("bench-trunk", [TrunkHeads(gen, rng.standard_normal((8, 768)) / 30,
                                                 np.zeros(8), [f"h{j}" for j in range(8)])])
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(GPT2Config(num_labels=8, pad_token_id=0)).eval()
    separate = RewardSet("bench-rm", [ClassifierReward(rm, tokenizer(), name="rm")])
    prompts = [" ".join(["water", "sleep", "bread", "dog"][i % 4] for i in range(j, j + 24))
               for j in range(USERS)]
    kinds = [("plain", trunk, [None] * USERS),
             ("shared-trunk ARGS", trunk, _users(trunk, rng)),
             ("separate-RM ARGS", separate, _users(separate, rng))]
    try:
        from decoding import token_heads_for

        heads_gen, _ = token_heads_for(gen)
        kinds.append(("token heads", heads_gen, _token_users(heads_gen.rewards, rng)))
    except ImportError:  # a version without token heads (bench/decoding.py --against)
        pass
    print(f"{USERS} users, GPT-2-small (random), {tokens} tokens each, greedy, k=10, median "
          f"of {repeats}")
    print(f"{'decoding':<22}{'one by one tok/s':>18}{'batched tok/s':>15}{'speed-up':>10}"
          f"{'same text':>11}")
    for label, rewards, steerings in kinds:
        if isinstance(rewards, LocalGenerator):  # a generator of its own (token heads)
            run_gen = rewards
        else:
            gen.rewards, run_gen = rewards, gen
        seq, bat = [], []
        same = True
        for _ in range(repeats):
            t = time.perf_counter()
            alone = [run_gen.generate(p, max_new_tokens=tokens, steering=s)
                     for p, s in zip(prompts, steerings, strict=True)]
            seq.append(USERS * tokens / (time.perf_counter() - t))
            t = time.perf_counter()
            out = run_gen.generate_batch(list(zip(prompts, steerings, strict=True)),
                                     max_new_tokens=tokens)
            bat.append(sum(o.completion_tokens for o in out) / (time.perf_counter() - t))
            same = same and [o.text for o in out] == [a.text for a in alone]
        a, b = statistics.median(seq), statistics.median(bat)
        print(f"{label:<22}{a:>18.1f}{b:>15.1f}{b / a:>9.2f}x{str(same):>11}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run(args.tokens, args.repeats)


if __name__ == "__main__":
    main()
