"""The shape of one generation request: sampling options, and how a user steers it.

* :class:`GenerationOptions`: token limit, stop strings, and the sampling options (one place,
  honoured on every decoding path, steered or not). Every generator takes them; a generator
  that cannot honour one (a hosted API has no ``top_k`` or exact seeds) refuses it.
* :class:`Steering`: one user's reward (coefficients over a reward set), the strength, and
  the search ``strategy``: :class:`Args` (rescore the top candidates every token),
  :class:`BestOfN` (sample n continuations, keep the best) or :class:`TokenRewards`
  (token-level heads shift the hidden state). The strategies are a discriminated union: an
  ARGS field on a best-of-n request is refused, and vice versa.

A loaded generator serves any number of users: switching user is a new ``Steering`` (a few
numbers), never a model load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from personalizer.errors import InvalidInput

__all__ = ["CLEAR_NORM", "Args", "BestOfN", "GenerationOptions", "Steering", "StopStrings",
           "Strategy", "TokenRewards", "parse_options", "reward_scale", "validation_message"]

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


def _no_bool(value: Any) -> Any:
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

    _numbers = field_validator("max_new_tokens", "temperature", "top_k", "top_p", "seed",
                               mode="before")(_no_bool)

    def sampling(self, default: bool = False) -> bool:
        """Whether to sample: the caller's choice, else the strategy's ``default``."""
        return default if self.do_sample is None else self.do_sample


class Args(BaseModel):
    """ARGS: each step, rescore the ``candidates`` most likely tokens as
    ``logit + strength * r_user(prompt, prefix + token)`` and choose among them (greedy, or
    sampled with the generation's sampling options)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["args"] = "args"
    candidates: int = Field(default=10, ge=1, le=256,
                            description="Candidate tokens rescored per step (ARGS's k).")
    score_every: int = Field(default=1, ge=1, le=64,
                             description="Rescore every m tokens (text rewards are costly).")
    whole_answer: Literal["lookahead", "off"] = Field(
        default="lookahead",
        description="At sentence ends, weigh stopping against one more sentence, scored as "
                    "finished answers (a prefix says nothing about length or structure).")
    lookahead_tokens: int = Field(default=48, ge=4, le=512,
                                  description="Token limit of one drafted sentence.")
    lookahead_weight: float = Field(
        default=200.0, ge=0, le=10000,
        description="The reward's weight when two finished answers are compared (ending "
                    "here or after one more sentence), as a multiple of strength. The "
                    "model's logits there differ by 5-25 between going on and ending, "
                    "while one more sentence moves a whole-answer reward by about 0.1 (on "
                    "the relative scale), so this weight is far larger than the per-token "
                    "one; the quality floor keeps an early end an answer.")
    scoring: Literal["auto", "text", "fast"] = Field(
        default="auto",
        description="'fast': the reward's own token scorer (a reward model's tree pass, "
                    "heads on the LM's trunk), refused when the reward has none; 'text': "
                    "score decoded candidate texts; 'auto': fast when the reward offers it.")
    quality_weight: float = Field(
        default=0.25, ge=0, le=100,
        description="Weight of the generator's quality term (substance) beside the user's "
                    "reward when whole answers are compared; an answer may only end once "
                    "its quality clears the term's floor. 0: off.")


class BestOfN(BaseModel):
    """Best-of-n: sample ``n`` continuations as one batch and keep the one the user's reward
    likes best, per whole answer or per sentence.

    Candidates are scored as finished texts (the kept prefix with the block):
    ``strength * r_user + quality_weight * quality``, with ``r_user`` on the profile's
    relative scale (:attr:`Steering.relative`) and ``quality`` the generator's quality term
    (local models: substance), so that a block which says nothing loses to one that does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=4, ge=1, le=64, description="Samples per block.")
    block: Literal["answer", "sentence"] = Field(
        default="answer", description="A block is a whole answer, or one sentence.")
    block_tokens: int = Field(default=32, ge=1, le=512,
                              description="Token limit of one sentence block.")
    end_early: bool = Field(
        default=False,
        description="Sentence blocks: the answer may also end after a block, once its last "
                    "sentence is finished and it clears the quality floor, when ending scores "
                    "better than every sampled continuation ('short' means the shortest "
                    "answer that still answers).")
    draw: Literal["sample", "branch"] = Field(
        default="sample",
        description="How a block's n candidates are drawn: 'sample' with the generation's "
                    "sampling options; 'branch' (local models): the n most likely first "
                    "tokens (those within branch_gap of the best), each continued greedily "
                    "-- deterministic, fluent, and different where answers part ways (a "
                    "list marker, a new line, the end of the answer). A generation with "
                    "do_sample=True samples 'branch' blocks as 'sample' does (every token "
                    "with its temperature, top_k, top_p and seed; with n=1, one sampled "
                    "sentence per block).")
    branch_gap: float = Field(
        default=3.0, gt=0, le=50,
        description="'branch': a first token whose log-probability is more than this below "
                    "the most likely one's is not branched on (that row repeats the greedy "
                    "block).")
    trim_opening: bool = Field(
        default=False,
        description="Sentence blocks: an opening that says nothing yet (its quality below a "
                    "tenth of the floor: 'The age-old question of ...') is held back, and "
                    "left out when the answer's first sentence with content does not lean on "
                    "it ('However, ...', 'This ...') and the user's reward prefers the answer "
                    "without it. The model still reads it; the answer streams from there, "
                    "with no blank start. Off by default: on SmolLM2 (bench/quality.py) it "
                    "made terse answers shorter (-23% words against -14.5%) but they named "
                    "fewer key terms (84% of plain's against 92%).")
    quality_weight: float = Field(
        default=1.0, ge=0, le=100,
        description="Weight of the generator's quality term (substance) beside the user's "
                    "reward; a local generator's answer may only end early once it clears "
                    "the term's floor. 0: off. Hosted generators have no quality term.")

    @model_validator(mode="after")
    def _sentence_only(self) -> BestOfN:
        for name in ("end_early", "trim_opening"):
            if getattr(self, name) and self.block != "sentence":
                raise ValueError(f"{name} applies to sentence blocks: "
                                 f"BestOfN(block='sentence', {name}=True)")
        return self


class TokenRewards(BaseModel):
    """Token-level base rewards (GenARM-style): the generator's
    :class:`~personalizer.backends.heads.token.TokenHeads` score every next token from the
    LM's own hidden state, and the user's steered logits are
    ``logits + strength * sum_j c_j s_j``, folded into one per-row shift of the hidden state
    (no candidates, no lookahead). Base rewards with a token rule act directly on their
    tokens (:mod:`~personalizer.backends.heads.rules`): the user's coefficient on length
    biases the end-of-turn tokens (``end_scale``; toward ending only after a finished
    sentence), on structure the list markers at the start of a line, on a lexical reward
    (hedging, examples, formality, warmth) the tokens of its words (``rule_scale`` nats per
    unit of coefficient, times the strength). Needs ``LocalGenerator(..., token_heads=heads)`` (see
    :func:`~personalizer.backends.heads.token.distill_token_heads`).

    With ``floor`` and a generator quality term, an end of turn chosen from the steered
    logits is allowed below the quality floor only when the greedy argmax of the unsteered
    logits is an end of turn too (the model's own choice), whether the row decodes greedily
    or samples; otherwise the end-of-turn tokens are masked and the token chosen again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["token_rewards"] = "token_rewards"
    rule_scale: float = Field(
        default=2.0, ge=0, le=50,
        description="Logit bias per unit of the user's (relatively scaled) coefficient on a "
                    "base reward with a token rule (structure: list markers at the start "
                    "of a line; lexical rewards: their words, by weight; length: see "
                    "end_scale), times the strength (before a sampling temperature divides "
                    "the logits); 0 turns every rule off and leaves those rewards to their "
                    "heads.")
    end_scale: float = Field(
        default=8.0, ge=0, le=50,
        description="The end-of-turn rule's logit bias per unit of the user's (relative) "
                    "length coefficient, times the strength. Ending is the one token where "
                    "a whole answer's length is decided (SmolLM2's end of turn trails the "
                    "next sentence by 3-10 nats after a finished sentence), so it takes a "
                    "larger bias than a word; a bias toward ending applies only after a "
                    "finished sentence or line. rule_scale=0 turns it off with the other "
                    "rules.")
    floor: bool = Field(
        default=True,
        description="The reward may not end an answer whose substance is below the "
                    "generator's quality floor (the model itself still may: an end of "
                    "turn counts as the model's own when it is the greedy argmax of the "
                    "unsteered logits, also when sampling).")


Strategy = Annotated[Args | BestOfN | TokenRewards, Field(discriminator="kind")]


class Steering(BaseModel):
    """One user's reward-guided decoding request.

    ``r_user = coefficients . features`` over the reward set the coefficients were fitted
    against; ``strength`` weighs it against the model's own logits (0 is plain decoding).
    ``strategy`` may be given as a name (``"args"``, ``"best_of_n"``, ``"token_rewards"``)
    or a dict.
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
    strategy: Strategy = Field(default_factory=Args, description="How to search.")
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

    @field_validator("coefficients")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"coefficients {bad} are not finite")
        return value

    @field_validator("strategy", mode="before")
    @classmethod
    def _by_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @classmethod
    def from_profile(cls, profile: Any, **options: Any) -> Steering:
        """Steering for a stored profile (anything with coefficients and a reward set)."""
        options.setdefault("principles", getattr(profile, "summary", None) or None)
        return cls(coefficients=dict(profile.coefficients),
                   reward_set_id=profile.reward_set_id,
                   reward_set_version=profile.reward_set_version, **options)


def validation_message(exc: ValidationError) -> str:
    """The first error of a pydantic ``ValidationError`` as ``where: what``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {err['msg']}"


def parse_options(options: Mapping[str, Any], defaults: GenerationOptions) -> GenerationOptions:
    """``defaults`` updated with ``options``; an unknown or bad option is an InvalidInput
    naming it and the known ones."""
    try:
        return GenerationOptions.model_validate({**defaults.model_dump(), **options})
    except ValidationError as exc:
        raise InvalidInput(
            f"generation option {validation_message(exc)} (known options: "
            f"{', '.join(GenerationOptions.model_fields)})") from None
