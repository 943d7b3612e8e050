"""Opening the store a ``db`` setting names: a PostgreSQL URL or an SQLite file."""

from __future__ import annotations

import os
from typing import Any

from personalizer._input import text_problem
from personalizer.errors import InvalidInput

from .pg_connection import is_postgres_url
from .postgres import PostgresProfileStore
from .sql import SQLProfileStore
from .sqlite import SQLiteProfileStore, default_db_path

__all__ = ["open_store"]


def open_store(db: str | os.PathLike[str] | None = None, *, create: bool = True,
               **options: Any) -> SQLProfileStore:
    """The profile store ``db`` names.

    ``postgresql://...`` (or ``postgres://...``) opens a :class:`PostgresProfileStore` (extra
    ``postgres``); anything else is an SQLite file (``":memory:"`` for a throw-away one). With
    no ``db``: ``$PERSONALIZER_DB``, else ``profiles.db``. ``create=False`` refuses a file path
    where there is no database yet (:class:`~personalizer.errors.DatabaseNotFound`) instead
    of creating one, for uses that only read. ``options`` go to the store's constructor. A
    name holding a NUL or a lone surrogate is refused with
    :class:`~personalizer.errors.InvalidInput`.

    >>> open_store(":memory:")
    SQLiteProfileStore(':memory:')
    """
    name = default_db_path() if db is None else db
    path = os.fspath(name) if isinstance(name, (str, os.PathLike)) else None
    problem = text_problem(path) if isinstance(path, str) else None
    if problem is not None:  # checked here, before a driver chokes on it
        raise InvalidInput(f"the database path or URL {problem}")
    if is_postgres_url(name):
        return PostgresProfileStore(str(name), **options)
    return SQLiteProfileStore(name, create=create, **options)
