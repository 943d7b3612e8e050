"""Reward-guided decoding cost: ms per token, steered vs plain, through the public API.

    .venv/bin/python bench/decoding.py [--tokens 64] [--k 10] [--repeats 3]
                                       [--lengths 32 512] [--against REF]
                                       [--parts single batch proxy]

A random GPT-2-small-shaped LM (124M) and a same-size random reward model (GPT-2 sequence
classifier, same vocabulary), greedy, k candidates, end of turn disabled, prompts of 32 and
512 tokens. Rows, each measured in a process of its own (median of ``--repeats`` after a
warm-up; peak RSS of that process):

* plain: ``LocalGenerator.generate``;
* reference ARGS: the published loop ported to transformers 5 (LM and RM KV caches; the k
  candidates batched through the RM as k rows, which repeats the prompt prefill k times and
  copies the chosen row's RM cache k times every step) -- not ours, for scale;
* tree ARGS: ``generate(steering=...)`` with the classifier as the reward (one
  tree-attention pass of the RM over the k candidates per step);
* trunk ARGS: ``generate(steering=...)`` with 8 linear heads on the LM's own last hidden state
  (one k-candidate tree pass of the LM body per step);
* trunk, batch of one: ``generate_batch([(prompt, steering)])``, which must cost what a single
  request costs;
* token heads: ``strategy='token_rewards'`` with 8 random rank-4 token-level heads on the
  LM's hidden state (one folded hidden-state shift per step; no candidates, no lookahead).

With ``--against REF`` (a git commit, e.g. the one a change started from) every row but the
reference runs for both that commit's package (extracted with ``git archive``) and the
working tree, interleaved row by row and repeat by repeat, and both tables are printed with
each row's ratio to its own plain row. Then (``--parts``) 8 users in one batch vs one by one
(``bench/batch.py``) and proxy-tuning (``bench/proxy.py``) for the working tree.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from versions import package_of  # noqa: E402

ROWS = ("plain", "tree ARGS", "trunk ARGS", "trunk, batch of 1", "token heads")


def steering(rs, k: int, w: float = 1.0):  # noqa: ANN001, ANN201
    """A Steering for every user of ``rs`` (coefficients 1), whole-answer lookahead off, in
    the API of whichever version is imported."""
    from personalizer.backends import Steering

    coef = {n: 1.0 for n in rs.names}
    try:
        from personalizer.backends import Args
    except ImportError:  # before the one-engine change
        return Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                        strength=w, top_k=k, whole_answer="off")
    return Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                    strength=w, strategy=Args(candidates=k, whole_answer="off"))


def build(prompt_len: int):  # noqa: ANN201
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_positions=1024)).eval()
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(GPT2Config(num_labels=1, pad_token_id=0)).eval()
    prompt = torch.randint(100, 50000, (prompt_len,), generator=torch.Generator().manual_seed(2))
    return lm, rm, prompt.tolist()


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
        for layer in rm_cache.layers:  # keep the chosen row, copy it k times for the next step
            layer.keys = layer.keys[best:best + 1].repeat(k, 1, 1, 1)
            layer.values = layer.values[best:best + 1].repeat(k, 1, 1, 1)
        out = lm(input_ids=torch.tensor([[tid]]), cache=cache, use_cache=True)
    return ids


def measure(job: tuple[str, int, int, int, int, str | None]) -> tuple[list[float], float]:
    """One row in this (fresh) process: ms/token of each repeat, and peak RSS in MB."""
    name, prompt_len, tokens, k, repeats, impl = job
    if impl is not None:
        sys.path.insert(0, impl)
    torch.set_num_threads(2)
    lm, rm, prompt = build(prompt_len)
    if name == "reference ARGS":
        def run() -> None:
            reference_args(lm, rm, prompt, tokens, k, 1.0)
    else:
        run = _public(name, lm, rm, prompt_len, tokens, k)
    times = []
    with torch.inference_mode():
        run()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(1000 * (time.perf_counter() - start) / tokens)
    return times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _public(name: str, lm, rm, prompt_len: int, tokens: int, k: int):  # noqa: ANN001, ANN202
    import numpy as np
    from support.tiny import tokenizer

    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import ClassifierReward, RewardSet
    from personalizer.backends.heads.trunk import TrunkHeads

    gen = LocalGenerator(lm, tokenizer())
    gen.eos_ids = {-1}  # random weights: never stop early, time all tokens
    words = ["water"] * prompt_len
    while len(gen.prompt_ids(" ".join(words))) > prompt_len:
        words.pop()
    text = " ".join(words)
    if name.startswith("trunk"):
        heads = TrunkHeads(gen, np.random.default_rng(0).standard_normal((8, 768)) / 30,
                           np.zeros(8), [f"h{j}" for j in range(8)])
        gen.rewards = RewardSet("bench-trunk", [heads])
    elif name == "tree ARGS":
        gen.rewards = RewardSet("bench-rm", [ClassifierReward(rm, tokenizer(), name="rm")])
    if name == "token heads":
        return _token_heads(gen, text, tokens)
    s = None if name == "plain" else steering(gen.rewards, k)
    if name == "trunk, batch of 1":
        return lambda: gen.generate_batch([(text, s)], max_new_tokens=tokens)
    return lambda: gen.generate(text, steering=s, max_new_tokens=tokens)


def token_heads_for(gen, names: int = 8, rank: int = 4):  # noqa: ANN001, ANN201
    """``gen`` with random token heads over a reward set of ``names`` attribute scorers, and
    a Steering for them (coefficients 1, floor off)."""
    from personalizer.backends import Steering, TokenHeads, TokenRewards
    from personalizer.backends.rewards import AttributeScorer, RewardSet
    from personalizer.backends.heads.token import model_fingerprint

    rs = RewardSet("bench-token", [AttributeScorer(f"h{j}", f"head {j}", len)
                                   for j in range(names)])
    d = int(gen.model.config.hidden_size)
    g = torch.Generator().manual_seed(0)
    heads = TokenHeads(down=torch.randn(names, d, rank, generator=g) / d ** 0.5,
                       up=torch.randn(names, rank, d, generator=g) / 30,
                       bias=torch.zeros(names, d), names=tuple(rs.names),
                       reward_set_id=rs.id, reward_set_version=rs.version,
                       model=model_fingerprint(gen.model))
    gen = gen.with_rewards(rs).with_token_heads(heads)
    return gen, Steering(coefficients=dict.fromkeys(rs.names, 1.0), reward_set_id=rs.id,
                         reward_set_version=rs.version,
                         strategy=TokenRewards(floor=False))


def _token_heads(gen, text: str, tokens: int):  # noqa: ANN001, ANN202
    try:
        gen, s = token_heads_for(gen)
    except ImportError:  # a version without token heads (--against)
        return lambda: None
    return lambda: gen.generate(text, steering=s, max_new_tokens=tokens)


def versions(args: argparse.Namespace) -> dict[str, str | None]:
    """Version label -> import root (None: the working tree)."""
    if not args.against:
        return {"now": None}
    return {args.against: str(package_of(args.against)), "now": None}


def batched(job: tuple[str | None, int, int]) -> None:
    impl, tokens, repeats = job
    if impl is not None:
        sys.path.insert(0, impl)
    import batch

    batch.run(tokens, repeats)


def single(args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    impls = versions(args)
    print(f"GPT-2-small LM + GPT-2-small RM (random weights), k={args.k}, {args.tokens} new "
          f"tokens, greedy, median of {args.repeats}, torch threads 2; each row in its own "
          "process" + (f"; versions interleaved: {', '.join(impls)}" if args.against else ""))
    for length in args.lengths:
        times: dict[tuple[str, str], list[float]] = {}
        peak: dict[tuple[str, str], float] = {}
        rows = [(r, v) for r in args.rows for v in impls]
        if "reference ARGS" in args.rows:
            rows = [(r, v) for r, v in rows if r != "reference ARGS"] + [("reference ARGS", "now")]
        for _ in range(args.rounds):
            for row, version in rows:
                with ctx.Pool(1) as pool:
                    t, mb = pool.apply(measure, ((row, length, args.tokens, args.k,
                                                  args.repeats, impls[version]),))
                times.setdefault((row, version), []).extend(t)
                peak[(row, version)] = max(peak.get((row, version), 0.0), mb)
        print(f"\nprompt {length}")
        print(f"  {'version':<12}{'row':<20}{'ms/token':>10}{'x plain':>9}{'peak RSS MB':>13}")
        for version in impls:
            base = statistics.median(times[("plain", version)])
            for row in (*ROWS, "reference ARGS"):
                if (row, version) not in times:
                    continue
                med = statistics.median(times[(row, version)])
                print(f"  {version:<12}{row:<20}{med:>10.1f}{med / base:>9.2f}"
                      f"{peak[(row, version)]:>13.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the whole interleaved sweep (more samples per row)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 512])
    ap.add_argument("--against", help="a git commit to compare with, interleaved")
    ap.add_argument("--rows", nargs="+", choices=[*ROWS, "reference ARGS"],
                    default=[*ROWS, "reference ARGS"], help="which rows (plain is always kept)")
    ap.add_argument("--parts", nargs="+", choices=["single", "proxy", "batch"],
                    default=["single", "proxy", "batch"])
    args = ap.parse_args()
    if "plain" not in args.rows:
        args.rows = ["plain", *args.rows]
    if "single" in args.parts:
        single(args)
    if "batch" in args.parts:
        ctx = mp.get_context("spawn")
        for version, impl in versions(args).items():
            print(f"\n# many users in one batch ({version})", flush=True)
            with ctx.Pool(1) as pool:
                pool.apply(batched, ((impl, 48, args.repeats),))
    if "proxy" in args.parts:
        import proxy

        print("\n# proxy-tuning")
        proxy.run(args.tokens, args.repeats)


if __name__ == "__main__":
    main()
