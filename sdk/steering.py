"""The shape of one generation request, at the seam between the facade and the generators.

* :class:`GenerationOptions`: token limit, stop strings, and the sampling options (one place,
  honoured on every decoding path, steered or not). Every generator takes them; a generator
  that cannot honour one (a hosted API has no ``top_k`` or exact seeds) refuses it.
* :class:`Steering`: one user's reward (coefficients over a reward set), the strength, and
  the search ``strategy``: a :class:`Strategy` model, by object, name or dict. ``None``
  leaves the choice to the generator (:attr:`Generator.default_strategy`).
* :data:`STRATEGIES`: the one table of strategies by kind. A strategy is one module (its
  model, its planning, its policy) and one line here: ``STRATEGIES.register(MyStrategy)``.
  The built-in ones (``args``, ``best_of_n``, ``token_rewards``) are registered by
  :mod:`personalizer.backends`.

A loaded generator serves any number of users: switching user is a new ``Steering`` (a few
numbers), never a model load. This module imports nothing of ours but the seams' errors and
types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationError,
    field_validator,
)

from .errors import InvalidInput
from .types import validation_message

__all__ = ["CLEAR_NORM", "STRATEGIES", "GenerationOptions", "Steering", "StopStrings",
           "Strategy", "StrategyTable", "no_bool", "parse_options", "reward_scale"]

CLEAR_NORM = 0.5  # coefficient-vector norm from which a profile counts as clear


def reward_scale(coefficients: Any, relative: bool) -> float:
    """What a user's reward is divided by (``Steering.relative``): the norm of their
    coefficients once the profile is clear (a unit scale), CLEAR_NORM below that (a faint
    profile stays proportionally weaker), 1 when not relative."""
    if not relative:
        return 1.0
    return max(float(math.sqrt(sum(float(c) ** 2 for c in coefficients))), CLEAR_NORM)


def _one_stop(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _non_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    if any(not s for s in value):
        raise ValueError("stop strings must not be empty")
    return value


def no_bool(value: Any) -> Any:
    """A number option's first check: lax pydantic would read ``True`` as 1."""
    if isinstance(value, bool):
        raise ValueError("should be a number, not True or False")
    return value


# Stop strings as callers give them: one string or several, none empty.
StopStrings = Annotated[tuple[str, ...], BeforeValidator(_one_stop),
                        AfterValidator(_non_empty)]


class GenerationOptions(BaseModel):
    """Options of one generation; unknown options are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(default=256, ge=1, le=32768,
                                description="Most tokens to generate.")
    do_sample: bool | None = Field(
        default=None, description="Sample instead of choosing the best token, on every "
        "strategy (best-of-n with draw='branch' then samples its blocks). None: the "
        "strategy's own default (greedy; best-of-n with draw='sample' samples, and refuses "
        "False).")
    temperature: float = Field(default=1.0, gt=0, le=100,
                               description="Sampling temperature (with do_sample).")
    top_k: int | None = Field(default=None, ge=1, le=1_000_000,
                              description="Sample among the k most likely tokens only.")
    top_p: float | None = Field(default=None, gt=0, le=1,
                                description="Nucleus sampling: the smallest set of tokens "
                                            "whose probability reaches p.")
    seed: int | None = Field(default=None, ge=0, description="Seed of this call's own RNG.")
    stop: StopStrings = Field(default=(), description="Stop strings (not included).")
    truncate: Literal["error", "left"] = Field(
        default="error", description="A prompt that leaves no room in the model's context: "
        "'error' refuses it; 'left' drops its oldest tokens and says so in the generation.")
    repetition_guard: bool = Field(
        default=True, description="Local models: in a steered answer, a token that would "
        "repeat an earlier stretch of the answer loses logit, more the longer the stretch "
        "(a DRY-style penalty), so steering does not push the model into a loop (recorded "
        "as the lever 'no_repeat'). Plain decoding (no steering, strength 0) is never "
        "touched. False: steered rows decode the strategy's tokens unguarded.")

    _numbers = field_validator("max_new_tokens", "temperature", "top_k", "top_p", "seed",
                               mode="before")(no_bool)

    def sampling(self, default: bool = False) -> bool:
        """Whether to sample: the caller's choice, else the strategy's ``default``."""
        return default if self.do_sample is None else self.do_sample


def parse_options(options: Mapping[str, Any], defaults: GenerationOptions) -> GenerationOptions:
    """``defaults`` updated with ``options``; an unknown or bad option is an InvalidInput
    naming it and the known ones."""
    try:
        return GenerationOptions.model_validate({**defaults.model_dump(), **options})
    except ValidationError as exc:
        raise InvalidInput(
            f"generation option {validation_message(exc)} (known options: "
            f"{', '.join(GenerationOptions.model_fields)})") from None


class Strategy(BaseModel):
    """A search strategy's settings: a frozen model whose ``kind`` names it in
    :data:`STRATEGIES`. A local generator plans it with its ``plan(context)`` method (see
    :mod:`personalizer.backends.decoding.strategies`); generators that cannot run a kind
    refuse it with :class:`~personalizer.errors.UnsupportedRequest`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str


