"""Train the shipped attribute experts for SmolLM2-135M-Instruct (seeded, resumable).

    .venv/bin/python bench/train_experts.py [--attributes verbosity structure warmth]
                                            [--prompts 160] [--epochs 2] [--out DIR]

For each attribute: SmolLM2 answers the project's 160 training questions
(``backends/experts/data/prompts.json``) under a request for more and for less of it; the
curated pairs go to ``bench/data/experts/pairs-<attribute>.jsonl`` (committed: what the
expert learned from), then DPO (TRL) trains a rank-8 LoRA on the attention projections,
saved to ``backends/experts/data/smollm2/<attribute>.safetensors`` (package data). An
attribute whose pairs or adapter exist is not redone (delete the file to redo it).
Needs the ``[experts]`` extra. About 10-20 minutes per attribute on 2 CPU cores.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attributes", nargs="+", default=["verbosity", "structure", "warmth"])
    ap.add_argument("--prompts", type=int, default=160)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--pairs", type=Path, default=PAIRS)
    args = ap.parse_args()

    import torch

    from personalizer.backends import LocalGenerator
    from personalizer.backends.experts.training import train_experts, training_prompts

    torch.manual_seed(0)
    gen = LocalGenerator.smollm2(strategy="best_of_n")
    train_experts(gen, args.out, args.attributes, prompts=training_prompts()[:args.prompts],
                  pairs_folder=args.pairs, epochs=args.epochs, seed=0,
                  progress=lambda s: print(s, flush=True))


if __name__ == "__main__":
    sys.exit(main())
