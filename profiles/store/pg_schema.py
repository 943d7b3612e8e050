"""The PostgreSQL schema: the same steps as :mod:`.schema` (SQLite), by the same names.

Each step is a list of statements applied in one transaction together with its row in
``personalizer_migrations``; :class:`~personalizer.profiles.PostgresProfileStore` applies the
pending ones under an advisory lock, so servers starting at once migrate exactly once. Never
edit a step that has shipped; append one. JSON columns are ``json``, not ``jsonb``: ``json``
keeps the text as written, so coefficient names and covariance rows keep their order.
"""

from __future__ import annotations

__all__ = ["LOCK_KEY", "MIGRATIONS_TABLE", "STEPS"]

MIGRATIONS_TABLE = "personalizer_migrations"
# pg_advisory_lock key of schema changes (any fixed bigint; "personali" in ASCII).
LOCK_KEY = 0x706572736F6E616C

STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("m001_profiles_and_preferences", (
        """CREATE TABLE profiles (
            user_id text PRIMARY KEY,
            version bigint NOT NULL,
            reward_set_id text,
            reward_set_version text,
            coefficients json NOT NULL,
            covariance json,
            summary text NOT NULL,
            preference_count integer NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        """CREATE TABLE preferences (
            id bigserial PRIMARY KEY,
            user_id text NOT NULL REFERENCES profiles (user_id),
            prompt text NOT NULL,
            chosen text NOT NULL,
            rejected text NOT NULL,
            reason text,
            source text NOT NULL,
            created_at timestamptz NOT NULL
        )""",
        "CREATE INDEX idx_preferences_user_id_id ON preferences (user_id, id)",
    )),
    ("m002_onboarding", (
        """CREATE TABLE onboarding (
            user_id text PRIMARY KEY REFERENCES profiles (user_id),
            state json NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
    )),
    ("m003_append_keys", (
        "ALTER TABLE preferences ADD COLUMN append_key text",
        "CREATE UNIQUE INDEX idx_preferences_append_key ON preferences (user_id, append_key)",
    )),
    ("m004_summary_meta", (
        "ALTER TABLE profiles ADD COLUMN summary_source text",
        "ALTER TABLE profiles ADD COLUMN summary_written_at timestamptz",
        "ALTER TABLE profiles ADD COLUMN summary_preferences integer NOT NULL DEFAULT 0",
        "ALTER TABLE profiles ADD COLUMN summary_stale boolean NOT NULL DEFAULT false",
        "ALTER TABLE profiles ADD COLUMN summary_digest text",
        ("UPDATE profiles SET summary_source = 'user', summary_written_at = updated_at "
         "WHERE summary <> ''"),
    )),
    ("m005_generations", (
        """CREATE TABLE generations (
            id text NOT NULL,
            user_id text NOT NULL REFERENCES profiles (user_id),
            prompt text NOT NULL,
            answer text NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (user_id, id)
        )""",
        "CREATE INDEX idx_generations_user_id_created_at ON generations (user_id, created_at)",
        """CREATE TABLE ratings (
            id bigserial PRIMARY KEY,
            user_id text NOT NULL REFERENCES profiles (user_id),
            prompt text NOT NULL,
            answer text NOT NULL,
            rating text NOT NULL,
            created_at timestamptz NOT NULL
        )""",
        "CREATE INDEX idx_ratings_user_id_id ON ratings (user_id, id)",
    )),
    ("m006_preference_judgement", (
        # Preference.judgement; rows from before graded answers were plain choices
        "ALTER TABLE preferences ADD COLUMN judgement text NOT NULL DEFAULT 'better'",
    )),
    # SQLite's twin drops NUL from texts written before it was refused; PostgreSQL's text
    # never held one.
    ("m007_no_nul_in_text", ()),
    ("m008_generation_record", (
        # how each kept answer was made; answers kept before have none
        "ALTER TABLE generations ADD COLUMN model text",
        "ALTER TABLE generations ADD COLUMN options json NOT NULL DEFAULT '{}'",
        "ALTER TABLE generations ADD COLUMN strategy json",
        "ALTER TABLE generations ADD COLUMN steering json",
    )),
)