class StrategyTable:
    """The strategies by kind: one table, one line per strategy."""

    def __init__(self) -> None:
        self._kinds: dict[str, type[Strategy]] = {}

    def register(self, *models: type[Strategy]) -> None:
        """Add strategy models (a kind registered twice by another model is refused)."""
        for model in models:
            if not (isinstance(model, type) and issubclass(model, Strategy)):
                raise InvalidInput(f"a strategy is a subclass of personalizer.steering."
                                   f"Strategy, not {model!r}")
            kind = model.model_fields["kind"].default
            if not isinstance(kind, str) or not kind:
                raise InvalidInput(f"{model.__name__}.kind needs a default: its name, as in "
                                   "kind: Literal['mine'] = 'mine'")
            if self._kinds.get(kind, model) is not model:
                raise InvalidInput(f"strategy kind {kind!r} is taken by "
                                   f"{self._kinds[kind].__name__}")
            self._kinds[kind] = model

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __getitem__(self, kind: str) -> type[Strategy]:
        return self._kinds[kind]

    def parse(self, value: Any) -> Strategy | None:
        """A strategy from a model, its kind's name or a dict with its kind; None stays."""
        if value is None or isinstance(value, Strategy):
            return value
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
            raise InvalidInput(f"a strategy is a name ({self.known()}), a dict with its "
                               f"'kind', or a strategy object, not {type(value).__name__}")
        kind = value["kind"]
        if kind not in self._kinds:
            raise InvalidInput(f"unknown strategy {kind!r}: use one of {self.known()} (a "
                               "strategy of your own: STRATEGIES.register(MyStrategy))")
        try:
            return self._kinds[kind].model_validate(dict(value))
        except ValidationError as exc:
            raise InvalidInput(f"strategy {kind!r}: {validation_message(exc)}") from None

    def known(self) -> str:
        return ", ".join(repr(k) for k in self._kinds) or "none registered"


STRATEGIES = StrategyTable()


def _strategy(value: Any) -> Any:
    return STRATEGIES.parse(value)


class Steering(BaseModel):
    """One user's reward-guided decoding request.

    ``r_user = coefficients . features`` over the reward set the coefficients were fitted
    against; ``strength`` weighs it against the model's own logits (0 is plain decoding).
    ``strategy`` may be given as a name (``"args"``, ``"best_of_n"``, ``"token_rewards"``),
    a dict or a strategy object; None (the default) is the generator's own default strategy.
    ``rewards``: the reward set the coefficients refer to, when the generator was built
    without one (the facade hands its own; never serialised).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    coefficients: dict[str, float] = Field(
        default_factory=dict, description="Weight per base reward (the profile's).")
    reward_set_id: str | None = Field(
        default=None, description="The reward set the coefficients refer to.")
    reward_set_version: str | None = Field(
        default=None, description="Its version (checked, never reinterpreted).")
    strength: float = Field(default=1.0, ge=0, le=1000, description="ARGS weight w.")
    relative: bool = Field(
        default=True, description="Divide the user's reward by the norm of their "
        "coefficients, so that a strength means the same for a faint and a clear profile.")
    strategy: Annotated[Strategy | None, BeforeValidator(_strategy)] = Field(
        default=None, description="How to search; None: the generator's default strategy.")
    instruction: str | None = Field(
        default=None, max_length=4000,
        description="The profile as a request the generator adds to the user's last turn "
        "(for models that follow the user's turn rather than a system prompt, as small "
        "local ones do): the reward set's own wording of the strongest coefficients, never "
        "text a person wrote. Rewards still score the user's own message.")
    principles: str | None = Field(
        default=None, max_length=20000,
        description="The user's preferences in words (their profile summary), for rewards "
        "that read text, such as a judge reranking best-of-n candidates. Data about the "
        "user, never instructions to the model.")
    rewards: Annotated[Any, SkipValidation] = Field(
        default=None, exclude=True, repr=False,
        description="The RewardSet the coefficients refer to, for a generator built without "
        "one (not serialised).")

    _numbers = field_validator("strength", mode="before")(no_bool)

    @field_validator("coefficients")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"coefficients {bad} are not finite")
        return value

    @field_validator("rewards")
    @classmethod
    def _reward_set(cls, value: Any) -> Any:
        if value is not None and not callable(getattr(value, "coefficient_vector", None)):
            raise ValueError(f"rewards must be a RewardSet, not {type(value).__name__}")
        return value

    def with_default(self, strategy: Strategy) -> Steering:
        """This request with ``strategy`` when it names none (a generator's default)."""
        return self if self.strategy is not None else self.model_copy(
            update={"strategy": strategy})

    def reward_set(self, own: Any) -> Any:
        """The reward set to steer with: the generator's ``own``, else the one handed in."""
        return own if own is not None else self.rewards

    @classmethod
    def from_profile(cls, profile: Any, **options: Any) -> Steering:
        """Steering for a stored profile (anything with coefficients and a reward set)."""
        options.setdefault("principles", getattr(profile, "summary", None) or None)
        return cls(coefficients=dict(profile.coefficients),
                   reward_set_id=profile.reward_set_id,
                   reward_set_version=profile.reward_set_version, **options)
