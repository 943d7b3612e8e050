"""Data models and protocols at the seams between the parts of personalizer.

Generators (local models, hosted APIs; the protocols are in :mod:`personalizer.seams`) take
chat :class:`Message` lists and return a :class:`Generation`. This module imports nothing of ours
except the error tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError, field_validator

from .errors import InvalidInput

__all__ = [
    "TERM_WORDS",
    "Generation",
    "Message",
    "QualityTerm",
    "RewardTerm",
    "ScoredCandidate",
    "SteeringRecord",
    "Timings",
    "as_messages",
    "check_pairs",
    "last_user_text",
    "validation_message",
    "with_request",
]

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role = Field(description="Who speaks: 'system', 'user' or 'assistant'.")
    content: str = Field(description="The text of the turn.")


class Timings(BaseModel):
    """Wall-clock seconds spent producing a generation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_s: float = Field(ge=0, description="From the call to the last token.")
    first_token_s: float | None = Field(
        default=None, ge=0, description="From the call to the first token, when known."
    )


# What more and less of each built-in attribute make of an answer, in words.
TERM_WORDS: Mapping[str, tuple[str, str]] = {
    "verbosity": ("longer", "shorter"),
    "reading_level": ("harder to read", "easier to read"),
    "formality": ("more formal", "more casual"),
    "warmth": ("warmer", "more matter-of-fact"),
    "structure": ("more structured", "less structured"),
    "technical_depth": ("more technical", "less technical"),
    "examples": ("with more examples", "with fewer examples"),
    "hedging": ("more hedged", "more direct"),
    "emoji": ("with more emoji", "with fewer emoji"),
}


