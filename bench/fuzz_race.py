"""A write racing a delete, 10,000 tries on each store: one handle loops
``record_preference("u", ...)`` (every third write through ``ProfileLearner.record_preference``
with ``create=False``), another loops ``delete_profile("u")``, in two threads of one process
and in two processes, on an SQLite file and on a PostgreSQL database (a throw-away server from
``tests/support/pg_server.py``, skipped where its binaries are missing). Prints the writes'
outcomes (landed / ProfileNotFound / other errors), the deletes', and whether the invariants
of ``tests/support/fault_workers.check`` held (nothing from before a delete came back).

    .venv/bin/python bench/fuzz_race.py [--tries 10000] [--store sqlite|postgres|both]

Half of the tries run in threads and half in processes. tests/integration/test_faults.py runs
the same race with 120 tries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.fault_workers import check, history, race_processes, race_threads
from support.pg_server import find_bindir, running

from personalizer.profiles import default_reward_set


def _row(store: str, mode: str, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    writes, deletes = result["outcomes"], result["deletes"]
    other = sum(n for k, n in writes.items() if k not in ("landed", "ProfileNotFound"))
    other += sum(n for k, n in deletes.items() if k not in ("deleted", "ProfileNotFound"))
    fresh = sum(1 for _, create, count in result["landed"] if create and count == 1)
    try:
        check(result, history(result["db"]))
        invariants = "held"
    except AssertionError as exc:
        invariants = f"BROKEN: {str(exc)[:80]}"
    return {"store": store, "mode": mode, "tries": sum(writes.values()),
            "landed": writes.get("landed", 0), "fresh": fresh,
            "not_found": writes.get("ProfileNotFound", 0), "other": other,
            "deleted": deletes.get("deleted", 0), "seconds": seconds,
            "invariants": invariants,
            "errors": {k: n for k, n in {**writes, **deletes}.items()
                       if k not in ("landed", "deleted", "ProfileNotFound")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=10_000, help="writes per store")
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    rewards = default_reward_set()
    rows = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores = []
        if args.store in ("sqlite", "both"):
            stores.append(("sqlite", lambda mode: str(tmp / f"race-{mode}.db")))
        if args.store in ("postgres", "both"):
            bindir = find_bindir()
            if bindir is None:
                print("PostgreSQL binaries not found: skipping the PostgreSQL store")
            else:
                server = stack.enter_context(running(bindir))
                stores.append(("postgres", lambda mode: server.url(server.create_database())))
        for store, make_db in stores:
            for mode in ("threads", "processes"):
                db = make_db(mode)
                half = args.tries // 2
                start = time.perf_counter()
                result = race_threads(db, half, rewards=rewards) if mode == "threads" else \
                    race_processes(db, half, tmp)
                rows.append(_row(store, mode, {**result, "db": db},
                                 time.perf_counter() - start))
                print(f"  {store} {mode}: done in {rows[-1]['seconds']:.0f} s", flush=True)
    header = (f"{'store':<9} {'mode':<10} {'tries':>6} {'landed':>7} {'(fresh)':>8} "
              f"{'NotFound':>9} {'other':>6} {'deletes':>8} {'s':>5}  invariants")
    print("\n" + header)
    for r in rows:
        print(f"{r['store']:<9} {r['mode']:<10} {r['tries']:>6} {r['landed']:>7} "
              f"{r['fresh']:>8} {r['not_found']:>9} {r['other']:>6} {r['deleted']:>8} "
              f"{r['seconds']:>5.0f}  {r['invariants']}")
        for error, n in r["errors"].items():
            print(f"    {n} x {error}")
    failed = any(r["other"] or r["invariants"] != "held" for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
