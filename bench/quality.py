"""Does personalization move real answers toward a person's taste while keeping them answers?

    .venv/bin/python bench/quality.py [--configs default prompt-only ...] [--split report]
                                      [--max-new-tokens N] [--agreement 0.78]
    .venv/bin/python bench/quality.py --rescore bench/out/quality-report.json

SmolLM2-135M-Instruct (offline), through ``Personalizer.generate``. Simulated people whose
tastes are written here as text measures of our own (word counts, list lines, warm words;
not the attribute scorers' vectors) are onboarded with 10 questions through the normal
``Onboarding``, answering with Bradley-Terry noise calibrated so that ~78% of their answers
agree with their noise-free preference. Then SmolLM2 answers 36 prompts that are not in the
question bank, plainly and personalized; each prompt has the key terms a real answer names.
The prompts are split (``--split``): of the first 24, even indices to tune on and odd ones to
report; ``fresh`` (the default): 12 more, never tuned on.

Per taste and configuration: how far the answers moved (the taste's own measure), substance
(key terms named, mean; NOT the quality term the decoding optimises, which is MiniLM
relevance), non-answers for steered and plain answers alike -- an answer that names no key
term (t), repeats a sentence or list item (r), or stops mid-sentence at the token limit (c) --
and ms per emitted token against plain (lookahead drafts count as time, not as tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).resolve().parent / "out"

# 24 prompts outside the question bank, each with stems of the terms a real answer names.
PROMPTS: list[tuple[str, list[str]]] = [
    ("How do I keep houseplants alive?",
     ["water", "light", "sun", "soil", "drain", "pot", "overwater", "humid", "fertili",
      "temperature", "window", "leaves"]),
    ("How can I improve my running endurance?",
     ["pace", "interval", "distance", "mile", "long run", "rest", "hydrat", "stretch",
      "gradual", "train", "breath", "slow"]),
    ("What are some tips for a job interview?",
     ["research", "company", "practice", "question", "prepar", "dress", "arriv", "early",
      "example", "resume", "eye contact", "thank"]),
    ("How do I brew good coffee at home?",
     ["bean", "grind", "water", "temperature", "ratio", "fresh", "filter", "brew", "roast",
      "minute", "press", "pour"]),
    ("How can I learn a new language faster?",
     ["practice", "daily", "vocabulary", "speak", "native", "app", "immers", "listen",
      "grammar", "flashcard", "conversation", "read"]),
    ("How do I start a vegetable garden?",
     ["soil", "sun", "water", "seed", "plant", "compost", "bed", "space", "tomato", "weed",
      "season", "fertili"]),
    ("How should I prepare for a long flight?",
     ["water", "hydrat", "sleep", "seat", "stretch", "walk", "snack", "pillow", "headphone",
      "entertain", "compression", "blanket"]),
    ("How can I get better at public speaking?",
     ["practice", "audience", "prepar", "breath", "slow", "eye contact", "rehears",
      "confiden", "record", "pause", "note", "feedback"]),
    ("How do I take care of a new puppy?",
     ["vet", "vaccin", "food", "train", "crate", "walk", "toy", "chew", "sleep", "feed",
      "social", "potty"]),
    ("How can I reduce my screen time?",
     ["app", "limit", "notification", "phone", "timer", "bedroom", "hobb", "schedule",
      "setting", "outside", "book", "break"]),
    ("How do I clean a cast iron pan?",
     ["water", "salt", "oil", "dry", "scrub", "soap", "season", "heat", "rust", "towel",
      "brush", "rinse"]),
    ("What is a good morning routine?",
     ["wake", "water", "exercise", "breakfast", "stretch", "plan", "sunlight", "meditat",
      "shower", "journal", "same time", "sleep"]),
    # added in stop 25 (key terms written before any answer was generated), so that the
    # report half holds 12 prompts and "1 non-answer in 12" can be read per taste
    ("How do I bake bread at home?",
     ["flour", "yeast", "knead", "dough", "rise", "oven", "salt", "water", "bake",
      "temperature", "proof", "minute"]),
    ("How can I stay focused while studying?",
     ["break", "distract", "phone", "goal", "schedule", "quiet", "pomodoro", "timer", "sleep",
      "note", "environment", "task"]),
    ("How do I train for my first 5K race?",
     ["run", "walk", "pace", "week", "rest", "shoe", "stretch", "distance", "interval",
      "hydrat", "gradual", "warm"]),
    ("How can I make my home more energy efficient?",
     ["insulat", "bulb", "thermostat", "window", "seal", "appliance", "unplug", "solar", "heat",
      "energy star", "draft", "temperature"]),
    ("How do I care for a leather jacket?",
     ["condition", "clean", "cloth", "water", "store", "hanger", "sun", "dry", "spray",
      "protect", "brush", "wipe"]),
    ("How can I eat healthier on a budget?",
     ["vegetable", "bean", "bulk", "prep", "cook", "frozen", "rice", "grocer", "shopping list",
      "fruit", "season", "processed"]),
    ("How do I choose a good laptop?",
     ["processor", "memory", "storage", "battery", "screen", "budget", "weight", "ssd", "display",
      "keyboard", "brand", "review"]),
    ("How can I improve my handwriting?",
     ["practice", "pencil", "grip", "slow", "letter", "paper", "posture", "consisten", "trace",
      "workbook", "spacing", "cursive"]),
    ("How do I organize my closet?",
     ["declutter", "donate", "hanger", "fold", "shelf", "shelves", "basket", "season", "sort",
      "color", "box", "label"]),
    ("How do I make a good first impression?",
     ["smile", "eye contact", "handshake", "listen", "dress", "confiden", "name", "posture",
      "question", "interest", "punctual", "body language"]),
    ("How do I keep my dog calm during fireworks?",
     ["safe", "crate", "noise", "music", "anxi", "vet", "treat", "walk", "window", "thunder",
      "distract", "indoors"]),
    ("How can I get better at chess?",
     ["practice", "opening", "tactic", "endgame", "puzzle", "game", "analy", "strateg",
      "center", "piece", "book", "online"]),
    # the fresh report half (#33): 12 prompts added in stop 40, their key terms written before
    # any answer to them was generated; no default is tuned on them (--split fresh)
    ("How do I fix a leaky faucet?",
     ["water", "valve", "washer", "cartridge", "wrench", "handle", "seal", "o-ring", "drip",
      "replace", "plumber", "shut"]),
    ("How can I sleep better in a hot room?",
     ["fan", "cool", "window", "shower", "sheet", "cotton", "curtain", "water", "hydrat",
      "temperature", "ice", "air"]),
    ("How do I write a good cover letter?",
     ["company", "role", "skill", "experience", "tailor", "example", "short", "proofread",
      "achievement", "research", "hiring", "page"]),
    ("How do I get rid of fruit flies?",
     ["vinegar", "trap", "fruit", "trash", "drain", "clean", "dish soap", "ripe", "bowl",
      "cover", "sink", "fridge"]),
    ("How can I make friends in a new city?",
     ["club", "class", "volunteer", "meetup", "neighbor", "coworker", "hobb", "event", "gym",
      "invite", "app", "group"]),
    ("How do I care for a succulent?",
     ["water", "sun", "light", "soil", "drain", "pot", "overwater", "window", "cactus", "dry",
      "root", "leaves"]),
    ("How can I save money on groceries?",
     ["list", "coupon", "bulk", "brand", "sale", "plan", "meal", "store", "season", "frozen",
      "budget", "compare"]),
    ("How do I start journaling?",
     ["write", "notebook", "daily", "minute", "prompt", "thought", "habit", "morning", "night",
      "gratitude", "feeling", "pen"]),
    ("How can I stop procrastinating?",
     ["task", "break", "small", "deadline", "goal", "timer", "distract", "start", "reward",
      "list", "focus", "habit"]),
    ("How do I clean my laptop screen?",
     ["cloth", "microfiber", "water", "spray", "alcohol", "power", "gentle", "wipe", "dust",
      "streak", "paper towel", "dry"]),
    ("How do I choose running shoes?",
     ["fit", "size", "cushion", "arch", "store", "try", "toe", "gait", "support", "heel",
      "terrain", "mile"]),
    ("How can I keep my kitchen knives sharp?",
     ["hone", "steel", "whetstone", "sharpen", "angle", "board", "wood", "dishwasher", "dry",
      "store", "block", "edge"]),
]

_WORDS = re.compile(r"[A-Za-z0-9']+")
_LIST = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")
_WARM = ("glad", "happy", "great", "wonderful", "love", "enjoy", "hope", "fun", "exciting",
         "amazing", "welcome", "delight", "fantastic", "lovely", "good luck", "you've got this")


def n_words(text: str) -> int:
    return len(_WORDS.findall(text))


def list_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if _LIST.match(line))


def warmth(text: str) -> float:
    low = text.lower()
    hits = text.count("!") + sum(low.count(w) for w in _WARM)
    return hits / math.sqrt(max(n_words(text), 1))


# The people: their utility of an answer, in their own measures (not the scorers' vectors).
TASTES: dict[str, Any] = {
    "terse": lambda t: -math.log1p(n_words(t)),
    "thorough": lambda t: math.log1p(n_words(t)),
    "lists": lambda t: 1.5 * (list_lines(t) >= 2) + 0.5 * min(list_lines(t), 6) / 6,
    "warm": warmth,
}
# How each taste's movement is reported: (label, per-answer measure, summary)
MOVES: dict[str, tuple[str, Any, str]] = {
    "terse": ("median words", n_words, "median"),
    "thorough": ("median words", n_words, "median"),
    "lists": ("answers as lists", lambda t: float(list_lines(t) >= 2), "share"),
    "warm": ("warm words per sqrt(word)", warmth, "mean"),
}


def key_terms(text: str, terms: list[str]) -> int:
    """How many of ``terms`` the text names: each term (a stem) must start a word ("rice"
    is not named by "price", nor "rest" by "interest"; "hydrat" is by "hydrated")."""
    low = text.lower()
    return sum(1 for t in terms if re.search(r"\b" + re.escape(t), low))


_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ENDS = (".", "!", "?", ")", '"', "'", "\u201d", "*", ":")


def units(text: str) -> list[str]:
    """The answer's sentences and list items, normalised (lower case, no list marker, words
    only), those of three words or more."""
    out = []
    for line in text.splitlines():
        for part in _SENTENCE_END.split(_MARKER.sub("", line)):
            words = _WORDS.findall(part.lower())
            if len(words) >= 3:
                out.append(" ".join(words))
    return out


def repeats(text: str) -> bool:
    """Whether the answer says a sentence or list item twice."""
    seen = units(text)
    return len(set(seen)) < len(seen)


def cut_off(text: str, finish: str | None) -> bool:
    """Whether the answer stops mid-sentence at the token limit (``finish`` 'length'; with no
    finish reason saved, an answer not ending a sentence counts)."""
    if finish not in (None, "length"):
        return False
    return not text.rstrip().endswith(_ENDS)


def non_answer(text: str, terms: list[str], finish: str | None) -> str | None:
    """Why the text is not an answer, or None: it names no key term, it repeats a sentence or
    list item, or it stops mid-sentence at the token limit."""
    if key_terms(text, terms) == 0:
        return "no key term"
    if repeats(text):
        return "repeats"
    if cut_off(text, finish):
        return "cut off"
    return None


def _beta_for(margins: np.ndarray, agreement: float) -> float:
    """beta at which mean sigmoid(beta * margin) is ``agreement`` (bisection)."""
    lo, hi = 1e-3, 1e3
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if float((1 / (1 + np.exp(-mid * margins))).mean()) < agreement:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def onboard(p: Any, user: str, utility: Any, agreement: float, seed: int) -> dict[str, Any]:
    """10 questions through the normal onboarding, answered with Bradley-Terry noise whose
    beta is set so that the expected agreement with the noise-free preference over the
    questions actually asked is ``agreement`` (the asked pairs depend on the answers, so
    beta and the session are refined together, three times)."""
    from personalizer.profiles import question_bank

    margins = [abs(utility(a) - utility(b)) for item in question_bank(["general"])
               for i, a in enumerate(item.responses) for b in item.responses[i + 1:]]
    beta = _beta_for(np.array([m for m in margins if m > 0]), agreement)
    for _ in range(3):
        rng = np.random.default_rng(seed)
        session = p.onboarding(user, max_questions=10, min_questions=10, restart=True)
        asked, agree = [], []
        while not session.done:
            q = session.next_question()
            diff = utility(q.options[0]) - utility(q.options[1])
            first = rng.random() < 1 / (1 + math.exp(-beta * diff))
            asked.append(abs(diff))
            if diff != 0:  # a tie has no noise-free preference to agree with
                agree.append(first == (diff > 0))
            session.answer(q.id, 0 if first else 1)
        beta = _beta_for(np.array([m for m in asked if m > 0] or [1.0]), agreement)
    margins = np.array([m for m in asked if m > 0] or [0.0])
    expected = float((1 / (1 + np.exp(-beta * margins))).mean())
    return {"agreement": float(np.mean(agree)) if agree else float("nan"),
            "expected_agreement": expected, "beta": beta,
            "coefficients": p.profile(user).coefficients}


SENTENCES = {"kind": "best_of_n", "n": 4, "block": "sentence", "end_early": True,
             "draw": "branch"}
def sentences(n: int) -> dict[str, Any]:
    return {**SENTENCES, "n": n}


DEFAULT = {"kind": "best_of_n", "n": 1, "block": "sentence", "draw": "branch",
           "end_early": True, "go_on": True}
CONFIGS: dict[str, dict[str, Any]] = {
    "sentences1": {"prompt_profile": False, "strategy": sentences(1)},
    "prompt+sentences1": {"prompt_profile": True, "strategy": sentences(1)},
    "sentences2": {"prompt_profile": False, "strategy": sentences(2)},
    "prompt+sentences2": {"prompt_profile": True, "strategy": sentences(2)},
    "default": {},
    "token-rules": {"strategy": {"kind": "token_rewards"}, "strength": 2.0},
    "prompt+token-rules": {"prompt_profile": True, "strategy": {"kind": "token_rewards"},
                           "strength": 2.0},
    "prompt-only": {"strength": 0.0, "prompt_profile": True},
    # the attribute experts (#34): alone, token by token, and inside the default's blocks
    "experts": {"strategy": {"kind": "experts"}},
    "experts2": {"strategy": {"kind": "experts", "scale": 2.0}},
    "default-no-experts": {"strategy": {**DEFAULT, "experts": 0.0}},
    "default-experts2": {"strategy": {**DEFAULT, "experts": 2.0}},
    "default-experts0.5": {"strategy": {**DEFAULT, "experts": 0.5}},
    "args-only": {"prompt_profile": False, "strategy": "args"},
    "prompt+args": {"prompt_profile": True, "strategy": "args"},
    "sentences-only": {"prompt_profile": False, "strategy": SENTENCES},
    "prompt+sentences": {"prompt_profile": True, "strategy": SENTENCES},
}


def parse_config(name: str) -> dict[str, Any]:
    """A named configuration, or key=value pairs (``strength=2,prompt_profile=False``)."""
    if name in CONFIGS:
        return CONFIGS[name]
    if name.startswith("{"):
        return json.loads(name)
    out: dict[str, Any] = {}
    for part in name.split(","):
        key, value = part.split("=")
        out[key] = json.loads(value.lower() if value in ("True", "False") else value)
    return out


FIRST = 24  # the first 24 prompts: split into a tuning and a report half


def split_prompts(split: str) -> list[tuple[str, list[str]]]:
    """The prompts of a split: of the first 24, even indices to tune on, odd ones to report;
    ``fresh``: the 12 added for #33, never tuned on; ``all``: every prompt."""
    index = {"tune": range(0, FIRST, 2), "report": range(1, FIRST, 2),
             "fresh": range(FIRST, len(PROMPTS)), "all": range(len(PROMPTS))}[split]
    return [PROMPTS[i] for i in index]


