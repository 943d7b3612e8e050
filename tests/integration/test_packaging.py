"""Every subpackage reaches the wheel: pyproject's package list covers each folder of ours, and
every module imports from the built wheel outside the checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def read_pyproject() -> dict[str, Any]:
    """pyproject.toml, read with tomllib (Python 3.11+) or on 3.10 with tomli, its backport,
    which pytest itself requires there."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    config = read_pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found, "no packages found under package-dir"
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


def test_the_built_wheel_holds_every_module(tmp_path: Path) -> None:
    """Build the wheel, install it without dependencies into a fresh virtual environment
    outside the checkout (which sees this environment's packages, but not our checkout), and
    import every module of the package from it."""
    import shutil
    import subprocess
    import sys
    import sysconfig
    import zipfile

    # built from a clean copy of what the wheel is made of: setuptools reuses the checkout's
    # build/ folder, where a module moved or deleted since the last build would linger
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for folder in read_pyproject()["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    build = subprocess.run(  # setuptools' own build, so that its warnings are seen
        [sys.executable, "-c",
         "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])",
         str(dist)],
        check=True, cwd=src, capture_output=True, text=True)
    assert "would be ignored" not in build.stdout + build.stderr  # data declared as such
    (wheel,) = dist.glob("personalizer-*.whl")
    assert "personalizer/profiles/data/question_bank.json" in zipfile.ZipFile(wheel).namelist()
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    # this environment's packages (torch, transformers, SDKs), after the wheel's; a plain
    # path line does not run the .pth files there, so our editable checkout stays out of it
    (site / "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = (
        "import importlib, pkgutil, sys, personalizer\n"
        f"assert personalizer.__file__.startswith({str(site)!r}), personalizer.__file__\n"
        "names = [m.name for m in pkgutil.walk_packages(personalizer.__path__, 'personalizer.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n")
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True,
                         text=True, cwd=tmp_path)
    modules = int(out.stdout.strip())
    ours = sum(1 for folder in ("sdk", "backends", "profiles")
               for f in (ROOT / folder).rglob("*.py"))
    assert modules == ours - 1  # every .py file but personalizer/__init__ itself is a module


def test_no_build_artefact_or_download_is_tracked() -> None:
    """Tools come from the `dev` extra, not from wheels committed to the repository."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    tracked = [f for f in files if f and (ROOT / f).is_file()]
    assert not [f for f in tracked if f.endswith((".whl", ".tar.gz", ".zip"))]
    # the shipped attribute experts are package data of about 1.9 MB each (#34: 2 MB at most)
    experts = "backends/experts/data/smollm2/"
    assert not [f for f in tracked if (ROOT / f).stat().st_size > (
        2 * 1024 * 1024 if f.startswith(experts) and f.endswith(".safetensors")
        else 1024 * 1024)]
