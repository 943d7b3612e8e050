"""Feedback on kept answers: which answers are kept (retention), and what a person's choice,
edit or rating of one teaches their profile."""

from __future__ import annotations

import logging
import math
import re
import reprlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from personalizer.profiles import Profile, ProfileLearner, ProfileStore
from personalizer.profiles.learning.learner import make_preference
from personalizer.profiles.models import Rating, StoredGeneration

from ._input import Limits
from .errors import InvalidInput, ProfileNotFound
from .types import Generation, Message, last_user_text

__all__ = ["Feedback", "Retention"]

log = logging.getLogger("personalizer")

GENERATION_ID = re.compile(r"[0-9a-f]{32}")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    """The generation options as stored with a kept answer: plain JSON values only (an
    object such as a ProxyTuning is named by its type)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or isinstance(value, (bool, int, str)) or \
                (isinstance(value, float) and math.isfinite(value)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            out[key] = type(value).__name__
    return out


@dataclass(frozen=True)
class Retention:
    """Answers kept per user for feedback: the newest ``keep`` (0 keeps none), none older
    than ``days``."""

    store: ProfileStore
    keep_count: int
    days: float

    @staticmethod
    def check(keep_count: object, days: float) -> None:
        """Refuse retention limits out of range (before anything is opened)."""
        if isinstance(keep_count, bool) or not isinstance(keep_count, int) or \
                not 0 <= keep_count <= 100_000:
            raise InvalidInput("keep_generations must be a whole number from 0 (keep none) "
                               "to 100000")
        if not 0 < days <= 36500:
            raise InvalidInput("keep_generations_days must be more than 0 and at most 36500")

    @property
    def max_age_s(self) -> float:
        return self.days * 86400

    def keep(self, user_id: str, messages: list[Message], out: Generation, *,
             options: dict[str, Any], create: bool) -> Generation:
        """``out`` kept for feedback with how it was made, with its id (unless
        ``keep_count`` is 0); ``create``: a newcomer's profile, created now that the answer
        is there (a request refused by the generator writes nothing)."""
        if create:
            self.store.get_or_create(user_id)
        if not self.keep_count:
            return out
        record = out.steering
        base = {"id": uuid.uuid4().hex, "prompt": last_user_text(messages),
                "answer": out.text, "model": out.model}
        try:  # with how it was made (validated once, here)
            kept = StoredGeneration(
                **base, options=_jsonable(options), steering=record,
                strategy=dict(record.strategy) if record and record.strategy else None)
        except ValidationError:
            try:
                kept = StoredGeneration(**base)
            except ValidationError:  # a NUL in the model's answer: the answer, nothing kept
                log.warning("an answer could not be kept for feedback (its text cannot be "
                            "stored); it was returned, without an id")
                log.debug("the answer not kept was for user %r", user_id)
                return out
            # the text is storable, the record is not (a NaN reward, say)
            log.warning("an answer's steering record could not be kept; the answer was "
                        "kept without it")
        try:
            self.store.save_generation(user_id, kept, keep=self.keep_count,
                                       max_age_s=self.max_age_s)
        except ProfileNotFound:  # deleted while answering: the answer, nothing kept
            return out
        return out.model_copy(update={"id": kept.id})

    def kept(self, user_id: str, generation_id: str) -> StoredGeneration:
        """A kept answer of the user's, or InvalidInput naming why it is not there."""
        kept = self.store.generation(user_id, generation_id, max_age_s=self.max_age_s)
        if kept is None:
            raise InvalidInput(
                f"no kept answer {generation_id[:40]!r} for {user_id!r}: unknown, another "
                f"user's, or beyond the retention limits (the newest {self.keep_count}, "
                f"at most {self.days:g} days old)")
        return kept


@dataclass(frozen=True)
class Feedback:
    """What a person did with a kept answer, learned (``refresh``: the facade's summary
    refresh after a write)."""

    store: ProfileStore
    learner: ProfileLearner | None
    retention: Retention
    limits: Limits
    refresh: Callable[[Profile], Profile]

    def record(self, user_id: str, generation_id: str, *, preferred_over: str | None,
               edited: str | None, rating: Literal["up", "down"] | None,
               reason: str | None) -> Profile:
        """See :meth:`personalizer.Personalizer.record_feedback`."""
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
                                          and GENERATION_ID.fullmatch(value)):
                raise InvalidInput(f"Personalizer.record_feedback: {name} must be a "
                                   "Generation's id (32 hex digits, Generation.id), got "
                                   f"{reprlib.repr(value)}")
        self.limits.check("Personalizer.record_feedback", [("edited", edited),
                                                           ("reason", reason)])
        kept = self.retention.kept(user_id, generation_id)
        if preferred_over is not None:
            other = self.retention.kept(user_id, preferred_over)
            if other.prompt != kept.prompt:
                raise InvalidInput("the two answers answer different prompts; a choice "
                                   "compares two answers to the same message")
            return self._preference(user_id, kept.prompt, kept.answer, other.answer,
                                    reason, "choice")
        if edited is not None:
            if not isinstance(edited, str) or not edited.strip():
                raise InvalidInput("edited must be the edited answer's text")
            if edited == kept.answer:
                raise InvalidInput("the edit is the same as the answer: nothing to learn")
            return self._preference(user_id, kept.prompt, edited, kept.answer, reason,
                                    "edit")
        if self.learner is None:  # kept as history, learned from once a set is configured
            with self.store.transaction(user_id, create=False) as tx:
                tx.rate([Rating(prompt=kept.prompt, answer=kept.answer,
                                rating=rating)])  # type: ignore[arg-type]
            return tx.result
        return self.refresh(self.learner.record_rating(
            user_id, kept.prompt, kept.answer, rating, create=False))  # type: ignore[arg-type]

    def _preference(self, user_id: str, prompt: str, chosen: str, rejected: str,
                    reason: str | None, source: str) -> Profile:
        """A preference from feedback: never creates a profile (a user deleted since the
        answer was read stays deleted)."""
        if self.learner is not None:
            profile = self.learner.record_preference(user_id, prompt, chosen, rejected,
                                                     reason=reason, source=source,
                                                     create=False)
        else:
            pref = make_preference(prompt, chosen, rejected, reason=reason, source=source)
            profile = self.store.append_preferences(user_id, [pref], create=False)
        return self.refresh(profile)