def non_answers(texts: list[str], terms: list[list[str]],
                finishes: list[str | None] | None) -> tuple[int, str]:
    """How many of ``texts`` are non-answers, and the count per reason ("t/r/c": no key
    term, repeats, cut off)."""
    why = [non_answer(t, k, f) for t, k, f in zip(
        texts, terms, finishes or [None] * len(texts), strict=True)]
    counts = [why.count(r) for r in ("no key term", "repeats", "cut off")]
    return sum(counts), "/".join(map(str, counts))


def taste_row(taste: str, plain: list[str], texts: list[str],
              prompts: list[tuple[str, list[str]]], ratio: float,
              finishes: list[str | None] | None = None,
              plain_finishes: list[str | None] | None = None) -> dict[str, Any]:
    """One taste's row: printed, and returned as saved in the results file."""
    label, measure, how = MOVES[taste]
    summary = {"median": statistics.median, "mean": statistics.mean,
               "share": statistics.mean}[how]
    terms = [k for _, k in prompts]
    before = summary([measure(t) for t in plain])
    after = summary([measure(t) for t in texts])
    sub = statistics.mean(key_terms(t, k) for t, k in zip(texts, terms, strict=True))
    sub0 = statistics.mean(key_terms(t, k) for t, k in zip(plain, terms, strict=True))
    non, why = non_answers(texts, terms, finishes)
    non0, why0 = non_answers(plain, terms, plain_finishes)
    print(f"{taste:<9}{label:<27}{before:>8.2f}{after:>9.2f}{sub:>7.2f}/{sub0:<4.2f}"
          f"{non:>4}/{len(texts)} ({why}){non0:>4} ({why0}){ratio:>8.2f}", flush=True)
    return {"texts": texts, "finish": finishes, "move": [before, after],
            "substance": [sub, sub0], "non_answers": [non, non0], "ms_ratio": ratio}


