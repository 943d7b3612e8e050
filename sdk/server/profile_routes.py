"""The profile endpoints, for the application's backend: read, export, import and delete
one person; record a choice or feedback on a kept answer; onboarding; the summary.

Each is one call of the :class:`~personalizer.Personalizer` facade (run in a worker thread:
the store blocks), so its checks and errors are the facade's. Reads need the
``profiles:read`` scope, changes ``profiles:write``, listing everyone ``admin``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from personalizer.profiles import Profile, ProfilePage
from personalizer.profiles.models import Judgement

from .guards import need
from .keys import ApiKeys

__all__ = ["profile_router"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PreferenceIn(_Body):
    """A choice the person made between two answers to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    reason: str | None = None
    judgement: Judgement = "better"


class FeedbackIn(_Body):
    """What the person did with a kept answer (exactly one of ``preferred_over``,
    ``edited``, ``rating``), as :meth:`Personalizer.record_feedback` takes it."""

    generation_id: str
    preferred_over: str | None = None
    edited: str | None = None
    rating: Literal["up", "down"] | None = None
    reason: str | None = None


class AnswerIn(_Body):
    """An answer to an onboarding question: ``choice`` 0 or 1 (the option preferred, with
    ``strength`` "much" / "slightly" when said), or "both_fine" / "neither"."""

    question_id: str
    choice: Literal[0, 1, "both_fine", "neither"]
    strength: Literal["much", "slightly"] | None = None
    reason: str | None = None


class SummaryIn(_Body):
    """The summary as the person wrote it ("" removes it)."""

    summary: str


class Summary(_Body):
    summary: str
    source: Literal["summarizer", "user"] | None = None


class Question(_Body):
    """The onboarding question to show now, or ``done`` when the session is over."""

    done: bool
    id: str | None = None
    number: int | None = None
    of_at_most: int | None = None
    prompt: str | None = None
    options: tuple[str, str] | None = None


class Deleted(_Body):
    user_id: str
    rows_deleted: int = Field(description="How many stored rows were removed.")


def profile_router(personalizer: Any, keys: ApiKeys | None) -> APIRouter:
    """The profile endpoints of ``personalizer``."""
    p = personalizer
    read = [Depends(need(keys, "profiles:read"))]
    write = [Depends(need(keys, "profiles:write"))]
    router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

    @router.get("", dependencies=[Depends(need(keys, "admin"))])
    def list_profiles(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                      after: str | None = None) -> ProfilePage:
        """One page of profiles in user-id order (``after``: the previous page's
        ``next_after``)."""
        return p.list_profiles(limit=limit, after=after)

    @router.post("/import", dependencies=write, status_code=201)
    def import_profile(data: Annotated[dict[str, Any], Body()],
                       replace: Annotated[bool, Query()] = False) -> Profile:
        """Restore a person from an export (``replace=true`` over an existing one)."""
        return p.import_profile(data, replace=replace)

    @router.get("/{user_id}", dependencies=read)
    def profile(user_id: str) -> Profile:
        """The person's profile (coefficients, uncertainty, summary, history size)."""
        return p.profile(user_id)

    @router.get("/{user_id}/export", dependencies=read)
    def export_profile(user_id: str) -> dict[str, Any]:
        """Everything stored about the person, as JSON (import takes it back)."""
        return p.export_profile(user_id)

    @router.delete("/{user_id}", dependencies=write)
    def delete_profile(user_id: str) -> Deleted:
        """Delete every stored row of the person."""
        return Deleted(user_id=user_id, rows_deleted=p.delete_profile(user_id))

    @router.post("/{user_id}/preferences", dependencies=write)
    def record_preference(user_id: str, choice: PreferenceIn) -> Profile:
        """Remember a choice between two answers (creates the profile)."""
        return p.record_preference(user_id, choice.prompt, choice.chosen, choice.rejected,
                                   reason=choice.reason, judgement=choice.judgement)

    @router.post("/{user_id}/feedback", dependencies=write)
    def record_feedback(user_id: str, feedback: FeedbackIn) -> Profile:
        """Learn from what the person did with a kept answer (its ``generation_id``: the
        chat reply's ``personalizer.generation_id``)."""
        return p.record_feedback(user_id, feedback.generation_id,
                                 preferred_over=feedback.preferred_over,
                                 edited=feedback.edited, rating=feedback.rating,
                                 reason=feedback.reason)

    @router.get("/{user_id}/summary", dependencies=read)
    def summary(user_id: str) -> Summary:
        got = p.profile(user_id)
        return Summary(summary=got.summary, source=got.summary_source)

    @router.put("/{user_id}/summary", dependencies=write)
    def set_summary(user_id: str, edit: SummaryIn) -> Summary:
        """Store the summary as the person wrote it; the summarizer never overwrites it."""
        got = p.set_summary(user_id, edit.summary)
        return Summary(summary=got.summary, source=got.summary_source)

    @router.get("/{user_id}/onboarding", dependencies=write)
    def next_question(user_id: str) -> Question:
        """The question to show now (the same until answered); ``done`` when finished.
        Needs ``profiles:write``: starting a session stores its state."""
        session = p.onboarding(user_id)
        if session.done:
            return Question(done=True)
        q = session.next_question()
        return Question(done=False, id=q.id, number=q.number,
                        of_at_most=session.max_questions, prompt=q.prompt, options=q.options)

    @router.post("/{user_id}/onboarding", dependencies=write)
    def answer(user_id: str, reply: AnswerIn) -> Profile:
        """Record the answer to the question shown."""
        return p.onboarding(user_id).answer(reply.question_id, reply.choice,
                                            strength=reply.strength, reason=reply.reason)

    return router
