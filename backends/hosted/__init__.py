"""Hosted chat models (no logits): one sans-I/O core, one sync and one async driver, and a
small adapter per provider.

A hosted API is a black box: it takes messages and returns text. It is personalized by the
profile in the system prompt (the facade puts it there) and, when a
:class:`~personalizer.steering.Steering` asks for it, by best-of-n reranking: n candidates,
each scored with the user's reward and/or a judge, the best returned. What needs logits
(ARGS, proxy-tuning, trunk heads, seed-exact sampling) is refused with an error that says what
works instead.

By module: :mod:`.options` (what a request may set), :mod:`.core` (the request checked, then
planned as steps), :mod:`.rerank` (whether to rerank, the scores, the record),
:mod:`.drivers` (the sync and async drivers), :mod:`.connection` (the SDK clients and each
call), :mod:`.streaming` (answers as :class:`~personalizer.streams.Stream` /
:class:`~personalizer.streams.AsyncStream`), :mod:`.errors` (the SDK's errors as ours),
:mod:`.provider` (the :class:`Provider` protocol), :mod:`.generator`
(:class:`HostedGenerator`), and ``providers/`` (:mod:`.providers.openai`,
:mod:`.providers.anthropic`: the adapters and the public generators that bind them, which
import this package, never the other way round). A new provider is one module in
``providers/``.
"""

from __future__ import annotations

from .generator import HostedGenerator
from .options import HostedOptions
from .provider import Provider, Reply, StreamState

__all__ = ["HostedGenerator", "HostedOptions", "Provider", "Reply", "StreamState"]
