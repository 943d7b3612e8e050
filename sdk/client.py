"""The ``Personalizer`` facade: what an application embeds."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import reprlib
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn

from pydantic import Field, ValidationError

from personalizer.profiles import (
    Onboarding,
    Preference,
    Profile,
    ProfileLearner,
    ProfilePage,
    ProfileStore,
    open_store,
    validate_user_id,
)
from personalizer.profiles.conditioning import condition, profile_block, profile_request
from personalizer.profiles.export import parse_export
from personalizer.profiles.learner import make_preference
from personalizer.profiles.models import (
    SUMMARY_MAX_CHARS,
    Judgement,
    Rating,
    StoredGeneration,
    UserId,
    summary_by_person,
    utcnow,
)
from personalizer.profiles.summaries import Summarizer

from ._boundary import Unchecked, convert, public_api
from ._input import MAX_REQUEST_CHARS, MAX_TEXT_CHARS, Limits
from .errors import BackendError, InvalidInput, PersonalizerError, ProfileNotFound
from .types import (
    Generation,
    Generator,
    Message,
    MessagesLike,
    RewardTerm,
    SteeringRecord,
    Timings,
    as_messages,
    check_pairs,
    last_user_text,
)

__all__ = ["DEFAULT_STRENGTH", "LOCAL_PROMPT_DEFAULT", "LOCAL_STRATEGY", "Personalizer"]

log = logging.getLogger("personalizer")

# Defaults of Personalizer.generate for local models, chosen from bench/quality.py on
# SmolLM2 (the table is in the README). The profile in words goes into the user's turn (the
# generator's profile_placement; only the requests it follows, one at a time:
# prompt_rewards, by default a list or a short answer with the key points), and the answer is
# decoded greedily a sentence at a time (sampled with do_sample=True), ending as soon as
# the user's reward prefers ending and the answer clears the quality floor. Per-token ARGS,
# sampled or branched candidates, tone and "thorough" requests all cost SmolLM2 substance
# (non-answers) there.
DEFAULT_STRENGTH = 1.0
# A steering strength, as the constructor's default or one call's: Steering's own bounds.
Strength = Annotated[float, Field(ge=0, le=1000)]
LOCAL_PROMPT_DEFAULT = True
LOCAL_STRATEGY: dict[str, Any] = {"kind": "best_of_n", "n": 1, "block": "sentence",
                                  "draw": "branch", "end_early": True}


_GENERATION_ID = re.compile(r"[0-9a-f]{32}")

NEW_USER_HINT = ("this user has not answered anything yet, so the answer is not personalized; "
                 "a few onboarding questions (Personalizer.onboarding) would let it be")


def _one_reward_set(rewards: Any, generator: Any) -> tuple[Any, Any]:
    """The reward set given once: the facade's, handed to a generator that has none (as a
    twin sharing its model; the caller's object is left as it is), or the generator's when the
    facade was given none. Two different sets are refused."""
    if generator is None or not hasattr(generator, "rewards"):
        return rewards, generator
    own = generator.rewards
    if rewards is None:
        return own, generator
    if own is None:
        twin = getattr(generator, "with_rewards", None)
        return rewards, (twin(rewards) if twin is not None else generator)
    if (own.id, own.version) != (rewards.id, rewards.version):
        raise InvalidInput(
            f"the generator's reward set ({own.id!r} v{own.version}) is not the one given as "
            f"rewards= ({rewards.id!r} v{rewards.version}); give the reward set once, to "
            "either of them")
    return rewards, generator


class PersonalizedStream:
    """The pieces of one personalized answer, iterated once; ``generation`` is set after the
    last piece when the generator's stream reports its Generation."""

    def __init__(self, plan: _Planned, inner: Iterable[str]) -> None:
        self._plan, self._inner = plan, inner
        self.generation: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        start, pieces = time.perf_counter(), []
        inner = iter(self._inner)
        try:
            for piece in inner:
                pieces.append(piece)
                yield piece
            done = _reported(self._inner, pieces, start)
            self.generation = self._plan.finish(done)
        except Exception as exc:  # noqa: BLE001 - converted at the boundary, not swallowed
            _reraise(exc, "Personalizer.stream")
        finally:  # left early: the generator's work stops now, not at garbage collection
            close = getattr(inner, "close", None)
            if close is not None:
                close()


