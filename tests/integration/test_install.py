"""The package as a stranger installs it: the built wheel in fresh virtual environments outside
the checkout, from the wheelhouse that ``make`` builds (``--no-index``: no network here).

* the bare wheel (core only): local models and the demo say what to install, no traceback;
* ``[openai]`` only, then ``[anthropic]`` only: the README's hosted quickstart runs unchanged
  against the local wire-format server (its base URL set by environment).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".wheelhouse"
QUICKSTART = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(),
                        re.DOTALL)[0]



@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not WHEELHOUSE.is_dir():  # `make test` builds it; a test run without make may not
        if os.environ.get("CI"):
            pytest.fail("no .wheelhouse: the Makefile's set-up should have built it")
        pytest.skip("no .wheelhouse: `make install-dev` (or `make test`) builds it")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, cwd=dist)
    (built,) = dist.glob("personalizer-*.whl")
    return built


def _venv(where: Path, wheel: Path, extras: str = "") -> Path:
    """A fresh virtual environment with the wheel (and ``extras``) installed from the
    wheelhouse only; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    _install(where, f"{wheel}{extras}")
    return where / "bin"


def _install(venv: Path, requirement: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE),
                    requirement], check=True, capture_output=True)


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(args, cwd=cwd, env=clean | env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def bare(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield _venv(tmp_path_factory.mktemp("bare") / "venv", wheel)


def test_the_bare_wheel_has_no_local_extras(bare: Path, tmp_path: Path) -> None:
    out = _run([str(bare / "python"), "-c", "import torch"], tmp_path)
    assert "No module named 'torch'" in out.stderr  # the premise: a core install


def test_local_generator_on_a_core_install_says_what_to_install(bare: Path,
                                                                tmp_path: Path) -> None:
    code = ("from personalizer import MissingDependency\n"
            "try:\n"
            "    from personalizer.backends import LocalGenerator\n"
            "except MissingDependency as exc:\n"
            "    print(exc)\n")
    out = _run([str(bare / "python"), "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "'torch'" in out.stdout and "pip install 'personalizer[local]'" in out.stdout


PROBE = """
import importlib
import numpy as np
from personalizer import MissingDependency
from personalizer.profiles.learning.features import learn_heads, learned_trunk_reward_set
seen = []
for name in ("personalizer", "personalizer.backends", "personalizer.profiles",
             "personalizer.backends.rewards"):
    module = importlib.import_module(name)
    for attr in module.__all__:
        try:
            getattr(module, attr)
        except MissingDependency as exc:
            assert "pip install 'personalizer[local]'" in str(exc), exc
            seen.append(attr)
for call in (lambda: learn_heads(np.zeros((4, 2)), [0], [0], [1], n_heads=1),
             lambda: learned_trunk_reward_set(None, None, id="x", version="1"),
             lambda: importlib.import_module("personalizer.backends.rewards").Substance()
             .score("q", ["a b."])):
    try:
        call()
    except MissingDependency as exc:
        seen.append(exc.package)
print(" ".join(seen))
"""


def test_every_public_name_on_a_core_install_imports_or_says_what_to_install(
        bare: Path, tmp_path: Path) -> None:
    out = _run([str(bare / "python"), "-c", PROBE], tmp_path)
    assert out.returncode == 0, out.stderr  # no ModuleNotFoundError escapes
    assert out.stdout.split() == [  # the torch-backed names, then the three calls
        "ExpertSet", "LocalGenerator", "TokenHeads", "TokenScorer", "distill_token_heads",
        "learn_token_heads", "torch", "torch", "transformers"]


def test_demo_on_a_core_install_is_one_line_and_exit_2(bare: Path, tmp_path: Path) -> None:
    out = _run([str(bare / "personalizer"), "demo", "--db", "demo.db"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "MissingDependency" in lines[0], out.stderr
    assert "pip install 'personalizer[local]'" in lines[0]
    assert "Traceback" not in out.stderr + out.stdout


def test_the_gateway_on_a_core_install_says_what_to_install(bare: Path,
                                                           tmp_path: Path) -> None:
    out = _run([str(bare / "personalizer"), "serve", "--port", "1"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "'fastapi'" in out.stderr and "pip install 'personalizer[server]'" in out.stderr
    code = ("from personalizer import MissingDependency, Personalizer\n"
            "from personalizer.server import create_app\n"
            "try:\n"
            "    create_app(Personalizer(':memory:'))\n"
            "except MissingDependency as exc:\n"
            "    print(exc)\n")
    out = _run([str(bare / "python"), "-c", code], tmp_path)
    assert out.returncode == 0 and "pip install 'personalizer[server]'" in out.stdout, \
        out.stderr


def test_version_flag(bare: Path, tmp_path: Path) -> None:
    import personalizer

    out = _run([str(bare / "personalizer"), "--version"], tmp_path)
    assert out.returncode == 0 and personalizer.__version__ in out.stdout


def test_readme_quickstart_is_one_short_block() -> None:
    assert len(QUICKSTART.strip().splitlines()) <= 20
    assert "OpenAIGenerator(" in QUICKSTART and "generate(" in QUICKSTART


def _quickstart_runs(bin_dir: Path, code: str, tmp_path: Path, server: Any) -> str:
    from support.provider_server import echo_reply

    server.clear()
    server.reply = echo_reply
    (tmp_path / "quickstart.py").write_text(code)
    out = _run([str(bin_dir / "python"), "quickstart.py"], tmp_path,
               OPENAI_BASE_URL=server.openai_base_url, OPENAI_API_KEY="sk-quickstart",
               ANTHROPIC_BASE_URL=server.anthropic_base_url, ANTHROPIC_API_KEY="sk-quickstart")
    assert out.returncode == 0, out.stderr
    assert "<user_profile>" in out.stdout           # the profile block it printed
    assert "short answer" in out.stdout             # learned from two choices of short answers
    assert server.requests, "the quickstart never reached the model"
    return out.stdout


def test_readme_quickstart_with_only_the_openai_extra(wheel: Path, tmp_path: Path,
                                                       server: Any) -> None:
    bin_dir = _venv(tmp_path / "venv", wheel, "[openai]")
    out = _run([str(bin_dir / "python"), "-c", "import anthropic"], tmp_path)
    assert out.returncode != 0  # only the openai door
    _quickstart_runs(bin_dir, QUICKSTART, tmp_path, server)


def test_readme_quickstart_with_only_the_anthropic_extra(wheel: Path, tmp_path: Path,
                                                          server: Any) -> None:
    code = QUICKSTART.replace("import OpenAIGenerator", "import AnthropicGenerator")
    code = re.sub(r'OpenAIGenerator\("[^"]*"\)', 'AnthropicGenerator("claude-sonnet-4-5")', code)
    assert "OpenAI" not in code
    bin_dir = _venv(tmp_path / "venv", wheel, "[anthropic]")
    out = _run([str(bin_dir / "python"), "-c", "import openai"], tmp_path)
    assert out.returncode != 0  # only the anthropic door
    _quickstart_runs(bin_dir, code, tmp_path, server)


def test_only_a_package_that_is_not_installed_is_called_missing() -> None:
    from personalizer import MissingDependency
    from personalizer._optional import missing_local

    gone = missing_local(ModuleNotFoundError("No module named 'torch'", name="torch"), "x")
    assert isinstance(gone, MissingDependency) and gone.install == "pip install 'personalizer[local]'"
    broken = ModuleNotFoundError("No module named 'torch._C'", name="torch._C")
    assert missing_local(broken, "x") is None  # installed but broken: the real error shows
    old = ImportError("cannot import name 'X' from 'transformers'", name="transformers")
    assert missing_local(old, "x") is None      # a version without X: not "install it"
    assert missing_local(ModuleNotFoundError("No module named 'yaml'", name="yaml"), "x") is None


def test_a_gguf_file_without_the_gguf_package_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from personalizer import MissingDependency
    from personalizer.backends._hf import load_causal_lm

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed
    with pytest.raises(MissingDependency, match=r"'gguf'.*personalizer\[local\]"):
        load_causal_lm(tmp_path, gguf_file="model.gguf", cache_dir=tmp_path / "cache")
