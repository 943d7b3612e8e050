"""The ``Personalizer`` facade: what an application embeds.

The facade holds the parts (the store, the reward set, the generator, the learner) and says
what each call does; answering lives in :mod:`.answering` (plan and finish, over the
generator's protocol), feedback and retention in :mod:`.feedback`, summaries in
:mod:`.summarizing`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from personalizer.profiles import (
    Onboarding,
    Profile,
    ProfileLearner,
    ProfileStore,
    open_store,
)
from personalizer.profiles.learning.app_features import LearnedFeatures, learn_features
from personalizer.profiles.learning.learner import make_preference
from personalizer.profiles.models import Judgement, UserId
from personalizer.profiles.summaries import Summarizer

from ._boundary import Unchecked, public_api
from ._input import MAX_REQUEST_CHARS, MAX_TEXT_CHARS, Limits
from .answering import Answering, as_generator, one_reward_set
from .errors import BackendError, InvalidInput
from .feedback import Feedback, Retention
from .profile_data import ProfileData
from .seams import RewardSet, SimpleGenerator, SteerableGenerator
from .steering import STRATEGIES, Strategy
from .streams import AsyncStream, Stream
from .summarizing import Summaries
from .types import Generation, MessagesLike, check_pairs

__all__ = ["DEFAULT_STRENGTH", "Personalizer"]

# The default steering strength, relative to the profile's scale (see Steering.relative).
DEFAULT_STRENGTH = 1.0
# A steering strength, as the constructor's default or one call's: Steering's own bounds.
Strength = Annotated[float, Field(ge=0, le=1000)]
# A strategy as callers give it: a model, its kind's name or a dict (STRATEGIES parses it).
StrategyLike = Unchecked[Strategy | str | Mapping[str, Any] | None]

def __getattr__(name: str) -> Any:
    from ._deprecated import client_name

    return client_name(name)


@public_api
class Personalizer(ProfileData):
    """Per-user personalization for an LLM application.

    ``db`` is a path to the embedded SQLite store (default ``$PERSONALIZER_DB`` or
    ``profiles.db``), a ``postgresql://user:password@host/dbname`` URL for a PostgreSQL server
    (extra ``postgres``), or any :class:`~personalizer.profiles.ProfileStore` you built yourself.
    ``rewards`` is the :class:`~personalizer.backends.rewards.RewardSet` that profiles'
    coefficients are learned over (for example
    :func:`personalizer.profiles.default_reward_set`); without it preferences are only stored.
    Give it once: a generator without a reward set steers with this one (each request hands
    it over), and a generator's own set is used when ``rewards`` is not given.
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
                 rewards: Unchecked[RewardSet | None] = None,
                 generator: Unchecked[SimpleGenerator | None] = None,
                 summarizer: Summarizer | None = None, summary_every: int | None = None,
                 create: bool = True, keep_generations: int = 100,
                 keep_generations_days: float = 30.0,
                 strength: Strength = DEFAULT_STRENGTH,
                 strategy: StrategyLike = None, prompt_profile: bool | None = None,
                 prior: Literal["shipped", "standard"] = "shipped",
                 max_text_chars: int = MAX_TEXT_CHARS,
                 max_request_chars: int = MAX_REQUEST_CHARS) -> None:
        if not (db is None or isinstance(db, (str, os.PathLike, ProfileStore))):
            raise InvalidInput(
                f"db must be a path or a ProfileStore, not {type(db).__name__}"
            )
        self.limits = Limits(max_text_chars, max_request_chars)
        Summaries.check(summary_every, generator, summarizer)
        Retention.check(keep_generations, keep_generations_days)
        self.keep_generations, self.keep_generations_days = keep_generations, \
            float(keep_generations_days)
        if rewards is not None and not isinstance(rewards, RewardSet):
            raise InvalidInput(f"rewards must be a RewardSet (or None), not "
                               f"{type(rewards).__name__}: for example "
                               "rewards=personalizer.profiles.default_reward_set()")
        parsed = STRATEGIES.parse(strategy)  # refused here, not at the first generate
        self.strength, self.strategy, self.prompt_profile = strength, strategy, prompt_profile
        answerer = as_generator(generator) if generator is not None else None
        self.rewards = rewards = one_reward_set(rewards, answerer)
        self._generator = generator  # the caller's object, as given
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
        self._summaries = Summaries(self.store, rewards, generator, summarizer, summary_every,
                                    self.limits)
        retention = Retention(self.store, keep_generations, float(keep_generations_days))
        self._feedback = Feedback(self.store, self._learner, retention, self.limits,
                                  self._summaries.refresh)
        self._answering = Answering(self.store, rewards, answerer, retention, self.limits,
                                    strength, parsed, prompt_profile)

    @property
    def generator(self) -> SimpleGenerator | None:
        """The generator answers come from: the object given, as it was given."""
        return self._generator

    @generator.setter
    def generator(self, generator: SimpleGenerator | None) -> None:
        answerer = as_generator(generator) if generator is not None else None
        one_reward_set(self.rewards, answerer)  # the same reward set, or refused
        self._generator = generator
        self._answering.generator = answerer
        self._summaries.generator = generator

    @property
    def summarizer(self) -> Summarizer | None:
        """What writes profile summaries (built on the generator when first needed)."""
        return self._summaries.summarizer

    @property
    def summary_every(self) -> int | None:
        return self._summaries.every

    @classmethod
    def from_settings(cls, toml_file: str | os.PathLike[str] | None = None,
                      **overrides: Any) -> Personalizer:
        """A Personalizer configured without code: the database, the generator and its
        model, and the steering defaults from ``PERSONALIZER_*`` environment variables and a
        TOML file (``toml_file`` or ``$PERSONALIZER_CONFIG``); ``overrides`` win over both.
        See :class:`~personalizer.settings.PersonalizerSettings`."""
        from .settings import PersonalizerSettings

        return cls(**PersonalizerSettings.load(toml_file, **overrides).arguments())

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store and hasattr(self.store, "close"):
            self.store.close()

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- learning ------------------------------------------------------------------------

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
        return self._summaries.refresh(profile)

    # -- summaries -----------------------------------------------------------------------

    def update_summary(self, user_id: UserId) -> Profile:
        """Fold all of the user's new preferences into their summary (PLUS) with the
        summarizer and store it, as many model calls as that takes; a summary the person
        wrote is left as it is. Returns the profile."""
        return self._summaries.update(user_id)

    def set_summary(self, user_id: UserId, text: str) -> Profile:
        """Store a summary the person wrote or edited (the summarizer never overwrites it);
        ``""`` removes it, so that the summarizer writes one again. Creates the profile."""
        return self._summaries.set(user_id, text)

    # -- feedback ------------------------------------------------------------------------

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
        return self._feedback.record(user_id, generation_id, preferred_over=preferred_over,
                                     edited=edited, rating=rating, reason=reason)

    # -- learning ------------------------------------------------------------------------

    def refit(self, user_id: UserId) -> Profile:
        """Learn the user's coefficients again from their whole history against this reward
        set (after changing reward sets; preferences stored before any set was configured
        are folded in by the next recorded preference on their own)."""
        return self._need_learner("refit").refit(user_id)

    def delete_preference(self, user_id: UserId, index: int) -> Profile:
        """Remove one preference (0 = oldest) and learn the coefficients again without it."""
        return self._need_learner("delete_preference").delete_preference(user_id, index)

    def learn_features(self, out: str | os.PathLike[str], *, n_features: int = 1,
                       min_users: int = 50, encoder: Any = None) -> LearnedFeatures:
        """Learn ``n_features`` extra features from every stored person's choices, next to
        this reward set, and write them to ``out``; returns what it measured. Serve them
        with ``rewards=personalizer.profiles.extended_reward_set(out)`` (or the ``features``
        setting): profiles migrate on their next answer. See
        :mod:`~personalizer.profiles.learning.app_features`."""
        self._need_learner("learn_features")
        return learn_features(self.store, self.rewards, out, n_features=n_features,
                              min_users=min_users, encoder=encoder)

    def preference_probability(self, user_id: UserId, prompt: str, a: str, b: str) -> float:
        """The calibrated chance that the user prefers answer ``a`` over ``b``."""
        self.limits.check("Personalizer.preference_probability",
                          [("prompt", prompt), ("a", a), ("b", b)])
        return self._need_learner("preference_probability").preference_probability(
            user_id, prompt, a, b)

    def onboarding(self, user_id: UserId, pool: Any = None, **options: Any) -> Onboarding:
        """Start or resume the user's onboarding (active-learning pairwise questions);
        ``options`` as :class:`~personalizer.profiles.Onboarding`'s (``domains=``,
        ``max_questions=``, ...; the prior is this Personalizer's ``prior``). Answers refresh
        the summary like other preferences (``summary_every``), so a reason given with an
        answer reaches it."""
        self._need_learner("onboarding")
        for name, where in (("prior", ("Personalizer(prior=...): learning, onboarding and "
                                       "refits must start from the same one")),
                            ("after_answer", ("Personalizer(summary_every=...): answers "
                                              "refresh the summary like other preferences"))):
            if name in options:
                raise InvalidInput(f"onboarding takes no {name}=; set it on {where}")
        return Onboarding(self.store, self.rewards, user_id, pool, prior=self._prior,
                          after_answer=self._summaries.refresh, **options)

    def generate(self, user_id: UserId, messages: MessagesLike, *,
                 strength: Strength | None = None, strategy: StrategyLike = None,
                 prompt_profile: bool | None = None, **options: Any) -> Generation:
        """Answer ``messages`` for ``user_id``, personalized by their profile.

        Two levers, each switchable per call: the profile in words (``prompt_profile``, on
        by default): a delimited block in the system prompt, or for a local generator with
        ``profile_placement="user"`` (the default) a short request in the user's turn; and
        reward-guided decoding toward their reward (local models; ``strength`` weighs it
        relative to the profile's scale, 0 switches it off; ``strategy``: by default the
        generator's own (a LocalGenerator's
        :data:`~personalizer.backends.local.generator.DEFAULT_STRATEGY`: greedy sentence
        blocks that end once the user's reward prefers ending and the answer clears the
        quality floor, measured best on SmolLM2 in bench/quality.py; with ``do_sample=True``
        each block is a sampled sentence), or
        :class:`~personalizer.backends.Args`, :class:`~personalizer.backends.BestOfN`, or
        their names). Hosted models get the prompt block, and best-of-n reranking by the
        user's reward with ``strategy="best_of_n"`` (or ``BestOfN(n=...)``). A user never
        seen before is served at once: the answer is the generator's plain one, their profile
        is created once it is there (a request the generator refuses writes nothing), and the
        record says so (``new_user``; onboarding would personalize their answers).
        ``options`` go to the generator (``max_new_tokens``, ``stop``, sampling options,
        ``proxy``, ...); the generation's ``steering`` record says what ran.
        """
        return self._answering.generate(user_id, messages, strength, strategy,
                                        prompt_profile, options)

    async def agenerate(self, user_id: UserId, messages: MessagesLike, *,
                        strength: Strength | None = None, strategy: StrategyLike = None,
                        prompt_profile: bool | None = None, **options: Any) -> Generation:
        """:meth:`generate` without blocking the event loop (the profile is read in a worker
        thread; the generator's own ``agenerate`` runs, or its ``generate`` in a thread)."""
        return await self._answering.agenerate(user_id, messages, strength, strategy,
                                               prompt_profile, options)

    def stream(self, user_id: UserId, messages: MessagesLike, *,
               strength: Strength | None = None, strategy: StrategyLike = None,
               prompt_profile: bool | None = None, **options: Any) -> Stream:
        """:meth:`generate` piece by piece: the pieces join to the answer; after the last one
        ``.generation`` holds the Generation with its steering record (when the generator's
        stream reports one, as local and hosted generators do)."""
        return self._answering.stream(user_id, messages, strength, strategy,
                                      prompt_profile, options)

    def astream(self, user_id: UserId, messages: MessagesLike, *,
                strength: Strength | None = None, strategy: StrategyLike = None,
                prompt_profile: bool | None = None,
                **options: Any) -> AsyncStream:
        """:meth:`stream` as an async iterable that never blocks the event loop (the profile
        is read in a worker thread when iteration starts)."""
        return self._answering.astream(user_id, messages, strength, strategy,
                                       prompt_profile, options)

    def generate_batch(self, requests: Unchecked[Sequence[tuple[str, MessagesLike]]], *,
                       strength: Strength | None = None, strategy: StrategyLike = None,
                       prompt_profile: bool | None = None,
                       **options: Any) -> list[Generation]:
        """Answer many users at once: ``requests`` are ``(user_id, messages)`` pairs, decoded
        together in one batch, each row personalized for its own user as :meth:`generate`
        does (needs a generator with ``generate_batch``, such as a LocalGenerator)."""
        generator = self._answering.need_generator("generate_batch")
        if not isinstance(generator, SteerableGenerator):
            raise BackendError(f"{type(self.generator).__name__} does not decode batches; "
                               "call generate() once per request")
        requests = check_pairs(requests, "(user_id, messages)")
        return self._answering.generate_batch(requests, strength, strategy, prompt_profile,
                                              options, generator.generate_batch)

    def _need_learner(self, what: str) -> ProfileLearner:
        if self._learner is None:
            raise InvalidInput(
                f"{what} needs a reward set: Personalizer(db, rewards=...), for example "
                "rewards=personalizer.profiles.default_reward_set()")
        return self._learner
