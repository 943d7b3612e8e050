"""Onboarding as a new user meets it: simulated people whose tastes are *our own text measures*
(word counts with thresholds, list lines, exclamation marks and warm words), not the attribute
scorers' vectors, answer the default onboarding questions through the public ``Onboarding``
with Bradley-Terry noise; then their profile predicts their noise-free choices on answers to
prompts outside the question bank.

    .venv/bin/python bench/onboarding_people.py [--people 20] [--beta 2.0]

Early stopping is off (every person answers up to 40 questions); accuracy is read after 3, 5,
10 and 40 answers. The noise ceiling is how often a person's noisy answer agrees with their own
noise-free preference on the held-out pairs. The baseline for issue #16 (onboarding).
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import statistics

import numpy as np

from personalizer import Personalizer
from personalizer.profiles import default_reward_set

CHECKPOINTS = (3, 5, 10, 40)

# Answers to prompts that are not in the question bank: terse, thorough prose, a list, warm.
HELD_OUT = {
    "How do I keep houseplants alive?": [
        "Water when the soil is dry, and give them light.",
        "Most houseplants die from too much water rather than too little. Check the top two "
        "centimetres of soil with a finger and water only when it is dry, then water deeply "
        "until it drains. Place them near a bright window without harsh afternoon sun, turn "
        "the pots every few weeks so they grow evenly, and feed them lightly in spring and "
        "summer, when they are actively growing.",
        "- Water only when the top soil is dry\n- Bright, indirect light\n- Pots with "
        "drainage holes\n- Feed in spring and summer",
        "Oh, I love that you're looking after plants! They're so forgiving once you know the "
        "trick: let the soil dry a little between drinks, give them a bright spot, and enjoy "
        "watching them grow. You'll be great at this!",
    ],
    "How can I save money on groceries?": [
        "Plan meals and shop with a list.",
        "Start by planning the week's meals around what is already in your cupboard, then "
        "write a list and stick to it. Buying store brands, seasonal vegetables and larger "
        "packs of staples such as rice and oats lowers the cost per meal, and cooking a "
        "double batch to freeze avoids expensive takeaway on busy evenings.",
        "- Plan the week's meals\n- Shop with a list\n- Buy store brands\n- Cook in batches "
        "and freeze",
        "Great goal, and it's easier than it sounds! A little weekly plan, a list on your "
        "phone and a couple of batch-cooked dinners can save a lovely amount. You've got "
        "this!",
    ],
    "What should I know before adopting a dog?": [
        "Dogs need daily time, exercise and money for the vet.",
        "A dog is a commitment of ten to fifteen years. Think about how many hours a day it "
        "would be alone, whether your home and schedule allow daily walks, and what food, "
        "insurance and vet visits will cost each year. Meeting the dog several times before "
        "adopting, and asking the shelter about its history and temperament, helps you "
        "find a good match.",
        "- 10-15 years of commitment\n- Daily walks and company\n- Food, vet and insurance "
        "costs\n- Meet the dog first",
        "How exciting! A dog brings so much joy! Just make sure you have time for walks and "
        "cuddles, a little budget for the vet, and an open heart. Your new friend will adore "
        "you!",
    ],
    "How do I write a good cover letter?": [
        "Say why this job, and show one result you achieved.",
        "Open by naming the role and why it interests you in particular, then give two or "
        "three concrete examples of results from past work that match what the job asks "
        "for. Keep it to one page, use the hiring manager's name if you can find it, and "
        "close by saying you would welcome a conversation, rather than repeating your CV.",
        "- Name the role and why you want it\n- Two concrete results\n- One page\n- A short, "
        "confident close",
        "You've got this! Show them your enthusiasm, share a win you're proud of, and let "
        "your personality shine through. They'll be glad to meet you!",
    ],
    "How do I get better at running?": [
        "Run slowly and often, and add distance gradually.",
        "Most progress comes from running easy, at a pace where you could hold a "
        "conversation, three or four times a week. Increase your weekly distance by about "
        "ten percent at most, add one session of short faster intervals once you have a "
        "base, and take rest days seriously, since that is when the body adapts.",
        "- Mostly easy runs\n- Add about 10% distance a week\n- One interval session\n- Rest "
        "days",
        "Yay, running! It's such a wonderful habit! Go easy, enjoy the fresh air, and "
        "celebrate every little milestone. You'll be amazed how fast you improve!",
    ],
    "How can I learn a new language faster?": [
        "Practise a little every day, and speak early.",
        "Short daily practice beats long weekly sessions. Learn the thousand most common "
        "words with spaced repetition, listen to podcasts or series in the language, and "
        "start speaking with a tutor or exchange partner early, even when it feels awkward, "
        "because speaking reveals the gaps that reading hides.",
        "- Daily practice\n- Spaced repetition for common words\n- Listen a lot\n- Speak from "
        "week one",
        "What a lovely adventure! Have fun with it: sing songs, chat with new friends, and "
        "don't worry about mistakes. You'll be chatting away before you know it!",
    ],
}

WARM = re.compile(r"\b(love|lovely|great|wonderful|glad|happy|enjoy|amazing|yay|adore|"
                  r"exciting|joy)\b", re.I)


def words(text: str) -> int:
    return len(text.split())


def list_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r"\s*([-*•]|\d+[.)])\s", line))


# Tastes as utilities of a text (our own measures, nonlinear on purpose).
TASTES = {
    "short": lambda t: -max(words(t) - 12, 0) / 12.0,
    "long": lambda t: min(words(t), 70) / 20.0,
    "lists": lambda t: (2.5 if list_lines(t) >= 2 else 0.0) - words(t) / 60.0,
    "warm": lambda t: t.count("!") * 0.6 + len(WARM.findall(t)) * 0.6,
}
MAIN = {"short": "verbosity", "long": "verbosity", "lists": "structure", "warm": "warmth"}


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def held_out_pairs() -> list[tuple[str, str, str]]:
    return [(prompt, a, b) for prompt, answers in HELD_OUT.items()
            for a, b in itertools.combinations(answers, 2)]


def run_person(taste: str, seed: int, beta: float, rewards: object) -> dict:
    utility = TASTES[taste]
    rng = np.random.default_rng(seed)

    def answer(q: object) -> int:
        a, b = q.options  # type: ignore[attr-defined]
        return 0 if rng.random() < sigmoid(beta * (utility(a) - utility(b))) else 1

    pairs = [(p, a, b) for p, a, b in held_out_pairs() if utility(a) != utility(b)]
    truth = [utility(a) > utility(b) for _, a, b in pairs]
    out: dict = {"acc": {}, "coef": {}}
    with Personalizer(":memory:", rewards=rewards) as p:
        session = p.onboarding("person", max_questions=max(CHECKPOINTS),
                               min_questions=max(CHECKPOINTS))
        for asked in range(1, max(CHECKPOINTS) + 1):
            q = session.next_question()
            session.answer(q.id, answer(q))
            if asked in CHECKPOINTS:
                right = [(p.preference_probability("person", pr, a, b) > 0.5) == t
                         for (pr, a, b), t in zip(pairs, truth, strict=True)]
                out["acc"][asked] = float(np.mean(right))
                out["coef"][asked] = p.profile("person").coefficients[MAIN[taste]]
            if session.done:
                break
    out["noise"] = float(np.mean([max(s, 1 - s) for s in (
        sigmoid(beta * (utility(a) - utility(b))) for _, a, b in pairs)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=20, help="simulated people per taste")
    ap.add_argument("--beta", type=float, default=2.0, help="answer noise (higher: clearer)")
    args = ap.parse_args()
    rewards = default_reward_set()
    print(f"{len(held_out_pairs())} held-out pairs over {len(HELD_OUT)} prompts outside the "
          f"question bank; {args.people} people per taste; beta {args.beta}")
    head = "".join(f"{'acc@' + str(c):>9}" for c in CHECKPOINTS)
    print(f"{'taste':<8}{head}{'noise ceil':>12}   main coefficient @" +
          "/".join(str(c) for c in CHECKPOINTS))
    means: dict[int, list[float]] = {c: [] for c in CHECKPOINTS}
    for taste in TASTES:
        runs = [run_person(taste, 100 * i + 7, args.beta, rewards) for i in range(args.people)]
        accs = {c: statistics.mean(r["acc"][c] for r in runs) for c in CHECKPOINTS}
        coefs = {c: statistics.mean(r["coef"][c] for r in runs) for c in CHECKPOINTS}
        noise = statistics.mean(r["noise"] for r in runs)
        for c in CHECKPOINTS:
            means[c].append(accs[c])
        print(f"{taste:<8}" + "".join(f"{accs[c]:>9.3f}" for c in CHECKPOINTS)
              + f"{noise:>12.3f}   {MAIN[taste]} "
              + " / ".join(f"{coefs[c]:+.2f}" for c in CHECKPOINTS))
    print(f"{'mean':<8}" + "".join(f"{statistics.mean(means[c]):>9.3f}" for c in CHECKPOINTS)
          + "   (#16 targets: 0.85 after 5, 0.90 after 10)")


if __name__ == "__main__":
    main()
