"""The per-call overhead of personalizing a hosted model.

A personalized call through ``Personalizer.generate`` (read the profile, render its block into
the system prompt, validate options, call, build the Generation) against a plain call through
the same ``openai`` client to the same local wire-format server (tests/provider_server.py),
interleaved call by call, over a store of 10,000 profiles (each with a summary and
coefficients). Reports p50 and p99 of both and their difference.

    .venv/bin/python bench/hosted.py [--calls 1000] [--users 10000] [--db PATH_OR_URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.provider_server import ProviderServer  # noqa: E402

from personalizer import Personalizer  # noqa: E402
from personalizer.backends import OpenAIGenerator  # noqa: E402
from personalizer.profiles import default_reward_set, open_store  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are a helpful assistant for a travel app."},
            {"role": "user", "content": "What should I pack for three days in Lisbon?"}]


def populate(db: str, users: int, rewards: object) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--db", default=None, help="store (default: a fresh SQLite file)")
    args = ap.parse_args()
    rewards = default_reward_set()
    with tempfile.TemporaryDirectory() as tmp, ProviderServer() as server:
        db = args.db or str(Path(tmp) / "bench.db")
        t = time.perf_counter()
        populate(db, args.users, rewards)
        kind = "PostgreSQL" if db.startswith(("postgresql:", "postgres:")) else "SQLite"
        print(f"store: {kind} with {args.users} profiles "
              f"(filled in {time.perf_counter() - t:.1f} s)")
        gen = OpenAIGenerator("gpt-bench", base_url=server.openai_base_url, api_key="k",
                              max_retries=0)
        client = gen.client
        rng = random.Random(1)
        plain: list[float] = []
        personal: list[float] = []
        with Personalizer(db, rewards=rewards, generator=gen) as p:
            for _ in range(20):  # warm up both paths (connections, imports, caches)
                client.chat.completions.create(model="gpt-bench", messages=MESSAGES)
                p.generate(f"user-{rng.randrange(args.users):05d}", MESSAGES)
            for i in range(args.calls):
                user = f"user-{rng.randrange(args.users):05d}"
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
        assert blocks == args.calls + 20, blocks  # every personalized call carried its block
    print(f"{args.calls} calls each, interleaved; ms")
    print(f"{'':14}{'p50':>8}{'p99':>8}{'mean':>8}")
    for name, xs in (("plain SDK", plain), ("personalized", personal)):
        ms = [1000 * x for x in xs]
        print(f"{name:14}{pct(ms, 50):8.2f}{pct(ms, 99):8.2f}{statistics.mean(ms):8.2f}")
    d50 = 1000 * (pct(personal, 50) - pct(plain, 50))
    d99 = 1000 * (pct(personal, 99) - pct(plain, 99))
    print(f"{'overhead':14}{d50:8.2f}{d99:8.2f}"
          f"{1000 * (statistics.mean(personal) - statistics.mean(plain)):8.2f}"
          "   (target: < 2 ms p50, < 5 ms p99)")


if __name__ == "__main__":
    main()
