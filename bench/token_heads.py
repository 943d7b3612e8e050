"""Token-level rewards on SmolLM2: distil heads from the default reward set, then the
reward-for-cost frontier of the steering strategies.

    .venv/bin/python bench/token_heads.py [--max-new-tokens 96] [--strategies ...]
        [--bank general|all] [--heads PATH] [--profiles terse thorough lists] [--dump F]

1. Samples (offline, SmolLM2-135M-Instruct): the question bank's answers, and SmolLM2's own
   answers to 24 training prompts (the bank's and 16 more) asked plainly and with a request
   added to the user's turn (one short sentence / a bulleted list / a thorough answer), so
   that the answers differ in length and structure. None of the 12 evaluation prompts of
   ``bench/quality.py`` is among them.
2. ``distill_token_heads`` fits rank-8 heads for the default reward set (attribute scorers),
   saved to ``bench/out/smollm2-token-heads.safetensors``; the fit's correlation with the
   reward set's features on held-out answers is printed per base reward.
3. For a terse, a thorough and a lists profile (``profiles.onboarding.simulate`` tastes as
   coefficient vectors) over the 12 evaluation prompts: the user's sequence-level reward (the
   reward set, not the heads) gained over plain, ms per token against plain, substance (key
   terms named, steered/plain) and non-answers, per strategy: token heads at strength S
   (``token heads w=S``, ``e=E`` for another end_scale), text ARGS, tree ARGS (a small
   classifier on SmolLM2's tokenizer, trained here), trunk ARGS (ridge heads on SmolLM2's last
   hidden state, distilled here) and best-of-4.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"

TRAIN_PROMPTS = [
    "How do I make my bread rise better?", "What should I pack for a weekend hike?",
    "How can I stop procrastinating?", "How do I write a good cover letter?",
    "What is a healthy lunch I can prepare quickly?", "How do I save money on groceries?",
    "How can I make new friends as an adult?", "How do I keep my bike in good shape?",
    "What are good habits for studying?", "How do I choose a laptop?",
    "How can I be more productive in the morning?", "How do I paint a room?",
    "How can I help my kids with homework?", "How do I start journaling?",
    "What should I know before adopting a cat?", "How do I make a budget?",
]
REQUESTS = (None, "Answer in one short sentence.", "Answer with a short bulleted list.",
            "Give a thorough, detailed answer.")
STRATEGIES = ("token heads w=1", "token heads w=2", "token heads w=3", "token heads w=4",
              "text ARGS", "tree ARGS", "trunk ARGS", "best-of-4")


def samples(gen: Any, max_new_tokens: int, bank: str) -> list[tuple[str, str]]:
    """The bank's answers (``general``: the 8 hand-written items; ``all``: the whole bank,
    whose rewrites vary one attribute at a time), then SmolLM2's answers to the general
    items' prompts and TRAIN_PROMPTS, plain and with each request."""
    from personalizer.profiles import question_bank

    items = question_bank() if bank == "all" else question_bank(["general"])
    out = [(item.prompt, r) for item in items for r in item.responses]
    prompts = list(dict.fromkeys([item.prompt for item in question_bank(["general"])]
                                 + TRAIN_PROMPTS))
    for prompt in prompts:
        for request in REQUESTS:
            asked = prompt if request is None else f"{prompt} {request}"
            text = gen.generate(asked, max_new_tokens=max_new_tokens).text.strip()
            if text:
                out.append((prompt, text))
    return out


def steering_for(rs: Any, coef: dict[str, float], name: str) -> Any:
    from personalizer.backends import Args, BestOfN, Steering, TokenRewards

    if name.startswith("token heads"):  # "token heads w=2 [e=4]": strength, end_scale
        knobs = dict(k.split("=") for k in name.split()[2:])
        strategy: Any = TokenRewards(**{"end_scale": float(knobs["e"])} if "e" in knobs
                                     else {})
        strength = float(knobs["w"])
    else:
        strategy, strength = {"text ARGS": (Args(scoring="text"), 1.0),
                              "trunk ARGS": (Args(scoring="fast"), 1.0),
                              "tree ARGS": (Args(scoring="fast"), 1.0),
                              "best-of-4": (BestOfN(n=4), 1.0)}[name]
    return Steering(coefficients=dict.fromkeys(rs.names, 0.0) | coef, reward_set_id=rs.id,
                    reward_set_version=rs.version, strength=strength, strategy=strategy)


