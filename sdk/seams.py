"""The protocols where the parts of personalizer meet: generators and rewards.

The facade builds a :class:`~personalizer.steering.Steering` for a user and calls a
:class:`Generator`; it never asks a generator what it can do beyond what these types say.
The type says the capability: a :class:`SteerableGenerator` holds the logits (a local model:
reward-guided decoding, batches of users); any other :class:`Generator` is conditioned by the
profile in the prompt and, when asked, reranks (hosted APIs). A :class:`SimpleGenerator` --
anything with ``generate`` and ``stream`` -- is adapted by the facade (plain answers only).
This module imports nothing of ours but the other seams.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .steering import Steering, Strategy
from .streams import AsyncStream, Stream
from .types import Generation, Message

__all__ = ["Generator", "MultiRewardModel", "ProfilePrompt", "RewardModel", "RewardSet",
           "SimpleGenerator", "SteerableGenerator"]


class ProfilePrompt(BaseModel):
    """How a generator takes a person's profile in words.

    ``"system"``: the delimited profile block in the system prompt (hosted models, larger
    local ones); ``"user"``: a short request added to the user's turn
    (:attr:`Steering.instruction`), which small instruct models follow. ``rewards``: the
    base rewards whose request may go into the user's turn (``"name:more"`` /
    ``"name:less"`` for one direction); None: all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    where: Literal["system", "user"] = Field(default="system",
                                             description="Where the profile goes.")
    rewards: tuple[str, ...] | None = Field(
        default=None, description="In the user's turn: the requests that may be made.")


@runtime_checkable
class RewardModel(Protocol):
    """One base reward: higher means more of what ``description`` says."""

    name: str
    description: str

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """One finite score per response, batched."""
        ...


@runtime_checkable
class MultiRewardModel(Protocol):
    """Several base rewards computed together (a multi-label classifier, a bank of heads)."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...]

    def score_many(self, prompt: str, responses: Sequence[str]) -> list[list[float]]:
        """One row per response, one column per name."""
        ...


@runtime_checkable
class RewardSet(Protocol):
    """Named, normalised base rewards that users' coefficients are learned over (the one
    implementation: :class:`personalizer.backends.rewards.RewardSet`)."""

    id: str
    version: str
    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    per_token: tuple[bool, ...]

    def features(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """Normalised base-reward scores, one row per response."""
        ...

    def coefficient_vector(self, coefficients: Mapping[str, float], *,
                           reward_set_id: str | None, reward_set_version: str | None
                           ) -> np.ndarray:
        """Coefficients in this set's order, after checking they were fitted against it."""
        ...


@runtime_checkable
class SimpleGenerator(Protocol):
    """The least a generator can be: a chat in, an answer out, and the answer in pieces."""

    def generate(self, messages: Sequence[Message], **options: Any) -> Generation:
        """Answer ``messages`` in one piece."""
        ...

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterable[str]:
        """Answer in text pieces whose concatenation equals ``generate``'s text."""
        ...


@runtime_checkable
class Generator(Protocol):
    """Anything that answers a chat for a user: a local model, a hosted API, a test double.

    ``steering`` is one user's request (None: a plain answer); ``options`` are generation
    options (:class:`~personalizer.steering.GenerationOptions` or the generator's own); a
    generator that cannot honour one raises :class:`~personalizer.errors.InvalidInput` or
    :class:`~personalizer.errors.UnsupportedRequest` instead of ignoring it.
    """

    @property
    def rewards(self) -> RewardSet | None:
        """The reward set its users' coefficients refer to (None: the one each Steering
        hands in)."""
        ...

    @property
    def profile_prompt(self) -> ProfilePrompt:
        """Where it takes the profile in words."""
        ...

    @property
    def default_strategy(self) -> Strategy | None:
        """The strategy a Steering without one runs (None: only the prompt, unless asked)."""
        ...

    def generate(self, messages: Sequence[Message], *, steering: Steering | None = None,
                 **options: Any) -> Generation:
        """Answer ``messages``."""
        ...

    def stream(self, messages: Sequence[Message], *, steering: Steering | None = None,
               **options: Any) -> Stream:
        """Answer piece by piece."""
        ...

    async def agenerate(self, messages: Sequence[Message], *,
                        steering: Steering | None = None, **options: Any) -> Generation:
        """:meth:`generate` without blocking the event loop."""
        ...

    def astream(self, messages: Sequence[Message], *, steering: Steering | None = None,
                **options: Any) -> AsyncStream:
        """:meth:`stream` for ``async for``."""
        ...


@runtime_checkable
class SteerableGenerator(Generator, Protocol):
    """A generator that holds the logits: reward-guided decoding, many users in one batch."""

    def generate_batch(self, requests: Sequence[tuple[Sequence[Message], Steering | None]],
                       **options: Any) -> list[Generation]:
        """Answer ``(messages, steering)`` pairs as rows of one batch."""
        ...
