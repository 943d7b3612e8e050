"""The gateway's API keys and their scopes, parsed from one setting and checked in constant
time.

``PERSONALIZER_SERVER_KEYS='key1=chat,profiles:read;key2=admin'``: keys separated by ``;``,
each ``key=scope,scope``. The scopes:

* ``chat``: ``/v1/chat/completions`` and ``/v1/models``;
* ``profiles:read``: read one person's profile, summary and export, and see the steering
  record (``why``, ``steering``) in chat replies;
* ``profiles:write``: record choices and feedback, onboarding (showing a question stores the
  session's state), edit summaries, import and delete one person (the replies show the
  profile written);
* ``admin``: everything, listing every person included.

This module imports nothing of ours but the error tree, and no web framework.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from personalizer.errors import InvalidInput

__all__ = ["ApiKeys", "SCOPES"]

SCOPES = ("chat", "profiles:read", "profiles:write", "admin")
MIN_KEY_CHARS = 16


@dataclass(frozen=True)
class ApiKeys:
    """Gateway keys, each with its scopes. ``ApiKeys.parse(text)`` reads the setting;
    ``scopes_of(key)`` answers which scopes a presented key has (None: not a key)."""

    _keys: tuple[tuple[bytes, frozenset[str]], ...]

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        """Keys from ``'key1=chat,profiles:read;key2=admin'`` (spaces around parts
        ignored); an empty text, a key shorter than 16 characters or an unknown scope is
        refused (the key itself is never repeated in the message)."""
        keys: list[tuple[bytes, frozenset[str]]] = []
        for n, part in enumerate(p.strip() for p in text.split(";")):
            if not part:
                continue
            key, eq, scopes = part.partition("=")
            key = key.strip()
            if not eq or not key:
                raise InvalidInput(f"server key {n + 1}: write it as key=scope,scope "
                                   f"(scopes: {', '.join(SCOPES)})")
            if len(key) < MIN_KEY_CHARS:
                raise InvalidInput(f"server key {n + 1} is shorter than {MIN_KEY_CHARS} "
                                   "characters; use a long random key, for example "
                                   "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
            keys.append((key.encode(), cls._scopes(n, scopes.split(","))))
        if not keys:
            raise InvalidInput("no server keys given; write them as "
                               "'key1=chat,profiles:read;key2=admin'")
        if len({k for k, _ in keys}) != len(keys):
            raise InvalidInput("a server key is given twice; give each key once with all of "
                               "its scopes")
        return cls(tuple(keys))

    @classmethod
    def of(cls, keys: Mapping[str, Iterable[str]]) -> ApiKeys:
        """Keys from a mapping ``{key: scopes}`` (for apps that build the gateway in code)."""
        return cls.parse(";".join(f"{k}={','.join(v)}" for k, v in keys.items()))

    @staticmethod
    def _scopes(n: int, names: Iterable[str]) -> frozenset[str]:
        scopes = frozenset(s.strip() for s in names if s.strip())
        unknown = sorted(scopes - set(SCOPES))
        if unknown or not scopes:  # a scope is shown only when it cannot be a key: a
            shown = [repr(u) if re.fullmatch(r"[a-z:]{1,32}", u) else "(not shown)"
                     for u in unknown]  # missing ';' would make the next key a "scope"
            raise InvalidInput(f"server key {n + 1}: unknown or missing scope "
                               f"{', '.join(shown) or '(none)'}; use {', '.join(SCOPES)}, "
                               "and separate keys with ';'")
        return scopes

    def scopes_of(self, presented: str) -> frozenset[str] | None:
        """The scopes of ``presented`` (every key is compared, in constant time each), or
        None when it is not one of the keys."""
        given = presented.encode()
        found: frozenset[str] | None = None
        for key, scopes in self._keys:
            if hmac.compare_digest(key, given):
                found = scopes
        return found

    def __repr__(self) -> str:  # never the keys themselves
        return f"ApiKeys({len(self._keys)} keys)"


def allows(scopes: frozenset[str], needed: str) -> bool:
    """Whether a key with ``scopes`` may do what ``needed`` names (admin may do all)."""
    return needed in scopes or "admin" in scopes
