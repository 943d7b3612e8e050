"""Configuration without code: :class:`PersonalizerSettings` reads the database, the generator
and the steering defaults from ``PERSONALIZER_*`` environment variables and an optional TOML
file; :meth:`Personalizer.from_settings` builds the facade from them.

Environment variables win over the file, arguments over both::

    # personalizer.toml                       # or: export PERSONALIZER_GENERATOR=openai
    db = "postgresql://app@db/personalizer"
    generator = "openai"                      # none | local | smollm2 | openai | anthropic
    model = "gpt-4o-mini"
    strategy = "best_of_n"

    p = Personalizer.from_settings("personalizer.toml")

API keys come from the providers' own variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) or
``PERSONALIZER_API_KEY``, held as ``SecretStr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._input import MAX_REQUEST_CHARS, MAX_TEXT_CHARS
from .errors import InvalidInput

__all__ = ["PersonalizerSettings"]


def _is_file(path: str | os.PathLike[str]) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte, ...
        return False


class PersonalizerSettings(BaseSettings):
    """Everything :meth:`Personalizer.from_settings` needs (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="PERSONALIZER_", extra="forbid", frozen=True)

    db: str = Field(default="profiles.db", description="SQLite path or postgresql:// URL.")
    generator: Literal["none", "local", "smollm2", "openai", "anthropic"] = Field(
        default="none", description="Which model answers: none (profiles only), local (a "
        "Hugging Face folder or id in `model`), smollm2 (the shipped demo model), openai, "
        "anthropic.")
    model: str | None = Field(default=None, description="The model: a folder or hub id "
                              "(local), or the provider's model name (openai, anthropic).")
    base_url: str | None = Field(default=None, description="An OpenAI-compatible server.")
    api_key: SecretStr | None = Field(default=None, description="The provider's key (else "
                                      "its usual environment variable).")
    rewards: Literal["default", "none"] = Field(
        default="default", description="The reward set of the profiles: the built-in "
        "interpretable attributes, or none (preferences are only stored).")
    features: str | None = Field(
        default=None, description="A learned-features file (personalizer features learn): "
        "the default reward set extended with features learned from the app's users.")
    strength: float | None = Field(default=None, ge=0, le=1000,
                                   description="Default steering strength.")
    strategy: str | None = Field(
        default=None, description="Default search strategy, by name as in "
        "Steering.strategy: a kind in personalizer.steering.STRATEGIES ('args', "
        "'best_of_n', 'token_rewards', or one registered by the application); the "
        "generator's own when unset. token_rewards needs token heads on the generator "
        "(LocalGenerator.with_token_heads).")
    prompt_profile: bool | None = Field(
        default=None, description="Default for the profile block in the system prompt.")
    summary_every: int | None = Field(default=None, ge=1,
                                      description="Refresh summaries every N preferences.")
    keep_generations: int = Field(default=100, ge=0, le=100_000)
    keep_generations_days: float = Field(default=30.0, gt=0, le=36500)
    max_text_chars: int = Field(default=MAX_TEXT_CHARS, ge=1, description="Longest text one "
                                "call may bring (a prompt, a response, a message, a reason).")
    max_request_chars: int = Field(default=MAX_REQUEST_CHARS, ge=1, description="Longest "
                                   "request: all the texts of one call together.")
    server_keys: SecretStr | None = Field(
        default=None, description="The gateway's API keys and their scopes: "
        "'key1=chat,profiles:read;key2=admin' (scopes: chat, profiles:read, profiles:write, "
        "admin). Unset: `personalizer serve` only binds to a loopback address.")
    server_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1 << 31,
                                       description="The gateway refuses larger request "
                                       "bodies (413).")
    server_max_concurrent: int | None = Field(
        default=None, ge=1, le=100_000, description="The gateway answers at most this many "
        "chat requests at once per worker (more get 503 with Retry-After); unset: no limit.")
    server_model: str | None = Field(
        default=None, min_length=1, max_length=256, description="The model name the gateway "
        "serves (what clients send as model); default: model, or the generator's name.")

    @classmethod
    def load(cls, toml_file: str | os.PathLike[str] | None = None,
             **overrides: Any) -> PersonalizerSettings:
        """Settings from ``overrides``, then the environment, then ``toml_file`` (default
        ``$PERSONALIZER_CONFIG``), then the defaults."""
        path = toml_file if toml_file is not None else os.environ.get("PERSONALIZER_CONFIG")
        if path is not None and not _is_file(path):
            raise InvalidInput(f"no settings file at {str(path)[:200]!r}")

        class FromFile(cls):  # type: ignore[valid-type, misc]
            model_config = SettingsConfigDict(**{**cls.model_config, "toml_file": path})

            @classmethod
            def settings_customise_sources(
                    cls, settings_cls: type[BaseSettings],
                    init_settings: PydanticBaseSettingsSource,
                    env_settings: PydanticBaseSettingsSource,
                    dotenv_settings: PydanticBaseSettingsSource,
                    file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                toml = (TomlConfigSettingsSource(settings_cls),) if path is not None else ()
                return (init_settings, env_settings, *toml)

        try:
            loaded = FromFile(**overrides)
        except ValidationError as exc:  # without the values: a misplaced key may be a secret
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors(include_input=False)[:5])
            raise InvalidInput(f"invalid personalizer settings: {problems}") from None
        except ValueError as exc:  # a TOML file that does not parse
            raise InvalidInput(f"invalid personalizer settings file: {exc}") from None
        return cls.model_validate(loaded.model_dump())

    @model_validator(mode="after")
    def _features_extend_the_default(self) -> PersonalizerSettings:
        if self.features and self.rewards == "none":
            raise ValueError("features extend the default reward set: set rewards = "
                             "\"default\" (or leave features unset)")
        return self

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None:
            import personalizer.backends.decoding.strategies  # noqa: F401 - the built-ins
            from .steering import STRATEGIES

            if value not in STRATEGIES:
                raise ValueError(f"unknown strategy {value!r}: use one of "
                                 f"{STRATEGIES.known()}")
        return value

    def arguments(self) -> dict[str, Any]:
        """These settings as :class:`~personalizer.Personalizer` arguments (the reward set
        and the generator built)."""
        rewards = None
        if self.rewards == "default":
            from personalizer.profiles import default_reward_set

            rewards = default_reward_set()
            if self.features:
                from personalizer.profiles import extended_reward_set

                rewards = extended_reward_set(self.features, rewards)
        out: dict[str, Any] = {
            "db": self.db, "rewards": rewards, "generator": self.build_generator(rewards),
            "summary_every": self.summary_every, "keep_generations": self.keep_generations,
            "keep_generations_days": self.keep_generations_days, "strategy": self.strategy,
            "prompt_profile": self.prompt_profile, "max_text_chars": self.max_text_chars,
            "max_request_chars": self.max_request_chars}
        if self.strength is not None:
            out["strength"] = self.strength
        return out

    def served_model(self) -> str:
        """The model name the gateway answers to: ``server_model``, else ``model``, else
        the generator's name (``smollm2``)."""
        name = self.server_model or self.model or self.generator
        return name if len(name) <= 256 else name[-256:]

    def build_generator(self, rewards: Any) -> Any:
        """The generator these settings name (None for ``generator="none"``)."""
        key = None if self.api_key is None else self.api_key.get_secret_value()
        if self.generator == "none":
            return None
        if self.generator in ("local", "smollm2"):
            from personalizer.backends import LocalGenerator

            if self.generator == "smollm2":
                return LocalGenerator.smollm2(rewards=rewards)
            if not self.model:
                raise InvalidInput("generator='local' needs model= (a folder or hub id)")
            return LocalGenerator(self.model, rewards=rewards)
        if not self.model:
            raise InvalidInput(f"generator={self.generator!r} needs model= (the provider's "
                               "model name)")
        from personalizer.backends import AnthropicGenerator, OpenAIGenerator

        kind = OpenAIGenerator if self.generator == "openai" else AnthropicGenerator
        extra = {} if self.base_url is None else {"base_url": self.base_url}
        return kind(self.model, api_key=key, rewards=rewards, **extra)
