"""Child processes for the concurrency and crash tests (tests/integration/test_concurrency.py),
run as scripts (``python tests/support/workers.py CMD ...``), not imported."""

from __future__ import annotations

import sys
import time

from personalizer.profiles import Preference, open_store


def append(db: str, user: str, n: int, tag: str) -> None:
    with open_store(db) as store:
        for i in range(n):
            store.append_preference(
                user, Preference(prompt=f"{tag}-{i}", chosen=f"a-{tag}-{i}", rejected=f"b-{i}")
            )


def modify(db: str, user: str, n: int) -> None:
    with open_store(db) as store:
        for _ in range(n):
            store.modify(
                user,
                lambda p: p.model_copy(update={"summary": str(int(p.summary or "0") + 1)}),
                retries=1000,
            )


def hold_transaction(db: str, user: str, n: int) -> None:
    """Append n preferences in one big transaction, announce it, then wait to be killed."""
    with open_store(db) as store:
        prefs = [Preference(prompt=f"doomed-{i}", chosen="x", rejected="y") for i in range(n)]
        with store._write() as conn:  # the store's own transaction, held open on purpose
            conn.executemany(
                "INSERT INTO preferences (user_id, prompt, chosen, rejected, reason, source, "
                "created_at) VALUES (?, ?, ?, ?, NULL, 'feedback', '2026-01-01T00:00:00+00:00')",
                [(user, p.prompt, p.chosen, p.rejected) for p in prefs],
            )
            conn.execute("UPDATE profiles SET preference_count = preference_count + ? "
                         "WHERE user_id = ?", (n, user))
            print("in-transaction", flush=True)
            time.sleep(60)


def append_forever(db: str, user: str) -> None:
    """Append batches of 50 until killed, saying after each commit how many are stored."""
    with open_store(db) as store:
        print("started", flush=True)
        i = 0
        while True:
            store.append_preferences(
                user, [Preference(prompt=f"loop-{i}-{j}", chosen="x", rejected="y")
                       for j in range(50)]
            )
            i += 1
            print(f"committed {50 * i}", flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "append":
        append(args[0], args[1], int(args[2]), args[3])
    elif cmd == "modify":
        modify(args[0], args[1], int(args[2]))
    elif cmd == "hold":
        hold_transaction(args[0], args[1], int(args[2]))
    elif cmd == "append-forever":
        append_forever(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {cmd}")
