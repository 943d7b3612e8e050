"""The demo behind ``personalizer demo``: two users with opposite tastes, stored and shown."""

from __future__ import annotations

from rich.console import Console

from personalizer.profiles import Profile

from .client import Personalizer
from .errors import ProfileNotFound
from .render import profile_view

__all__ = ["run_demo"]

_PROMPT = "How do I get better sleep?"
_SHORT = "Keep a fixed bedtime, skip screens for an hour before bed, and cut caffeine after noon."
_LONG = (
    "Sleep is built from habits. First, anchor your wake-up time, even at weekends: the body "
    "clock follows mornings more than nights. Second, dim the lights and put screens away an "
    "hour before bed. Third, keep the bedroom cool and dark. Finally, watch caffeine: its "
    "half-life is five to six hours, so an afternoon coffee still acts at bedtime."
)

_USERS = {
    "demo-terse": (
        {"verbosity": -1.2, "warmth": -0.1, "structure": 0.6, "technical_depth": 0.2},
        "Wants short, direct answers; lists are fine; no small talk.",
        (_SHORT, _LONG),
    ),
    "demo-thorough": (
        {"verbosity": 1.1, "warmth": 0.5, "structure": -0.2, "technical_depth": 0.7},
        "Likes thorough explanations with the reasons behind each step, in a friendly tone.",
        (_LONG, _SHORT),
    ),
}


def run_demo(db: str, *, console: Console) -> None:
    """Create (or re-create) the demo users in ``db`` and show their profiles."""
    with Personalizer(db) as p:
        for user_id, (coefficients, summary, (chosen, rejected)) in _USERS.items():
            try:
                p.delete_profile(user_id)
            except ProfileNotFound:
                pass
            p.record_preference(user_id, _PROMPT, chosen=chosen, rejected=rejected,
                                source="demo")
            p.store.modify(
                user_id,
                lambda prof, c=coefficients, s=summary: _with_taste(prof, c, s),
            )
            console.print(profile_view(p.profile(user_id)))
            console.print()
        console.print(f"stored in {db}: try `personalizer profiles show demo-terse --db {db}`")


def _with_taste(profile: Profile, coefficients: dict[str, float], summary: str) -> Profile:
    n = len(coefficients)
    covariance = [[0.25 if i == j else 0.0 for j in range(n)] for i in range(n)]
    return profile.model_copy(update={
        "coefficients": coefficients, "covariance": covariance, "summary": summary,
        "reward_set_id": "demo-attributes", "reward_set_version": "1",
    })
