"""What text may come in: the one check of storable text, and the size limits of a request.

:func:`text_problem` is the check; the facade runs it on its arguments (with the size
limits of :class:`Limits`, from its settings), and the stored models of
:mod:`personalizer.profiles.models` run it on every stored string, so a store called directly
refuses the same text.

Imports nothing of ours but the exception tree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidInput

__all__ = ["MAX_REQUEST_CHARS", "MAX_TEXT_CHARS", "Limits", "text_problem"]

#: Default longest text (a prompt, an answer, a message, a reason), in characters.
MAX_TEXT_CHARS = 65_536
#: Default longest request: all the texts of one call together, in characters.
MAX_REQUEST_CHARS = 262_144


def text_problem(text: str) -> str | None:
    """What keeps ``text`` from being stored, in words, or None when it is fine.

    Two things are refused: a lone surrogate such as ``"\\ud800"`` (half of a UTF-16 pair,
    not a character: usually a broken ``\\u`` escape in JSON or bytes decoded with
    ``errors="surrogateescape"``; it cannot be encoded as UTF-8), and the NUL character
    (PostgreSQL cannot store it in text, so neither store takes it).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds a lone surrogate {text[exc.start]!r} at position {exc.start}: half "
                "of a UTF-16 pair, not a character, so it cannot be encoded as UTF-8 (often a "
                "broken \\u escape in JSON); fix the text")
    at = text.find("\x00")
    if at >= 0:
        return (f"holds a NUL character at position {at}, which no text here may hold "
                "(PostgreSQL cannot store it, nor can a file name hold it); remove it")
    return None


@dataclass(frozen=True)
class Limits:
    """The size limits of one call: each text at most ``max_text_chars`` characters, and all
    the texts of the call together at most ``max_request_chars`` (see
    :class:`~personalizer.settings.PersonalizerSettings`)."""

    max_text_chars: int = MAX_TEXT_CHARS
    max_request_chars: int = MAX_REQUEST_CHARS

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_request_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a whole number >= 1, got {value!r:.40}")
        if self.max_request_chars < self.max_text_chars:
            raise InvalidInput(
                f"max_request_chars ({self.max_request_chars}) must be at least "
                f"max_text_chars ({self.max_text_chars}): one text is part of a request")

    def check(self, where: str, texts: Iterable[tuple[str, object]], *,
              one_request: bool = True) -> None:
        """Refuse, with :class:`~personalizer.errors.InvalidInput` naming the argument, a text
        of ``texts`` (``(name, value)`` pairs; None values are skipped) that is not a string,
        is too long or holds what cannot be stored, or texts too long together (unless
        ``one_request=False``: an imported history, say, has no total)."""
        total = 0
        for name, text in texts:
            if text is None:
                continue
            if not isinstance(text, str):
                raise InvalidInput(f"{where}: {name} must be text, not {type(text).__name__}")
            if len(text) > self.max_text_chars:
                raise InvalidInput(
                    f"{where}: {name} is {len(text):,} characters long; the limit is "
                    f"{self.max_text_chars:,} per text (max_text_chars: "
                    "Personalizer(max_text_chars=...) or $PERSONALIZER_MAX_TEXT_CHARS)")
            problem = text_problem(text)
            if problem is not None:
                raise InvalidInput(f"{where}: {name} {problem}")
            total += len(text)
            if one_request and total > self.max_request_chars:
                raise InvalidInput(
                    f"{where}: the texts of this request add up to more than "
                    f"{self.max_request_chars:,} characters, the limit of one request "
                    "(max_request_chars: Personalizer(max_request_chars=...) or "
                    "$PERSONALIZER_MAX_REQUEST_CHARS)")
