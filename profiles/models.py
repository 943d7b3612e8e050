"""Profile and preference data models, and the user-id rule.

A :class:`Profile` holds what personalizer knows about one user: coefficients over a named,
versioned set of base rewards with their covariance (PReF), a readable summary (PLUS), and
counts. :class:`Preference` is one pairwise judgement in the user's history.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from personalizer._input import text_problem
from personalizer.errors import InvalidUserId
from personalizer.types import SteeringRecord

from .storable import JsonObject, json_problem

__all__ = ["JUDGEMENTS", "Judgement", "OnboardingState", "Preference", "Profile",
           "Rating", "StoredGeneration", "Text", "UserId", "history_digest", "summary_by_person",
           "utcnow", "validate_user_id"]

USER_ID_MAX = 128
SUMMARY_MAX_CHARS = 20_000
INT64_MAX = 2**63 - 1  # counts and versions are 64-bit integers in both stores
_USER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:-]*")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (microseconds kept)."""
    return datetime.now(timezone.utc)


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` if it is a valid user id, else raise :class:`InvalidUserId`.

    A user id is 1-128 characters: ASCII letters, digits and ``. _ @ + : -``, starting with a
    letter or digit (so ``alice``, ``u-42``, ``alice@example.com`` are fine).
    """
    if not isinstance(user_id, str):
        raise InvalidUserId(f"user id must be a string, not {type(user_id).__name__}")
    if not user_id:
        raise InvalidUserId("user id is empty; pass a non-empty id such as 'alice' or 'u-42'")
    if len(user_id) > USER_ID_MAX:
        raise InvalidUserId(
            f"user id is {len(user_id)} characters long; the limit is {USER_ID_MAX}"
            " (hash long external ids first)"
        )
    if not _USER_ID_RE.fullmatch(user_id):
        raise InvalidUserId(
            f"user id {user_id!r} has characters outside A-Z a-z 0-9 . _ @ + : - "
            "or does not start with a letter or digit"
        )
    return user_id


def _check_user_id(value: object) -> str:
    try:
        return validate_user_id(value)
    except InvalidUserId as exc:  # a validation error of its own type: the facade's
        raise PydanticCustomError(  # boundary turns it back into InvalidUserId
            "invalid_user_id", "{reason}", {"reason": str(exc)}) from None


UserId = Annotated[str, BeforeValidator(_check_user_id)]
"""A user id (see :func:`validate_user_id`), also as an argument of the facade: bytes or
other non-strings are refused, never converted."""


def _storable(value: object) -> object:
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(f"the text {problem}")
    return value


Text = Annotated[str, BeforeValidator(_storable)]
"""A string that can be stored: no lone surrogate, no NUL (see
:func:`personalizer._input.text_problem`). Every stored string of these models is one."""


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (use UTC)")
    return value.astimezone(timezone.utc)


Judgement = Literal["better", "much_better", "slightly_better", "both_fine", "neither"]
"""How one pairwise answer compares the two responses (see :class:`Preference`)."""

# Every judgement, the binary default first.
JUDGEMENTS: tuple[str, ...] = get_args(Judgement)


class Preference(BaseModel):
    """One pairwise judgement: for ``prompt`` the user preferred ``chosen`` over ``rejected``.

    ``judgement`` says by how much: ``"better"`` (the plain binary answer, the default),
    ``"much_better"`` or ``"slightly_better"``. The two ties, ``"both_fine"`` and
    ``"neither"``, say the user found the responses equally good (or equally bad): then
    ``chosen`` and ``rejected`` carry no order, they are the first and the second response as
    shown. (:mod:`personalizer.profiles.learning.posterior` models each judgement as an
    interval of the utility difference; see ``judgement_bounds``.)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Text = Field(description="What the user asked (or the question shown).")
    chosen: Text = Field(description="The response the user preferred.")
    rejected: Text = Field(description="The response the user liked less.")
    reason: Text | None = Field(default=None, max_length=4000,
                                description="Why, if they said.")
    source: str = Field(
        default="feedback",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Where it came from: 'feedback', 'onboarding', 'import', ...",
    )
    created_at: datetime = Field(default_factory=utcnow, description="When it was recorded.")
    judgement: Judgement = Field(
        default="better",
        description="How the two compare: 'better' (plain choice), 'much_better' or "
        "'slightly_better' (chosen over rejected by that much), or a tie, 'both_fine' or "
        "'neither' (then chosen and rejected are just the first and second response shown).",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Preference:
        if self.chosen == self.rejected:
            raise ValueError(
                "chosen and rejected are the same text; a preference needs two different responses"
            )
        return self

    _utc = field_validator("created_at")(_as_utc)


class Profile(BaseModel):
    """Everything personalizer keeps about one user (besides the preference history).

    ``coefficients`` are keyed by base-reward name and refer to the reward set
    ``reward_set_id`` at ``reward_set_version``; ``covariance`` (if known) is a square matrix
    whose rows and columns follow the order of ``coefficients``. ``version`` increases by one
    with every stored change and is what optimistic concurrency checks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: UserId
    coefficients: dict[str, float] = Field(
        default_factory=dict, description="Weight per base reward (PReF coefficients)."
    )
    covariance: list[list[float]] | None = Field(
        default=None, description="Posterior covariance of the coefficients, in their order."
    )
    reward_set_id: Text | None = Field(
        default=None, max_length=200, description="Id of the reward set the coefficients use."
    )
    reward_set_version: Text | None = Field(
        default=None, max_length=100, description="Version of that reward set."
    )
    summary: Text = Field(
        default="", max_length=SUMMARY_MAX_CHARS,
        description="Readable summary of the user's preferences."
    )
    summary_source: Literal["summarizer", "user"] | None = Field(
        default=None, description="Who wrote the summary: 'summarizer' (folded from the "
        "history) or 'user' (the person; the summarizer never overwrites it). None without a "
        "summary; a summary given without a source counts as the person's.")
    summary_written_at: datetime | None = Field(
        default=None, description="When the summary was last written.")
    summary_preferences: int = Field(
        default=0, ge=0, le=INT64_MAX, description="How many of the oldest preferences the "
        "summary was folded from (the summarizer's count, not Profile.version).")
    summary_stale: bool = Field(
        default=False, description="Preferences the summary was folded from were deleted "
        "or replaced since: the next refresh writes it again from the whole history.")
    summary_digest: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Digest of the preferences the "
        "summarizer folded (see history_digest): an import whose history differs marks the "
        "summary stale.")
    preference_count: int = Field(default=0, ge=0, le=INT64_MAX,
                                  description="Preferences in the history.")
    version: int = Field(default=0, ge=0, le=INT64_MAX,
                         description="0 until stored; +1 on every change.")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    _utc = field_validator("created_at", "updated_at")(_as_utc)

    @field_validator("summary_written_at")
    @classmethod
    def _utc_or_none(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)

    @model_validator(mode="before")
    @classmethod
    def _summary_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("summary") and not data.get("summary_source"):
            data = {**data, "summary_source": "user"}  # written by a person or the app
        return data

    @field_validator("coefficients")
    @classmethod
    def _finite_coefficients(cls, value: dict[str, float]) -> dict[str, float]:
        for name, c in value.items():
            if not name or len(name) > 100:
                raise ValueError(f"base-reward name {name!r} must be 1-100 characters")
            problem = text_problem(name)
            if problem is not None:
                raise ValueError(f"base-reward name {name!r} {problem}")
            _finite(c, f"coefficient {name!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.covariance is not None:
            n = len(self.coefficients)
            if len(self.covariance) != n or any(len(row) != n for row in self.covariance):
                raise ValueError(
                    f"covariance must be {n}x{n} to match the {n} coefficients"
                )
            for i, row in enumerate(self.covariance):
                for j, v in enumerate(row):
                    _finite(v, f"covariance[{i}][{j}]")
                if row[i] < 0:
                    raise ValueError(f"covariance[{i}][{i}] is a variance and cannot be negative")
        if self.summary_preferences > self.preference_count:
            raise ValueError(
                f"summary_preferences ({self.summary_preferences}) cannot exceed "
                f"preference_count ({self.preference_count})")
        if (self.reward_set_id is None) != (self.reward_set_version is None):
            raise ValueError("reward_set_id and reward_set_version go together: set both or neither")
        if self.coefficients and self.reward_set_id is None:
            raise ValueError(
                "coefficients need the reward set they refer to: set reward_set_id and "
                "reward_set_version"
            )
        return self

    def stddev(self, name: str) -> float | None:
        """Posterior standard deviation of one coefficient, or None without a covariance."""
        if self.covariance is None:
            return None
        i = list(self.coefficients).index(name)
        return math.sqrt(max(self.covariance[i][i], 0.0))


def history_digest(history: Sequence[Preference]) -> str:
    """A digest of preferences (text and time, in order): what a summary was folded from."""
    h = hashlib.sha256()
    for p in history:
        graded = [] if p.judgement == "better" else [p.judgement]  # digests from before stay
        h.update(json.dumps([p.prompt, p.chosen, p.rejected, p.reason,
                             p.created_at.isoformat(), *graded]).encode())
    return h.hexdigest()


def summary_by_person(text: str, preference_count: int, now: datetime) -> dict[str, Any]:
    """The summary fields of a summary a person (or the app) wrote, or of none when empty."""
    if not text:
        return {"summary": "", "summary_source": None, "summary_written_at": None,
                "summary_preferences": 0, "summary_stale": False, "summary_digest": None}
    return {"summary": text, "summary_source": "user", "summary_written_at": now,
            "summary_preferences": preference_count, "summary_stale": False,
            "summary_digest": None}


class StoredGeneration(BaseModel):
    """An answer given to a user, kept (within the retention limits) so that the person can
    rate, choose or edit it afterwards (:meth:`Personalizer.record_feedback`), with how it was
    made: the model, the generation options, the search strategy and the steering record (what
    acted on it, the person's terms), so that an old answer can still be explained.

    The record fields are new in export version 6: answers kept before are read back with them
    empty (None, or no options)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The generation id.")
    prompt: Text = Field(description="The last user message it answered.")
    answer: Text = Field(description="The answer's text.")
    created_at: datetime = Field(default_factory=utcnow)
    model: Text | None = Field(default=None, max_length=1000,
                               description="The model id or path that wrote it, when known.")
    options: JsonObject = Field(
        default_factory=dict, description="The generation options it was made with (token "
        "limit, sampling, ...), as JSON; empty when not recorded.")
    strategy: JsonObject | None = Field(
        default=None, description="The search strategy's settings, as JSON, when one was "
        "asked for; None for the generator's default or when not recorded.")
    steering: SteeringRecord | None = Field(
        default=None, description="How the answer was steered (the generation's steering "
        "record), or None when not recorded.")

    _utc = field_validator("created_at")(_as_utc)

    @model_validator(mode="after")
    def _storable_record(self) -> StoredGeneration:
        problem = (json_problem(self.options, "options")
                   or json_problem(self.strategy, "strategy"))
        if problem is None and self.steering is not None:
            # the record as Python values: a NaN stays a NaN here (JSON would write null,
            # which would not read back as a number)
            problem = json_problem(self.steering.model_dump(), "steering")
        if problem is not None:
            raise ValueError(f"cannot be kept: {problem}")
        return self


class Rating(BaseModel):
    """A thumbs up or down on one answer: part of the user's history, like a preference.

    Modelled as a comparison with a typical answer: on the reward set's normalised scale a
    typical answer's features are zero, so ``up`` says ``c . phi(answer) > 0`` and ``down``
    says ``< 0``, one Bradley-Terry term each (a unary likelihood on the answer's reward)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Text
    answer: Text
    rating: Literal["up", "down"]
    created_at: datetime = Field(default_factory=utcnow)

    _utc = field_validator("created_at")(_as_utc)


class OnboardingState(BaseModel):
    """Where a user's onboarding stands, so that it can be resumed after a restart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_set_id: Text = Field(max_length=200)
    reward_set_version: Text = Field(max_length=100)
    pool_id: Text = Field(max_length=100, description="Digest of the question pool used.")
    asked: list[Text] = Field(default_factory=list, description="Ids of answered questions.")
    pending: Text | None = Field(default=None, description="Id of the question now shown.")
    max_questions: int = Field(ge=1, le=1000)
    finished: bool = False
    started_at: datetime = Field(default_factory=utcnow)
    confirmed: int = Field(default=0, ge=0, le=INT64_MAX, description=(
        "How many of the latest answers in a row the profile had predicted before they were "
        "given (check questions, asked only with Onboarding(stop_checks=N), which stops "
        "after N of them). New in export version 5."))

    _utc = field_validator("started_at")(_as_utc)
