"""Public surface: exports complete and sorted, one error tree, imports run one way."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import personalizer
import personalizer.backends
import personalizer.backends.rewards
import personalizer.errors
import personalizer.profiles
from personalizer.errors import MissingDependency, PersonalizerError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", [personalizer, personalizer.profiles, personalizer.errors,
                                    personalizer.backends, personalizer.backends.rewards])
def test_all_is_sorted_and_complete(module) -> None:  # noqa: ANN001
    names = module.__all__
    assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
    public = {n for n, v in vars(module).items()
              if not n.startswith("_") and not inspect.ismodule(v)
              and getattr(v, "__module__", module.__name__).startswith("personalizer")}
    public -= {"annotations"}
    assert public <= set(names) | {"__version__"}, public - set(names)
    for name in names:
        assert hasattr(module, name)


def test_every_error_is_in_the_tree() -> None:
    errors = [v for v in vars(personalizer.errors).values()
              if inspect.isclass(v) and issubclass(v, BaseException)]
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, PersonalizerError), cls
        assert cls.__name__ in personalizer.errors.__doc__, f"{cls.__name__} not drawn"


def test_missing_dependency_is_an_import_error_with_the_fix() -> None:
    from personalizer._optional import require

    with pytest.raises(MissingDependency, match=r"pip install 'personalizer\[local\]'") as info:
        require("surely_not_installed_pkg", extra="local", feature="local models")
    assert isinstance(info.value, ImportError)


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package
                continue
            if node.module and node.module.startswith("personalizer"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("personalizer")}
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "backends").rglob("*.py")), ids=str)
def test_backends_never_import_profiles_or_the_facade(path: Path) -> None:
    for mod in _our_imports(path):
        assert not mod.startswith("personalizer.profiles"), (path, mod)
        assert mod not in {"personalizer", "personalizer.client", "personalizer.cli"}, (path, mod)


@pytest.mark.parametrize("path", sorted((ROOT / "profiles").rglob("*.py")), ids=str)
def test_profiles_never_import_the_facade_or_cli(path: Path) -> None:
    for mod in _our_imports(path):
        assert mod not in {"personalizer", "personalizer.client", "personalizer.cli",
                           "personalizer.demo"}, (path, mod)


@pytest.mark.parametrize("name", ["errors.py", "types.py"])
def test_seams_import_nothing_of_ours_but_errors(name: str) -> None:
    path = ROOT / "sdk" / name
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.module in {"errors"}, (name, node.module)
    assert not _our_imports(path)


def test_torch_is_not_imported_by_the_core() -> None:
    import subprocess
    import sys

    code = ("import sys, personalizer, personalizer.profiles, personalizer.cli, "
            "personalizer.backends, personalizer.backends.rewards; "
            "personalizer.backends.rewards.attribute_reward_set().features('q', ['a b']); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
