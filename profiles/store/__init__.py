"""The SQL profile stores: the contract's operations written once (:mod:`.sql`, over the
primitives of :mod:`.core`), the embedded SQLite store (:mod:`.sqlite`, schema in
:mod:`.schema`), the PostgreSQL store (:mod:`.postgres`, schema in :mod:`.pg_schema`), and
:func:`~personalizer.profiles.open_store`, which picks one from a ``db`` setting
(:mod:`.stores`)."""