class AsyncPersonalizedStream:
    """:class:`PersonalizedStream` for ``async for``."""

    def __init__(self, start: Callable[[], Awaitable[tuple[_Planned, Any]]]) -> None:
        self._start = start
        self._pieces: Any = None
        self.generation: Generation | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        self._pieces = self._run()
        return self._pieces

    async def aclose(self) -> None:
        """Stop early: the generator's stream is closed now."""
        if self._pieces is not None:
            await self._pieces.aclose()

    async def _run(self) -> AsyncIterator[str]:
        start, pieces = time.perf_counter(), []
        try:
            plan, inner = await self._start()
            try:
                async for piece in inner:
                    pieces.append(piece)
                    yield piece
            finally:
                close = getattr(inner, "aclose", None)
                if close is not None:
                    await close()
            done = _reported(inner, pieces, start)
            self.generation = await asyncio.to_thread(plan.finish, done)
        except Exception as exc:  # noqa: BLE001 - converted at the boundary, not swallowed
            _reraise(exc, "Personalizer.astream")


def _reported(inner: Any, pieces: list[str], start: float) -> Generation:
    """The Generation a finished stream reports, or one built from its pieces (for
    generators whose streams report none)."""
    done = getattr(inner, "generation", None)
    if done is not None:
        return done
    return Generation(text="".join(pieces), completion_tokens=None,
                      timings=Timings(total_s=time.perf_counter() - start))


def _reraise(exc: Exception, where: str) -> NoReturn:
    new = convert(exc, where)
    if new is exc:
        raise exc
    raise new from exc


@dataclass(frozen=True)
class _Planned:
    """A request planned for one user: what goes to the generator, and what the record of
    its answer must add (the prompt lever, the newcomer's hint)."""

    messages: list[Message]
    extra: dict[str, Any]  # {"steering": Steering} when the answer is steered
    block: str | None
    new_user: bool
    profile: Profile
    owner: Personalizer

    def finish(self, out: Generation) -> Generation:
        """The generator's answer with the record's additions (the prompt lever, the
        newcomer's hint, each base reward's part in it), kept for feedback (with an id)."""
        record = out.steering or SteeringRecord(path="plain")
        update: dict[str, Any] = {}
        if self.block is not None:
            update["levers"] = ("prompt", *record.levers)
        if self.new_user:
            update |= {"new_user": True, "hint": NEW_USER_HINT}
        terms = self.owner._why(self.profile, self.messages, out.text, record)
        if terms:
            update["terms"] = terms
        if update:
            out = out.model_copy(update={"steering": record.model_copy(update=update)})
        return self.owner._keep(self.profile.user_id, self.messages, out,
                                create=self.profile.version == 0)  # a newcomer, not stored


