"""What a person sees of their own profile: the summary, the coefficients in words, the
history, an export to a file, and deletion. Offline, no model needed.

    python examples/inspect_profile.py [--db inspect.db] [--out alice.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from personalizer import Personalizer
from personalizer.profiles import default_reward_set
from personalizer.profiles.conditioning import coefficient_words
from personalizer.render import profile_view

ANSWERS = [  # what alice chose, and what she did not
    ("How do I boil an egg?", "Boil it 9 minutes, then cool it in cold water.",
     "Eggs are a wonderful food with a long history. There are many ways to boil them, "
     "and every cook has a favourite; let us walk through the options one by one."),
    ("What is a good first houseplant?", "A pothos: it forgives missed waterings.",
     "Choosing a first houseplant is a personal journey that depends on light, space, "
     "time, taste, and many other factors worth weighing carefully."),
    ("How do I fall asleep faster?", "Same bedtime every night, and no screens after ten.",
     "Sleep is a complex process influenced by many factors, including habits, diet, "
     "stress, light exposure and the environment of your bedroom."),
]


def main(argv: list[str] | None = None, *, out: Callable[..., None] | None = None) -> dict:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--db", default="inspect.db")
    args.add_argument("--out", default="alice.json")
    opts = args.parse_args(argv)
    console = Console(soft_wrap=True)
    show = out or console.print
    rewards = default_reward_set()
    with Personalizer(opts.db, rewards=rewards) as p:
        for prompt, chosen, rejected in ANSWERS:
            p.record_preference("alice", prompt, chosen, rejected, reason="too long")
        p.set_summary("alice", "Prefers short, practical answers.")
        profile = p.profile("alice")

        show("[bold]Your summary[/]")
        show(f"  {profile.summary}")
        show("[bold]What we learned from your choices[/]")
        for line in coefficient_words(profile, rewards):
            show(f"  {line}")
        show(profile_view(profile))
        show(f"[bold]Your history[/] ({profile.preference_count} choices)")
        for h in p.preferences("alice"):
            show(f"  {h.created_at:%Y-%m-%d} {h.prompt!r}: chose {h.chosen[:40]!r}")

        exported = p.export_profile("alice")
        Path(opts.out).write_text(json.dumps(exported, indent=2, ensure_ascii=False))
        show(f"exported everything we keep about you to {opts.out}")
        removed = p.delete_profile("alice")
        show(f"deleted: {removed} rows removed; nothing of yours is left in {opts.db}")
    return exported


if __name__ == "__main__":
    main()
