"""Profile summaries (PLUS) for the facade: written by a summarizer, or by the person."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from personalizer.profiles import Profile, ProfileStore
from personalizer.profiles.models import SUMMARY_MAX_CHARS, summary_by_person, utcnow
from personalizer.profiles.summaries import Summarizer

from ._input import Limits
from .errors import InvalidInput, PersonalizerError
from .seams import RewardSet, SimpleGenerator

__all__ = ["Summaries"]

log = logging.getLogger("personalizer")


@dataclass
class Summaries:
    """Who writes summaries (``summarizer``, else one on ``generator``) and when (``every``
    N new preferences, or only when asked)."""

    store: ProfileStore
    rewards: RewardSet | None
    generator: SimpleGenerator | None
    summarizer: Summarizer | None
    every: int | None
    limits: Limits

    @staticmethod
    def check(every: object, generator: object, summarizer: object) -> None:
        """Refuse a ``summary_every`` that cannot work (before anything is opened)."""
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise InvalidInput("summary_every must be a whole number >= 1 (or None: only "
                               "update_summary writes summaries)")
        if every is not None and generator is None and summarizer is None:
            raise InvalidInput("summary_every needs a model to write summaries with: pass "
                               "generator=... or summarizer=Summarizer(generator)")

    def need_summarizer(self) -> Summarizer:
        if self.summarizer is None:
            if self.generator is None:
                raise InvalidInput(
                    "summaries need a model: Personalizer(db, generator=...) or "
                    "summarizer=Summarizer(generator)")
            self.summarizer = Summarizer(self.generator, self.rewards)
        return self.summarizer

    def update(self, user_id: str) -> Profile:
        return self.need_summarizer().update(self.store, user_id)

    def set(self, user_id: str, text: str) -> Profile:
        """Store a summary the person wrote (``""`` removes it)."""
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

    def refresh(self, profile: Profile) -> Profile:
        """With ``every``, the summary rewritten once enough preferences arrived (or when it
        went stale): one model call at most (one batch of the summarizer), so a write call
        stays quick; a summary further behind (a long history, or one rewritten after a
        delete) catches up a batch per write, or at once with ``update``. The preference is
        already stored: a failure to summarize is logged (without user data) and retried at
        the next refresh, never raised."""
        every = self.every
        if every is None or profile.summary_source == "user":
            return profile
        new = profile.preference_count - profile.summary_preferences
        if new >= every or profile.summary_stale:
            try:
                return self.need_summarizer().update(self.store, profile.user_id,
                                                     max_batches=1)
            except PersonalizerError as exc:
                log.warning("summary refresh failed (%s); it is retried on the next "
                            "preference", type(exc).__name__)
                log.debug("summary refresh failure: %s", exc)
        return profile
