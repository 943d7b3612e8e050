"""Opening the store a ``db`` setting names: a PostgreSQL URL or an SQLite file."""

from __future__ import annotations

import os
from typing import Any

from .postgres import PostgresProfileStore, is_postgres_url
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
    of creating one, for uses that only read. ``options`` go to the store's constructor.

    >>> open_store(":memory:")
    SQLiteProfileStore(':memory:')
    """
    name = default_db_path() if db is None else db
    if is_postgres_url(name):
        return PostgresProfileStore(str(name), **options)
    return SQLiteProfileStore(name, create=create, **options)
