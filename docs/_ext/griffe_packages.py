"""A griffe extension for the API reference: finds ``personalizer.backends`` and
``personalizer.profiles`` in their own folders.

pyproject.toml maps ``personalizer`` to ``sdk/`` and its sub-packages to ``backends/`` and
``profiles/`` (setuptools ``package-dir``). Python imports them through the editable install's
finder, but griffe looks for sub-packages inside the parent's folder only, so it would not find
``personalizer.backends``. When griffe loads the ``personalizer`` module, this extension visits
each mapped folder (statically: nothing is imported) and attaches it under its dotted name.
A package installed from a wheel already holds its sub-packages, and is left as it is.

``personalizer.backends`` resolves most of its ``__all__`` on first use, through a module
``__getattr__`` and a dict of name -> relative module (``_LAZY``); those names get an alias in
the package, so the reference shows them under their public path
(``personalizer.backends.LocalGenerator``).

Docstrings are written with Sphinx roles (``:class:`~personalizer.profiles.Profile```); they
are shown as code (``Profile``), as Sphinx shows them, instead of as the raw role, and the
doctest directives of their examples (``# doctest: +SKIP``) are left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import griffe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[2]
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|exc|obj):`(~?)([^`]+)`")
DOCTEST_DIRECTIVE = re.compile(r"[ \t]*# doctest: *[+-][A-Z_]+(?:, *[+-][A-Z_]+)*[ \t]*$",
                               re.MULTILINE)


def _role_as_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _package_dirs() -> dict[str, Path]:
    """pyproject.toml's ``[tool.setuptools] package-dir``: dotted name -> folder."""
    mapping = {"personalizer": "sdk", "personalizer.backends": "backends",
               "personalizer.profiles": "profiles"}  # as pyproject.toml has it
    if tomllib is not None:
        data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        mapping = data.get("tool", {}).get("setuptools", {}).get("package-dir", mapping)
    return {name: ROOT / folder for name, folder in mapping.items()}


def _lazy_names(init: Path) -> dict[str, str]:
    """``{name: ".module"}`` of a module-level dict literal whose keys are all in ``__all__``
    and whose values are all relative module names (the lazy exports)."""
    tree = ast.parse(init.read_text(encoding="utf-8-sig"))
    exported: set[str] = set()
    maps: list[dict[str, str]] = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if not isinstance(target, ast.Name) or value is None:
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError):
            continue
        if target.id == "__all__":
            exported = set(literal)
        elif isinstance(literal, dict) and literal and all(
                isinstance(v, str) and v.startswith(".") for v in literal.values()):
            maps.append(literal)
    return {k: v for m in maps if set(m) <= exported for k, v in m.items()}


class MappedPackages(griffe.Extension):
    """Attaches the sub-packages that ``package-dir`` places outside the parent's folder."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            text = ROLE.sub(_role_as_code, obj.docstring.value)
            obj.docstring.value = DOCTEST_DIRECTIVE.sub("", text)

    def on_module_members(self, *, mod: griffe.Module, agent: Any, **kwargs: Any) -> None:
        dirs = _package_dirs()
        own = dirs.get(mod.path)
        filepath = mod.filepath if isinstance(mod.filepath, Path) else None
        if own is None or filepath is None or not filepath.resolve().is_relative_to(own):
            return  # not this checkout's package (an installed wheel holds its sub-packages)
        prefix = mod.path + "."
        for dotted, folder in dirs.items():
            name = dotted.removeprefix(prefix)
            if not dotted.startswith(prefix) or "." in name or name in mod.members:
                continue
            if (folder / "__init__.py").is_file():
                mod.set_member(name, self._visit(name, folder, mod, agent))

    def _visit(self, name: str, folder: Path, parent: griffe.Module, agent: Any) -> griffe.Module:
        init = folder / "__init__.py"
        module = self._visit_file(name, init, parent, agent)
        for child in sorted(folder.iterdir()):
            if child.name.startswith((".", "__")):
                continue
            if child.is_dir() and (child / "__init__.py").is_file():
                module.set_member(child.name, self._visit(child.name, child, module, agent))
            elif child.suffix == ".py":
                module.set_member(child.stem, self._visit_file(child.stem, child, module, agent))
        for public, source in _lazy_names(init).items():
            if public not in module.members:
                target = f"{module.path}.{source.lstrip('.')}.{public}"
                module.set_member(public, griffe.Alias(public, target, parent=module))
        return module

    @staticmethod
    def _visit_file(name: str, path: Path, parent: griffe.Module, agent: Any) -> griffe.Module:
        code = path.read_text(encoding="utf-8-sig")
        lines = getattr(agent, "lines_collection", None)
        if lines is not None:
            lines[path] = code.splitlines(keepends=False)
        return griffe.visit(
            name, filepath=path, code=code, parent=parent,
            extensions=getattr(agent, "extensions", None),
            docstring_parser=getattr(agent, "docstring_parser", None),
            docstring_options=getattr(agent, "docstring_options", None),
            lines_collection=lines,
            modules_collection=getattr(agent, "modules_collection", None),
        )