@public_api
class Personalizer:
    """Per-user personalization for an LLM application.

    ``db`` is a path to the embedded SQLite store (default ``$PERSONALIZER_DB`` or
    ``profiles.db``), a ``postgresql://user:password@host/dbname`` URL for a PostgreSQL server
    (extra ``postgres``), or any :class:`~personalizer.profiles.ProfileStore` you built yourself.
    ``rewards`` is the :class:`~personalizer.backends.rewards.RewardSet` that profiles'
    coefficients are learned over (for example
    :func:`personalizer.profiles.default_reward_set`); without it preferences are only stored.
    Give it once: a generator without a reward set steers with this one (``p.generator`` is
    then a twin of yours sharing its model), and a generator's own set is used when
    ``rewards`` is not given.
    ``generator`` answers: a :class:`~personalizer.backends.LocalGenerator` (reward-guided
    decoding) or a hosted one such as :class:`~personalizer.backends.OpenAIGenerator`
    (the profile in the system prompt; best-of-n reranking when asked). ``summarizer`` writes
    profile summaries (default: a :class:`~personalizer.profiles.Summarizer` on
    ``generator``); with ``summary_every=N`` a summary is refreshed once N preferences were
    recorded since it was written (one model call per write at most). ``create=False``
    refuses an SQLite path where there is no database yet instead of creating one (for tools
    that only read). Answers are kept per user for feedback (:meth:`record_feedback`): the
    newest ``keep_generations`` (100; 0 keeps none and answers carry no id) and none older
    than ``keep_generations_days`` (30); they are exported and deleted with the user.
    ``strength``, ``strategy`` and ``prompt_profile`` are the defaults of every generate call
    (each call may override them). ``prior`` is where a newcomer's coefficients start before
    the application has 20 users of its own: the built-in prior of the default reward set
    (``"shipped"``) or ``N(0, I)`` (``"standard"``); learning, onboarding and refits all use
    it. ``max_text_chars`` (65536) caps each text a call brings (a prompt, an answer, a
    message, a reason, an edit) and ``max_request_chars`` (262144) all of them together; a
    longer one is refused with :class:`~personalizer.errors.InvalidInput` before anything
    runs or is written.

    >>> p = Personalizer(db=":memory:")
    >>> p.record_preference("alice", "Hi?", chosen="Hi!", rejected="Hello there, friend!")
    ... # doctest: +ELLIPSIS
    Profile(user_id='alice', ...)
    """

    def __init__(self, db: Unchecked[str | os.PathLike[str] | ProfileStore | None] = None, *,
                 rewards: Any = None, generator: Generator | None = None,
                 summarizer: Summarizer | None = None, summary_every: int | None = None,
                 create: bool = True, keep_generations: int = 100,
                 keep_generations_days: float = 30.0,
                 strength: Strength = DEFAULT_STRENGTH,
                 strategy: Any = None, prompt_profile: bool | None = None,
                 prior: Literal["shipped", "standard"] = "shipped",
                 max_text_chars: int = MAX_TEXT_CHARS,
                 max_request_chars: int = MAX_REQUEST_CHARS) -> None:
        if not (db is None or isinstance(db, (str, os.PathLike, ProfileStore))):
            raise InvalidInput(
                f"db must be a path or a ProfileStore, not {type(db).__name__}"
            )
        self.limits = Limits(max_text_chars, max_request_chars)
        if summary_every is not None and (isinstance(summary_every, bool)
                                          or not isinstance(summary_every, int)
                                          or summary_every < 1):
            raise InvalidInput("summary_every must be a whole number >= 1 (or None: only "
                               "update_summary writes summaries)")
        if summary_every is not None and generator is None and summarizer is None:
            raise InvalidInput("summary_every needs a model to write summaries with: pass "
                               "generator=... or summarizer=Summarizer(generator)")
        if isinstance(keep_generations, bool) or not isinstance(keep_generations, int) or \
                not 0 <= keep_generations <= 100_000:
            raise InvalidInput("keep_generations must be a whole number from 0 (keep none) "
                               "to 100000")
        if not 0 < keep_generations_days <= 36500:
            raise InvalidInput("keep_generations_days must be more than 0 and at most 36500")
        self.keep_generations, self.keep_generations_days = keep_generations, \
            float(keep_generations_days)
        if rewards is not None and not hasattr(rewards, "coefficient_vector"):
            raise InvalidInput(f"rewards must be a RewardSet (or None), not "
                               f"{type(rewards).__name__}: for example "
                               "rewards=personalizer.profiles.default_reward_set()")
        if strategy is not None:  # refused here, not at the first generate
            from personalizer.backends.request import Steering

            Steering(strategy=strategy)
        self.strength, self.strategy, self.prompt_profile = strength, strategy, prompt_profile
        rewards, generator = _one_reward_set(rewards, generator)
        self.rewards = rewards
        self.generator = generator
        self.summarizer = summarizer
        self.summary_every = summary_every
        self._prior = prior
        # the store last: every argument is checked before a database file is created
        if isinstance(db, ProfileStore):
            self.store: ProfileStore = db
            self._owns_store = False
        else:
            self.store = open_store(db, create=create)
            self._owns_store = True
        self._learner = ProfileLearner(self.store, rewards, prior=prior) \
            if rewards is not None else None

    @classmethod
    def from_settings(cls, toml_file: str | os.PathLike[str] | None = None,
                      **overrides: Any) -> Personalizer:
        """A Personalizer configured without code: the database, the generator and its
        model, and the steering defaults from ``PERSONALIZER_*`` environment variables and a
        TOML file (``toml_file`` or ``$PERSONALIZER_CONFIG``); ``overrides`` win over both.
        See :class:`~personalizer.settings.PersonalizerSettings`."""
        from .settings import PersonalizerSettings

        settings = PersonalizerSettings.load(toml_file, **overrides)
        rewards = None
        if settings.rewards == "default":
            from personalizer.profiles import default_reward_set

            rewards = default_reward_set()
        return cls(settings.db, rewards=rewards, generator=settings.build_generator(rewards),
                   summary_every=settings.summary_every,
                   keep_generations=settings.keep_generations,
                   keep_generations_days=settings.keep_generations_days,
                   strength=DEFAULT_STRENGTH if settings.strength is None
                   else settings.strength,
                   strategy=settings.strategy, prompt_profile=settings.prompt_profile,
                   max_text_chars=settings.max_text_chars,
                   max_request_chars=settings.max_request_chars)

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store and hasattr(self.store, "close"):
            self.store.close()

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- profiles ------------------------------------------------------------------------

    def profile(self, user_id: UserId) -> Profile:
        """The user's profile (coefficients, uncertainty, summary, history size)."""
        return self.store.get(user_id)

    def create_profile(self, user_id: UserId) -> Profile:
        """Create an empty profile; :class:`~personalizer.errors.ProfileExists` if present."""
        return self.store.create(user_id)

    def list_profiles(self, *, limit: int = 100, after: str | None = None) -> ProfilePage:
        """One page of profiles in user-id order (``after``: the ``next_after`` of the page
        before)."""
        self.limits.check("Personalizer.list_profiles", [("after", after)])
        return self.store.list_profiles(limit=limit, after=after)

    def record_preference(self, user_id: UserId, prompt: str, chosen: str, rejected: str, *,
                          reason: str | None = None, source: str = "feedback",
                          judgement: Judgement = "better") -> Profile:
        """Remember that ``user_id`` preferred ``chosen`` over ``rejected`` for ``prompt``.

        ``judgement`` grades the answer: ``"better"`` (a plain choice, the default),
        ``"much_better"``, ``"slightly_better"``, or a tie, ``"both_fine"`` or ``"neither"``
        (then ``chosen`` and ``rejected`` are just the first and second response shown).

        Creates the profile on first use. With ``rewards``, the coefficients' posterior is
        updated in the same transaction. Returns the updated profile.
        """
        self.limits.check("Personalizer.record_preference", [
            ("prompt", prompt), ("chosen", chosen), ("rejected", rejected), ("reason", reason)])
        if self._learner is not None:
            profile = self._learner.record_preference(user_id, prompt, chosen, rejected,
                                                      reason=reason, source=source,
                                                      judgement=judgement)
        else:
            pref = make_preference(prompt, chosen, rejected, reason=reason, source=source,
                                   judgement=judgement)
            profile = self.store.append_preferences(user_id, [pref])
        return self._refresh_summary(profile)

    # -- summaries -----------------------------------------------------------------------

    def update_summary(self, user_id: UserId) -> Profile:
        """Fold all of the user's new preferences into their summary (PLUS) with the
        summarizer and store it, as many model calls as that takes; a summary the person
        wrote is left as it is. Returns the profile."""
        return self._need_summarizer().update(self.store, user_id)

    def set_summary(self, user_id: UserId, text: str) -> Profile:
        """Store a summary the person wrote or edited (the summarizer never overwrites it);
        ``""`` removes it, so that the summarizer writes one again. Creates the profile."""
        if not isinstance(text, str):
            raise InvalidInput(f"a summary is text, not {type(text).__name__}")
        self.limits.check("Personalizer.set_summary", [("text", text)])
        text = text.strip()
        if len(text) > SUMMARY_MAX_CHARS:
            raise InvalidInput(f"Personalizer.set_summary: a summary is at most "
                               f"{SUMMARY_MAX_CHARS:,} characters, this one {len(text):,}")
        self.store.get_or_create(user_id)  # only once the text is known to be storable
        now = utcnow()
        return self.store.modify(user_id, lambda p: p.model_copy(
            update=summary_by_person(text, p.preference_count, now)))

    def _need_summarizer(self) -> Summarizer:
        if self.summarizer is None:
            if self.generator is None:
                raise InvalidInput(
                    "summaries need a model: Personalizer(db, generator=...) or "
                    "summarizer=Summarizer(generator)")
            self.summarizer = Summarizer(self.generator, self.rewards)
        return self.summarizer

    def _refresh_summary(self, profile: Profile) -> Profile:
        """With ``summary_every``, the summary rewritten once enough preferences arrived (or
        when it went stale): one model call at most (one batch of the summarizer), so a
        write call stays quick; a summary further behind (a long history, or one rewritten
        after a delete) catches up a batch per write, or at once with :meth:`update_summary`.
        The preference is already stored: a failure to summarize is logged (without user
        data) and retried at the next refresh, never raised."""
        every = self.summary_every
        if every is None or profile.summary_source == "user":
            return profile
        new = profile.preference_count - profile.summary_preferences
        if new >= every or profile.summary_stale:
            try:
                return self._need_summarizer().update(self.store, profile.user_id,
                                                      max_batches=1)
            except PersonalizerError as exc:
                log.warning("summary refresh failed (%s); it is retried on the next "
                            "preference", type(exc).__name__)
                log.debug("summary refresh failure: %s", exc)
        return profile

    def record_feedback(self, user_id: UserId, generation_id: str, *,
                        preferred_over: str | None = None, edited: str | None = None,
                        rating: Literal["up", "down"] | None = None,
                        reason: str | None = None) -> Profile:
        """Learn from what the person did with an answer (``generation_id``: a Generation's
        ``id``). Exactly one of:

        * ``preferred_over``: the id of another answer shown beside it, which they liked
          less (a preference row: this answer over that one);
        * ``edited``: their edit of the answer (a preference row: the edit over the answer);
        * ``rating``: ``"up"`` or ``"down"``, modelled as the answer against a typical answer
          (see :class:`~personalizer.profiles.Rating`): a run of thumbs-down on long answers
          moves the verbosity coefficient down.

        ``reason`` (why, in the person's words) is kept with a choice or an edit; a rating
        has no room for one, so ``reason=`` with ``rating=`` is refused rather than dropped.

        Returns the updated profile. The answers must still be kept (see the retention
        settings of the constructor)."""
        given = [x is not None for x in (preferred_over, edited, rating)]
        if sum(given) != 1:
            raise InvalidInput("pass exactly one of preferred_over= (another answer's id), "
                               "edited= (the person's edit) or rating= ('up' or 'down')")
        if rating is not None and reason is not None:
            raise InvalidInput("a rating keeps no reason: pass reason= with preferred_over= "
                               "or edited=, or record the reason as a preference")
        for name, value in (("generation_id", generation_id),
                            ("preferred_over", preferred_over)):
            if value is not None and not (isinstance(value, str)
                                          and _GENERATION_ID.fullmatch(value)):
                raise InvalidInput(f"Personalizer.record_feedback: {name} must be a "
                                   "Generation's id (32 hex digits, Generation.id), got "
                                   f"{reprlib.repr(value)}")
        self.limits.check("Personalizer.record_feedback", [("edited", edited),
                                                           ("reason", reason)])
        kept = self._kept(user_id, generation_id)
        if preferred_over is not None:
            other = self._kept(user_id, preferred_over)
            if other.prompt != kept.prompt:
                raise InvalidInput("the two answers answer different prompts; a choice "
                                   "compares two answers to the same message")
            return self._feedback_preference(user_id, kept.prompt, kept.answer, other.answer,
                                             reason, "choice")
        if edited is not None:
            if not isinstance(edited, str) or not edited.strip():
                raise InvalidInput("edited must be the edited answer's text")
            if edited == kept.answer:
                raise InvalidInput("the edit is the same as the answer: nothing to learn")
            return self._feedback_preference(user_id, kept.prompt, edited, kept.answer,
                                             reason, "edit")
        if self._learner is None:  # kept as history, learned from once a set is configured
            with self.store.transaction(user_id, create=False) as tx:
                tx.rate([Rating(prompt=kept.prompt, answer=kept.answer,
                                rating=rating)])  # type: ignore[arg-type]
            return tx.result
        return self._refresh_summary(self._learner.record_rating(
            user_id, kept.prompt, kept.answer, rating, create=False))  # type: ignore[arg-type]

    def _feedback_preference(self, user_id: str, prompt: str, chosen: str, rejected: str,
                             reason: str | None, source: str) -> Profile:
        """A preference from feedback: never creates a profile (a user deleted since the
        answer was read stays deleted)."""
        if self._learner is not None:
            profile = self._learner.record_preference(user_id, prompt, chosen, rejected,
                                                      reason=reason, source=source,
                                                      create=False)
        else:
            pref = make_preference(prompt, chosen, rejected, reason=reason, source=source)
            profile = self.store.append_preferences(user_id, [pref], create=False)
        return self._refresh_summary(profile)

    def _kept(self, user_id: str, generation_id: str) -> StoredGeneration:
        kept = self.store.generation(user_id, generation_id,
                                     max_age_s=self.keep_generations_days * 86400)
        if kept is None:
            raise InvalidInput(
                f"no kept answer {generation_id[:40]!r} for {user_id!r}: unknown, another "
                f"user's, or beyond the retention limits (the newest {self.keep_generations}, "
                f"at most {self.keep_generations_days:g} days old)")
        return kept

    def _keep(self, user_id: str, messages: list[Message], out: Generation, *,
              create: bool) -> Generation:
        """``out`` kept for feedback, with its id (unless keep_generations=0); ``create``: a
        newcomer's profile, created now that the answer is there (a request refused by the
        generator writes nothing)."""
        if create:
            self.store.get_or_create(user_id)
        if not self.keep_generations:
            return out
        try:
            kept = StoredGeneration(id=uuid.uuid4().hex, prompt=last_user_text(messages),
                                    answer=out.text)
        except ValidationError:  # a NUL in the model's answer: the answer, nothing kept
            log.warning("an answer could not be kept for feedback (its text cannot be "
                        "stored); it was returned, without an id")
            log.debug("the answer not kept was for user %r", user_id)
            return out
        try:
            self.store.save_generation(user_id, kept, keep=self.keep_generations,
                                       max_age_s=self.keep_generations_days * 86400)
        except ProfileNotFound:  # deleted while answering: the answer, nothing kept
            return out
        return out.model_copy(update={"id": kept.id})

    def _why(self, profile: Profile, messages: list[Message], text: str,
             record: SteeringRecord) -> tuple[RewardTerm, ...]:
        """Each base reward's part in the user's reward of ``text`` (empty without
        coefficients of this facade's reward set)."""
        rs = self.rewards
        if rs is None or not profile.coefficients or (profile.reward_set_id,
                                                      profile.reward_set_version) != (
                rs.id, rs.version):
            return ()
        coef = rs.coefficient_vector(profile.coefficients, reward_set_id=rs.id,
                                     reward_set_version=rs.version)
        feats = rs.features(last_user_text(messages), [text])[0]
        return tuple(RewardTerm(name=n, description=d, coefficient=float(c),
                                contribution=float(c * f))
                     for n, d, c, f in zip(rs.names, rs.descriptions, coef, feats,
                                           strict=True))

    def refit(self, user_id: UserId) -> Profile:
        """Learn the user's coefficients again from their whole history against this reward
        set (after changing reward sets; preferences stored before any set was configured
        are folded in by the next recorded preference on their own)."""
        return self._need_learner("refit").refit(user_id)

    def delete_preference(self, user_id: UserId, index: int) -> Profile:
        """Remove one preference (0 = oldest) and learn the coefficients again without it."""
        return self._need_learner("delete_preference").delete_preference(user_id, index)

    def preference_probability(self, user_id: UserId, prompt: str, a: str, b: str) -> float:
        """The calibrated chance that the user prefers answer ``a`` over ``b``."""
        self.limits.check("Personalizer.preference_probability",
                          [("prompt", prompt), ("a", a), ("b", b)])
        return self._need_learner("preference_probability").preference_probability(
            user_id, prompt, a, b)

    def onboarding(self, user_id: UserId, pool: Any = None, **options: Any) -> Onboarding:
        """Start or resume the user's onboarding (active-learning pairwise questions);
        ``options`` as :class:`~personalizer.profiles.Onboarding`'s (``domains=``,
        ``max_questions=``, ...; the prior is this Personalizer's ``prior``)."""
        self._need_learner("onboarding")
        if "prior" in options:
            raise InvalidInput("set the prior on Personalizer(prior=...): learning, onboarding "
                               "and refits must start from the same one")
        return Onboarding(self.store, self.rewards, user_id, pool, prior=self._prior,
                          **options)

    def generate(self, user_id: UserId, messages: MessagesLike, *,
                 strength: Strength | None = None, strategy: Any = None,
                 prompt_profile: bool | None = None, **options: Any) -> Generation:
        """Answer ``messages`` for ``user_id``, personalized by their profile.

        Two levers, each switchable per call: the profile in words (``prompt_profile``, on
        by default): a delimited block in the system prompt, or for a local generator with
        ``profile_placement="user"`` (the default) a short request in the user's turn; and
        reward-guided decoding toward their reward (local models; ``strength`` weighs it
        relative to the profile's scale, 0 switches it off; ``strategy``: by default
        :data:`LOCAL_STRATEGY` -- greedy sentence blocks that end once the user's reward
        prefers ending and the answer clears the quality floor, measured best on SmolLM2 in
        bench/quality.py; with ``do_sample=True`` each block is a sampled sentence --, or
        :class:`~personalizer.backends.Args`, :class:`~personalizer.backends.BestOfN`, or
        their names). Hosted models get the prompt block, and best-of-n reranking by the
        user's reward with ``strategy="best_of_n"`` (or ``BestOfN(n=...)``). A user never
        seen before is served at once: the answer is the generator's plain one, their profile
        is created once it is there (a request the generator refuses writes nothing), and the
        record says so (``new_user``; onboarding would personalize their answers).
        ``options`` go to the generator (``max_new_tokens``, ``stop``, sampling options,
        ``proxy``, ...); the generation's ``steering`` record says what ran.
        """
        plan = self._plan(user_id, messages, strength, strategy, prompt_profile)
        return plan.finish(self.generator.generate(plan.messages, **plan.extra, **options))

    async def agenerate(self, user_id: UserId, messages: MessagesLike, *,
                        strength: Strength | None = None, strategy: Any = None,
                        prompt_profile: bool | None = None, **options: Any) -> Generation:
        """:meth:`generate` without blocking the event loop (the profile is read in a worker
        thread; the generator's own ``agenerate`` runs, or its ``generate`` in a thread)."""
        plan = await asyncio.to_thread(self._plan, user_id, messages, strength, strategy,
                                       prompt_profile)
        agenerate = getattr(self.generator, "agenerate", None)
        if agenerate is not None:
            out = await agenerate(plan.messages, **plan.extra, **options)
        else:
            out = await asyncio.to_thread(self.generator.generate, plan.messages,
                                          **plan.extra, **options)
        return await asyncio.to_thread(plan.finish, out)

    def stream(self, user_id: UserId, messages: MessagesLike, *,
               strength: Strength | None = None, strategy: Any = None,
               prompt_profile: bool | None = None, **options: Any) -> PersonalizedStream:
        """:meth:`generate` piece by piece: the pieces join to the answer; after the last one
        ``.generation`` holds the Generation with its steering record (when the generator's
        stream reports one, as local and hosted generators do)."""
        plan = self._plan(user_id, messages, strength, strategy, prompt_profile)
        return PersonalizedStream(plan, self.generator.stream(plan.messages, **plan.extra,
                                                              **options))

    def astream(self, user_id: UserId, messages: MessagesLike, *,
                strength: Strength | None = None, strategy: Any = None,
                prompt_profile: bool | None = None,
                **options: Any) -> AsyncPersonalizedStream:
        """:meth:`stream` as an async iterable that never blocks the event loop (the profile
        is read in a worker thread when iteration starts)."""
        def begin() -> tuple[_Planned, Any]:  # in a worker thread: store reads, tokenizing
            plan = self._plan(user_id, messages, strength, strategy, prompt_profile)
            astream = getattr(self.generator, "astream", None)
            if astream is not None:
                return plan, astream(plan.messages, **plan.extra, **options)
            from ._async import ThreadedStream

            return plan, ThreadedStream(self.generator.stream(plan.messages, **plan.extra,
                                                              **options))

        async def start() -> tuple[_Planned, Any]:
            return await asyncio.to_thread(begin)

        return AsyncPersonalizedStream(start)

    def generate_batch(self, requests: Unchecked[Sequence[tuple[str, MessagesLike]]], *,
                       strength: Strength | None = None, strategy: Any = None,
                       prompt_profile: bool | None = None,
                       **options: Any) -> list[Generation]:
        """Answer many users at once: ``requests`` are ``(user_id, messages)`` pairs, decoded
        together in one batch, each row personalized for its own user as :meth:`generate`
        does (needs a generator with ``generate_batch``, such as a LocalGenerator)."""
        if self.generator is None:
            raise InvalidInput("generate_batch needs a generator: Personalizer(db, generator=...)")
        batch = getattr(self.generator, "generate_batch", None)
        if batch is None:
            raise BackendError(f"{type(self.generator).__name__} does not decode batches; "
                               "call generate() once per request")
        requests = check_pairs(requests, "(user_id, messages)")
        plans = [self._plan(user_id, messages, strength, strategy, prompt_profile)
                 for user_id, messages in requests]
        outs = batch([(plan.messages, plan.extra.get("steering")) for plan in plans],
                     **options)
        return [plan.finish(o) for o, plan in zip(outs, plans, strict=True)]

    def _plan(self, user_id: str, messages: MessagesLike, strength: float, strategy: Any,
              prompt_profile: bool | None) -> _Planned:
        """One request, before the generator runs: the messages (with the profile block when
        asked) and the user's Steering (None while their profile has no coefficients, or for
        a model without logits unless best-of-n is asked). The one implementation behind
        generate, agenerate, stream, astream and generate_batch."""
        if self.generator is None:
            raise InvalidInput("generate needs a generator: Personalizer(db, generator=...)")
        strength = self.strength if strength is None else strength
        strategy = self.strategy if strategy is None else strategy
        prompt_profile = self.prompt_profile if prompt_profile is None else prompt_profile
        msgs = as_messages(messages)
        self.limits.check("Personalizer.generate", [
            (f"messages[{i}].content", m.content) for i, m in enumerate(msgs)])
        try:  # a read: a newcomer's profile is created once the answer is there (finish)
            profile = self.store.get(validate_user_id(user_id))
        except ProfileNotFound:
            profile = Profile(user_id=user_id)  # version 0: not stored
        new_user = not profile.coefficients and profile.preference_count == 0 \
            and not profile.summary
        steerable = getattr(self.generator, "steers_decoding", False)
        use_block = prompt_profile if prompt_profile is not None else \
            (LOCAL_PROMPT_DEFAULT if steerable else True)
        # the profile in words: a delimited block in the system prompt, or, for generators
        # that follow the user's turn instead (small local models), a request they add there
        in_turn = steerable and getattr(self.generator, "profile_placement", "system") == "user"
        request = profile_request(profile, self.rewards,
                                  only=getattr(self.generator, "prompt_rewards", None)) \
            if use_block and in_turn else None
        block = profile_block(profile, self.rewards) if use_block and not in_turn else None
        msgs = condition(msgs, block)
        plain = _Planned(msgs, {}, block, new_user, profile, self)
        if steerable and not profile.coefficients:
            return plain
        if not steerable:  # a hosted model: the prompt, and best-of-n when asked
            rewards = getattr(self.generator, "rewards", None)
            judge = getattr(self.generator, "judge", None)
            rankable = (profile.coefficients and rewards is not None) or \
                (profile.summary and judge is not None)
            if strategy is None or ((rewards is not None or judge is not None)
                                    and not rankable):
                return plain  # nothing of this user's can rank candidates yet
        from personalizer.backends import Steering

        if steerable and getattr(self.generator, "rewards", None) is None:
            raise BackendError(
                f"{type(self.generator).__name__} cannot steer toward {user_id!r}'s reward: "
                "give a LocalGenerator the reward set of the profiles (rewards=...)")
        extra = {} if strategy is None else {"strategy": strategy}
        if steerable and strategy is None:
            extra["strategy"] = LOCAL_STRATEGY
        steering = Steering.from_profile(profile, strength=strength, instruction=request,
                                         **extra)
        return _Planned(msgs, {"steering": steering}, block, new_user, profile, self)

    def _need_learner(self, what: str) -> ProfileLearner:
        if self._learner is None:
            raise InvalidInput(
                f"{what} needs a reward set: Personalizer(db, rewards=...), for example "
                "rewards=personalizer.profiles.default_reward_set()")
        return self._learner

    def preferences(self, user_id: UserId) -> list[Preference]:
        """The user's preference history, oldest first."""
        return self.store.preferences(user_id)

    def export_profile(self, user_id: UserId) -> dict[str, Any]:
        """Everything stored about the user, as a JSON-ready dict (see ``profiles/export.py``);
        kept answers past the age limit are deleted first, never exported."""
        self.store.prune_generations(user_id=validate_user_id(user_id),
                                     max_age_s=self.keep_generations_days * 86400)
        return self.store.export_profile(user_id)

    def prune_generations(self) -> int:
        """Delete every user's kept answers older than ``keep_generations_days`` (answers are
        otherwise pruned when their user gets a new one; run this now and then for users who
        stopped asking). Returns how many were deleted."""
        return self.store.prune_generations(max_age_s=self.keep_generations_days * 86400)

    def import_profile(self, data: Mapping[str, Any] | str | bytes, *,
                       replace: bool = False) -> Profile:
        """Restore a profile from :meth:`export_profile` output (dict or JSON text). Each
        text in it is held to ``max_text_chars`` (a whole history has no total limit)."""
        doc = parse_export(data)
        self.limits.check("Personalizer.import_profile", [
            *((f"preferences[{i}].{k}", getattr(p, k)) for i, p in enumerate(doc.preferences)
              for k in ("prompt", "chosen", "rejected", "reason")),
            *((f"generations[{i}].{k}", getattr(g, k)) for i, g in enumerate(doc.generations)
              for k in ("prompt", "answer")),
            *((f"ratings[{i}].{k}", getattr(r, k)) for i, r in enumerate(doc.ratings)
              for k in ("prompt", "answer"))], one_request=False)
        return self.store.import_profile(data, replace=replace)

    def delete_profile(self, user_id: UserId) -> int:
        """Delete every stored row of the user; returns how many rows were removed."""
        return self.store.delete(user_id)
