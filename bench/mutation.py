"""A small mutation run: does the suite notice when the code is wrong?

For each target (a module and the functions in it, with the tests that should guard them),
every mutation point is changed one at a time — a comparison flipped (``<`` / ``<=``, ``==`` /
``!=``), an arithmetic operator swapped (``+`` / ``-``, ``*`` / ``/``), ``and`` / ``or``
swapped, a unary minus or ``not`` dropped, a number constant changed — in a copy of the built
package outside the checkout, and the target's tests run against that copy (PYTHONPATH wins
over the editable install). A mutant the tests fail on is *killed*; one they pass is a
*survivor*: a change to the code that no test notices (or an equivalent mutant).

    .venv/bin/python bench/mutation.py [--target learning|decoding_math|delete] [--limit N]

bench/mutation.sh runs every target. Not part of ``make test``: it takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    module: str                   # path inside the installed package
    functions: tuple[str, ...]    # empty: every function of the module
    tests: tuple[str, ...]        # pytest node ids or files
    select: str = ""              # a pytest -k expression, to run only the tests that matter


TARGETS = {
    "learning": Target("personalizer/profiles/learning/posterior.py", (),
                       ("tests/unit/test_learning.py", "tests/integration/test_graded.py")),
    "decoding_math": Target("personalizer/backends/decoding_math.py", (),
                            ("tests/unit/test_decoding_math.py",
                             "tests/unit/test_token_rewards_math.py", "tests/unit/test_args.py",
                             "tests/unit/test_proxy.py")),
    "delete": Target("personalizer/profiles/store/portability.py",
                     ("delete", "_delete_rows", "_delete_orphans"),
                     ("tests/contract/test_store_contract.py", "tests/integration/test_sqlite_store.py",
                      "tests/integration/test_faults.py", "tests/integration/test_postgres.py",
                      "tests/integration/test_facade.py"), "delete or damaged or race"),
}

SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
    ast.NotIn: ast.In, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div,
    ast.Div: ast.Mult, ast.And: ast.Or, ast.Or: ast.And,
}


def _points(tree: ast.Module, functions: tuple[str, ...]) -> list[tuple[int, str]]:
    """(index into ast.walk order, description) of every mutation point in the functions."""
    wanted: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                not functions or node.name in functions):
            wanted |= {id(n) for n in ast.walk(node)}
    points = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) not in wanted:
            continue
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Compare):
            points += [(i, f"line {line}: {type(op).__name__} -> {SWAPS[type(op)].__name__}")
                       for op in node.ops[:1] if type(op) in SWAPS]
        elif isinstance(node, ast.BinOp | ast.BoolOp) and type(node.op) in SWAPS:
            swap = SWAPS[type(node.op)].__name__
            points.append((i, f"line {line}: {type(node.op).__name__} -> {swap}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
            points.append((i, f"line {line}: drop {type(node.op).__name__}"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) \
                and not isinstance(node.value, bool):
            points.append((i, f"line {line}: {node.value!r} -> {_bumped(node.value)!r}"))
    return points


def _bumped(value: float) -> float:
    return value + 1 if isinstance(value, int) else (value * 2 if value else 1.0)


def _mutant(source: str, index: int) -> str:
    tree = ast.parse(source)
    node = list(ast.walk(tree))[index]
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif isinstance(node, ast.BinOp | ast.BoolOp):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.UnaryOp):
        return ast.unparse(_Replace(node, node.operand).visit(tree))
    elif isinstance(node, ast.Constant):
        node.value = _bumped(node.value)
    return ast.unparse(tree)


class _Replace(ast.NodeTransformer):
    def __init__(self, old: ast.AST, new: ast.AST) -> None:
        self.old, self.new = old, new

    def generic_visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.old else super().generic_visit(node)


def _run_tests(pkg: Path, target: Target) -> bool:
    """True when the target's tests pass (the mutant survives)."""
    env = dict(os.environ, PYTHONPATH=str(pkg))
    select = ["-k", target.select] if target.select else []
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "--timeout", "300", *select, *target.tests],
                         cwd=ROOT, env=env, capture_output=True, check=False)
    return run.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(TARGETS), action="append")
    ap.add_argument("--limit", type=int, default=0, help="at most N mutants per target")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pkg"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(pkg), str(ROOT)], check=True,
                       capture_output=True)
        for name in args.target or sorted(TARGETS):
            target = TARGETS[name]
            path = pkg / target.module
            original = path.read_text()
            points = _points(ast.parse(original), target.functions)
            if args.limit:
                points = points[:: max(1, len(points) // args.limit)][:args.limit]
            if not _run_tests(pkg, target):
                print(f"{name}: the tests fail on the unmutated code; fix that first")
                return 1
            survivors, start = [], time.perf_counter()
            for index, what in points:
                path.write_text(_mutant(original, index))
                shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
                try:
                    if _run_tests(pkg, target):
                        survivors.append(what)
                finally:
                    path.write_text(original)
            print(f"{name}: {len(points)} mutants, {len(points) - len(survivors)} killed, "
                  f"{len(survivors)} survived ({time.perf_counter() - start:.0f} s)")
            for what in survivors:
                print(f"  survivor: {target.module} {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
