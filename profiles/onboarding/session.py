"""Onboarding: 3-10 pairwise questions chosen by active learning, resumable from the store.

>>> ob = Onboarding(store, reward_set, "alice")       # doctest: +SKIP
>>> while not ob.done:                                # doctest: +SKIP
...     q = ob.next_question()                        # q.prompt, q.options = (a, b)
...     print(f"Question {q.number} of {ob.max_questions}")
...     ob.answer(q.id, 0)                            # the user preferred options[0]
...     # or ob.answer(q.id, 1, strength="much"), ob.answer(q.id, "both_fine")
>>> ob.profile.coefficients                           # doctest: +SKIP

Each question is the pair, among the pool's unasked pairs, whose answer carries the most
expected information about the user's coefficients
(:func:`~personalizer.profiles.learning.questions.information_gain`).
A prompt is asked once per session: pairs of a prompt already asked wait until every prompt
of the pool has been asked.

The session stops when the profile is sure about what matters, not when it has confirmed its
strongest guess: after ``min_questions`` answers, once the pool's answers are predicted
within ``stop_undecided`` of what knowing the person exactly would give
(:func:`~personalizer.profiles.learning.questions.undecided`, the mean over every pair of the
pool: a pair the person may or may not care about keeps it up until it is settled, a pair
no plausible taste decides costs nothing). A second taste keeps its pairs undecided until
questions about it are answered. A person who answers at random is not asked longer for it:
more of their answers would not predict them better. It also stops after
``max_questions`` answers, when the pool runs out, or once no remaining question is worth
``stop_gain`` bits (from 0 to 1: an answer is one of two, at most one bit).

``stop_checks`` (off by default) brings back *check* questions: after ``min_questions``, the
most informative pair whose answer the profile already predicts with ``check_confidence``,
stopping once ``stop_checks`` of them in a row were predicted. Checks confirm the strongest
attribute and so stop a person with two tastes before the second is asked about
(``bench/onboarding_people.py --hard`` measures both).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from personalizer._boundary import public_api
from personalizer.errors import InvalidInput, ProfileNotFound

from ..base import ProfileStore
from ..learning.app_features import migratable
from ..learning.learner import ProfileLearner, make_preference
from ..learning.posterior import (
    Posterior,
    fit_posterior,
    judgement_bounds,
    preference_probability,
)
from ..learning.questions import information_gain, select_question, undecided
from ..models import OnboardingState, Profile, validate_user_id
from .bank import PoolItem, Question, pool_features, pool_items

__all__ = ["Answer", "Onboarding"]


@public_api
class Onboarding:
    """A resumable onboarding session for one user (state kept in the profile store)."""

    def __init__(self, store: ProfileStore, reward_set: Any, user_id: str,
                 pool: Sequence[PoolItem | dict[str, Any]] | None = None, *,
                 max_questions: int = 10, min_questions: int | None = None,
                 stop_gain: Annotated[float, Field(ge=0, le=1)] = 0.02,
                 stop_undecided: Annotated[float, Field(ge=0, le=0.5)] = 0.10,
                 stop_checks: int = 0,
                 check_confidence: float = 0.8, restart: bool = False,
                 domains: Sequence[str] | None = None,
                 prior: Literal["shipped", "standard"] = "shipped",
                 after_answer: Callable[[Profile], Profile] | None = None) -> None:
        validate_user_id(user_id)
        if min_questions is None:
            min_questions = min(3, max_questions)
        if not 1 <= min_questions <= max_questions:
            raise InvalidInput("need 1 <= min_questions <= max_questions")
        if not 0.5 < check_confidence < 1.0:
            raise InvalidInput("check_confidence must be between 0.5 and 1")
        if stop_checks < 0:
            raise InvalidInput("stop_checks must be >= 0 (0: never stop on checks)")
        self.store, self.rewards, self.user_id = store, reward_set, user_id
        self.learner = ProfileLearner(store, reward_set, prior=prior)
        self.min_questions, self.stop_gain = min_questions, stop_gain
        self.stop_undecided, self._after_answer = stop_undecided, after_answer
        self.stop_checks, self.check_confidence = stop_checks, check_confidence
        items = pool_items(pool, domains)
        self.pool_id = hashlib.sha256(json.dumps(
            [i.model_dump() for i in items]).encode()).hexdigest()[:16]
        self._questions: list[Question] = []
        diffs = []
        features = pool_features(reward_set, self.pool_id, items)
        for item, feats in zip(items, features, strict=True):
            for a in range(len(item.responses)):
                for b in range(a + 1, len(item.responses)):
                    qid = hashlib.sha256(json.dumps(
                        [item.prompt, item.responses[a], item.responses[b]]).encode()
                    ).hexdigest()[:12]
                    self._questions.append(Question(
                        id=qid, prompt=item.prompt,
                        options=(item.responses[a], item.responses[b])))
                    diffs.append(feats[a] - feats[b])
        self._diffs = np.array(diffs)
        self._index = {q.id: i for i, q in enumerate(self._questions)}
        prompts = {text: k for k, text in enumerate(dict.fromkeys(i.prompt for i in items))}
        self._prompt = np.array([prompts[q.prompt] for q in self._questions], dtype=int)
        self._fresh = OnboardingState(
            reward_set_id=reward_set.id, reward_set_version=reward_set.version,
            pool_id=self.pool_id, max_questions=max_questions)
        self._restart = restart  # start over at the first answer (reading writes nothing)
        stored = store.onboarding_state(user_id)
        if stored is not None and not self._compatible(stored) and not restart:
            raise InvalidInput(
                f"{user_id!r} has an onboarding started with another question pool "
                "or reward set; pass restart=True to start over (answers are kept)")

    def _compatible(self, stored: OnboardingState) -> bool:
        """Whether a stored state can go on here: the same reward set, and this pool or one
        that still holds every question asked (and the one shown)."""
        same = (stored.reward_set_id, stored.reward_set_version) == (
            self.rewards.id, self.rewards.version) or migratable(
            self.rewards, stored.reward_set_id, stored.reward_set_version)
        return same and (
            stored.pool_id == self.pool_id
            or all(q in self._index for q in [*stored.asked, *filter(None, [stored.pending])]))

    def _usable(self, state: OnboardingState) -> OnboardingState:
        """``state``, or InvalidInput if another session (another pool) changed it since."""
        if state is not self._fresh and not self._compatible(state):
            raise InvalidInput(
                f"{self.user_id!r}'s onboarding was changed meanwhile by a session with "
                "another question pool or reward set; create the Onboarding again, or pass "
                "restart=True to start over (answers are kept)")
        return state

    # -- state (reading never writes: no profile is created, no lock is taken) -------------

    def _current(self, stored: OnboardingState | None) -> OnboardingState:
        """The session's state: the stored one, or a fresh one until the first write."""
        return self._fresh if stored is None or self._restart else stored

    @property
    def state(self) -> OnboardingState:
        return self._current(self.store.onboarding_state(self.user_id))

    @property
    def profile(self) -> Profile:
        try:
            return self.store.get(self.user_id)
        except ProfileNotFound:
            return Profile(user_id=self.user_id)  # not created until the first answer

    @property
    def done(self) -> bool:
        return self.state.finished

    @property
    def remaining(self) -> int:
        return len(self._questions) - len(self.state.asked)

    @property
    def max_questions(self) -> int:
        """The most questions this session asks, answered ones included: its
        ``max_questions``, or fewer when the pool holds fewer (it may stop earlier, see the
        module doc). For a "Question 3 of 10" beside :attr:`Question.number`."""
        state = self.state
        return min(state.max_questions,
                   len(state.asked) + len(self._questions) - len(self._asked(state)))

    def _asked(self, state: OnboardingState) -> set[int]:
        return {self._index[q] for q in state.asked if q in self._index}

    def _not_now(self, asked: set[int]) -> set[int]:
        """The pairs not to ask next: those ``asked`` and, while some prompt of the pool has
        not been asked, every pair of a prompt already asked (a person who met "Why is the
        sky blue?" once is not asked it again with two other answers)."""
        seen = np.isin(self._prompt, self._prompt[list(asked)]) if asked else None
        if seen is None or seen.all():
            return asked
        return asked | {int(i) for i in np.flatnonzero(seen)}

    def _finished(self, state: OnboardingState, profile: Profile) -> bool:
        asked = self._asked(state)
        if len(state.asked) >= state.max_questions or len(asked) >= len(self._questions):
            return True
        if len(state.asked) < self.min_questions:
            return False
        if self.stop_checks and state.confirmed >= self.stop_checks:
            return True  # the profile predicted this person's latest answers: they are clear
        post = self.learner.posterior(profile)
        if float(undecided(post, self._diffs).mean()) < self.stop_undecided:
            return True  # the bank's answers are predicted about as well as they can be
        gains = information_gain(post, self._diffs)
        gains[list(self._not_now(asked))] = 0.0
        return float(gains.max()) < self.stop_gain

    # -- the loop ------------------------------------------------------------------------

    def next_question(self) -> Question:
        """The question to show now (the same one until it is answered), numbered: its
        ``number`` is one more than the answers given."""
        state = self._usable(self.state)
        if state.finished:
            raise InvalidInput(f"onboarding of {self.user_id!r} is finished "
                               f"({len(state.asked)} answers); check .done before asking")
        number = len(state.asked) + 1
        if state.pending is not None:
            return self._questions[self._index[state.pending]].model_copy(
                update={"number": number})
        post = self.learner.posterior(self.profile)
        not_now = self._not_now(self._asked(state))
        checking = self.stop_checks > 0 and len(state.asked) >= self.min_questions
        i = (self._check_question(post, not_now) if checking else None)
        if i is None:
            i = select_question(post, self._diffs, asked=not_now)
        question = self._questions[i].model_copy(update={"number": number})
        with self.store.transaction(self.user_id) as tx:
            tx.set_onboarding(self._usable(self._current(tx.onboarding)).model_copy(
                update={"pending": question.id, "pool_id": self.pool_id}))
        self._restart = False
        return question

    def _check_question(self, post: Posterior, not_now: set[int]) -> int | None:
        """A check: the most informative pair (not in ``not_now``) whose answer the profile
        predicts with ``check_confidence`` (None if there is none). A clear person confirms
        it; one whose answers disagree does not, and the answer corrects the profile."""
        p = preference_probability(post, self._diffs)
        gains = information_gain(post, self._diffs)
        ok = np.maximum(p, 1.0 - p) >= self.check_confidence
        ok[list(not_now)] = False
        if not ok.any():
            return None
        return int(np.argmax(np.where(ok, gains, -np.inf)))

    def run(self, answer: Callable[[Question], Answer | tuple[Any, Any, str | None]]
            ) -> Profile:
        """Ask until the session is done: ``answer(question)`` says what the person thinks —
        0 or 1 (the option they prefer), ``(0 or 1, "much" or "slightly")`` with a strength,
        or ``"both_fine"`` / ``"neither"``, or ``(any of those, strength or None, reason)``
        with their words — from a person at a prompt, a UI callback, or a simulated person
        (:meth:`SimulatedUser.chooser`). Each answer is stored as it comes, so a session that
        stops (an exception, a closed window) resumes where it stopped. Returns the
        profile."""
        while not self.done:
            question = self.next_question()
            reply = answer(question)
            choice, strength, reason = (
                reply if isinstance(reply, tuple) and len(reply) == 3
                else (*reply, None) if isinstance(reply, tuple) and len(reply) == 2
                else (reply, None, None))
            self.answer(question.id, choice, strength=strength, reason=reason)
        return self.profile

    def answer(self, question_id: str, choice: int | Literal["both_fine", "neither"], *,
               strength: Literal["much", "slightly"] | None = None,
               reason: str | None = None) -> Profile:
        """Record the user's answer to a question: ``choice`` 0 or 1 is the option they
        prefer (``strength="much"`` or ``"slightly"`` if they said how much), ``"both_fine"``
        or ``"neither"`` that neither is better. Graded answers carry more than a bit: the
        likelihood reads each as an interval of the utility difference
        (:func:`~personalizer.profiles.learning.posterior.judgement_bounds`); a plain 0 or 1
        is the binary Bradley-Terry answer. ``reason`` is the person's own words ("neither:
        both are too formal for me"): stored with the answer, it reaches their summary where a
        summarizer writes one (the coefficients cannot hold a taste the rewards have no word
        for; the summary can)."""
        judgement = _judgement(choice, strength)
        if question_id not in self._index:
            raise InvalidInput(f"unknown question id {question_id!r} for this pool")
        i = self._index[question_id]
        q = self._questions[i]
        first = 1 if choice == 1 else 0  # ties keep the order shown
        chosen, rejected = q.options[first], q.options[1 - first]
        d = self._diffs[i] if first == 0 else -self._diffs[i]
        pref = make_preference(q.prompt, chosen, rejected, source="onboarding",
                               judgement=judgement, reason=reason)
        prior = self.learner.prior_for(self.user_id)
        refit = self.learner.unlearned_history(self.user_id)  # earlier history: use it too
        with self.store.transaction(self.user_id) as tx:
            state = self._usable(self._current(tx.onboarding))
            if state.finished:
                raise InvalidInput(f"onboarding of {self.user_id!r} is finished "
                                   f"({len(state.asked)} answers)")
            if question_id in state.asked:
                raise InvalidInput(f"question {question_id!r} was already answered")
            post = self.learner.posterior(tx.profile, prior=prior)
            bounds = judgement_bounds([judgement])
            new_post = fit_posterior(post, d[None, :], bounds=bounds)
            predicted = _predicted(post, d, judgement, self.check_confidence)
            tx.append([pref])
            if not refit:  # else the refit below learns from everything (until it has run,
                tx.update(**self.learner.fields(new_post))  # the history stays unlearned)
            new_state = state.model_copy(update={
                "asked": [*state.asked, question_id], "pending": None, "pool_id": self.pool_id,
                # only check questions (asked after min_questions) count as confirmations
                "confirmed": state.confirmed + 1
                if predicted and len(state.asked) >= self.min_questions else 0})
            provisional = tx.profile.model_copy(update=self.learner.fields(new_post))
            tx.set_onboarding(new_state.model_copy(
                update={"finished": self._finished(new_state, provisional)}))
        self._restart = False
        profile = self.learner.refit(self.user_id) if refit else tx.result
        return self._after_answer(profile) if self._after_answer else profile


