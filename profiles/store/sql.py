"""What every SQL profile store shares: the contract's operations written once, over a connection.

:class:`SQLProfileStore` implements the :class:`~personalizer.profiles.ProfileStore` contract on
top of four primitives a concrete store supplies (see :mod:`.core`): ``_read_op(fn)`` runs
``fn(conn)`` in one read snapshot, ``_write_op(fn, landed=..., idempotent=...)`` runs it in one
write transaction (retrying where the store can lose a connection), ``_write()`` is the write
transaction as a context manager and ``_population_sums(...)`` is the population aggregate in
the database's own JSON dialect. SQL here uses ``?`` placeholders and only syntax SQLite and
PostgreSQL share; a store whose driver wants another placeholder translates it in its
connection adapter.

The operations live in one module per part of the contract: profiles
(:mod:`.profile_queries`), history and the transaction (:mod:`.history`,
:mod:`.transaction`), kept answers (:mod:`.generations`), and export, import and delete
(:mod:`.portability`); rows become models and back in :mod:`.rows`.

Every write transaction locks the user's profile row first (``SELECT ... FOR UPDATE`` where the
database has row locks; SQLite locks the whole file at ``BEGIN IMMEDIATE``), so the changes of
one user are serialised and versions never skip or repeat.
"""

from __future__ import annotations

from .generations import GenerationQueries
from .history import HistoryQueries
from .portability import PortabilityQueries
from .profile_queries import ProfileQueries

__all__ = ["SQLProfileStore"]


class SQLProfileStore(ProfileQueries, HistoryQueries, GenerationQueries, PortabilityQueries):
    """The profile-store contract in SQL; subclasses supply connections and the dialect."""