class RewardTerm(BaseModel):
    """One base reward of the user's reward, as a person can read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The base reward's name.")
    description: str = Field(description="What more of it means, in words.")
    coefficient: float = Field(description="The user's weight on it.")
    contribution: float | None = Field(
        default=None, description="Its part in the user's reward of the returned answer: the "
        "coefficient times the answer's (normalised) score on it. Why this answer.")

    def in_words(self, words: Mapping[str, tuple[str, str]] = TERM_WORDS) -> str | None:
        """What this term of an answer did for the person, in words: ``"shorter than
        usual, as you prefer: +0.49"``, or ``"longer than usual, though you prefer shorter:
        -0.20"`` when the answer went against them. The contribution is the person's weight
        times the answer's normalised score (0: a usual answer), so the score's sign says
        which way the answer went and the contribution's sign whether that was the person's
        way. ``words`` maps a base reward's name to what more and less of it make of an
        answer; a reward without an entry is named by its description ("higher on 'mentions
        the keywords more often' than usual, ..."). None when the term has no contribution
        or no weight."""
        if self.contribution is None or self.coefficient == 0:
            return None
        what = repr(self.description.split(":")[0].strip() or self.name)
        score = self.contribution / self.coefficient
        if score == 0:
            return f"as usual on {what}: {self.contribution:+.2f}"
        more, less = words.get(self.name) or (f"higher on {what}", f"lower on {what}")
        went = more if score > 0 else less
        if self.contribution > 0:
            return f"{went} than usual, as you prefer: {self.contribution:+.2f}"
        liked = (more if self.coefficient > 0 else less).removeprefix("with ") \
            if self.name in words else ("higher" if self.coefficient > 0 else "lower")
        return f"{went} than usual, though you prefer {liked}: {self.contribution:+.2f}"


class QualityTerm(BaseModel):
    """The quality floor of a steered answer: a reward for substance with a fixed weight (the
    same for every user), beside the user's own terms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The quality reward's name.")
    description: str = Field(description="What it measures, in words.")
    weight: float = Field(description="Its fixed weight in the objective.")
    floor: float = Field(description="The least an answer must score before it may end.")
    score: float | None = Field(default=None, description="The returned answer's score.")


class ScoredCandidate(BaseModel):
    """An answer (or block) that was considered, with the user's reward of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    reward: float | None = Field(
        description="The user's reward of it (with the quality term); None when it could "
        "not be chosen (it would end the answer below the quality floor, or before it "
        "said anything).")

    @field_validator("reward", mode="before")
    @classmethod
    def _not_allowed(cls, value: Any) -> Any:
        # the search scores a candidate it may not choose -inf: recorded as None, so the
        # record is JSON and can be kept, exported and shown
        if isinstance(value, (int, float)) and value == float("-inf"):
            return None
        return value


class SteeringRecord(BaseModel):
    """How an answer was produced, in a form that can be shown to the person it was for.

    ``path`` names the decoding path that ran: ``"plain"``; ``"args-text"`` (candidate texts
    scored by the reward set), ``"args-<kind>"`` for a reward's own fast token scorer
    (``"args-tree"``: a reward model's tree-attention pass, ``"args-trunk"``: heads on the
    LM's own trunk); ``"best-of-n"`` (sampled candidates); ``"branch"`` (sentence blocks
    decoded greedily, from the most likely first tokens); ``"token-rewards"`` (token-level
    reward heads folded into the LM's hidden state, strategy ``"token_rewards"``).
    ``levers`` lists what acted on the answer (``"prompt"``: the profile in words;
    ``"args"``, ``"lookahead"``, ``"best_of_n"``, ``"branch"``, ``"end_early"``: the answer
    may end once the user's reward prefers it and it clears the quality floor;
    ``"trim_opening"``; ``"token_rewards"``; ``"proxy"``; ``"no_repeat"``: the repetition
    guard, ``repetition_guard=True``; ``"experts"``: attribute experts weighed by the
    person's coefficients, their weights in ``experts``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="The decoding path that ran.")
    levers: tuple[str, ...] = Field(default=(), description="What steered the answer.")
    strategy: Mapping[str, Any] | None = Field(
        default=None, description="The search strategy's settings, when one ran.")
    strength: float | None = Field(default=None, description="The reward's weight.")
    reward_set_id: str | None = None
    reward_set_version: str | None = None
    terms: tuple[RewardTerm, ...] = Field(
        default=(), description="The user's coefficients, each with its description.")
    quality: QualityTerm | None = Field(
        default=None, description="The quality term that kept the answer an answer, if any.")
    candidates: tuple[ScoredCandidate, ...] = Field(
        default=(), description="Best-of-n: the (last block's) candidates and their rewards.")
    chosen: int | None = Field(default=None, description="Index of the kept candidate.")
    experts: Mapping[str, float] = Field(
        default_factory=dict, description="Local models with attribute experts: the weight "
        "of each expert that steered the answer (the person's relative coefficient times "
        "the strength and the strategy's expert scale).")
    new_user: bool = Field(
        default=False, description="The user had answered nothing yet: the answer is not "
        "personalized (see hint).")
    hint: str | None = Field(default=None, description="What would personalize answers "
                                                       "better, in words.")

    def why(self, limit: int = 3) -> list[str]:
        """What the answer did for the person, in words, the largest parts first (at most
        ``limit``): ``["shorter than usual, as you prefer: +0.49", ...]``. Empty for an
        answer with no coefficients behind it (a new person: see ``hint``)."""
        terms = sorted((t for t in self.terms  # a part that rounds to 0.00 says nothing
                        if t.contribution is not None and abs(t.contribution) >= 0.005),
                       key=lambda t: -abs(t.contribution or 0.0))
        lines = [line for t in terms if (line := t.in_words()) is not None]
        return lines[:limit]


class Generation(BaseModel):
    """What a generator returns: the text and how it was produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(description="The generated answer.")
    completion_tokens: int | None = Field(
        ge=0, description="Tokens generated (best-of-n on a hosted model: of every "
        "candidate, as billed); None when a hosted server did not report usage.")
    prompt_tokens: int | None = Field(default=None, ge=0, description="Tokens in the prompt.")
    finish_reason: Literal["stop", "length"] | None = Field(
        default=None, description="'stop' at end of turn or a stop string, 'length' at the limit."
    )
    timings: Timings = Field(description="Wall-clock timings.")
    id: str | None = Field(
        default=None, description="The id to give Personalizer.record_feedback, when the "
        "answer was kept for feedback.")
    model: str | None = Field(default=None, description="Model id or path, when known.")
    steering: SteeringRecord | None = Field(
        default=None, description="How the answer was steered (see SteeringRecord), or None "
        "when the generator does not say.")
    token_ids: tuple[int, ...] | None = Field(
        default=None, description="The generated token ids (end of turn included), when the "
        "generator knows them (local models).")
    prompt_tokens_dropped: int = Field(
        default=0, ge=0, description="Oldest prompt tokens dropped to fit the model's context "
        "(only with truncate='left').")


# Chat input as callers write it; ``as_messages`` validates it (pydantic skips it at the
# boundary, so an iterable is never consumed twice).
MessagesLike = Annotated[
    str | Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any]], SkipValidation]


def as_messages(messages: MessagesLike) -> list[Message]:
    """Normalise a string, a message, a dict or a list of them into a list of :class:`Message`.

    A bare string is one user turn. Raises :class:`InvalidInput` naming the bad item.
    """
    if isinstance(messages, (str, Message, Mapping)):
        messages = [messages]  # type: ignore[list-item]
    elif isinstance(messages, (bytes, bytearray)) or not isinstance(messages, Iterable):
        raise InvalidInput(
            f"messages must be a string, a chat message or a list of them, not "
            f"{type(messages).__name__}; pass 'Hi' or [{{'role': 'user', 'content': 'Hi'}}]")
    out: list[Message] = []
    for i, item in enumerate(messages):  # type: ignore[union-attr]
        if isinstance(item, Message):
            out.append(item)
            continue
        if isinstance(item, str):
            out.append(Message(role="user", content=item))
            continue
        try:
            out.append(Message.model_validate(item))
        except ValidationError as exc:
            raise InvalidInput(
                f"message {i} is not a chat message ({validation_message(exc)}); "
                "pass {'role': 'user'|'assistant'|'system', 'content': '...'}"
            ) from None
    if not out:
        raise InvalidInput("no messages given; pass at least one user message")
    return out


def last_user_text(messages: Sequence[Message]) -> str:
    """The text a chat asks about: its last user message (else its last message)."""
    return next((m.content for m in reversed(messages) if m.role == "user"),
                messages[-1].content)


def with_request(messages: Sequence[Message], request: str | None) -> list[Message]:
    """``messages`` with ``request`` added, after a blank line, to the last user message (the
    messages themselves are left as they are); unchanged without a request or a user
    message."""
    out = list(messages)
    if not request:
        return out
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = Message(role="user", content=f"{out[i].content}\n\n{request}")
            break
    return out


def validation_message(exc: ValidationError) -> str:
    """The first error of a pydantic ``ValidationError`` as ``where: what`` (the one helper
    every module uses to turn one into an :class:`InvalidInput` message)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {err['msg']}"


def check_pairs(requests: Any, shape: str) -> list[Any]:
    """The batch as a list, or InvalidInput when its items are not pairs (``shape`` names
    what each pair holds)."""
    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Iterable):
        raise InvalidInput(f"requests must be a list of {shape} pairs, not "
                           f"{type(requests).__name__}")
    items = list(requests)
    for i, r in enumerate(items):
        if not (isinstance(r, (tuple, list)) and len(r) == 2):
            raise InvalidInput(f"request {i} must be a {shape} pair, got {type(r).__name__}")
    return items
