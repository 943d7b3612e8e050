"""The import graph of our code, read from the source: acyclic, and every import runs the way
DESIGN.md draws it (the seams import only seams; backends never import profiles or the
facade; profiles never import the facade or the CLI).

Every import counts: at the top of a module, inside functions, and under ``TYPE_CHECKING``;
the lazy attribute tables of packages (``_LAZY = {name: module}``) count as imports too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"sdk": "personalizer", "backends": "personalizer.backends",
            "profiles": "personalizer.profiles"}
# The seams: errors, data models, protocols, streams, steering, and their small helpers.
SEAMS = {"personalizer.errors", "personalizer.types", "personalizer.steering",
         "personalizer.streams", "personalizer.seams", "personalizer._boundary",
         "personalizer._text", "personalizer._input", "personalizer._optional"}


def modules() -> dict[str, Path]:
    """Every module of ours by its dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if name.startswith("personalizer.") and name.split(".")[1] in (
                    "backends", "profiles") and folder == "sdk":
                continue  # (no sdk/backends or sdk/profiles folders)
            out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports, in any way."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]

    def resolve(module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        head = base[:len(base) - (level - 1)]
        return ".".join([*head, *(module.split(".") if module else [])])

    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # a name inside a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = resolve(node.module, node.level)
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(full if full in known else module)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets) and \
                isinstance(node.value, ast.Dict):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    dots = len(value.value) - len(value.value.lstrip("."))
                    add(resolve(value.value.lstrip(".") or None, dots))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    names = set(known)
    return {name: imports(name, path, names) for name, path in known.items()}


def layer(name: str) -> str:
    if name in SEAMS:
        return "seams"
    for part in ("backends", "profiles"):
        if name == f"personalizer.{part}" or name.startswith(f"personalizer.{part}."):
            return part
    return "facade"  # the facade, answering, feedback, CLI, settings, integrations, ...


ALLOWED = {"seams": {"seams"}, "backends": {"seams", "backends"},
           "profiles": {"seams", "backends", "profiles"},
           "facade": {"seams", "backends", "profiles", "facade"}}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_every_module() -> None:
    edges = graph()
    assert len(edges) > 80
    # the reader sees each kind of import: top level, in a function, under TYPE_CHECKING,
    # relative, and a lazy table
    assert "personalizer.errors" in edges["personalizer.types"]
    assert "personalizer.backends.decoding.policies" in \
        edges["personalizer.backends.decoding.strategies.args"]  # in functions
    assert "personalizer.backends.decoding.planning" in \
        edges["personalizer.backends.decoding.strategies.args"]  # under TYPE_CHECKING
    assert "personalizer.client" in edges["personalizer"]  # the root's lazy table


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles (type hints and in-function imports count):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_imports_run_the_way_design_draws_them() -> None:
    wrong = [f"{a} ({layer(a)}) imports {b} ({layer(b)})"
             for a, targets in graph().items() for b in sorted(targets)
             if layer(b) not in ALLOWED[layer(a)]]
    assert not wrong, "\n".join(wrong)


def test_a_cycle_and_a_wrong_direction_would_be_seen() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("personalizer.backends.local.generator") == "backends"
    assert "profiles" not in ALLOWED[layer("personalizer.backends.rewards.judge")]
    assert "facade" not in ALLOWED[layer("personalizer.steering")]


def test_the_error_tree_is_a_light_import() -> None:
    code = ("import json, sys, personalizer.errors; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'personalizer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = json.loads(out)
    assert "personalizer.errors" in loaded and len(loaded) <= 3, loaded