def _predicted(post: Posterior, d: np.ndarray, judgement: str, confidence: float) -> bool:
    """Whether the profile before an answer predicted it: the option chosen had at least
    ``confidence`` chance (a tie is never a confirmation)."""
    if judgement in ("both_fine", "neither"):
        return False
    return float(preference_probability(post, d[None, :])[0]) >= confidence


# What a person can answer: 0 or 1, with a strength, or a tie.
Answer = int | tuple[int, Literal["much", "slightly"]] | Literal["both_fine", "neither"]
_STRENGTHS = {None: "better", "much": "much_better", "slightly": "slightly_better"}


def _judgement(choice: object, strength: object) -> str:
    """The stored judgement of an onboarding answer (InvalidInput for anything else)."""
    if choice in ("both_fine", "neither"):
        if strength is not None:
            raise InvalidInput(f"a {choice!r} answer takes no strength; strength is for "
                               "choice 0 or 1")
        return str(choice)
    if isinstance(choice, bool) or choice not in (0, 1):
        raise InvalidInput(f"choice must be 0 (first option), 1 (second), 'both_fine' or "
                           f"'neither', not {choice!r:.40}")
    if strength not in _STRENGTHS:
        raise InvalidInput(f"strength must be 'much', 'slightly' or None, not "
                           f"{strength!r:.40}")
    return _STRENGTHS[strength]  # type: ignore[index]