HEADER = (f"{'taste':<9}{'measure':<27}{'plain':>8}{'steered':>9}{'substance':>11}"
          f"{'non-answers t/r/c':>18}{'plain':>12}{'x ms/tok':>10}")


def rescore(path: Path) -> None:
    """Print the tables of a saved run (``bench/out/quality-*.json``) with this file's
    measures, from its saved answers (no model is loaded; ms/token as measured then)."""
    data = json.loads(Path(path).read_text())
    prompts, plain = split_prompts(data["split"]), data["plain"]
    if len(plain) != len(prompts):
        raise SystemExit(f"{path}: {len(plain)} answers, but the {data['split']} split now "
                         f"has {len(prompts)} prompts")
    for name, per_taste in data.items():
        if not isinstance(per_taste, dict) or name in ("people", "plain_finish"):
            continue
        print(f"\n## {name}")
        print(HEADER)
        for taste, r in per_taste.items():
            taste_row(taste, plain, r["texts"], prompts, r["ms_ratio"], r.get("finish"),
                      data.get("plain_finish"))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--rescore":
        rescore(Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["default"])
    ap.add_argument("--split", choices=["tune", "report", "fresh", "all"], default="fresh")
    ap.add_argument("--tastes", nargs="+", default=list(TASTES))
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="token limit of every answer (default: the generator's default)")
    ap.add_argument("--agreement", type=float, default=0.78)
    ap.add_argument("--prompt-rewards", nargs="*", default=None,
                    help="base rewards whose request may go into the user's turn "
                         "(default: the generator's)")
    ap.add_argument("--floor", type=float, default=None,
                    help="the quality floor (default: the shipped Substance's)")
    ap.add_argument("--token-heads", default=None,
                    help="token heads for configs with strategy token_rewards (a file from "
                         "bench/token_heads.py, e.g. bench/out/smollm2-token-heads.safetensors)")
    ap.add_argument("--tag", default="", help="added to the results file's name")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the split's first N prompts (a quick look, not a report)")
    args = ap.parse_args()

    import torch

    from personalizer import Personalizer
    from personalizer.backends import LocalGenerator
    from personalizer.profiles import default_reward_set

    torch.set_num_threads(2)
    OUT.mkdir(exist_ok=True)
    prompts = split_prompts(args.split)[:args.limit]
    rewards = default_reward_set()
    extra: dict[str, Any] = {}
    if args.floor is not None:
        from personalizer.backends.rewards import Substance

        extra["quality"] = Substance(floor=args.floor)
    if args.prompt_rewards is not None:
        extra["prompt_rewards"] = tuple(args.prompt_rewards)
    gen = LocalGenerator.smollm2(rewards=rewards, **extra)
    if args.token_heads:
        from personalizer.backends import TokenHeads

        gen = gen.with_token_heads(TokenHeads.load(args.token_heads, gen))
    limit = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    results: dict[str, Any] = {"split": args.split, "max_new_tokens": args.max_new_tokens}
    with Personalizer(":memory:", rewards=rewards, generator=gen) as p:
        people = {}
        for seed, taste in enumerate(args.tastes):
            people[taste] = r = onboard(p, f"sim-{taste}", TASTES[taste], args.agreement, seed)
            top = sorted(r["coefficients"].items(), key=lambda kv: -abs(kv[1]))[:3]
            print(f"{taste:<9} beta {r['beta']:6.2f}  agreement {r['agreement']:.2f} (expected "
                  f"{r['expected_agreement']:.2f})  top coefficients "
                  f"{', '.join(f'{k} {v:+.2f}' for k, v in top)}", flush=True)
        if gen.quality is not None:  # load the quality model before anything is timed
            gen.quality.score("warm up", ["Load the encoder now."])
        plain = []
        for prompt, _ in prompts:
            t = time.perf_counter()
            out = gen.generate(prompt, **limit)
            plain.append((out.text, time.perf_counter() - t, out.completion_tokens,
                          out.finish_reason))
        plain_ms = 1000 * sum(x[1] for x in plain) / sum(x[2] for x in plain)
        results["plain"] = [x[0] for x in plain]
        results["plain_finish"] = [x[3] for x in plain]
        for name in args.configs:
            kw = parse_config(name)
            print(f"\n## {name}  {kw}   (plain {plain_ms:.0f} ms/token)")
            print(HEADER)
            for taste in args.tastes:
                texts, finishes, secs, toks = [], [], 0.0, 0
                for prompt, _ in prompts:
                    t = time.perf_counter()
                    out = p.generate(f"sim-{taste}", prompt, **limit, **kw)
                    secs += time.perf_counter() - t
                    toks += max(out.completion_tokens, 1)
                    texts.append(out.text)
                    finishes.append(out.finish_reason)
                ratio = (1000 * secs / toks) / plain_ms
                results.setdefault(name, {})[taste] = taste_row(
                    taste, [x[0] for x in plain], texts, prompts, ratio, finishes,
                    results["plain_finish"])
    tag = "" if args.floor is None else f"-floor{args.floor}"
    tag += "" if args.prompt_rewards is None else "-asks-" + "-".join(args.prompt_rewards)
    tag += f"-{args.tag}" if args.tag else ""
    path = OUT / f"quality-{args.split}{tag}.json"
    path.write_text(json.dumps({"people": people, **results}, indent=1))
    print(f"\nanswers in {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
