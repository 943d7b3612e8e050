"""``PostgresProfileStore``: profiles on a PostgreSQL server, for applications on many servers.

The same contract as :class:`~personalizer.profiles.SQLiteProfileStore` (the operations are the
shared ones of :class:`~personalizer.profiles.SQLProfileStore`), over a psycopg 3 connection
pool (extra ``postgres``). Writes run in READ COMMITTED transactions that lock the user's
profile row first, so one user's changes are serialised while different users' go in parallel;
reads run in a REPEATABLE READ snapshot.

Connections drop (a server restart, a network blip): the transactions retry as
:mod:`.pg_retry` describes (appends carry an idempotency key and are simply re-run; other
writes check whether the version they wrote is there), and give up after ``retry_s`` seconds
with :class:`~personalizer.errors.StoreUnavailable`, whose message says whether the change was
written.

The URL's password is a secret: it is kept as a ``SecretStr`` and shown as ``***`` in the
store's repr and in every error message.
"""

from __future__ import annotations

import re
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

from ..base import PopulationSums
from .pg_connection import is_postgres_url, lenient_timestamptz, redact_url
from .pg_retry import RetryingTransactions
from .pg_schema import LOCK_KEY, MIGRATIONS_TABLE, STEPS
from .rows import (
    GENERATION_COLUMNS,
    POPULATION_FILTER,
    Connection,
    generation_row,
    sums_from_rows,
)
from .sql import SQLProfileStore

__all__ = ["PostgresProfileStore", "is_postgres_url", "redact_url"]

_FEATURE = "the PostgreSQL profile store"

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

class PostgresProfileStore(RetryingTransactions, SQLProfileStore):
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
        conn.adapters.register_loader("timestamptz", lenient_timestamptz(self._pg))
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
            f"WITH ins AS (INSERT INTO generations (user_id, {GENERATION_COLUMNS}) "
            "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "
            "WHERE EXISTS (SELECT 1 FROM profiles WHERE user_id = ?) "
            "ON CONFLICT (user_id, id) DO NOTHING RETURNING 1), "
            "del AS (DELETE FROM generations WHERE user_id = ? AND (created_at < ? OR id NOT IN "
            "(SELECT id FROM generations WHERE user_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?)) RETURNING 1) "
            "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del)",
            (user_id, *generation_row(g), user_id, user_id, cutoff, user_id,
             keep - 1)).fetchone()

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

