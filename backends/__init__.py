"""Stateless compute: generators (local Hugging Face models, hosted APIs) and reward models.

Backends know a user only through the :class:`Steering` handed to them; they never import
``personalizer.profiles`` or the facade. Torch-based parts load on first use, so
``from personalizer.backends import Steering`` needs neither torch nor transformers.

The decoding layer, by module: :mod:`.request` (options, steering, strategies),
:mod:`.plan` (the one place that chooses a path), :mod:`.engine` (the one loop),
:mod:`.policies` and :mod:`.best_of_n` (strategies), :mod:`.scorers` (token scorers),
:mod:`.token_heads` and :mod:`.token_rules` (token-level rewards),
:mod:`.decoding_math` (pure tensor math), :mod:`.kv` (KV-cache surgery),
:mod:`.local` (the ``LocalGenerator`` facade). Hosted models (no logits): :mod:`.hosted`
(a sans-I/O core, sync and async drivers, and one small adapter per provider in
:mod:`.hosted.providers`).
"""

from __future__ import annotations

from typing import Any

from .request import Args, BestOfN, GenerationOptions, Steering, TokenRewards

__all__ = ["AnthropicGenerator", "Args", "BestOfN", "GenerationOptions", "HostedGenerator",
           "HostedOptions", "LocalGenerator", "ModelHandle", "OpenAIGenerator", "ProxyTuning",
           "Steering", "TokenHeads", "TokenRewards", "TokenScorer", "distill_token_heads",
           "learn_token_heads"]

_LAZY = {"LocalGenerator": ".local", "ProxyTuning": ".proxy", "ModelHandle": ".handle",
         "TokenScorer": ".scorers", "OpenAIGenerator": ".hosted.providers",
         "AnthropicGenerator": ".hosted.providers", "HostedGenerator": ".hosted",
         "HostedOptions": ".hosted", "TokenHeads": ".token_heads",
         "distill_token_heads": ".token_heads", "learn_token_heads": ".token_heads"}


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
