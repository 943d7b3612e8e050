"""Profile store throughput: reads/s, updates/s and preference appends/s for 10,000 users,
in one process and in 4 processes sharing one store: an SQLite file, and next to it the
PostgreSQL database given by ``--db``.

    .venv/bin/python bench/store.py [--users 10000] [--ops 2000] [--db postgresql://...]

Each worker opens its own store and works on random users. Throughput is total operations over
wall time for all workers together. ``--db`` writes (and overwrites) users ``user-0`` ...
``user-N`` in that database: point it at a database made for the benchmark. On a machine with
few cores the server shares them with the workers: read the 4-process column with that in mind.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import tempfile
import time
from pathlib import Path

from personalizer.profiles import Preference, Profile, open_store

J = 8  # coefficients per profile, with a J x J covariance


def _profile(user_id: str, rng: random.Random) -> dict:
    coefficients = {f"reward_{j}": rng.gauss(0, 1) for j in range(J)}
    cov = [[0.1 if i == j else 0.01 for j in range(J)] for i in range(J)]
    profile = Profile(user_id=user_id, coefficients=coefficients, covariance=cov,
                      reward_set_id="bench", reward_set_version="1", summary="x" * 200,
                      version=1)
    return {"schema": "personalizer.profile-export", "schema_version": 1,
            "profile": profile.model_dump(mode="json"), "preferences": []}


def populate(db: str, users: int) -> None:
    rng = random.Random(0)
    with open_store(db) as store:
        for i in range(users):
            store.import_profile(_profile(f"user-{i}", rng), replace=True)


def _work(args: tuple[str, str, int, int, int]) -> float:
    path, kind, users, ops, seed = args
    rng = random.Random(seed)
    with open_store(path) as store:
        start = time.perf_counter()
        for i in range(ops):
            user = f"user-{rng.randrange(users)}"
            if kind == "read":
                store.get(user)
            elif kind == "update":
                store.modify(user, lambda p: p.model_copy(update={
                    "coefficients": {k: v * 0.99 for k, v in p.coefficients.items()}}))
            else:
                store.append_preference(user, Preference(
                    prompt=f"prompt {i}", chosen=f"chosen {i} " * 20,
                    rejected=f"rejected {i} " * 20))
        return time.perf_counter() - start


def measure(path: str, kind: str, users: int, ops: int, procs: int) -> float:
    jobs = [(str(path), kind, users, ops, 1000 * k + hash(kind) % 1000) for k in range(procs)]
    start = time.perf_counter()
    if procs == 1:
        _work(jobs[0])
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            # time only the work: each worker reports its own span; the pool start-up is excluded
            spans = pool.map(_work, jobs)
            return procs * ops / max(spans)
    return ops / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--ops", type=int, default=2_000, help="operations per worker")
    ap.add_argument("--db", default=None,
                    help="a postgresql:// URL to measure next to SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("SQLite", str(Path(tmp) / "bench.db"))]
        if args.db:
            stores.append(("PostgreSQL", args.db))
        for name, db in stores:
            t = time.perf_counter()
            populate(db, args.users)
            print(f"\n{name}: populated {args.users} profiles ({J} coefficients + covariance) "
                  f"in {time.perf_counter() - t:.1f}s")
            print(f"{'operation':<20}{'1 process':>14}{'4 processes':>14}{'4 / 1':>8}")
            for kind, label in (("read", "profile reads/s"), ("update", "updates/s"),
                                ("append", "appends/s")):
                one = measure(db, kind, args.users, args.ops, 1)
                four = measure(db, kind, args.users, args.ops, 4)
                print(f"{label:<20}{one:>14,.0f}{four:>14,.0f}{four / one:>8.2f}")


if __name__ == "__main__":
    main()
