"""The long fuzz: tests/integration/test_fuzz.py under Hypothesis's random ``long`` profile (400 examples
per method instead of the derandomized 40 that ``make test`` runs), then the counts of calls,
refusals (a PersonalizerError, database unchanged) and escapes (anything else: a finding).

    .venv/bin/python bench/fuzz.py [--examples 400] [-k EXPR] [--race 10000]

A find prints Hypothesis's reproduction (``@reproduce_failure``) in the pytest output.
``--race N`` then runs the write-racing-delete race, N tries on each store
(bench/fuzz_race.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=400, help="examples per method")
    ap.add_argument("-k", default=None, help="pytest -k expression (a subset of methods)")
    ap.add_argument("--race", type=int, default=0, metavar="N",
                    help="then run the write-racing-delete race, N tries per store")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "counts.json"
        env = dict(os.environ, PERSONALIZER_FUZZ_PROFILE="long",
                   PERSONALIZER_FUZZ_EXAMPLES=str(args.examples),
                   PERSONALIZER_FUZZ_REPORT=str(report))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--timeout", "3600", str(ROOT / "tests" / "integration" / "test_fuzz.py")]
        if args.k:
            cmd += ["-k", args.k]
        start = time.perf_counter()
        run = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        seconds = time.perf_counter() - start
        counts = json.loads(report.read_text()) if report.exists() else {}
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, n in counts.items():
        method, kind = key.rsplit(":", 1)
        table[method][kind] += n
    print(f"\n{'method':<32} {'calls':>7} {'refused':>8} {'escaped':>8}")
    total = defaultdict(int)
    for method in sorted(table):
        row = table[method]
        for kind in ("calls", "refused", "escaped"):
            total[kind] += row[kind]
        print(f"{method:<32} {row['calls']:>7} {row['refused']:>8} {row['escaped']:>8}")
    print(f"{'total':<32} {total['calls']:>7} {total['refused']:>8} {total['escaped']:>8}"
          f"   ({seconds:.0f} s, pytest exit {run.returncode})")
    if args.race:
        race = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_race.py"),
                               "--tries", str(args.race)], cwd=ROOT, check=False)
        return run.returncode or race.returncode
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
