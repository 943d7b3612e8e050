"""Train the shipped attribute experts for SmolLM2-135M-Instruct (seeded, resumable).

    .venv/bin/python bench/train_experts.py [--attributes verbosity structure warmth formality]
                                            [--prompts 160] [--epochs N] [--out DIR]

For each attribute: SmolLM2 answers the project's 160 training questions
(``backends/experts/data/prompts.json``) under a request for more and for less of it; the
curated pairs go to ``bench/data/experts/pairs-<attribute>.jsonl`` (committed: what the
expert learned from), then DPO (TRL) trains a rank-8 LoRA on the attention projections,
saved to ``backends/experts/data/smollm2/<attribute>.safetensors`` (package data). An
attribute whose pairs or adapter exist is not redone (delete the file to redo it).
Needs the ``[experts]`` extra. About 5-15 minutes per attribute on 2 CPU cores (measured:
verbosity 51 pairs, 1.5 + 5 min; structure 66 pairs, 6 + 9 min; warmth 36 pairs, 2 + 3.5
min; formality 115 pairs, 1 epoch; about 40 minutes in all).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "bench" / "data" / "experts"
OUT = ROOT / "backends" / "experts" / "data" / "smollm2"
# the shipped experts' epochs (formality has the most pairs: one epoch is as many steps)
EPOCHS = {"verbosity": 2.0, "structure": 2.0, "warmth": 2.0, "formality": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attributes", nargs="+",
                    default=["verbosity", "structure", "warmth", "formality"])
    ap.add_argument("--prompts", type=int, default=160)
    ap.add_argument("--epochs", type=float, default=None,
                    help="default: the shipped experts' (EPOCHS)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--pairs", type=Path, default=PAIRS)
    args = ap.parse_args()

    import torch

    from personalizer.backends import LocalGenerator
    from personalizer.backends.experts.training import train_experts, training_prompts

    torch.manual_seed(0)
    gen = LocalGenerator.smollm2(strategy="best_of_n", experts=None)
    for attribute in args.attributes:
        train_experts(gen, args.out, [attribute], prompts=training_prompts()[:args.prompts],
                      pairs_folder=args.pairs, epochs=args.epochs or EPOCHS[attribute],
                      seed=0, progress=lambda s: print(s, flush=True))


if __name__ == "__main__":
    sys.exit(main())
