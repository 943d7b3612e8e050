"""Writes the shipped onboarding question pool (``profiles/data/question_bank.json``).

    .venv/bin/python bench/make_pool.py [--out profiles/data/question_bank.json]

For each prompt SmolLM2-135M-Instruct (offline) writes a plain answer, one with a concrete
example and one with technical detail (greedy decoding, so the run is reproducible); the plain
answer is then rewritten along single attributes (:mod:`personalizer.profiles.pool`: shorter,
as a list, warmer, hedged, formal, and two mixed rewrites). The eight hand-written items of
the first bank are kept as they were (domain ``general``), so sessions started on it resume.
Prompts are grouped by application domain (``Onboarding(domains=...)``); none is a prompt of
the benchmarks' held-out sets (bench/onboarding_people.py, bench/quality.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from personalizer.profiles.pool import clean_answer, variant_answers

DOMAINS: dict[str, tuple[str, ...]] = {
    "everyday": (
        "How do I get rid of fruit flies in my kitchen?",
        "What is the best way to stay hydrated during the day?",
        "How can I make a small apartment feel bigger?",
        "How do I remove a coffee stain from a shirt?",
        "How can I make friends in a new city?",
        "How do I keep my car in good condition?",
        "How can I plan a birthday party on a budget?",
        "How do I stop procrastinating on chores?",
    ),
    "work": (
        "How do I ask my manager for a raise?",
        "How can I run a more effective meeting?",
        "How do I write a clear email to a busy colleague?",
        "How should I handle a disagreement with a coworker?",
        "How do I prioritize when everything feels urgent?",
        "What makes a good presentation slide?",
        "How do I give constructive feedback?",
        "How can I negotiate a job offer?",
    ),
    "tech": (
        "What is the difference between RAM and storage?",
        "How do I choose a strong password?",
        "What does a database index do?",
        "How does Wi-Fi work?",
        "What is version control and why use it?",
        "How do I speed up a slow laptop?",
        "What is an API?",
        "How do I back up my photos safely?",
    ),
    "learning": (
        "Why is the sky blue?",
        "How do vaccines work?",
        "What causes the seasons?",
        "How does compound interest work?",
        "What is inflation?",
        "Why do we have leap years?",
        "How do plants make food from sunlight?",
        "What is the difference between weather and climate?",
    ),
}
EXTRA = {"example": "Include one concrete example.",
         "technical": "Include technical details and precise terms."}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="profiles/data/question_bank.json")
    ap.add_argument("--max-new-tokens", type=int, default=140)
    args = ap.parse_args()
    from personalizer.backends import LocalGenerator

    out = Path(args.out)
    first = [q for q in json.loads(out.read_text())["questions"]
             if q.get("domain", "general") == "general"][:8]
    gen = LocalGenerator.smollm2()
    items = [{**q, "domain": "general"} for q in first]
    t0 = time.perf_counter()
    i = 0
    for domain, prompts in DOMAINS.items():
        for prompt in prompts:
            def ask(text: str) -> str:
                g = gen.generate([{"role": "user", "content": text}],
                                 max_new_tokens=args.max_new_tokens)
                return clean_answer(g.text)

            base = ask(prompt)
            answers = list(variant_answers(base, i, prompt=prompt).values())
            for instruction in EXTRA.values():
                text = ask(f"{prompt} {instruction}")
                if text and text not in answers:
                    answers.append(text)
            items.append({"prompt": prompt, "domain": domain, "responses": answers})
            i += 1
            print(f"{time.perf_counter() - t0:6.0f}s {domain:<9} {len(answers)} answers  "
                  f"{prompt}", flush=True)
    data = {"version": "2", "questions": items}
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(items)} prompts, "
          f"{sum(len(q['responses']) * (len(q['responses']) - 1) // 2 for q in items)} pairs")


if __name__ == "__main__":
    main()
