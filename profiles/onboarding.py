"""Onboarding: ~10 pairwise questions chosen by active learning, resumable from SQLite.

>>> ob = Onboarding(store, reward_set, "alice")       # doctest: +SKIP
>>> while not ob.done:                                # doctest: +SKIP
...     q = ob.next_question()                        # q.prompt, q.options = (a, b)
...     ob.answer(q.id, 0)                            # the user preferred options[0]
>>> ob.profile.coefficients                           # doctest: +SKIP

Each question is the pair, among the pool's unasked pairs, whose answer carries the most
expected information about the user's coefficients (:func:`.learning.information_gain`).
The session stops after ``max_questions`` answers, when the pool runs out, or once at least
``min_questions`` are answered and no remaining question is worth ``stop_gain`` bits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personalizer._boundary import public_api
from personalizer.errors import InvalidInput, ProfileNotFound

from .base import ProfileStore
from .learner import ProfileLearner, make_preference
from .learning import fit_posterior, information_gain, select_question
from .models import OnboardingState, Profile, validate_user_id

__all__ = [
    "ANSWER_STYLES",
    "Onboarding",
    "PoolItem",
    "Question",
    "default_reward_set",
    "generate_pool",
    "question_bank",
]

# Style instructions that make a generator's answers differ along the base attributes.
ANSWER_STYLES: tuple[tuple[str, str | None], ...] = (
    ("plain", None),
    ("one sentence", "Answer in one short sentence."),
    ("list", "Answer with a short bulleted list of three items and no introduction."),
    ("detailed", "Answer warmly and in detail, and include a concrete example."),
)


class PoolItem(BaseModel):
    """A prompt with 2-8 alternative responses; every pair of them is a candidate question."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    responses: list[str] = Field(min_length=2, max_length=8)

    @field_validator("responses")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("responses of one prompt must all differ (an identical pair "
                             "carries no information)")
        return value


class Question(BaseModel):
    """One pairwise question: which of ``options`` does the user prefer for ``prompt``?"""

    model_config = ConfigDict(frozen=True)

    id: str
    prompt: str
    options: tuple[str, str]


@lru_cache(maxsize=1)
def question_bank() -> tuple[PoolItem, ...]:
    """The default question bank shipped with the package (8 prompts x 4 styles: 48 pairs)."""
    text = resources.files("personalizer.profiles").joinpath("data/question_bank.json")
    data = json.loads(text.read_text(encoding="utf-8"))
    return tuple(PoolItem.model_validate(q) for q in data["questions"])


@lru_cache(maxsize=1)
def default_reward_set() -> Any:
    """The attribute scorers, normalised on the question bank's responses (frozen)."""
    from personalizer.backends.rewards import attribute_reward_set

    return attribute_reward_set().fit_normalization(
        (item.prompt, r) for item in question_bank() for r in item.responses)


def generate_pool(generator: Any, prompts: Sequence[str], *,
                  styles: Sequence[tuple[str, str | None]] = ANSWER_STYLES,
                  max_new_tokens: int = 96) -> list[PoolItem]:
    """A question pool written by ``generator``: one answer per style instruction for each
    prompt (prompts whose answers come out identical are dropped)."""
    items = []
    for prompt in prompts:
        answers: list[str] = []
        for _, instruction in styles:
            messages = ([{"role": "system", "content": instruction}] if instruction else [])
            messages.append({"role": "user", "content": prompt})
            text = generator.generate(messages, max_new_tokens=max_new_tokens).text.strip()
            if text and text not in answers:
                answers.append(text)
        if len(answers) >= 2:
            items.append(PoolItem(prompt=prompt, responses=answers))
    if not items:
        raise InvalidInput("the generator produced no prompt with two different answers")
    return items


def _pool_items(pool: Sequence[PoolItem | dict[str, Any]] | None) -> list[PoolItem]:
    if pool is None:
        return list(question_bank())
    try:
        items = [p if isinstance(p, PoolItem) else PoolItem.model_validate(p) for p in pool]
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(f"invalid question pool: {'.'.join(map(str, err['loc']))}: "
                           f"{err['msg']}") from None
    if not items:
        raise InvalidInput("the question pool is empty")
    return items


