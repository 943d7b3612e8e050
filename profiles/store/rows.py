"""Rows <-> models: the SQL both stores share for reading and writing one user's rows.

The connection protocol the shared SQL needs (``?`` placeholders), the column lists, and the
functions that turn stored rows into models and back. A stored value that does not parse is a
:class:`~personalizer.errors.CorruptProfile` naming the user and the field, never the parser's
own error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from personalizer._input import text_problem
from personalizer.errors import CorruptProfile, InvalidInput, VersionConflict

from ..base import PopulationSums
from ..models import OnboardingState, Preference, Profile, Rating, StoredGeneration, utcnow

__all__ = [
    "GENERATION_COLUMNS",
    "INSERT_GENERATION",
    "INSERT_PREFERENCE",
    "INSERT_RATING",
    "POPULATION_FILTER",
    "PREFERENCE_COLUMNS",
    "PROFILE_COLUMNS",
    "UNKNOWN",
    "Connection",
    "Cursor",
    "Op",
    "check_text",
    "cutoff_time",
    "generation_from_row",
    "generation_row",
    "json_or_none",
    "key_stored",
    "preference_row",
    "profile_from_row",
    "rating_row",
    "read_generations",
    "read_onboarding",
    "read_preferences",
    "read_ratings",
    "revalidate",
    "summary_row",
    "sums_from_rows",
    "write_onboarding",
    "write_profile",
]

PROFILE_COLUMNS = (
    "user_id, version, reward_set_id, reward_set_version, coefficients, covariance, summary, "
    "preference_count, created_at, updated_at, summary_source, summary_written_at, "
    "summary_preferences, summary_stale, summary_digest"
)
PREFERENCE_COLUMNS = "prompt, chosen, rejected, reason, source, created_at, judgement"
# A kept answer's columns after user_id, in the order of generation_row.
GENERATION_COLUMNS = "id, prompt, answer, created_at, model, options, strategy, steering"
INSERT_GENERATION = (f"INSERT INTO generations (user_id, {GENERATION_COLUMNS}) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_RATING = ("INSERT INTO ratings (user_id, prompt, answer, rating, created_at) "
                 "VALUES (?, ?, ?, ?, ?)")
INSERT_PREFERENCE = (f"INSERT INTO preferences (user_id, {PREFERENCE_COLUMNS}, append_key) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

# Profiles that count towards a reward set's population: learned ones of that exact version.
POPULATION_FILTER = ("reward_set_id = ? AND reward_set_version = ? AND covariance IS NOT NULL "
                     "AND user_id <> ?")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The slice of a DB-API connection the shared SQL needs (``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


Op = Callable[[Connection], Any]

# What a ``landed`` check returns when it cannot tell whether a commit landed (another writer
# changed the row since): the store then says so instead of guessing.
UNKNOWN: Any = object()


def write_profile(conn: Connection, new: Profile, expected_version: int, *,
                  count: bool = False) -> None:
    """Write ``new`` over the stored profile of version ``expected_version`` (locked by the
    caller); :class:`VersionConflict` if that version is gone."""
    cur = conn.execute(
        "UPDATE profiles SET version = ?, reward_set_id = ?, reward_set_version = ?, "
        "coefficients = ?, covariance = ?, summary = ?, updated_at = ?, summary_source = ?, "
        "summary_written_at = ?, summary_preferences = ?, summary_stale = ?, "
        "summary_digest = ?"
        + (", preference_count = ?" if count else "")
        + " WHERE user_id = ? AND version = ?",
        (new.version, new.reward_set_id, new.reward_set_version, json.dumps(new.coefficients),
         json_or_none(new.covariance), new.summary, new.updated_at.isoformat(),
         *summary_row(new), *((new.preference_count,) if count else ()), new.user_id,
         expected_version),
    )
    if cur.rowcount != 1:
        raise VersionConflict(new.user_id, expected_version, -1)


def key_stored(conn: Connection, user_id: str, key: str) -> bool:
    return conn.execute("SELECT 1 FROM preferences WHERE user_id = ? AND append_key = ?",
                        (user_id, f"{key}:0")).fetchone() is not None


def read_preferences(conn: Connection, user_id: str) -> list[Preference]:
    rows = conn.execute(
        f"SELECT {PREFERENCE_COLUMNS} FROM preferences WHERE user_id = ? ORDER BY id",
        (user_id,),
    ).fetchall()
    return [_row(user_id, "preferences", lambda r=r: Preference(
        prompt=r[0], chosen=r[1], rejected=r[2], reason=r[3], source=r[4],
        created_at=_when(user_id, "preferences.created_at", r[5]), judgement=r[6]))
        for r in rows]


def cutoff_time(max_age_s: float) -> str:
    """The oldest kept-answer time a ``max_age_s`` allows, as stored text."""
    if not isinstance(max_age_s, (int, float)) or isinstance(max_age_s, bool) or \
            not 0 < max_age_s <= 36500 * 86400:
        raise InvalidInput("max_age_s must be a number of seconds, more than 0 and at most "
                           "100 years")
    return (utcnow() - timedelta(seconds=max_age_s)).isoformat()


def read_generations(conn: Connection, user_id: str) -> list[StoredGeneration]:
    rows = conn.execute(f"SELECT {GENERATION_COLUMNS} FROM generations "
                        "WHERE user_id = ? ORDER BY created_at, id", (user_id,)).fetchall()
    return [generation_from_row(r, user_id) for r in rows]


def generation_row(g: StoredGeneration) -> tuple[Any, ...]:
    """The ``GENERATION_COLUMNS`` of ``g``: its record as JSON text (or NULL)."""
    steering = None if g.steering is None else g.steering.model_dump_json()
    return (g.id, g.prompt, g.answer, g.created_at.isoformat(), g.model, json.dumps(g.options),
            json_or_none(g.strategy), steering)


def generation_from_row(r: Sequence[Any], user_id: str) -> StoredGeneration:
    """The kept answer of a ``GENERATION_COLUMNS`` row (the steering record parsed back into
    a :class:`~personalizer.types.SteeringRecord`)."""
    return _row(user_id, "generations", lambda: StoredGeneration(
        id=r[0], prompt=r[1], answer=r[2],
        created_at=_when(user_id, "generations.created_at", r[3]), model=r[4],
        options=_json(user_id, "generations.options", r[5]),
        strategy=None if r[6] is None else _json(user_id, "generations.strategy", r[6]),
        steering=None if r[7] is None else _json(user_id, "generations.steering", r[7])))


def read_ratings(conn: Connection, user_id: str) -> list[Rating]:
    rows = conn.execute("SELECT prompt, answer, rating, created_at FROM ratings "
                        "WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
    return [_row(user_id, "ratings", lambda r=r: Rating(
        prompt=r[0], answer=r[1], rating=r[2],
        created_at=_when(user_id, "ratings.created_at", r[3]))) for r in rows]


def rating_row(r: Rating) -> tuple[Any, ...]:
    return (r.prompt, r.answer, r.rating, r.created_at.isoformat())


def read_onboarding(conn: Connection, user_id: str) -> OnboardingState | None:
    row = conn.execute("SELECT state FROM onboarding WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else _row(
        user_id, "onboarding.state", lambda: OnboardingState.model_validate_json(row[0]))


def write_onboarding(conn: Connection, user_id: str, state: OnboardingState) -> None:
    conn.execute(
        "INSERT INTO onboarding (user_id, state, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, "
        "updated_at = excluded.updated_at",
        (user_id, state.model_dump_json(), utcnow().isoformat()),
    )


def revalidate(model: Any, update: Mapping[str, Any] | None = None) -> Any:
    """Validate a model again (``model_copy(update=...)`` skips validation), with the fields
    of ``update`` in place of its own."""
    try:
        return type(model).model_validate({**model.model_dump(warnings=False), **(update or {})})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or type(model).__name__
        raise InvalidInput(f"invalid {type(model).__name__}: {where}: {err['msg']}") from None


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def preference_row(p: Preference) -> tuple[Any, ...]:
    return (p.prompt, p.chosen, p.rejected, p.reason, p.source, p.created_at.isoformat(),
            p.judgement)


# What a damaged stored value raises while it is parsed (ValidationError and JSONDecodeError
# are ValueErrors; deep JSON raises RecursionError).
_DAMAGE = (ValueError, TypeError, RecursionError, OverflowError)


def _row(user_id: Any, where: str, parse: Callable[[], Any]) -> Any:
    """``parse()`` of one stored row of ``user_id``; a value that does not parse is a
    :class:`CorruptProfile` naming the user and the field (``where``: the table, or the
    table.column), never the parser's own error."""
    try:
        return parse()
    except CorruptProfile:
        raise
    except _DAMAGE as exc:
        raise _corrupt(user_id, where, exc) from None


