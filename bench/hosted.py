"""The per-call overhead of personalizing a hosted model.

A personalized call through ``Personalizer.generate`` (read the profile, render its block into
the system prompt, validate options, call, build the Generation) against a plain call through
the same ``openai`` client to the same local wire-format server
(tests/support/provider_server.py), interleaved call by call, over a store of 10,000 profiles
(each with a summary and coefficients). Reports p50 and p99 of both and their difference.

With ``--against REF`` (a git commit) the personalized path of that commit and of the working
tree run in turns, each round in its own process (``--rounds``), and the table adds each
row's new/old ratio.

    .venv/bin/python bench/hosted.py [--calls 1000] [--users 10000] [--db PATH_OR_URL]
                                     [--against REF] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from support.provider_server import ProviderServer  # noqa: E402
from versions import package_of  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are a helpful assistant for a travel app."},
            {"role": "user", "content": "What should I pack for three days in Lisbon?"}]


def populate(db: str, users: int, rewards: object) -> None:
    from personalizer.profiles import open_store

    store = open_store(db)
    rng = random.Random(0)
    names = list(rewards.names)  # type: ignore[attr-defined]
    doc = {"schema": "personalizer.profile-export", "schema_version": 3, "preferences": []}
    try:
        if store.count() >= users:
            return
        for i in range(users):
            coefficients = {n: round(rng.gauss(0, 0.8), 3) for n in names}
            store.import_profile(doc | {"profile": {
                "user_id": f"user-{i:05d}", "coefficients": coefficients,
                "reward_set_id": rewards.id,  # type: ignore[attr-defined]
                "reward_set_version": rewards.version,  # type: ignore[attr-defined]
                "summary": f"Prefers answers with one example; user {i} likes a calm tone.",
                "summary_source": "summarizer"}}, replace=True)
    finally:
        store.close()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else \
        max(values)


def measure(impl: str | None, db: str | None, calls: int, users: int, seed: int
            ) -> tuple[str, list[float], list[float]]:
    """``(store kind, plain seconds, personalized seconds)`` of ``calls`` interleaved pairs,
    with the ``personalizer`` found first on ``impl`` (None: the working tree)."""
    if impl is not None:
        sys.path.insert(0, impl)
    from personalizer import Personalizer
    from personalizer.backends import OpenAIGenerator
    from personalizer.profiles import default_reward_set

    rewards = default_reward_set()
    with tempfile.TemporaryDirectory() as tmp, ProviderServer() as server:
        db = db or str(Path(tmp) / "bench.db")
        populate(db, users, rewards)
        kind = "PostgreSQL" if db.startswith(("postgresql:", "postgres:")) else "SQLite"
        gen = OpenAIGenerator("gpt-bench", base_url=server.openai_base_url, api_key="k",
                              max_retries=0)
        client = gen.client
        rng = random.Random(seed)
        plain: list[float] = []
        personal: list[float] = []
        with Personalizer(db, rewards=rewards, generator=gen) as p:
            for _ in range(20):  # warm up both paths (connections, imports, caches)
                client.chat.completions.create(model="gpt-bench", messages=MESSAGES)
                p.generate(f"user-{rng.randrange(users):05d}", MESSAGES)
            for i in range(calls):
                user = f"user-{rng.randrange(users):05d}"
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for which in order:
                    t = time.perf_counter()
                    if which == 0:
                        client.chat.completions.create(model="gpt-bench", messages=MESSAGES)
                        plain.append(time.perf_counter() - t)
                    else:
                        out = p.generate(user, MESSAGES)
                        personal.append(time.perf_counter() - t)
                        assert out.steering.levers == ("prompt",)
        blocks = sum("<user_profile>" in r.body["messages"][0]["content"]
                     for r in server.requests)
        assert blocks == calls + 20, blocks  # every personalized call carried its block
    return kind, plain, personal


def stats(xs: list[float]) -> tuple[float, float, float]:
    ms = [1000 * x for x in xs]
    return pct(ms, 50), pct(ms, 99), statistics.mean(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--db", default=None, help="store (default: a fresh SQLite file)")
    ap.add_argument("--against", help="a git commit to compare with, in turns")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --against: rounds per version, each in its own process")
    args = ap.parse_args()
    if not args.against:
        t = time.perf_counter()
        kind, plain, personal = measure(None, args.db, args.calls, args.users, 1)
        print(f"store: {kind} with {args.users} profiles (filled and measured in "
              f"{time.perf_counter() - t:.1f} s)")
        print(f"{args.calls} calls each, interleaved; ms")
        print(f"{'':14}{'p50':>8}{'p99':>8}{'mean':>8}")
        for name, xs in (("plain SDK", plain), ("personalized", personal)):
            print(f"{name:14}" + "".join(f"{v:8.2f}" for v in stats(xs)))
        over = [a - b for a, b in zip(stats(personal), stats(plain), strict=True)]
        print(f"{'overhead':14}" + "".join(f"{v:8.2f}" for v in over) +
              "   (target: < 2 ms p50, < 5 ms p99)")
        return
    impls = {args.against: str(package_of(args.against)), "now": None}
    got: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in impls}
    per_round = max(1, args.calls // args.rounds)
    ctx = mp.get_context("spawn")
    for r in range(args.rounds):
        for version in (impls if r % 2 == 0 else reversed(list(impls))):
            with ctx.Pool(1) as pool:
                _, plain, personal = pool.apply(
                    measure, (impls[version], args.db, per_round, args.users, r))
            got[version][0].extend(plain)
            got[version][1].extend(personal)
    print(f"{per_round} calls x {args.rounds} rounds per version, versions in turns, each "
          f"round in its own process; {args.users} profiles; ms")
    print(f"{'version':<10}{'row':<14}{'p50':>8}{'p99':>8}{'mean':>8}")
    rows: dict[str, dict[str, tuple[float, ...]]] = {}
    for version, (plain, personal) in got.items():
        p, q = stats(plain), stats(personal)
        rows[version] = {"plain SDK": p, "personalized": q,
                         "overhead": tuple(a - b for a, b in zip(q, p, strict=True))}
        for name, vals in rows[version].items():
            print(f"{version:<10}{name:<14}" + "".join(f"{v:8.2f}" for v in vals))
    print(f"{'new/old':<10}")
    for name in ("plain SDK", "personalized", "overhead"):
        ratio = [n / o if o else float("nan")
                 for n, o in zip(rows["now"][name], rows[args.against][name], strict=True)]
        print(f"{'':<10}{name:<14}" + "".join(f"{v:8.3f}" for v in ratio))


if __name__ == "__main__":
    main()