def trunk_generator(gen: Any, rs: Any) -> Any:
    """``gen`` scoring with trunk heads (linear heads on SmolLM2's own last hidden state)
    ridge-distilled from ``rs`` on the whole question bank's answers, normalised as ``rs``,
    so that a user's coefficients mean the same; ARGS then scores the k candidates in one
    tree pass of the LM itself (``scoring="fast"``, path args-trunk)."""
    from personalizer.backends.rewards import RewardSet
    from personalizer.backends.heads.trunk import distill_heads
    from personalizer.profiles import question_bank

    t = time.perf_counter()
    data = [(item.prompt, r) for item in question_bank() for r in item.responses]
    heads = distill_heads(gen, rs, list(dict.fromkeys(data)))
    print(f"trunk heads ridge-distilled on {len(set(data))} bank answers in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    trunk = RewardSet(f"{rs.id}-trunk", [heads], version=rs.version,
                      normalization=rs.normalization)
    return gen.with_rewards(trunk)


def tree_generator(gen: Any, rs: Any, steps: int = 300) -> Any:
    """``gen`` scoring with a small sequence classifier on SmolLM2's own tokenizer (no such
    reward model ships offline, so one is trained here: 2 layers, hidden 64, from scratch,
    regressing ``rs``'s normalised features of the whole question bank's answers and of
    their prefixes, read at the last token as ARGS's tree pass reads a candidate). ARGS
    then scores the k candidates in one tree-attention pass of the classifier's own cache
    (``scoring="fast"``, path args-tree)."""
    import random

    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from personalizer.backends import _hf
    from personalizer.backends.rewards import ClassifierReward, RewardSet
    from personalizer.profiles import question_bank
    from personalizer.types import Message

    t = time.perf_counter()
    tok = gen.tokenizer
    data = list(dict.fromkeys((item.prompt, r) for item in question_bank()
                              for r in item.responses))
    rng = random.Random(0)
    rows = []
    for prompt, response in data:
        head = list(_hf.chat_prompt(tok, [Message(role="user", content=prompt)]))
        body = tok(response, add_special_tokens=False)["input_ids"]
        for cut in {len(body), rng.randint(4, max(len(body), 5))}:
            text = tok.decode(body[:cut])
            rows.append((head + body[:cut], rs.features(prompt, [text])[0]))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      num_labels=len(rs.names), problem_type="regression",
                      pad_token_id=tok.pad_token_id or 0, max_position_embeddings=2048)
    model = LlamaForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 16)
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([ids + [cfg.pad_token_id] * (width - len(ids)) for ids, _ in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        target = torch.tensor(np.array([y for _, y in batch]), dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(
            model(input_ids=ids, attention_mask=mask).logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    print(f"classifier trained on {len(rows)} answers and prefixes in "
          f"{time.perf_counter() - t:.0f} s (last batch mse {loss.item():.2f})", flush=True)
    clf = ClassifierReward(model, tok, names=rs.names, descriptions=rs.descriptions)
    return gen.with_rewards(RewardSet(f"{rs.id}-rm", [clf], version=rs.version))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                    help="of: text ARGS, best-of-4, 'token heads w=S [e=E]' (strength S, "
                         "end_scale E)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--bank", choices=("general", "all"), default="general",
                    help="distil also on the whole question bank's answers (all)")
    ap.add_argument("--heads", default=str(OUT / "smollm2-token-heads.safetensors"),
                    help="where the distilled heads are cached (delete to distil again)")
    ap.add_argument("--profiles", nargs="+", default=["terse", "thorough", "lists"])
    ap.add_argument("--dump", help="write every answer here (JSON) to read them")
    args = ap.parse_args()

    import torch
    from quality import PROMPTS, key_terms

    from personalizer.backends import LocalGenerator, TokenHeads, distill_token_heads
    from personalizer.backends.heads.training import sequence_scores
    from personalizer.profiles import default_reward_set
    from personalizer.profiles.onboarding.simulate import TASTES

    torch.set_num_threads(2)
    OUT.mkdir(exist_ok=True)
    rs = default_reward_set()
    gen = LocalGenerator.smollm2(rewards=rs)
    path = Path(args.heads)
    if path.exists():
        heads = TokenHeads.load(path, gen)
        print(f"heads loaded from {path}")
    else:
        t = time.perf_counter()
        data = samples(gen, args.max_new_tokens, args.bank)
        prompts = list(dict.fromkeys(p for p, _ in data))
        held = set(prompts[-4:])  # the fit is checked on answers to prompts it did not see
        print(f"{len(data)} samples over {len(prompts)} prompts in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        heads = distill_token_heads(gen, rs, [x for x in data if x[0] not in held],
                                    rank=args.rank, steps=args.steps)
        print(f"distilled rank {args.rank}, {args.steps} steps in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        scores, feats = [], []
        for p in held:
            answers = list(dict.fromkeys(r for q, r in data if q == p))
            s = sequence_scores(gen, heads, p, answers).numpy()
            f = np.asarray(rs.features(p, answers))
            scores.append(s - s.mean(0))
            feats.append(f - f.mean(0))
        s, f = np.concatenate(scores), np.concatenate(feats)
        cors = {n: float(np.corrcoef(s[:, j], f[:, j])[0, 1]) if f[:, j].std() > 0 else
                float("nan") for j, n in enumerate(rs.names)}
        print("held-out correlation of head and reward: " +
              ", ".join(f"{n} {c:+.2f}" for n, c in cors.items()), flush=True)
        heads.save(path)
    gen = gen.with_token_heads(heads)
    if gen.quality is not None:
        gen.quality.score("warm up", ["Load the encoder now."])
    trunk_gen = trunk_generator(gen, rs) if "trunk ARGS" in args.strategies else None
    tree_gen = tree_generator(gen, rs) if "tree ARGS" in args.strategies else None
    by_set = {g.rewards.id: g for g in (trunk_gen, tree_gen) if g is not None}

    def run(s: Any) -> tuple[list[str], float, int]:
        texts, secs, toks = [], 0.0, 0
        g = by_set.get(s.reward_set_id, gen) if s is not None else gen
        for prompt, _ in PROMPTS:
            t = time.perf_counter()
            out = g.generate(prompt, max_new_tokens=args.max_new_tokens, steering=s)
            secs += time.perf_counter() - t
            toks += max(out.completion_tokens, 1)
            texts.append(out.text)
        return texts, secs, toks

    plain, psecs, ptoks = run(None)
    plain_ms = 1000 * psecs / ptoks
    sub0 = statistics.mean(key_terms(t, k) for t, (_, k) in zip(plain, PROMPTS, strict=True))
    print(f"\n12 prompts, {args.max_new_tokens} new tokens, greedy (best-of-4 samples); plain "
          f"{plain_ms:.0f} ms/token, substance {sub0:.2f} key terms")
    print(f"{'profile':<10}{'strategy':<18}{'reward gain':>12}{'x ms/tok':>10}"
          f"{'substance':>11}{'non-ans':>9}")
    answers: dict[str, list[str]] = {"plain": plain}
    for taste in args.profiles:
        coef = TASTES[taste]
        vec = np.array([coef.get(n, 0.0) for n in rs.names])

        def reward(texts: list[str], c: np.ndarray = vec) -> float:
            return float(np.mean([rs.features(p, [t])[0] @ c
                                  for t, (p, _) in zip(texts, PROMPTS, strict=True)]))

        base = reward(plain)
        for name in args.strategies:
            own = {"trunk ARGS": trunk_gen, "tree ARGS": tree_gen}.get(name)
            texts, secs, toks = run(steering_for(own.rewards if own else rs, coef, name))
            answers[f"{taste} / {name}"] = texts
            sub = statistics.mean(key_terms(t, k) for t, (_, k) in zip(texts, PROMPTS,
                                                                      strict=True))
            non = sum(key_terms(t, k) == 0 for t, (_, k) in zip(texts, PROMPTS, strict=True))
            ratio = (1000 * secs / toks) / plain_ms
            print(f"{taste:<10}{name:<18}{reward(texts) - base:>+12.2f}{ratio:>10.2f}"
                  f"{sub:>7.2f}/{sub0:<4.2f}{non:>5}/12", flush=True)
    if args.dump:
        Path(args.dump).write_text(json.dumps(answers, indent=1))


if __name__ == "__main__":
    main()
