"""Personalizer.from_settings: configured from the environment and a TOML file, no code."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import tiny
from support.provider_server import ProviderServer

from personalizer import InvalidInput, Personalizer
from personalizer.backends import LocalGenerator, OpenAIGenerator
from personalizer.settings import PersonalizerSettings


def test_from_a_toml_file_with_the_environment_winning(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiny-model"  # a local model folder, as an app would ship one
    tiny.gpt2().save_pretrained(folder)
    tiny.tokenizer().save_pretrained(folder)
    config = tmp_path / "personalizer.toml"
    config.write_text(f'db = "{tmp_path / "from-file.db"}"\ngenerator = "local"\n'
                      f'model = "{folder}"\nstrategy = "best_of_n"\nstrength = 2.5\n'
                      "keep_generations = 7\n")
    monkeypatch.setenv("PERSONALIZER_DB", str(tmp_path / "from-env.db"))
    monkeypatch.setenv("PERSONALIZER_PROMPT_PROFILE", "true")
    with Personalizer.from_settings(config) as p:
        assert isinstance(p.generator, LocalGenerator) and p.generator.rewards is p.rewards
        assert (p.strength, p.strategy, p.prompt_profile, p.keep_generations) == (
            2.5, "best_of_n", True, 7)
        out = p.generate("alice", "Hello there", max_new_tokens=4)
        assert out.steering.new_user and out.id
    assert (tmp_path / "from-env.db").exists() and not (tmp_path / "from-file.db").exists()
    monkeypatch.setenv("PERSONALIZER_CONFIG", str(config))
    assert PersonalizerSettings.load(strength=0.5).strength == 0.5  # arguments win


def test_a_hosted_generator_from_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with ProviderServer() as server:
        monkeypatch.setenv("PERSONALIZER_DB", str(tmp_path / "p.db"))
        monkeypatch.setenv("PERSONALIZER_GENERATOR", "openai")
        monkeypatch.setenv("PERSONALIZER_MODEL", "gpt-test")
        monkeypatch.setenv("PERSONALIZER_BASE_URL", server.openai_base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        with Personalizer.from_settings() as p:
            assert isinstance(p.generator, OpenAIGenerator)
            p.set_summary("alice", "Likes tea.")
            assert p.generate("alice", "Hi").text == "Echo: Hi"
        system = server.requests[0].body["messages"][0]["content"]
        assert "Likes tea." in system
        assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_bad_settings_say_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZER_GENERATOR", "gpt5000")
    with pytest.raises(InvalidInput, match="generator"):
        Personalizer.from_settings()
    monkeypatch.delenv("PERSONALIZER_GENERATOR")
    with pytest.raises(InvalidInput, match="no settings file"):
        Personalizer.from_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('unknown_key = 1\n')
    with pytest.raises(InvalidInput, match="unknown_key"):
        Personalizer.from_settings(bad)
    with pytest.raises(InvalidInput, match="needs model="):
        Personalizer.from_settings(generator="openai", db=str(tmp_path / "x.db"))


def test_token_rewards_is_a_strategy_name(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiny-model"
    tiny.gpt2().save_pretrained(folder)
    tiny.tokenizer().save_pretrained(folder)
    monkeypatch.setenv("PERSONALIZER_STRATEGY", "token_rewards")
    assert PersonalizerSettings.load().strategy == "token_rewards"
    with Personalizer.from_settings(db=str(tmp_path / "p.db"), generator="local",
                                    model=str(folder)) as p:
        assert p.strategy == "token_rewards"
        for _ in range(3):
            p.record_preference("ann", "Tell me about tea", "Great! Wonderful tea!",
                                "Tea is a drink.")
        # the name reaches the token-rewards planner, which asks for the generator's heads
        with pytest.raises(InvalidInput, match="strategy 'token_rewards' needs token heads"):
            p.generate("ann", "Tell me about tea", max_new_tokens=4)
    with pytest.raises(InvalidInput, match="strategy: .*'token_rewards'"):
        PersonalizerSettings.load(strategy="token_reward")
