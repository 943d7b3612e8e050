"""The hosted providers, one small adapter module each (:class:`~..provider.Provider`):
:mod:`.openai` (Chat Completions; any OpenAI-compatible server) and :mod:`.anthropic`
(Messages), each with the public generator class that binds it."""

from __future__ import annotations

from .anthropic import DEFAULT_MAX_TOKENS, AnthropicGenerator, AnthropicMessages
from .openai import OpenAIChat, OpenAIGenerator

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicGenerator", "AnthropicMessages", "OpenAIChat",
           "OpenAIGenerator"]
