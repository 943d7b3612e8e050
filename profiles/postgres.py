"""``PostgresProfileStore``: profiles on a PostgreSQL server, for applications on many servers.

The same contract as :class:`~personalizer.profiles.SQLiteProfileStore` (the operations are the
shared ones of :class:`~personalizer.profiles.sql.SQLProfileStore`), over a psycopg 3 connection
pool (extra ``postgres``). Writes run in READ COMMITTED transactions that lock the user's
profile row first, so one user's changes are serialised while different users' go in parallel;
reads run in a REPEATABLE READ snapshot.

Connections drop (a server restart, a network blip). The store then:

* takes another connection when a pooled one is dead before anything ran;
* re-runs the operation when the connection dropped before ``COMMIT`` (the server rolled it
  back, so nothing was written);
* when it dropped *during* ``COMMIT`` (the change may or may not have landed), asks the server:
  appends carry an idempotency key and are simply re-run (a stored key writes nothing); other
  writes check whether the version they wrote is there;
* gives up after ``retry_s`` seconds with :class:`~personalizer.errors.StoreUnavailable`, whose
  message says whether the change was written.

The URL's password is a secret: it is kept as a ``SecretStr`` and shown as ``***`` in the
store's repr and in every error message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from pydantic import SecretStr

from personalizer._optional import require
from personalizer.errors import (
    InvalidInput,
    ProfileNotFound,
    SchemaTooNew,
    StoreAuthFailed,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)

from .base import PopulationSums
from .pg_schema import LOCK_KEY, MIGRATIONS_TABLE, STEPS
from .sql import POPULATION_FILTER, UNKNOWN, Connection, Op, SQLProfileStore, sums_from_rows

__all__ = ["PostgresProfileStore", "is_postgres_url", "redact_url"]

_FEATURE = "the PostgreSQL profile store"
_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_WRITE = "BEGIN"
_SINGLE = ""  # one statement in autocommit: its own snapshot, no BEGIN/COMMIT round trips

# A learned profile as the population aggregate reads it: coefficients a JSON object and
# covariance a JSON array, and of their entries only the numbers too small to overflow a sum.
# A damaged row (CorruptProfile to its user) is left out, or its damaged entries are, instead
# of failing everyone's prior. (CASE branches run in order: no function or cast sees a value
# of the wrong shape.)
_LEARNED = (f"{POPULATION_FILTER} AND json_typeof(coefficients) = 'object' "
            "AND json_typeof(covariance) = 'array'")
_COEFFICIENTS = ("{fn}(CASE WHEN json_typeof(profiles.coefficients) = 'object' "
                 "THEN profiles.coefficients ELSE '{{}}' END)")


def _number(v: str) -> str:
    """The JSON value ``v`` as a float8 if it is a number below 1e150, else NULL."""
    return (f"CASE WHEN json_typeof({v}) <> 'number' THEN NULL "
            f"WHEN abs(({v} #>> '{{}}')::numeric) >= 1e150 THEN NULL "
            f"ELSE ({v} #>> '{{}}')::float8 END")


def _sums(fn: str, value: Any) -> tuple[str, ...]:
    """The population aggregate's queries, reading JSON entries with ``fn`` (json_each_text
    or json_each) and each entry ``e`` as ``value(e)``."""
    coefficients = _COEFFICIENTS.format(fn=fn)
    return (
        f"SELECT count(*) FROM profiles WHERE {_LEARNED}",
        (
            f"SELECT a.key, coalesce(sum({value('a.value')}), 0) FROM profiles, "
            f"{coefficients} a WHERE {_LEARNED} GROUP BY a.key"
        ),
        (
            f"SELECT a.key, b.key, coalesce(sum({value('a.value')} * {value('b.value')}), 0) "
            f"FROM profiles, {coefficients} a, {coefficients} b WHERE {_LEARNED} "
            "GROUP BY a.key, b.key"
        ),
        (
            f"SELECT r.i - 1, c.j - 1, coalesce(sum({value('c.v')}), 0) FROM profiles, "
            "json_array_elements(CASE WHEN json_typeof(profiles.covariance) = 'array' "
            "THEN profiles.covariance ELSE '[]' END) WITH ORDINALITY AS r(arr, i), "
            f"{fn.replace('json_each', 'json_array_elements')}(CASE WHEN "
            "json_typeof(r.arr) = 'array' THEN r.arr ELSE '[]' END) WITH ORDINALITY AS c(v, j) "
            f"WHERE {_LEARNED} GROUP BY r.i, c.j"
        ),
    )


# The plain queries cast every entry's text to float8, which fails on a damaged one (text, a
# number out of range, a sum that overflows); then the guarded ones, which read only numbers
# below 1e150, run (about twice as slow, so only then).
_SUMS = _sums("json_each_text", lambda e: f"{e}::float8")
_SUMS_GUARDED = _sums("json_each", _number)


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


class _Lost(Exception):
    """The connection dropped; ``at_commit``: while committing (the outcome is unknown)."""

    def __init__(self, cause: BaseException, *, at_commit: bool) -> None:
        super().__init__(str(cause))
        self.at_commit = at_commit


_NOT_LANDED = object()


class PostgresProfileStore(SQLProfileStore):
    """Profiles and preference histories in a PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/dbname``). The schema is
    created or upgraded on open (under an advisory lock, so servers may start together); a
    database written by a newer personalizer is refused. Safe to share between threads (a pool
    of ``min_connections`` to ``max_connections`` connections) and between processes and
    machines. Use as a context manager or call :meth:`close`.

    ``connect_timeout_s`` bounds one attempt to connect or to get a pooled connection;
    ``retry_s`` bounds the retries of one operation after connections dropped;
    ``lock_timeout_s`` how long a write waits for another writer of the same user
    (:class:`~personalizer.errors.StoreBusy` after it).
    """

    _lock_row = " FOR UPDATE"

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 10,
                 connect_timeout_s: float = 10.0, retry_s: float = 10.0,
                 lock_timeout_s: float = 30.0) -> None:
        if not is_postgres_url(url):
            raise InvalidInput("a PostgreSQL store needs a URL like "
                               "postgresql://user:password@host:5432/dbname")
        if not 1 <= min_connections <= max_connections:
            raise InvalidInput("need 1 <= min_connections <= max_connections")
        for name, value in (("connect_timeout_s", connect_timeout_s), ("retry_s", retry_s),
                            ("lock_timeout_s", lock_timeout_s)):
            if not value > 0:
                raise InvalidInput(f"{name} must be positive (seconds)")
        self._pg = require("psycopg", extra="postgres", feature=_FEATURE)
        pool_module = require("psycopg_pool", extra="postgres", feature=_FEATURE)
        self._url = SecretStr(url)
        self.url = redact_url(url)  # safe to show
        try:
            password = self._pg.conninfo.conninfo_to_dict(url).get("password")
        except self._pg.Error:  # its message would echo the URL: say only what to check
            raise InvalidInput("cannot parse the database URL; the form is "
                               "postgresql://user:password@host:5432/dbname, with characters "
                               "such as @ : / % in the password percent-encoded") from None
        raw = re.match(r"[a-z]+://[^:/@]*:([^@]*)@", url)
        self._secrets = [x for x in {str(password or ""), raw.group(1) if raw else ""} if x]
        self.connect_timeout_s, self.retry_s = connect_timeout_s, retry_s
        self._lock_timeout_ms = max(1, int(lock_timeout_s * 1000))
        self._migrate()
        self._pool = pool_module.ConnectionPool(
            url, min_size=min_connections, max_size=max_connections, open=True,
            timeout=connect_timeout_s, name="personalizer", configure=self._configure,
            kwargs={"autocommit": True, "application_name": "personalizer",
                    **self._connect_options()},
        )
        self._pool_timeout = pool_module.PoolTimeout

    # -- connections and schema ----------------------------------------------------------

    def _configure(self, conn: Any) -> None:
        """Every pooled connection: UTC timestamps (one Python cannot hold, such as
        ``infinity``, read as its text: the row's reader reports it as damaged), JSON columns
        read back as their text (so coefficient order is exactly as written), and a bounded
        wait for row locks."""
        conn.adapters.register_loader("json", self._pg.types.string.TextLoader)
        conn.adapters.register_loader("timestamptz", _lenient_timestamptz(self._pg))
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")

    def _connect_options(self) -> dict[str, Any]:
        """Bounded connects, and a dead peer noticed within about ``retry_s`` (TCP keepalives and
        a send timeout) rather than the kernel's ~15 minutes."""
        return {"connect_timeout": max(1, round(self.connect_timeout_s)), "keepalives": 1,
                "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                "tcp_user_timeout": max(1000, int(self.retry_s * 1000))}

    def _migrate(self) -> None:
        try:
            conn = self._pg.connect(self._url.get_secret_value(), autocommit=True,
                                    **self._connect_options(),
                                    application_name="personalizer-migrate")
        except self._pg.Error as exc:
            raise self._error(exc) from None
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                self._apply_steps(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except self._pg.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()

    def _apply_steps(self, conn: Any) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        applied = {r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
        known = [name for name, _ in STEPS]
        unknown = sorted(applied - set(known))
        if unknown:
            raise SchemaTooNew(f"{self.url} was written by a newer personalizer (schema steps "
                               f"{', '.join(unknown)}); upgrade personalizer to open it")
        for name, statements in STEPS:
            if name in applied:
                continue
            with conn.transaction():  # one step, all or nothing
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (name,))

    def close(self) -> None:
        """Close the pool's connections (idempotent)."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresProfileStore({self.url!r})"

    # -- transactions with retries -------------------------------------------------------

    def _begin(self, begin: str, deadline: float) -> Any:
        """A pooled connection inside a new transaction; dead pooled connections are dropped
        and replaced until ``deadline``."""
        delay = 0.02
        while True:
            wait = max(0.05, min(self.connect_timeout_s, deadline - time.monotonic()))
            try:
                raw = self._pool.getconn(timeout=wait)
            except self._pool_timeout as exc:
                raise _Lost(exc, at_commit=False) from None
            try:
                if begin:  # (a single read finds a dead connection itself, and is re-run)
                    raw.execute(begin)
                return raw
            except self._pg.OperationalError as exc:
                self._pool.putconn(raw)  # a broken connection is discarded, not reused
                if time.monotonic() + delay >= deadline:
                    raise _Lost(exc, at_commit=False) from None
                time.sleep(delay)
                delay = min(2 * delay, 0.5)

    @contextmanager
    def _tx(self, begin: str, deadline: float) -> Iterator[Connection]:
        raw = self._begin(begin, deadline)
        try:
            try:
                yield _PgConnection(raw)
            except BaseException as exc:
                self._rollback(raw)
                if isinstance(exc, self._pg.OperationalError) and raw.broken:
                    raise _Lost(exc, at_commit=False) from None
                raise
            if not begin:
                return
            try:
                raw.execute("COMMIT")
            except self._pg.OperationalError as exc:
                if raw.broken or raw.closed:
                    raise _Lost(exc, at_commit=True) from None
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
            except _Lost as lost:
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
                written = None if begin != _WRITE else maybe_written
                raise self._unavailable(last, written=written)
            time.sleep(delay)
            delay = min(2 * delay, 0.5)

    def _landed(self, landed: Op | None, deadline: float, lost: _Lost) -> Any:
        """After a commit whose acknowledgement was lost: the op's result if it landed, else
        ``_NOT_LANDED`` (safe to run again)."""
        if landed is None:
            raise self._unavailable(lost, written=True)
        while True:
            try:
                with self._tx(_READ, deadline) as conn:
                    outcome = landed(conn)
                if outcome is UNKNOWN:
                    raise self._unavailable(lost, written=True)
                return _NOT_LANDED if outcome is None else outcome
            except _Lost:
                if time.monotonic() >= deadline:
                    raise self._unavailable(lost, written=True) from None
                time.sleep(0.05)
            except self._pg.Error as exc:
                raise self._error(exc) from None

    # -- the primitives of SQLProfileStore -----------------------------------------------

    def _read_op(self, fn: Op, *, single: bool = False) -> Any:
        return self._run(fn, _SINGLE if single else _READ, idempotent=True, landed=None)

    def _write_op(self, fn: Op, *, landed: Op | None = None, idempotent: bool = False,
                  single: bool = False) -> Any:
        # single: an idempotent op of single statements, each committing on its own (no
        # BEGIN/COMMIT round trips); re-run whole when a reply is lost
        if single and not idempotent:
            raise ValueError("single-statement writes must be idempotent")
        return self._run(fn, _SINGLE if single else _WRITE, idempotent=idempotent,
                         landed=landed)

    def _insert_generation(self, conn: Connection, user_id: str, g: Any, keep: int,
                           cutoff: str) -> bool:
        # one statement, one round trip: the DELETE sees the table before the INSERT, so it
        # keeps the newest keep - 1 older answers beside the new one
        try:
            row = self._insert_and_prune(conn, user_id, g, keep, cutoff)
        except self._pg.errors.ForeignKeyViolation:  # the profile was deleted meanwhile
            raise ProfileNotFound(user_id) from None
        return row[0] == 1

    def _insert_and_prune(self, conn: Connection, user_id: str, g: Any, keep: int,
                          cutoff: str) -> Any:
        return conn.execute(
            "WITH ins AS (INSERT INTO generations (id, user_id, prompt, answer, created_at) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM profiles WHERE user_id = ?) "
            "ON CONFLICT (user_id, id) DO NOTHING RETURNING 1), "
            "del AS (DELETE FROM generations WHERE user_id = ? AND (created_at < ? OR id NOT IN "
            "(SELECT id FROM generations WHERE user_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?)) RETURNING 1) "
            "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del)",
            (g.id, user_id, g.prompt, g.answer, g.created_at.isoformat(), user_id,
             user_id, cutoff, user_id, keep - 1)).fetchone()

    @contextmanager
    def _write(self, *, landed: Op | None = None) -> Iterator[Connection]:
        """One write transaction whose body runs once (it is the caller's code): a connection
        lost before the commit means nothing was written; lost during it, the server is asked."""
        deadline = time.monotonic() + self.retry_s
        try:
            with self._tx(_WRITE, deadline) as conn:
                yield conn
        except _Lost as lost:
            if not (lost.at_commit and self._landed(landed, deadline, lost) is not _NOT_LANDED):
                raise self._unavailable(lost, written=False) from None
        except self._pg.Error as exc:
            raise self._error(exc) from None

    def _population_sums(self, conn: Connection, reward_set_id: str, reward_set_version: str,
                         exclude: str) -> PopulationSums:
        args = (reward_set_id, reward_set_version, exclude)
        conn.execute("SAVEPOINT population_sums")
        try:
            count, linear, outer, cov = (conn.execute(sql, args).fetchall() for sql in _SUMS)
        except self._pg.DataError:  # a damaged entry: read around it
            conn.execute("ROLLBACK TO SAVEPOINT population_sums")
            count, linear, outer, cov = (conn.execute(sql, args).fetchall()
                                         for sql in _SUMS_GUARDED)
        return sums_from_rows(int(count[0][0]), linear, outer, cov)

    # -- errors --------------------------------------------------------------------------

    def _scrub(self, message: str) -> str:
        """A driver message with the password (if it ever appears) and any URL redacted."""
        for secret in getattr(self, "_secrets", ()):
            message = message.replace(secret, "***")
        return redact_url(message.strip())

    def _unavailable(self, cause: BaseException, *, written: bool | None) -> StoreUnavailable:
        """``written``: False (nothing was), True (maybe: the commit's reply was lost), None
        (a read)."""
        what = {False: "nothing was written; retry the change",
                True: "the connection dropped while committing and whether the change landed "
                      "cannot be told; read the profile before retrying",
                None: "retry the read"}[written]
        return StoreUnavailable(
            f"cannot reach PostgreSQL at {self.url} within {self.retry_s:g}s "
            f"({self._scrub(str(cause)) or type(cause).__name__}): {what}. "
            "Is the server running and reachable?")

    def _error(self, exc: BaseException) -> StoreError:
        """A psycopg error as a StoreError subclass that says what to do."""
        message = self._scrub(str(exc))
        state = getattr(exc, "sqlstate", None) or ""
        if state in ("28P01", "28000") or "password authentication failed" in message:
            return StoreAuthFailed(f"PostgreSQL at {self.url} refused the login ({message}); "
                                   "check the user name and password in the URL")
        if state == "3D000" or ("database" in message and "does not exist" in message):
            return StoreError(f"{message}; create it (createdb) or fix the database name in "
                              "the URL")
        if state == "55P03":
            return StoreBusy(f"a profile stayed locked by another writer past lock_timeout_s "
                             f"on {self.url}; retry, or raise lock_timeout_s")
        if isinstance(exc, self._pg.OperationalError):
            return StoreUnavailable(f"cannot reach PostgreSQL at {self.url} ({message}); is "
                                    "the server running, and are host and port right?")
        if isinstance(exc, StoreError):
            return exc
        return StoreError(f"PostgreSQL error on {self.url}: {message}")


@lru_cache(maxsize=1)
def _lenient_timestamptz(pg: Any) -> type:
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


class _PgConnection:
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

