"""Reward-guided decoding cost: ms per token, steered vs plain, ours vs the published ARGS loop.

    .venv/bin/python bench/decoding.py [--tokens 64] [--k 10] [--repeats 3]
                                       [--parts single proxy batch]

A random GPT-2-small-shaped LM (124M) and a same-size random reward model (GPT-2 sequence
classifier, same vocabulary), greedy, k candidates, prompt lengths 32 and 512. Rows, measured
side by side in one run (median of ``--repeats``):

* plain: our cached greedy decoding;
* reference ARGS: the published loop ported to transformers 5 (LM and RM KV caches; the k
  candidates batched through the RM as k rows, which repeats the prompt prefill k times and
  copies the chosen row's RM cache k times every step);
* tree ARGS: ours, one tree-attention pass of the RM over the k candidates per step;
* trunk ARGS: ours, 8 linear reward heads on the LM's own last hidden state (no second
  model): one k-candidate tree pass of the LM body per step.

Both ARGS rows must choose identical tokens. Peak memory is each row's maximum resident set
size, run in its own process. Then (``--parts``) the proxy-tuning rows of ``bench/proxy.py``
and the 8-users-in-one-batch rows of ``bench/batch.py``, in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build(prompt_len: int):  # noqa: ANN201
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval()
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(GPT2Config(num_labels=1, pad_token_id=0)).eval()
    prompt = torch.randint(100, 50000, (prompt_len,), generator=torch.Generator().manual_seed(2))
    return lm, rm, prompt.tolist()


def plain(lm, prompt: list[int], tokens: int, k: int, w: float) -> list[int]:  # noqa: ANN001
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.config)
    out = lm(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True, logits_to_keep=1)
    ids = []
    for _ in range(tokens):
        tid = int(out.logits[0, -1].argmax())
        ids.append(tid)
        out = lm(input_ids=torch.tensor([[tid]]), cache=cache, use_cache=True)
    return ids


def reference_args(lm, rm, prompt: list[int], tokens: int, k: int, w: float) -> list[int]:  # noqa: ANN001
    """The published ARGS loop, ported: RM rows = k copies of the sequence."""
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.config)
    out = lm(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True, logits_to_keep=1)
    rm_cache = None
    ids: list[int] = []
    for _ in range(tokens):
        values, cands = torch.topk(out.logits[0, -1], k)
        if rm_cache is None:  # first step: k full sequences, prompt prefilled k times
            rm_cache = DynamicCache(config=rm.config)
            rows = torch.tensor([prompt + [int(c)] for c in cands])
            hidden = rm.base_model(input_ids=rows, cache=rm_cache, use_cache=True)
        else:
            pos = torch.full((k, 1), len(prompt) + len(ids))
            hidden = rm.base_model(input_ids=cands[:, None], cache=rm_cache, use_cache=True,
                                   position_ids=pos)
        r = rm.score(hidden.last_hidden_state[:, -1])[:, 0]
        best = int(torch.argmax(values + w * r))
        tid = int(cands[best])
        ids.append(tid)
        # keep the chosen row, then copy it k times for the next step's candidates
        for layer in rm_cache.layers:
            layer.keys = layer.keys[best:best + 1].repeat(k, 1, 1, 1)
            layer.values = layer.values[best:best + 1].repeat(k, 1, 1, 1)
        out = lm(input_ids=torch.tensor([[tid]]), cache=cache, use_cache=True)
    return ids


def tree_args(lm, rm, prompt: list[int], tokens: int, k: int, w: float) -> list[int]:  # noqa: ANN001
    from transformers import DynamicCache

    from personalizer.backends.args import args_scores, args_select, top_candidates
    from personalizer.backends.tree import TreeRewardScorer

    scorer = TreeRewardScorer(rm, [1.0])
    scorer.start(prompt)
    cache = DynamicCache(config=lm.config)
    out = lm(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True, logits_to_keep=1)
    ids = []
    for _ in range(tokens):
        values, cands = top_candidates(out.logits[0, -1], k)
        tid = args_select(cands, args_scores(values, scorer.score(cands), w),
                          vocab_size=out.logits.shape[-1], do_sample=False)
        scorer.accept(tid)
        ids.append(tid)
        out = lm(input_ids=torch.tensor([[tid]]), cache=cache, use_cache=True)
    return ids


def trunk_args(lm, rm, prompt: list[int], tokens: int, k: int, w: float) -> list[int]:  # noqa: ANN001
    from personalizer.backends import LocalGenerator, Steering
    from personalizer.backends.local import GenerationOptions
    from personalizer.backends.trunk import TrunkHeads, trunk_token_ids

    from tiny import tokenizer

    gen = LocalGenerator(lm, tokenizer())
    gen.eos_ids = {-1}  # random weights: never stop early, time all tokens
    rng = np.random.default_rng(0)
    heads = TrunkHeads(gen, rng.standard_normal((8, 768)) / 30, np.zeros(8),
                       [f"h{j}" for j in range(8)])
    s = Steering(coefficients={f"h{j}": 1.0 for j in range(8)}, reward_set_id="b",
                 reward_set_version="1", strength=w, top_k=k, whole_answer="off")
    return list(trunk_token_ids(gen, prompt, GenerationOptions(max_new_tokens=tokens), s,
                                heads, np.ones(8), 0.0))


METHODS = {"plain": plain, "reference ARGS": reference_args, "tree ARGS (ours)": tree_args,
           "trunk ARGS (ours)": trunk_args}


def measure(args: tuple[str, int, int, int, int]) -> tuple[list[float], list[int], float]:
    name, prompt_len, tokens, k, repeats = args
    torch.set_num_threads(2)
    lm, rm, prompt = build(prompt_len)
    fn = METHODS[name]
    times, ids = [], []
    with torch.inference_mode():
        fn(lm, rm, prompt, 2, k, 1.0) if name != "plain" else fn(lm, prompt, 2, k, 1.0)
        for _ in range(repeats):
            start = time.perf_counter()
            ids = fn(lm, rm, prompt, tokens, k, 1.0) if name != "plain" else \
                fn(lm, prompt, tokens, k, 1.0)
            times.append(1000 * (time.perf_counter() - start) / tokens)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return times, ids, peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 512])
    ap.add_argument("--parts", nargs="+", choices=["single", "proxy", "batch"],
                    default=["single", "proxy", "batch"])
    args = ap.parse_args()
    if "single" in args.parts:
        single(args)
    if "proxy" in args.parts:
        import proxy

        print("\n# proxy-tuning")
        proxy.run(args.tokens, args.repeats)
    if "batch" in args.parts:
        import batch

        print("\n# many users in one batch")
        batch.run(48, args.repeats)


def single(args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    print(f"GPT-2-small LM + GPT-2-small RM (random weights), k={args.k}, {args.tokens} new "
          f"tokens, greedy, median of {args.repeats}, torch threads 2")
    print(f"{'prompt':>6}  {'method':<18}{'ms/token':>10}{'x plain':>9}{'peak RSS MB':>13}")
    for length in args.lengths:
        results = {}
        for name in METHODS:
            with ctx.Pool(1) as pool:
                results[name] = pool.apply(measure, ((name, length, args.tokens, args.k,
                                                      args.repeats),))
        base = statistics.median(results["plain"][0])
        for name, (times, _, peak) in results.items():
            med = statistics.median(times)
            print(f"{length:>6}  {name:<18}{med:>10.1f}{med / base:>9.2f}{peak:>13.0f}")
        ref, ours = results["reference ARGS"], results["tree ARGS (ours)"]
        print(f"        tree vs reference: {statistics.median(ref[0]) / statistics.median(ours[0]):.2f}x "
              f"faster; identical tokens: {ref[1] == ours[1]}")


if __name__ == "__main__":
    main()
