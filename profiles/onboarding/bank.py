"""The question bank and question pools: what onboarding asks about.

:class:`PoolItem` is a prompt with alternative responses (every pair of them is a candidate
:class:`Question`); :func:`question_bank` is the bank shipped with the package,
:func:`generate_pool` writes a pool with a generator of your own, and :func:`pool_features`
scores a pool under a reward set once per set (cached), for the session to choose from.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personalizer.errors import InvalidInput

from ..models import Text

__all__ = [
    "ANSWER_STYLES",
    "PoolItem",
    "Question",
    "domains",
    "generate_pool",
    "pool_features",
    "pool_items",
    "question_bank",
]

# Style instructions that make a generator's answers differ along the base attributes.
ANSWER_STYLES: tuple[tuple[str, str | None], ...] = (
    ("plain", None),
    ("one sentence", "Answer in one short sentence."),
    ("list", "Answer with a short bulleted list of three items and no introduction."),
    ("detailed", "Answer warmly and in detail, and include a concrete example."),
)


_DOMAIN = r"^[a-z][a-z0-9_-]{0,31}$"


class PoolItem(BaseModel):
    """A prompt with 2-12 alternative responses; every pair of them is a candidate question."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Text = Field(min_length=1)
    responses: list[Text] = Field(min_length=2, max_length=12)
    domain: str = Field(default="general", pattern=_DOMAIN,
                        description="The application domain it belongs to.")

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
    number: int | None = Field(
        default=None, ge=1, description="Its place in the session (1 for the first "
        "question), as :meth:`Onboarding.next_question` shows it; the session asks at most "
        ":attr:`Onboarding.max_questions`.")


@lru_cache(maxsize=1)
def _bank() -> tuple[PoolItem, ...]:
    text = resources.files("personalizer.profiles").joinpath("data/question_bank.json")
    data = json.loads(text.read_text(encoding="utf-8"))
    return tuple(PoolItem.model_validate(q) for q in data["questions"])


def domains() -> tuple[str, ...]:
    """The application domains of the shipped question bank (``general`` first)."""
    return tuple(dict.fromkeys(item.domain for item in _bank()))


def question_bank(domains: Sequence[str] | None = None) -> tuple[PoolItem, ...]:
    """The question bank shipped with the package: prompts from several application domains
    (:func:`domains`), each answered by SmolLM2 and rewritten along one or two base rewards at
    a time (``bench/make_pool.py``; :mod:`.pool`), after the eight hand-written items of the
    first bank (domain ``general``). ``domains`` keeps those domains' prompts only."""
    bank = _bank()
    if domains is None:
        return bank
    if isinstance(domains, str):
        domains = [domains]
    known = {item.domain for item in bank}
    if not domains:
        raise InvalidInput(f"domains is empty; pass None for the whole bank, or some of "
                           f"{sorted(known)}")
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise InvalidInput(f"unknown question-bank domain(s) {unknown}; the bank has "
                           f"{sorted(known)}")
    return tuple(item for item in bank if item.domain in set(domains))


def generate_pool(generator: Any, prompts: Sequence[str], *,
                  styles: Sequence[tuple[str, str | None]] = ANSWER_STYLES,
                  rewrites: bool = True, domain: str = "general",
                  max_new_tokens: int = 96) -> list[PoolItem]:
    """A question pool written by ``generator``: one answer per style instruction for each
    prompt and, with ``rewrites``, the first style's answer rewritten along single base
    rewards (:func:`.pool.variant_answers`: shorter, as a list, warmer, hedged, formal), so
    that questions isolate one attribute at a time. Answers that come out identical are
    kept once; prompts with fewer than two different answers are dropped."""
    from .pool import clean_answer, variant_answers

    if not isinstance(domain, str) or not re.fullmatch(_DOMAIN, domain):
        raise InvalidInput(f"domain {domain!r:.40} must be 1-32 lowercase letters, digits, "
                           "'_' or '-', starting with a letter (e.g. 'support')")
    items = []
    for k, prompt in enumerate(prompts):
        answers: list[str] = []
        for _, instruction in styles:
            messages = ([{"role": "system", "content": instruction}] if instruction else [])
            messages.append({"role": "user", "content": prompt})
            text = generator.generate(messages, max_new_tokens=max_new_tokens).text.strip()
            if text and text not in answers:
                answers.append(text)
        if rewrites and answers and clean_answer(answers[0]):
            for text in variant_answers(clean_answer(answers[0]), k, prompt=prompt).values():
                if text not in answers:
                    answers.append(text)
        if len(answers) >= 2:
            items.append(PoolItem(prompt=prompt, responses=answers[:12], domain=domain))
    if not items:
        raise InvalidInput("the generator produced no prompt with two different answers")
    return items


# Scored pools per reward set object: building a session on the shipped bank scores ~350
# answers, once per reward set and pool, not once per session.
_FEATURES: weakref.WeakKeyDictionary[Any, dict[str, list[np.ndarray]]] = \
    weakref.WeakKeyDictionary()
_FEATURES_LOCK = threading.Lock()


def pool_features(reward_set: Any, pool_id: str, items: Sequence[PoolItem]
                   ) -> list[np.ndarray]:
    """Each item's ``(responses, J)`` features under ``reward_set`` (cached while the set
    lives)."""
    def score() -> list[np.ndarray]:
        return [np.asarray(reward_set.features(i.prompt, i.responses)) for i in items]

    try:
        with _FEATURES_LOCK:
            cached = _FEATURES.get(reward_set, {}).get(pool_id)
    except TypeError:  # a reward set that cannot be weakly referenced: no cache
        return score()
    if cached is None:
        cached = score()
        with _FEATURES_LOCK:
            per_set = _FEATURES.setdefault(reward_set, {})
            if len(per_set) >= 8:
                per_set.clear()
            per_set[pool_id] = cached
    return cached


def pool_items(pool: Sequence[PoolItem | dict[str, Any]] | None,
                domains: Sequence[str] | None = None) -> list[PoolItem]:
    if pool is None:
        return list(question_bank(domains))
    if domains is not None:
        raise InvalidInput("pass either pool= (your own questions) or domains= (a part of "
                           "the shipped bank), not both")
    try:
        items = [p if isinstance(p, PoolItem) else PoolItem.model_validate(p) for p in pool]
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(f"invalid question pool: {'.'.join(map(str, err['loc']))}: "
                           f"{err['msg']}") from None
    if not items:
        raise InvalidInput("the question pool is empty")
    return items
