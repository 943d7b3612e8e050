"""Text from people, quoted as data inside prompts we build.

Imports nothing of ours, so every layer (profiles, backends) can use it.
"""

from __future__ import annotations

__all__ = ["quote"]


def quote(text: str, limit: int) -> str:
    """``text`` made safe as data inside a tagged block: ``<``, ``>`` and ``"`` replaced (so it
    can neither close its block or quotation nor forge another), one paragraph, at most
    ``limit`` characters (cut with "…")."""
    safe = text.replace("<", "‹").replace(">", "›").replace('"', "”")
    safe = " ".join(safe.split())
    return safe if len(safe) <= limit else safe[: limit - 1].rstrip() + "…"
