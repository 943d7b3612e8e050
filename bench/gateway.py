"""What the gateway costs: latency it adds over calling the upstream directly, its CPU time per
request, and requests per second for 1 and 2 workers.

Everything runs on this machine, as separate processes sharing its cores: the upstream (the
project's OpenAI wire-format server, tests/support/provider_server.py, in its own process),
PostgreSQL with ``--users`` stored profiles (each with coefficients and a summary), ``personalizer
serve`` (hosted OpenAI generator pointed at the upstream: the profile block in the system
prompt), and this process as the load client (httpx, async, a fixed number of requests; it stops
by itself). Per worker count:

* concurrency 1 and 16: ``--requests`` chat completions through the gateway (a random stored
  person each) and as many straight to the upstream, interleaved in blocks of 20, p50/p99 of each
  and their difference (the latency the gateway adds);
* the gateway's CPU time (user + system, all its processes) per request through it;
* requests/s through the gateway at concurrency 16, and each process group's share of a core
  while that ran (gateway, upstream, PostgreSQL, load client).

    .venv/bin/python bench/gateway.py [--requests 400] [--users 10000] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from hosted import populate  # noqa: E402
from support.gateway import free_port  # noqa: E402

KEY = "bench-key-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant for a travel app."},
            {"role": "user", "content": "What should I pack for three days in Lisbon?"}]
TICK = os.sysconf("SC_CLK_TCK")
UPSTREAM = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from support.provider_server import ProviderServer;"
            "s = ProviderServer(); s.start(); print(s.openai_base_url, flush=True);"
            "time.sleep(1e9)")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def named(name: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == name:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


async def run(client: httpx.AsyncClient, url: str, bodies: list[dict], concurrency: int,
              headers: dict[str, str]) -> list[float]:
    """Send ``bodies`` to ``url`` ``concurrency`` at a time; the seconds of each."""
    times: list[float] = []
    queue = list(bodies)

    async def worker() -> None:
        while queue:
            body = queue.pop()
            t = time.perf_counter()
            reply = await client.post(url, json=body, headers=headers)
            times.append(time.perf_counter() - t)
            assert reply.status_code == 200, reply.text[:300]

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return times


async def latency(upstream: str, gateway: str, n: int, concurrency: int, users: int
                  ) -> tuple[list[float], list[float]]:
    rng = random.Random(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    direct_body = {"model": "gpt-bench", "messages": MESSAGES}
    auth = {"Authorization": f"Bearer {KEY}"}
    direct, through = [], []
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        # warm every worker: new connections (one per request) reach all of them
        warm = [direct_body | {"user": f"user-{rng.randrange(users):05d}"} for _ in range(60)]
        await run(client, gateway + "/v1/chat/completions", warm, 4,
                  auth | {"Connection": "close"})
        await run(client, upstream + "/chat/completions", warm[:40], concurrency, {})
        block = max(20, concurrency)
        for start in range(0, n, block):
            k = min(block, n - start)
            mine = [direct_body | {"user": f"user-{rng.randrange(users):05d}"}
                    for _ in range(k)]
            through += await run(client, gateway + "/v1/chat/completions", mine, concurrency,
                                 auth)
            direct += await run(client, upstream + "/chat/completions", [direct_body] * k,
                                concurrency, {})
    return direct, through


async def throughput(gateway: str, n: int, users: int, groups: dict[str, list[int]]
                     ) -> tuple[float, dict[str, float]]:
    rng = random.Random(7)
    bodies = [{"model": "gpt-bench", "messages": MESSAGES,
               "user": f"user-{rng.randrange(users):05d}"} for _ in range(n)]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        before = {g: cpu_s(p) for g, p in groups.items()}
        client_before = sum(os.times()[:2])
        t = time.perf_counter()
        await run(client, gateway + "/v1/chat/completions", bodies, 16,
                  {"Authorization": f"Bearer {KEY}"})
        wall = time.perf_counter() - t
    shares = {g: (cpu_s(p) - before[g]) / wall for g, p in groups.items()}
    shares["load client"] = (sum(os.times()[:2]) - client_before) / wall
    return n / wall, shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--db", default=None, help="a postgresql:// URL (default: a throw-away "
                    "server from the PostgreSQL binaries, as the tests start one)")
    args = ap.parse_args()
    from personalizer.profiles import default_reward_set

    with ExitStack() as stack:
        db = args.db
        if db is None:
            from support.pg_server import find_bindir, running

            bindir = find_bindir()
            if bindir is None:
                sys.exit("no PostgreSQL binaries: pass --db postgresql://...")
            pg = stack.enter_context(running(bindir))
            db = pg.url(pg.create_database())
        t = time.perf_counter()
        populate(db, args.users, default_reward_set())
        print(f"PostgreSQL with {args.users} profiles ({time.perf_counter() - t:.0f} s to fill)")
        up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(ROOT / "tests")],
                              stdout=subprocess.PIPE, text=True)
        stack.callback(up.kill)
        upstream = up.stdout.readline().strip()  # type: ignore[union-attr]
        rows = []
        for workers in (1, 2):
            port = free_port()
            env = {**os.environ, "PERSONALIZER_DB": db, "PERSONALIZER_GENERATOR": "openai",
                   "PERSONALIZER_MODEL": "gpt-bench", "PERSONALIZER_BASE_URL": upstream,
                   "PERSONALIZER_API_KEY": "k", "PERSONALIZER_SERVER_KEYS": f"{KEY}=chat"}
            serve = subprocess.Popen(
                [str(Path(sys.executable).with_name("personalizer")), "serve", "--port",
                 str(port), "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            gateway = f"http://127.0.0.1:{port}"
            try:
                for _ in range(600):
                    try:
                        if httpx.get(gateway + "/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                else:
                    sys.exit("personalizer serve did not become ready in 60 s")
                time.sleep(2)  # every worker up (one answering /readyz proves only itself)
                groups = {"gateway": tree(serve.pid), "upstream": [up.pid],
                          "PostgreSQL": named("postgres")}
                for concurrency in (1, 16):
                    cpu0 = cpu_s(tree(serve.pid))
                    direct, through = asyncio.run(latency(upstream, gateway, args.requests,
                                                          concurrency, args.users))
                    cpu_ms = 1000 * (cpu_s(tree(serve.pid)) - cpu0) / (args.requests + 60)
                    rows.append((workers, concurrency, direct, through, cpu_ms))
                rps, shares = asyncio.run(throughput(gateway, args.requests, args.users,
                                                     groups))
                rows.append((workers, "rps", rps, shares, None))
            finally:
                serve.terminate()
                serve.wait(timeout=60)
    print(f"\n{args.requests} requests per row; ms; the gateway's upstream is the wire-format "
          "server (no model)")
    print(f"{'workers':>7} {'conc':>4} {'direct p50':>10} {'p99':>7} {'gateway p50':>11} "
          f"{'p99':>7} {'added p50':>9} {'p99':>7} {'gw CPU/req':>10}")
    for workers, conc, a, b, cpu_ms in rows:
        if conc == "rps":
            print(f"{workers:>7} requests/s at concurrency 16: {a:.0f}; CPU share of a core: "
                  + ", ".join(f"{g} {100 * s:.0f}%" for g, s in b.items()))
            continue
        da, db_ = [1000 * x for x in a], [1000 * x for x in b]
        print(f"{workers:>7} {conc:>4} {pct(da, 50):>10.2f} {pct(da, 99):>7.2f} "
              f"{pct(db_, 50):>11.2f} {pct(db_, 99):>7.2f} {pct(db_, 50) - pct(da, 50):>9.2f} "
              f"{pct(db_, 99) - pct(da, 99):>7.2f} {cpu_ms:>10.2f}")
    print("targets: added p50 < 5 ms at concurrency 1; gateway CPU < 5 ms per request")


if __name__ == "__main__":
    main()
