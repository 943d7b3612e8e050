"""PostgreSQL connections as the shared SQL sees them: URLs (told apart, and redacted for
showing), the ``?`` placeholder adapter, a lenient timestamp loader, and the "connection lost"
signal of the retry loop (:mod:`.pg_retry`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["ConnectionLost", "PgConnection", "is_postgres_url", "lenient_timestamptz",
           "redact_url"]


def is_postgres_url(db: object) -> bool:
    """Whether ``db`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """A form of ``url`` safe to show: a ``postgresql://`` URL rebuilt from its parsed parts
    without the password (whatever characters it holds); in key=value text, ``password=***``."""
    if is_postgres_url(url):
        try:
            from psycopg.conninfo import conninfo_to_dict

            parts = conninfo_to_dict(url)
        except Exception:  # noqa: BLE001 - unparsable: show nothing of it
            return "postgresql://<unparsable URL>"
        user = parts.get("user")
        auth = (f"{user}:***@" if parts.get("password") else f"{user}@") if user else ""
        port = f":{parts['port']}" if parts.get("port") else ""
        return f"postgresql://{auth}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]+)", r"\1***", url)


class ConnectionLost(Exception):
    """The connection dropped; ``at_commit``: while committing (the outcome is unknown)."""

    def __init__(self, cause: BaseException, *, at_commit: bool) -> None:
        super().__init__(str(cause))
        self.at_commit = at_commit


@lru_cache(maxsize=1)
def lenient_timestamptz(pg: Any) -> type:
    """psycopg's timestamptz loader, returning the text of a timestamp outside Python's range
    (``infinity``, year 10000) instead of failing the whole fetch with ``DataError``."""
    base = pg.types.datetime.TimestamptzLoader

    class Lenient(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except pg.DataError:
                return bytes(data).decode("utf-8", "replace")

    return Lenient


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("?", "%s")


class PgConnection:
    """A psycopg connection speaking the shared SQL's ``?`` placeholders."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._raw.execute(_placeholders(sql), tuple(params) or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self._raw.cursor()
        if rows:
            cur.executemany(_placeholders(sql), rows)
        return cur

