"""Proxy-tuning cost: ms per token of plain base decoding vs proxy-tuned decoding.

    .venv/bin/python bench/proxy.py [--tokens 64] [--repeats 3]

Base: random GPT-2 12 layers / 768; expert and antiexpert: random GPT-2 4 layers / 256, same
vocabulary. Greedy, 64 new tokens (end-of-turn disabled so every run is full length), prompts
of 32 and 512 tokens, and 8 requests of 32 tokens in one batch (ms per token of the batch);
median of 3, one run. Proxy-tuning is three cached forwards per token (the published loop
measured 1.41x / 1.43x plain on this machine kind).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.tiny import tokenizer  # noqa: E402

from personalizer.backends import LocalGenerator, ProxyTuning  # noqa: E402


def model(layers: int, width: int, seed: int) -> LocalGenerator:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    m = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=width, n_head=max(1, width // 64),
                                   n_positions=1024)).eval()
    gen = LocalGenerator(m, tokenizer())
    gen.eos_ids = {-1}
    return gen


def prompt_of(gen: LocalGenerator, tokens: int) -> str:
    words = ["water"] * tokens
    while len(gen.prompt_ids(" ".join(words))) > tokens:
        words.pop()
    return " ".join(words)


def run(tokens: int = 64, repeats: int = 3) -> None:
    """Print the table: plain vs proxy-tuned, one request at prompts 32 / 512, and 8 requests
    in one batch (prompt 32)."""
    torch.set_num_threads(2)
    base, expert, anti = model(12, 768, 0), model(4, 256, 1), model(4, 256, 2)
    proxy = ProxyTuning(expert, anti, alpha=1.0)
    print(f"base 12L/768, expert and antiexpert 4L/256, {tokens} tokens, greedy, median "
          f"of {repeats}")
    print(f"{'prompt':>12}{'plain ms/token':>16}{'proxy ms/token':>16}{'x plain':>9}")
    for length, users in ((32, 1), (512, 1), (32, 8)):
        prompt = prompt_of(base, length)
        times: dict[str, list[float]] = {"plain": [], "proxy": []}
        for _ in range(repeats + 1):  # the first round warms up
            for name, kw in (("plain", {}), ("proxy", {"proxy": proxy})):
                start = time.perf_counter()
                if users == 1:
                    n = base.generate(prompt, max_new_tokens=tokens, **kw).completion_tokens
                else:
                    outs = base.generate_batch([(f"{prompt} {i}", None) for i in range(users)],
                                               max_new_tokens=tokens, **kw)
                    n = sum(o.completion_tokens for o in outs)
                times[name].append(1000 * (time.perf_counter() - start) / n)
        plain, prox = (statistics.median(times[k][1:]) for k in ("plain", "proxy"))
        where = f"{len(base.prompt_ids(prompt))}" + (f" x{users}" if users > 1 else "")
        print(f"{where:>12}{plain:>16.1f}{prox:>16.1f}{prox / plain:>9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run(args.tokens, args.repeats)


if __name__ == "__main__":
    main()