@public_api
class Onboarding:
    """A resumable onboarding session for one user (state kept in the profile store)."""

    def __init__(self, store: ProfileStore, reward_set: Any, user_id: str,
                 pool: Sequence[PoolItem | dict[str, Any]] | None = None, *,
                 max_questions: int = 10, min_questions: int | None = None,
                 stop_gain: float = 0.02, restart: bool = False) -> None:
        validate_user_id(user_id)
        if min_questions is None:
            min_questions = min(4, max_questions)
        if not 1 <= min_questions <= max_questions:
            raise InvalidInput("need 1 <= min_questions <= max_questions")
        self.store, self.rewards, self.user_id = store, reward_set, user_id
        self.learner = ProfileLearner(store, reward_set)
        self.min_questions, self.stop_gain = min_questions, stop_gain
        items = _pool_items(pool)
        self.pool_id = hashlib.sha256(json.dumps(
            [i.model_dump() for i in items]).encode()).hexdigest()[:16]
        self._questions: list[Question] = []
        diffs = []
        for item in items:
            feats = reward_set.features(item.prompt, item.responses)
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
        self._fresh = OnboardingState(
            reward_set_id=reward_set.id, reward_set_version=reward_set.version,
            pool_id=self.pool_id, max_questions=max_questions)
        self._restart = restart  # start over at the first answer (reading writes nothing)
        stored = store.onboarding_state(user_id)
        same = stored is not None and (stored.pool_id, stored.reward_set_id,
                                       stored.reward_set_version) == (
            self.pool_id, reward_set.id, reward_set.version)
        if stored is not None and not same and not restart:
            raise InvalidInput(
                f"{user_id!r} has an onboarding started with another question pool "
                "or reward set; pass restart=True to start over (answers are kept)")

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

    def _asked(self, state: OnboardingState) -> set[int]:
        return {self._index[q] for q in state.asked if q in self._index}

    def _finished(self, state: OnboardingState, profile: Profile) -> bool:
        asked = self._asked(state)
        if len(state.asked) >= state.max_questions or len(asked) >= len(self._questions):
            return True
        if len(state.asked) < self.min_questions:
            return False
        gains = information_gain(self.learner.posterior(profile), self._diffs)
        gains[list(asked)] = 0.0
        return float(gains.max()) < self.stop_gain

    # -- the loop ------------------------------------------------------------------------

    def next_question(self) -> Question:
        """The question to show now (the same one until it is answered)."""
        state = self.state
        if state.finished:
            raise InvalidInput(f"onboarding of {self.user_id!r} is finished "
                               f"({len(state.asked)} answers); check .done before asking")
        if state.pending is not None:
            return self._questions[self._index[state.pending]]
        profile = self.profile
        i = select_question(self.learner.posterior(profile), self._diffs,
                            asked=self._asked(state))
        question = self._questions[i]
        with self.store.transaction(self.user_id) as tx:
            tx.set_onboarding(self._current(tx.onboarding).model_copy(
                update={"pending": question.id}))
        self._restart = False
        return question

    def run(self, answer: Callable[[Question], int]) -> Profile:
        """Ask until the session is done: ``answer(question)`` says which option the person
        prefers (0 or 1) — a person at a prompt, a UI callback, or a simulated person
        (:meth:`SimulatedUser.chooser`). Each answer is stored as it comes, so a session
        that stops (an exception, a closed window) resumes where it stopped. Returns the
        profile."""
        while not self.done:
            question = self.next_question()
            self.answer(question.id, answer(question))
        return self.profile

    def answer(self, question_id: str, preferred_index: int) -> Profile:
        """Record that the user preferred ``options[preferred_index]`` of that question."""
        if preferred_index not in (0, 1):
            raise InvalidInput("preferred_index must be 0 (first option) or 1 (second)")
        if question_id not in self._index:
            raise InvalidInput(f"unknown question id {question_id!r} for this pool")
        i = self._index[question_id]
        q = self._questions[i]
        chosen, rejected = q.options[preferred_index], q.options[1 - preferred_index]
        d = self._diffs[i] if preferred_index == 0 else -self._diffs[i]
        pref = make_preference(q.prompt, chosen, rejected, source="onboarding")
        prior = self.learner.prior_for(self.user_id)
        refit = self.learner.unlearned_history(self.user_id)  # earlier history: use it too
        with self.store.transaction(self.user_id) as tx:
            state = self._current(tx.onboarding)
            if state.finished:
                raise InvalidInput(f"onboarding of {self.user_id!r} is finished "
                                   f"({len(state.asked)} answers)")
            if question_id in state.asked:
                raise InvalidInput(f"question {question_id!r} was already answered")
            post = self.learner.posterior(tx.profile, prior=prior)
            new_post = fit_posterior(post, d[None, :])
            tx.append([pref])
            if not refit:  # else the refit below learns from everything (until it has run,
                tx.update(**self.learner.fields(new_post))  # the history stays unlearned)
            new_state = state.model_copy(update={"asked": [*state.asked, question_id],
                                                 "pending": None})
            provisional = tx.profile.model_copy(update=self.learner.fields(new_post))
            tx.set_onboarding(new_state.model_copy(
                update={"finished": self._finished(new_state, provisional)}))
        self._restart = False
        return self.learner.refit(self.user_id) if refit else tx.result
