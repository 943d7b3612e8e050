"""Attribute experts: one LoRA adapter per base reward, weighed per person (proxy-tuning).

:class:`ExpertSet` decodes (torch only); :mod:`.training` builds new experts (the
``[experts]`` extra: PEFT, TRL); :func:`shipped_experts` are the ones trained for
SmolLM2-135M-Instruct (``bench/train_experts.py``).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from personalizer.backends.experts.lora import EXPERT_FORMAT, Expert, ExpertSet

__all__ = ["EXPERT_FORMAT", "SHIPPED_DIR", "Expert", "ExpertSet", "shipped_experts"]

SHIPPED_DIR = "data/smollm2"


@functools.lru_cache(maxsize=1)
def shipped_experts() -> ExpertSet:
    """The experts shipped for SmolLM2-135M-Instruct (verbosity, structure, warmth,
    formality), read once per process."""
    folder = resources.files("personalizer.backends.experts").joinpath(SHIPPED_DIR)
    return ExpertSet.load(Path(str(folder)))
