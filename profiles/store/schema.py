"""The SQLite schema, as sqlite-utils migrations (each in a transaction, safe to re-run).

Add a step by appending a decorated function; never edit one that has shipped. Every step has
a twin of the same name in :mod:`.pg_schema` (PostgreSQL): whichever store's change lands
second adds the other's step. Every table holding a user's data has a ``user_id`` column and is
listed in :data:`USER_TABLES`, children before parents, so export, import and delete cover it.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["MIGRATIONS", "USER_TABLES"]

MIGRATIONS = Migrations("personalizer")

# Every table with per-user rows, children first (delete order).
USER_TABLES: tuple[str, ...] = ("preferences", "onboarding", "generations", "ratings",
                                 "profiles")


@MIGRATIONS()
def m001_profiles_and_preferences(db: Database) -> None:
    db["profiles"].create(  # type: ignore[union-attr]
        {
            "user_id": str,
            "version": int,
            "reward_set_id": str,
            "reward_set_version": str,
            "coefficients": str,  # JSON object, name -> float, order kept
            "covariance": str,  # JSON matrix or NULL
            "summary": str,
            "preference_count": int,
            "created_at": str,
            "updated_at": str,
        },
        pk="user_id",
        not_null={"version", "coefficients", "summary", "preference_count", "created_at",
                  "updated_at"},
    )
    db["preferences"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "user_id": str,
            "prompt": str,
            "chosen": str,
            "rejected": str,
            "reason": str,
            "source": str,
            "created_at": str,
        },
        pk="id",
        not_null={"user_id", "prompt", "chosen", "rejected", "source", "created_at"},
        foreign_keys=[("user_id", "profiles", "user_id")],
    )
    db["preferences"].create_index(["user_id", "id"])  # type: ignore[union-attr]


@MIGRATIONS()
def m002_onboarding(db: Database) -> None:
    db["onboarding"].create(  # type: ignore[union-attr]
        {"user_id": str, "state": str, "updated_at": str},  # state: OnboardingState JSON
        pk="user_id",
        not_null={"state", "updated_at"},
        foreign_keys=[("user_id", "profiles", "user_id")],
    )


@MIGRATIONS()
def m003_append_keys(db: Database) -> None:
    # Idempotency keys of appends: a retried append whose key is stored writes nothing.
    # Store-internal (not exported); NULL for imported rows, and NULLs never collide.
    db.execute("ALTER TABLE preferences ADD COLUMN append_key TEXT")
    db.execute("CREATE UNIQUE INDEX idx_preferences_append_key "
               "ON preferences (user_id, append_key)")


@MIGRATIONS()
def m004_summary_meta(db: Database) -> None:
    # Who wrote the summary, when, from how many preferences, and whether deletions made it
    # stale. Summaries written before this step came from a person or the app: 'user'.
    for sql in ("ALTER TABLE profiles ADD COLUMN summary_source TEXT",
                "ALTER TABLE profiles ADD COLUMN summary_written_at TEXT",
                "ALTER TABLE profiles ADD COLUMN summary_preferences INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE profiles ADD COLUMN summary_stale INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE profiles ADD COLUMN summary_digest TEXT",
                ("UPDATE profiles SET summary_source = 'user', summary_written_at = updated_at "
                 "WHERE summary <> ''")):
        db.execute(sql)


@MIGRATIONS()
def m005_generations(db: Database) -> None:
    # Answers kept for feedback (retention-limited), and thumbs up/down ratings (history).
    db.execute("CREATE TABLE generations (id TEXT NOT NULL, user_id TEXT NOT NULL "
               "REFERENCES profiles (user_id), prompt TEXT NOT NULL, answer TEXT NOT NULL, "
               "created_at TEXT NOT NULL, PRIMARY KEY (user_id, id))")
    db.execute("CREATE INDEX idx_generations_user_id_created_at "
               "ON generations (user_id, created_at)")
    db.execute("CREATE TABLE ratings (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL "
               "REFERENCES profiles (user_id), prompt TEXT NOT NULL, answer TEXT NOT NULL, "
               "rating TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_ratings_user_id_id ON ratings (user_id, id)")


@MIGRATIONS()
def m006_preference_judgement(db: Database) -> None:
    # How each pairwise answer compares the two responses (Preference.judgement): rows from
    # before graded answers were plain choices, 'better'.
    db.execute("ALTER TABLE preferences ADD COLUMN judgement TEXT NOT NULL DEFAULT 'better'")


@MIGRATIONS()
def m007_no_nul_in_text(db: Database) -> None:
    # Text may no longer hold NUL (PostgreSQL cannot store it, and every stored string is
    # checked when read); databases written before could hold it: drop it from every text.
    for table in USER_TABLES:
        columns = [r[1] for r in db.execute(f"PRAGMA table_info([{table}])").fetchall()
                   if str(r[2]).upper() == "TEXT" and r[1] != "user_id"]
        for column in columns:
            rows = db.execute(f"SELECT rowid, [{column}] FROM [{table}] WHERE typeof([{column}])"
                              f" = 'text' AND instr(CAST([{column}] AS BLOB), x'00') > 0"
                              ).fetchall()
            for rowid, text in rows:
                db.execute(f"UPDATE [{table}] SET [{column}] = ? WHERE rowid = ?",
                           (text.replace("\x00", ""), rowid))


@MIGRATIONS()
def m008_generation_record(db: Database) -> None:
    # How each kept answer was made: the model, the generation options (a JSON object), the
    # strategy and the steering record (JSON, or NULL). Answers kept before have none.
    for sql in ("ALTER TABLE generations ADD COLUMN model TEXT",
                "ALTER TABLE generations ADD COLUMN options TEXT NOT NULL DEFAULT '{}'",
                "ALTER TABLE generations ADD COLUMN strategy TEXT",
                "ALTER TABLE generations ADD COLUMN steering TEXT"):
        db.execute(sql)
