"""Stateless compute: generators (local Hugging Face models, hosted APIs) and reward models.

Backends know a user only through the :class:`Steering` handed to them; they never import
``personalizer.profiles`` or the facade. Torch-based parts load on first use, so
``from personalizer.backends import Steering`` needs neither torch nor transformers.

By folder: :mod:`.local` (the ``LocalGenerator``), :mod:`.decoding` (the one loop in
``engine``, KV surgery in ``kv``, pure tensor math in ``tensor_math``, ``planning``, the shared
``policies``, best-of-n's ``blocks``, token ``scorers``, ``proxy``-tuning, and
:mod:`.decoding.strategies`, one module per strategy), :mod:`.heads` (token-level reward
heads, token rules, trunk heads), :mod:`.rewards` (base rewards, reward sets, the user's
reward, judges, quality), :mod:`.hosted` (hosted APIs, no logits: a sans-I/O core, sync and async
drivers, one small adapter per provider in :mod:`.hosted.providers`). Steering and the
generation options are the seams' (:mod:`personalizer.steering`).
"""

from __future__ import annotations

from typing import Any

from personalizer.steering import GenerationOptions, Steering

from .decoding.strategies import Args, BestOfN, Experts, TokenRewards

__all__ = ["AnthropicGenerator", "Args", "BestOfN", "ExpertSet", "Experts", "GenerationOptions",
           "HostedGenerator",
           "HostedOptions", "LocalGenerator", "ModelHandle", "OpenAIGenerator", "ProxyTuning",
           "Steering", "TokenHeads", "TokenRewards", "TokenScorer", "distill_token_heads",
           "learn_token_heads"]

_LAZY = {"LocalGenerator": ".local.generator", "ProxyTuning": ".decoding.proxy",
         "ModelHandle": ".decoding.handle",
         "TokenScorer": ".decoding.scorers", "OpenAIGenerator": ".hosted.providers",
         "AnthropicGenerator": ".hosted.providers", "HostedGenerator": ".hosted",
         "HostedOptions": ".hosted", "TokenHeads": ".heads.token",
         "ExpertSet": ".experts.lora",
         "distill_token_heads": ".heads.training", "learn_token_heads": ".heads.training"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name], __name__)
        except ImportError as exc:  # torch or transformers missing: say how to install them
            from personalizer._optional import missing_local

            missing = missing_local(exc, f"personalizer.backends.{name}")
            if missing is None:
                raise
            raise missing from None
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