def _corrupt(user_id: Any, where: str, exc: BaseException) -> CorruptProfile:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        field = f"{where}.{loc}" if loc and "." not in where else where
        problem = err["msg"]
    else:
        field, problem = where, f"{type(exc).__name__}: {exc}"
    shown = user_id if isinstance(user_id, str) else repr(user_id)
    return CorruptProfile(shown[:200], field, problem[:160])


def _when(user_id: Any, field: str, value: Any) -> datetime:
    """A stored timestamp: ISO text (SQLite) or a datetime (PostgreSQL's timestamptz); one
    that is neither is a :class:`CorruptProfile` naming ``field``."""
    if isinstance(value, datetime):
        return value
    return _row(user_id, field, lambda: datetime.fromisoformat(value))


def _json(user_id: Any, field: str, value: Any) -> Any:
    return _row(user_id, field, lambda: json.loads(value))


def profile_from_row(r: Sequence[Any]) -> Profile:
    """The profile of a ``PROFILE_COLUMNS`` row; :class:`CorruptProfile` naming the user and
    the field for a row whose values do not make a valid profile."""
    uid = r[0]
    return _row(uid, "profiles", lambda: Profile(
        user_id=uid,
        version=r[1],
        reward_set_id=r[2],
        reward_set_version=r[3],
        coefficients=_json(uid, "profiles.coefficients", r[4]),
        covariance=None if r[5] is None else _json(uid, "profiles.covariance", r[5]),
        summary=r[6],
        preference_count=r[7],
        created_at=_when(uid, "profiles.created_at", r[8]),
        updated_at=_when(uid, "profiles.updated_at", r[9]),
        summary_source=r[10],
        summary_written_at=None if r[11] is None else _when(uid, "profiles.summary_written_at",
                                                            r[11]),
        summary_preferences=r[12],
        summary_stale=r[13],
        summary_digest=r[14],
    ))


def summary_row(p: Profile) -> tuple[Any, ...]:
    """The summary's metadata columns of ``p``."""
    return (p.summary_source,
            None if p.summary_written_at is None else p.summary_written_at.isoformat(),
            p.summary_preferences, p.summary_stale, p.summary_digest)


def sums_from_rows(count: int, linear: Sequence[Sequence[Any]],
                   outer: Sequence[Sequence[Any]], cov: Sequence[Sequence[Any]]
                   ) -> PopulationSums:
    """:class:`PopulationSums` from the aggregate queries' rows (name, sum), (name, name, sum)
    and (row index, column index, sum) with 0-based indices."""
    return PopulationSums(
        count=count,
        linear={str(k): float(v) for k, v in linear},
        outer={(str(a), str(b)): float(v) for a, b, v in outer},
        covariance={(int(i), int(j)): float(v) for i, j, v in cov},
    )


def check_text(name: str, value: object, *, optional: bool = False) -> None:
    """Refuse an argument that is not text a store can hold (InvalidInput, naming it)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{name} {problem}")
