"""Transactions on a PostgreSQL pool that survive dropped connections.

* another connection is taken when a pooled one is dead before anything ran;
* the operation is re-run when the connection dropped before ``COMMIT`` (the server rolled it
  back, so nothing was written);
* when it dropped *during* ``COMMIT`` (the change may or may not have landed), the server is
  asked: idempotent operations are simply re-run, others check whether what they wrote is
  there (their ``landed`` check);
* after ``retry_s`` seconds the store gives up with
  :class:`~personalizer.errors.StoreUnavailable`, whose message says whether the change was
  written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from personalizer.errors import StoreError, StoreUnavailable

from .core import SQLCore
from .pg_connection import ConnectionLost, PgConnection
from .rows import UNKNOWN, Connection, Op

__all__ = ["READ", "SINGLE", "WRITE", "RetryingTransactions"]

READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
WRITE = "BEGIN"
SINGLE = ""  # one statement in autocommit: its own snapshot, no BEGIN/COMMIT round trips

_NOT_LANDED = object()


class RetryingTransactions(SQLCore):
    """The read and write primitives of :class:`~personalizer.profiles.SQLProfileStore` over a
    psycopg pool, with retries. The store supplies the pool, the driver module and how its
    errors read (``_unavailable``, ``_error``)."""

    _pg: Any
    _pool: Any
    _pool_timeout: type[BaseException]
    connect_timeout_s: float
    retry_s: float

    def _unavailable(self, cause: BaseException, *, written: bool | None) -> StoreUnavailable:
        raise NotImplementedError

    def _error(self, exc: BaseException) -> StoreError:
        raise NotImplementedError

    def _begin(self, begin: str, deadline: float) -> Any:
        """A pooled connection inside a new transaction; dead pooled connections are dropped
        and replaced until ``deadline``."""
        delay = 0.02
        while True:
            wait = max(0.05, min(self.connect_timeout_s, deadline - time.monotonic()))
            try:
                raw = self._pool.getconn(timeout=wait)
            except self._pool_timeout as exc:
                raise ConnectionLost(exc, at_commit=False) from None
            try:
                if begin:  # (a single read finds a dead connection itself, and is re-run)
                    raw.execute(begin)
                return raw
            except self._pg.OperationalError as exc:
                self._pool.putconn(raw)  # a broken connection is discarded, not reused
                if time.monotonic() + delay >= deadline:
                    raise ConnectionLost(exc, at_commit=False) from None
                time.sleep(delay)
                delay = min(2 * delay, 0.5)

    @contextmanager
    def _tx(self, begin: str, deadline: float) -> Iterator[Connection]:
        raw = self._begin(begin, deadline)
        try:
            try:
                yield PgConnection(raw)
            except BaseException as exc:
                self._rollback(raw)
                if isinstance(exc, self._pg.OperationalError) and raw.broken:
                    raise ConnectionLost(exc, at_commit=False) from None
                raise
            if not begin:
                return
            try:
                raw.execute("COMMIT")
            except self._pg.OperationalError as exc:
                if raw.broken or raw.closed:
                    raise ConnectionLost(exc, at_commit=True) from None
                raise
        finally:
            self._pool.putconn(raw)

    def _rollback(self, raw: Any) -> None:
        if raw.closed or raw.broken:
            return
        try:
            raw.execute("ROLLBACK")
        except self._pg.Error:
            pass  # the pool discards or resets the connection

    def _retryable(self) -> tuple[type[BaseException], ...]:
        e = self._pg.errors
        return (e.SerializationFailure, e.DeadlockDetected, e.UniqueViolation)

    def _run(self, fn: Op, begin: str, *, idempotent: bool,
             landed: Op | None) -> Any:
        deadline = time.monotonic() + self.retry_s
        delay = 0.02
        maybe_written = False  # a commit's reply was lost on the way (idempotent ops re-run)
        while True:
            try:
                with self._tx(begin, deadline) as conn:
                    return fn(conn)
            except ConnectionLost as lost:
                last: BaseException = lost
                maybe_written = maybe_written or lost.at_commit
                if lost.at_commit and not idempotent:
                    outcome = self._landed(landed, deadline, lost)
                    if outcome is not _NOT_LANDED:
                        return outcome
            except self._retryable() as exc:
                last = exc
            except self._pg.Error as exc:
                raise self._error(exc) from None
            if time.monotonic() + delay >= deadline:
                written = None if begin != WRITE else maybe_written
                raise self._unavailable(last, written=written)
            time.sleep(delay)
            delay = min(2 * delay, 0.5)

    def _landed(self, landed: Op | None, deadline: float, lost: ConnectionLost) -> Any:
        """After a commit whose acknowledgement was lost: the op's result if it landed, else
        ``_NOT_LANDED`` (safe to run again)."""
        if landed is None:
            raise self._unavailable(lost, written=True)
        while True:
            try:
                with self._tx(READ, deadline) as conn:
                    outcome = landed(conn)
                if outcome is UNKNOWN:
                    raise self._unavailable(lost, written=True)
                return _NOT_LANDED if outcome is None else outcome
            except ConnectionLost:
                if time.monotonic() >= deadline:
                    raise self._unavailable(lost, written=True) from None
                time.sleep(0.05)
            except self._pg.Error as exc:
                raise self._error(exc) from None

    # -- the primitives of SQLProfileStore ------------------------------------------------

    def _read_op(self, fn: Op, *, single: bool = False) -> Any:
        return self._run(fn, SINGLE if single else READ, idempotent=True, landed=None)

    def _write_op(self, fn: Op, *, landed: Op | None = None, idempotent: bool = False,
                  single: bool = False) -> Any:
        # single: an idempotent op of single statements, each committing on its own (no
        # BEGIN/COMMIT round trips); re-run whole when a reply is lost
        if single and not idempotent:
            raise ValueError("single-statement writes must be idempotent")
        return self._run(fn, SINGLE if single else WRITE, idempotent=idempotent,
                         landed=landed)

    @contextmanager
    def _write(self, *, landed: Op | None = None) -> Iterator[Connection]:
        """One write transaction whose body runs once (it is the caller's code): a connection
        lost before the commit means nothing was written; lost during it, the server is asked."""
        deadline = time.monotonic() + self.retry_s
        try:
            with self._tx(WRITE, deadline) as conn:
                yield conn
        except ConnectionLost as lost:
            if not (lost.at_commit and self._landed(landed, deadline, lost) is not _NOT_LANDED):
                raise self._unavailable(lost, written=False) from None
        except self._pg.Error as exc:
            raise self._error(exc) from None

