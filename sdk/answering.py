"""Answering for a user: the request planned from their profile, and the answer finished.

:class:`Answering` is the one implementation behind ``Personalizer.generate``, ``agenerate``,
``stream``, ``astream`` and ``generate_batch``: it reads the profile, puts the profile in
words where the generator takes it (:attr:`Generator.profile_prompt`), builds the user's
:class:`~personalizer.steering.Steering` and, once the generator answered, adds what the
record must say (the prompt lever, each base reward's part in the answer, the newcomer's
hint) and keeps the answer for feedback (:mod:`.feedback`). A generator with only
``generate`` and ``stream`` (:class:`~personalizer.seams.SimpleGenerator`) is adapted
(:func:`as_generator`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from personalizer.backends.rewards.user import UserReward
from personalizer.profiles import Profile, ProfileStore, validate_user_id
from personalizer.profiles.conditioning import condition, profile_block, profile_request
from personalizer.profiles.learning.app_features import migrate_profile

from ._input import Limits
from .errors import BackendError, InvalidInput, ProfileNotFound, UnsupportedRequest
from .feedback import Retention
from .seams import Generator, ProfilePrompt, RewardSet, SimpleGenerator, SteerableGenerator
from .steering import STRATEGIES, Steering, Strategy
from .streams import AsyncStream, Stream
from .types import Generation, Message, MessagesLike, RewardTerm, SteeringRecord, as_messages, \
    last_user_text

__all__ = ["NEW_USER_HINT", "Answering", "Planned", "as_generator", "one_reward_set"]

NEW_USER_HINT = ("this user has not answered anything yet, so the answer is not personalized; "
                 "a few onboarding questions (Personalizer.onboarding) would let it be")


class _Plain:
    """A :class:`SimpleGenerator` as a :class:`Generator`: plain answers, the profile in the
    system prompt, async calls in a worker thread. A steering that asks for a strategy is
    refused: such a generator cannot run one."""

    default_strategy: Strategy | None = None
    rewards: RewardSet | None = None
    profile_prompt = ProfilePrompt()

    def __init__(self, inner: SimpleGenerator) -> None:
        self.inner = inner

    def _check(self, steering: Steering | None) -> None:
        if steering is not None and steering.strategy is not None:
            raise UnsupportedRequest(
                f"{type(self.inner).__name__} has only generate and stream: it answers "
                f"plainly and cannot run strategy {steering.strategy.kind!r}")

    def generate(self, messages: Sequence[Message], *, steering: Steering | None = None,
                 **options: Any) -> Generation:
        self._check(steering)
        return self.inner.generate(messages, **options)

    def stream(self, messages: Sequence[Message], *, steering: Steering | None = None,
               **options: Any) -> Stream:
        self._check(steering)
        pieces = self.inner.stream(messages, **options)
        return pieces if isinstance(pieces, Stream) else Stream(pieces, where="stream")

    async def agenerate(self, messages: Sequence[Message], *,
                        steering: Steering | None = None, **options: Any) -> Generation:
        return await asyncio.to_thread(self.generate, messages, steering=steering, **options)

    def astream(self, messages: Sequence[Message], *, steering: Steering | None = None,
                **options: Any) -> AsyncStream:
        return AsyncStream.in_thread(self.stream(messages, steering=steering, **options))


def as_generator(generator: Any) -> Generator:
    """``generator`` as a :class:`Generator`: itself, or a simple one adapted."""
    if isinstance(generator, Generator):
        return generator
    if isinstance(generator, SimpleGenerator):
        return _Plain(generator)
    raise InvalidInput(
        f"generator must answer chats (a personalizer.seams.Generator, or at least "
        f"generate(messages, **options) and stream(messages, **options)), not "
        f"{type(generator).__name__}")


def one_reward_set(rewards: RewardSet | None, generator: Generator | None
                   ) -> RewardSet | None:
    """The reward set given once: the facade's (handed to the generator with each
    steering), or the generator's own when the facade was given none. Two different sets
    are refused."""
    own = generator.rewards if generator is not None else None
    if own is None or rewards is None:
        return rewards if rewards is not None else own
    if (own.id, own.version) != (rewards.id, rewards.version):
        raise InvalidInput(
            f"the generator's reward set ({own.id!r} v{own.version}) is not the one given as "
            f"rewards= ({rewards.id!r} v{rewards.version}); give the reward set once, to "
            "either of them")
    return rewards


@dataclass(frozen=True)
class Planned:
    """A request planned for one user: what goes to the generator, and what the record of
    its answer must add."""

    messages: list[Message]
    steering: Steering | None
    block: str | None  # the profile block put in the system prompt, if any
    new_user: bool
    profile: Profile
    options: dict[str, Any]


@dataclass
class Answering:
    """Plans requests and finishes answers for one Personalizer (its store, reward set,
    generator, defaults and retention)."""

    store: ProfileStore
    rewards: RewardSet | None
    generator: Generator | None
    retention: Retention
    limits: Limits
    strength: float
    strategy: Strategy | None
    prompt_profile: bool | None

    def need_generator(self, what: str = "generate") -> Generator:
        if self.generator is None:
            raise InvalidInput(f"{what} needs a generator: Personalizer(db, generator=...)")
        return self.generator

    def plan(self, user_id: str, messages: MessagesLike, strength: float | None,
             strategy: Any, prompt_profile: bool | None, options: dict[str, Any]) -> Planned:
        """One request before the generator runs: the messages (the profile block in the
        system prompt when the generator takes it there) and the user's Steering (None while
        no strategy applies: a generator without a default strategy gets the prompt only)."""
        gen = self.need_generator()
        strength = self.strength if strength is None else strength
        strategy = STRATEGIES.parse(strategy) or self.strategy or gen.default_strategy
        prompt_profile = self.prompt_profile if prompt_profile is None else prompt_profile
        msgs = as_messages(messages)
        self.limits.check("Personalizer.generate", [
            (f"messages[{i}].content", m.content) for i, m in enumerate(msgs)])
        try:  # a read: a newcomer's profile is created once the answer is there (finish)
            profile = migrate_profile(self.store.get(validate_user_id(user_id)), self.rewards)
        except ProfileNotFound:
            profile = Profile(user_id=user_id)  # version 0: not stored
        new_user = not profile.coefficients and profile.preference_count == 0 \
            and not profile.summary
        words = gen.profile_prompt
        use_words = prompt_profile is not False
        in_turn = words.where == "user"
        request = profile_request(profile, self.rewards, only=words.rewards) \
            if use_words and in_turn else None
        block = profile_block(profile, self.rewards) if use_words and not in_turn else None
        msgs = condition(msgs, block)
        steering = None
        if profile.coefficients and self.rewards is None and \
                isinstance(gen, SteerableGenerator):
            raise BackendError(
                f"{type(gen).__name__} cannot steer toward {user_id!r}'s reward: give the "
                "Personalizer (or the generator) the reward set of the profiles (rewards=...)")
        if strategy is not None:
            steering = Steering.from_profile(profile, strength=strength, strategy=strategy,
                                             instruction=request, rewards=self.rewards)
        return Planned(msgs, steering, block, new_user, profile, options)

    def finish(self, planned: Planned, out: Generation) -> Generation:
        """The generator's answer with the record's additions (the prompt lever, the
        newcomer's hint, each base reward's part in it), kept for feedback (with an id)."""
        record = out.steering or SteeringRecord(path="plain")
        update: dict[str, Any] = {}
        if planned.block is not None:
            update["levers"] = ("prompt", *record.levers)
        if planned.new_user:
            update |= {"new_user": True, "hint": NEW_USER_HINT}
        terms = self.terms(planned.profile, planned.messages, out.text)
        if terms:
            update["terms"] = terms
        if update:
            out = out.model_copy(update={"steering": record.model_copy(update=update)})
        return self.retention.keep(planned.profile.user_id, planned.messages, out,
                                   options=planned.options,
                                   create=planned.profile.version == 0)  # not stored yet

    def terms(self, profile: Profile, messages: list[Message], text: str
              ) -> tuple[RewardTerm, ...]:
        """Each base reward's part in the user's reward of ``text`` (empty without
        coefficients of this reward set)."""
        rs = self.rewards
        if rs is None or not profile.coefficients or (profile.reward_set_id,
                                                      profile.reward_set_version) != (
                rs.id, rs.version):
            return ()
        reward = UserReward.of(rs, profile.coefficients, reward_set_id=rs.id,
                               reward_set_version=rs.version)
        parts = reward.parts(last_user_text(messages), text)
        return tuple(RewardTerm(name=n, description=d, coefficient=float(c),
                                contribution=float(p))
                     for n, d, c, p in zip(rs.names, rs.descriptions, reward.weights, parts,
                                           strict=True))

    # -- the five doors, over plan and finish ------------------------------------------

    def generate(self, user_id: str, messages: MessagesLike, strength: float | None,
                 strategy: Any, prompt_profile: bool | None, options: dict[str, Any]
                 ) -> Generation:
        p = self.plan(user_id, messages, strength, strategy, prompt_profile, options)
        return self.finish(p, self.need_generator().generate(p.messages, steering=p.steering,
                                                             **options))

    async def agenerate(self, user_id: str, messages: MessagesLike, strength: float | None,
                        strategy: Any, prompt_profile: bool | None,
                        options: dict[str, Any]) -> Generation:
        p = await asyncio.to_thread(self.plan, user_id, messages, strength, strategy,
                                    prompt_profile, options)
        out = await self.need_generator().agenerate(p.messages, steering=p.steering, **options)
        return await asyncio.to_thread(self.finish, p, out)

    def stream(self, user_id: str, messages: MessagesLike, strength: float | None,
               strategy: Any, prompt_profile: bool | None, options: dict[str, Any]
               ) -> Stream:
        p = self.plan(user_id, messages, strength, strategy, prompt_profile, options)
        inner = self.need_generator().stream(p.messages, steering=p.steering, **options)
        return Stream(inner, then=lambda out: self.finish(p, out), where="Personalizer.stream")

    def astream(self, user_id: str, messages: MessagesLike, strength: float | None,
                strategy: Any, prompt_profile: bool | None, options: dict[str, Any]
                ) -> AsyncStream:
        planned: list[Planned] = []

        def begin() -> AsyncStream:  # in a worker thread: store reads, tokenizing
            p = self.plan(user_id, messages, strength, strategy, prompt_profile, options)
            planned.append(p)
            return self.need_generator().astream(p.messages, steering=p.steering, **options)

        async def start() -> AsyncStream:
            return await asyncio.to_thread(begin)

        return AsyncStream(start, then=lambda out: self.finish(planned[0], out),
                           where="Personalizer.astream")

    def generate_batch(self, requests: Iterable[tuple[str, MessagesLike]],
                       strength: float | None, strategy: Any, prompt_profile: bool | None,
                       options: dict[str, Any],
                       batch: Callable[..., list[Generation]]) -> list[Generation]:
        plans = [self.plan(user_id, messages, strength, strategy, prompt_profile, options)
                 for user_id, messages in requests]
        outs = batch([(p.messages, p.steering) for p in plans], **options)
        return [self.finish(p, o) for o, p in zip(outs, plans, strict=True)]
