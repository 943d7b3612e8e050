"""Kept answers: saving an answer for later feedback (retention-limited), reading one back,
and pruning old ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from personalizer.errors import InvalidInput, ProfileNotFound
from personalizer.types import SteeringRecord

from ..models import StoredGeneration, validate_user_id
from .core import SQLCore
from .rows import (
    GENERATION_COLUMNS,
    Connection,
    check_text,
    cutoff_time,
    generation_from_row,
    generation_row,
    revalidate,
)

__all__ = ["GenerationQueries"]


class GenerationQueries(SQLCore):
    """The kept-answer operations of the store contract."""

    def save_generation(self, user_id: str, generation: StoredGeneration, *, keep: int = 100,
                        max_age_s: float = 30 * 86400, model: str | None = None,
                        options: Mapping[str, Any] | BaseModel | None = None,
                        strategy: Mapping[str, Any] | BaseModel | None = None,
                        steering: SteeringRecord | None = None) -> None:
        """Keep an answer given to ``user_id`` for later feedback, with how it was made, then
        drop the user's kept answers beyond the newest ``keep`` or older than ``max_age_s``
        (in one transaction). Saving the same id twice writes it once.

        ``model``, ``options`` (the generation options, a mapping or the options model),
        ``strategy`` (the strategy's settings, likewise) and ``steering`` (the answer's
        :class:`~personalizer.types.SteeringRecord`) are stored with the answer; each one given
        takes the place of the generation's own field (``generation.model_copy(update=...)``
        does the same). A record that cannot be stored and read back as it is (a NUL in a
        text, a reward that is NaN) is refused with :class:`InvalidInput`, and nothing is
        written."""
        validate_user_id(user_id)
        if not isinstance(generation, StoredGeneration):
            raise InvalidInput(f"generation must be a StoredGeneration, not "
                               f"{type(generation).__name__}")
        given = {"model": model, "options": options, "strategy": strategy, "steering": steering}
        changes = {name: value for name, value in given.items() if value is not None}
        if changes:  # model_copy skips validation: validate it, with the changes, again
            generation = revalidate(generation, changes)
        if keep < 1:
            raise InvalidInput("keep must be at least 1 (to keep none, do not save)")
        cutoff = cutoff_time(max_age_s)

        def op(conn: Connection) -> None:
            if self._insert_generation(conn, user_id, generation, keep, cutoff):
                return
            stored = conn.execute("SELECT 1 FROM generations WHERE id = ? AND user_id = ?",
                                  (generation.id, user_id)).fetchone()
            if stored is None:  # not a retry of ours: the profile is gone
                raise ProfileNotFound(user_id)

        self._write_op(op, idempotent=True, single=True)

    def _insert_generation(self, conn: Connection, user_id: str, g: StoredGeneration,
                           keep: int, cutoff: str) -> bool:
        """Insert ``g`` if the profile exists, then drop the user's kept answers beyond the
        newest ``keep`` or older than ``cutoff``; whether a row was inserted. (One local
        transaction here; PostgreSQL does it in one statement.)"""
        inserted = conn.execute(
            f"INSERT INTO generations (user_id, {GENERATION_COLUMNS}) "
            "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "
            "WHERE EXISTS (SELECT 1 FROM profiles WHERE user_id = ?) "
            "ON CONFLICT (user_id, id) DO NOTHING",
            (user_id, *generation_row(g), user_id)).rowcount
        conn.execute(
            "DELETE FROM generations WHERE user_id = ? AND (created_at < ? OR id NOT IN "
            "(SELECT id FROM generations WHERE user_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?))",
            (user_id, cutoff, user_id, keep))
        return inserted == 1

    def generation(self, user_id: str, generation_id: str, *,
                   max_age_s: float | None = None) -> StoredGeneration | None:
        """A kept answer of ``user_id`` by id, or None (unknown, another user's, older than
        ``max_age_s``, or dropped by the retention limits)."""
        validate_user_id(user_id)
        check_text("generation_id", generation_id)
        cutoff = None if max_age_s is None else cutoff_time(max_age_s)

        def op(conn: Connection) -> StoredGeneration | None:
            row = conn.execute(f"SELECT {GENERATION_COLUMNS} FROM generations "
                               "WHERE id = ? AND user_id = ?",
                               (generation_id, user_id)).fetchone()
            if row is None:
                return None
            kept = generation_from_row(row, user_id)
            return None if cutoff is not None and kept.created_at.isoformat() < cutoff \
                else kept

        return self._read_op(op, single=True)

    def prune_generations(self, *, max_age_s: float, user_id: str | None = None) -> int:
        """Delete kept answers older than ``max_age_s`` (of one user, or of everyone: run it
        now and then, for users who stopped asking); returns how many."""
        if user_id is not None:
            validate_user_id(user_id)
        cutoff = cutoff_time(max_age_s)

        def op(conn: Connection) -> int:
            if user_id is None:
                return conn.execute("DELETE FROM generations WHERE created_at < ?",
                                    (cutoff,)).rowcount
            return conn.execute("DELETE FROM generations WHERE user_id = ? AND created_at < ?",
                                (user_id, cutoff)).rowcount

        return self._write_op(op, idempotent=True)

