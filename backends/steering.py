"""``Steering``: how one request is steered toward one user's reward.

A loaded generator serves any number of users: switching user is a new ``Steering`` (a few
numbers), never a model load. Token limits and stop strings stay generation options
(``max_new_tokens``, ``stop``), so each setting has one name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Steering"]


class Steering(BaseModel):
    """A user's reward-guided decoding request (ARGS).

    At each step the ``top_k`` next tokens by logit are rescored as
    ``logit + strength * r_user(prompt, prefix + token)`` with
    ``r_user = coefficients . features`` over the reward set they were fitted against.
    ``strength = 0`` is plain top-k decoding.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    coefficients: dict[str, float] = Field(description="Weight per base reward (the profile's).")
    reward_set_id: str = Field(description="The reward set the coefficients refer to.")
    reward_set_version: str = Field(description="Its version (checked, never reinterpreted).")
    strength: float = Field(default=1.0, ge=0, le=1000, description="ARGS weight w.")
    top_k: int = Field(default=10, ge=1, le=256, description="Candidates rescored per step.")
    do_sample: bool = Field(default=False, description="Sample from softmax(score / T).")
    temperature: float = Field(default=1.0, gt=0, le=100)
    seed: int | None = Field(default=None, description="Seed of this request's own RNG.")
    score_every: int = Field(default=1, ge=1, le=64,
                             description="Rescore every m tokens (text rewards are costly).")
    whole_answer: Literal["lookahead", "off"] = Field(
        default="lookahead",
        description="At sentence ends, weigh stopping against one more sentence, scored as "
                    "finished answers (a prefix says nothing about length or structure).")
    lookahead_tokens: int = Field(default=48, ge=4, le=512)
    scoring: Literal["auto", "text", "tree"] = Field(
        default="auto",
        description="'tree': one cached tree-attention pass of a classifier RM per step "
                    "(needs the LM's tokenizer); 'text': score decoded candidate texts; "
                    "'auto': tree when possible.")
    strategy: Literal["args", "best_of_n"] = Field(
        default="args",
        description="'args': rescore the top-k tokens each step; 'best_of_n': sample n "
                    "continuations as one batch and keep the best (per block).")
    n: int = Field(default=4, ge=1, le=64, description="Samples per block (best_of_n).")
    block: Literal["answer", "sentence"] = Field(
        default="answer", description="best_of_n block: a whole answer, or one sentence.")
    block_tokens: int = Field(default=32, ge=1, le=512,
                              description="Token limit of one sentence block.")

    @field_validator("coefficients")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        import math

        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"coefficients {bad} are not finite")
        return value

    @classmethod
    def from_profile(cls, profile: Any, **options: Any) -> Steering:
        """Steering for a stored profile (anything with coefficients and a reward set)."""
        return cls(coefficients=dict(profile.coefficients),
                   reward_set_id=profile.reward_set_id,
                   reward_set_version=profile.reward_set_version, **options)

    def record(self) -> dict[str, Any]:
        """What goes into ``Generation.steering`` (no coefficients: they are the profile's)."""
        return self.model_dump(exclude={"coefficients"})
