"""Onboarding as a new user meets it: simulated people whose tastes are *our own text measures*
(word counts with thresholds, list lines, exclamation marks and warm words), not the attribute
scorers' vectors, answer the default onboarding questions through the public ``Onboarding``
with Bradley-Terry noise; then their profile predicts their noise-free choices on answers to
prompts outside the question bank (8 prompts, 56 pairs; some answers mix styles).

    .venv/bin/python bench/onboarding_people.py [--people 20] [--beta 2.0] [--graded]
        [--prior shipped|standard] [--pool FILE] [--stopping]

Early stopping is off for the curve (every person answers up to 40 questions); accuracy is
read after 3, 5, 10 and 40 answers. The noise ceiling is how often a person's noisy answer
agrees with their own noise-free preference on the held-out pairs. ``--graded``: people say
"much" / "slightly" better or "both fine" (their noisy utility difference against the
likelihood's thresholds). ``--pool /path/to/first_bank.json`` measures another bank (the
first bank, 8 prompts x 4 styles, is in git history: ``git show f2bd7f4:profiles/data/
question_bank.json``). ``--stopping`` adds the early-stopping table: questions asked and
accuracy at the stop with Onboarding's defaults, for clear, default and noisy people.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np

from personalizer import Personalizer
from personalizer.profiles import default_reward_set
from personalizer.profiles.learning.posterior import TAU_MUCH, TAU_TIE

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
    "How do I make a good first impression at a new job?": [
        "Be on time, learn names, and ask questions.",
        "The first weeks are mostly about listening. Arrive a little early, learn your "
        "colleagues' names and what each of them works on, and ask questions rather than "
        "pretending to know how things are done. Take notes in your first meetings, finish "
        "the small tasks you are given quickly and well, and ask your manager after a "
        "couple of weeks how they think you are doing.",
        "- Arrive on time\n- Learn names and roles\n- Ask questions and take notes\n- "
        "Deliver small tasks well",
        "Congratulations on the new job, how exciting! Just be your friendly self, smile, "
        "ask lots of questions and enjoy meeting everyone. They're lucky to have you!",
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
    "How do I make my phone battery last longer?": [
        "Lower the screen brightness and close apps you are not using.",
        "The screen uses most of the power, so lowering the brightness and the time before "
        "it turns off helps most. Turn off location, Bluetooth and background refresh for "
        "apps that do not need them, keep the phone out of heat, and avoid draining it to "
        "zero regularly, since lithium batteries age faster at the extremes of charge.",
        "- Lower the brightness\n- Shorter screen timeout\n- Turn off unused location and "
        "Bluetooth\n- Keep it out of the heat",
        "Great question! Little changes make a lovely difference: dim the screen a bit, "
        "switch off what you're not using, and your phone will happily last all day!",
        "Happy to help!\n- Dim the screen\n- Close unused apps\n- Keep it cool\nEnjoy the "
        "extra hours!",
    ],
    "How should I start exercising if I have never done it?": [
        "Walk 20 minutes a day, then add strength work.",
        "Start with something easy enough to do almost every day, such as a brisk "
        "twenty-minute walk, so that the habit forms before the intensity grows. After two "
        "or three weeks add two short strength sessions with body-weight exercises like "
        "squats and push-ups against a wall, and increase the time or the load slowly, by a "
        "little each week.",
        "- Daily 20-minute walk\n- Two strength sessions a week\n- Increase slowly\n- Rest "
        "when sore",
        "Yay, what a wonderful decision! Start with gentle walks you enjoy, maybe with a "
        "friend or a great playlist, and celebrate every step. You'll feel amazing!",
        "Walk a little every day; it's a great start!",
    ],
}

# Two more answers per held-out prompt, so that mixed tastes can be told apart: a short warm
# answer, and a long list with concrete numbers.
MIXED = {
    "How do I keep houseplants alive?": [
        "Let the soil dry between waterings. You'll do great!",
        "- Water only when the top 2 cm of soil is dry, usually every 7-10 days\n"
        "- Give them 4-6 hours of bright, indirect light a day\n"
        "- Use pots with drainage holes and empty the saucer after 15 minutes\n"
        "- Feed them once a month from April to September",
    ],
    "How can I save money on groceries?": [
        "Plan your meals and shop with a list. You've got this!",
        "- Plan 7 dinners before you shop and buy only what they need\n"
        "- Set a weekly budget, for example 60 to 80 for two people\n"
        "- Store brands cost 20-30% less for the same staples\n"
        "- Cook 2 double batches a week and freeze the extra portions",
    ],
    "What should I know before adopting a dog?": [
        "Dogs need time, walks and love. How exciting!",
        "- Expect 10 to 15 years of daily care\n"
        "- Plan at least 2 walks a day, 30 to 60 minutes in all\n"
        "- Budget about 1,000 to 2,000 a year for food, insurance and the vet\n"
        "- Visit the dog 2 or 3 times before you adopt it",
    ],
    "How do I make a good first impression at a new job?": [
        "Be on time, smile and ask questions. Enjoy it!",
        "- Arrive 10 minutes early during the first 2 weeks\n"
        "- Learn the names of the 5 to 10 people you work with most\n"
        "- Write down 3 questions after each meeting and ask them\n"
        "- Ask your manager for feedback after 30 days",
    ],
    "How do I get better at running?": [
        "Run easy and often. You'll love the progress!",
        "- Run 3 or 4 times a week, mostly at an easy pace\n"
        "- Add at most 10% to your weekly distance\n"
        "- Do 1 interval session, for example 6 x 400 m\n"
        "- Take at least 1 or 2 full rest days every week",
    ],
    "How can I learn a new language faster?": [
        "Practise daily and speak early. Have fun with it!",
        "- Study 20 to 30 minutes every day instead of 3 hours once a week\n"
        "- Learn the 1,000 most common words first\n"
        "- Listen to 15 minutes of podcasts a day\n"
        "- Book 1 conversation session a week from week 1",
    ],
    "How do I make my phone battery last longer?": [
        "Dim the screen and close unused apps. Enjoy!",
        "- Keep the brightness below 50%\n"
        "- Set the screen timeout to 30 seconds\n"
        "- Keep the charge between 20% and 80%\n"
        "- Avoid heat above 35 degrees",
    ],
    "How should I start exercising if I have never done it?": [
        "Start with short walks. You'll feel amazing!",
        "- Walk 20 minutes a day for the first 2 weeks\n"
        "- Add 2 strength sessions of 15 minutes a week\n"
        "- Do 3 sets of 10 squats and wall push-ups\n"
        "- Add 5 minutes or 2 repetitions each week",
    ],
}

FIRST_HELD_OUT = {prompt: list(answers) for prompt, answers in HELD_OUT.items()}  # before #35
for _prompt, _answers in MIXED.items():
    HELD_OUT[_prompt] = HELD_OUT[_prompt] + _answers

WARM = re.compile(r"\b(love|lovely|great|wonderful|glad|happy|enjoy|amazing|yay|adore|"
                  r"exciting|joy)\b", re.IGNORECASE)


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
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

# Harder people (#35): two tastes at once, a taste the base rewards have no word for, and a
# noisier one. The last number is how consistent they are (beta; None: calibrated so that
# about 67% of their answers to the question bank agree with their noise-free choice).
HARD = {
    "short but warm": (lambda t: TASTES["short"](t) * 2 + TASTES["warm"](t), 2.0),
    "long lists": (lambda t: TASTES["long"](t) + TASTES["lists"](t), 2.0),
    "prose, not warm": (lambda t: -2.5 * (list_lines(t) >= 2) - TASTES["warm"](t), 2.0),
    "numbers": (lambda t: 0.8 * len(NUMBER.findall(t)), 2.0),
    "noisy short": (TASTES["short"], None),
}


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def held_out_pairs(held_out: dict | None = None) -> list[tuple[str, str, str]]:
    return [(prompt, a, b) for prompt, answers in (held_out or HELD_OUT).items()
            for a, b in itertools.combinations(answers, 2)]


def answerer(utility, beta: float, seed: int, graded: bool):  # noqa: ANN001, ANN201
    """A person's answer function for ``Onboarding.run``: their noisy utility difference
    ``beta * (u(a) - u(b)) + logistic noise``; its sign is a plain answer, or with ``graded``
    the interval it falls in (the same thresholds the likelihood reads answers with)."""
    rng = np.random.default_rng(seed)

    def answer(q: object) -> object:
        a, b = q.options  # type: ignore[attr-defined]
        u = rng.random()
        z = beta * (utility(a) - utility(b)) + math.log(u / (1.0 - u))
        if not graded:
            return 0 if z > 0 else 1
        if abs(z) < TAU_TIE:
            return "both_fine"
        return (0 if z > 0 else 1, "much" if abs(z) > TAU_MUCH else "slightly")

    return answer


def ask_one(session: object, answer) -> None:  # noqa: ANN001
    """One question of ``session`` answered by ``answer`` (plain or graded)."""
    q = session.next_question()  # type: ignore[attr-defined]
    reply = answer(q)
    if isinstance(reply, tuple):
        session.answer(q.id, reply[0], strength=reply[1])  # type: ignore[attr-defined]
    else:
        session.answer(q.id, reply)  # type: ignore[attr-defined]


def accuracy(p: Personalizer, pairs: list, truth: list, user: str = "person") -> float:
    """Share of held-out pairs whose noise-free choice the profile predicts (a prediction of
    exactly one half counts half)."""
    probs = np.array([p.preference_probability(user, pr, a, b) for pr, a, b in pairs])
    right = np.where(np.abs(probs - 0.5) < 1e-9, 0.5, (probs > 0.5) == np.array(truth))
    return float(np.mean(right))


def scored_pairs(utility, held_out: dict | None = None) -> tuple[list, list]:  # noqa: ANN001
    pairs = [(p, a, b) for p, a, b in held_out_pairs(held_out) if utility(a) != utility(b)]
    return pairs, [utility(a) > utility(b) for _, a, b in pairs]


def run_person(taste: str, seed: int, beta: float, rewards: object, *,
               pool: list | None = None, prior: str = "shipped", graded: bool = False) -> dict:
    """Accuracy and main coefficient after each checkpoint, early stopping off."""
    utility = TASTES[taste]
    answer = answerer(utility, beta, seed, graded)
    pairs, truth = scored_pairs(utility)
    out: dict = {"acc": {}, "coef": {}}
    with Personalizer(":memory:", rewards=rewards, prior=prior) as p:
        session = p.onboarding("person", max_questions=max(CHECKPOINTS),
                               min_questions=max(CHECKPOINTS), pool=pool)
        for asked in range(1, max(CHECKPOINTS) + 1):
            ask_one(session, answer)
            if asked in CHECKPOINTS:
                out["acc"][asked] = accuracy(p, pairs, truth)
                out["coef"][asked] = p.profile("person").coefficients[MAIN[taste]]
            if session.done:
                break
    out["noise"] = float(np.mean([max(s, 1 - s) for s in (
        sigmoid(beta * (utility(a) - utility(b))) for _, a, b in pairs)]))
    return out


def run_stopping(taste: str, seed: int, beta: float, rewards: object, *,
                 pool: list | None = None, prior: str = "shipped", graded: bool = False,
                 **options: object) -> tuple[int, float]:
    """Questions asked and accuracy at the stop, with Onboarding's default stopping."""
    utility = TASTES[taste]
    pairs, truth = scored_pairs(utility)
    with Personalizer(":memory:", rewards=rewards, prior=prior) as p:
        session = p.onboarding("person", pool=pool, **options)
        session.run(answerer(utility, beta, seed, graded))
        return len(session.state.asked), accuracy(p, pairs, truth)


def bank_agreement_beta(utility, agreement: float) -> float:  # noqa: ANN001
    """The beta at which ``utility``'s answers to the question bank agree with its noise-free
    choice ``agreement`` of the time on average (bisection)."""
    from personalizer.profiles.onboarding.bank import question_bank

    gaps = np.array([abs(utility(a) - utility(b)) for item in question_bank(None)
                     for a, b in itertools.combinations(item.responses, 2)
                     if utility(a) != utility(b)])
    lo, hi = 1e-3, 1e3
    for _ in range(80):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-mid * gaps))) < agreement else (lo, mid)
    return (lo * hi) ** 0.5


def hard_person(name: str, seed: int, rewards: object, *, graded: bool = False,
                prior: str = "shipped", **options: object) -> dict:
    """One harder person: answers asked and accuracy at the session's own stop (defaults
    unless ``options``), and the accuracy curve after 1..10 answers (stopping off)."""
    utility, beta = HARD[name] if name in HARD else (TASTES[name], 2.0)
    beta = beta or bank_agreement_beta(utility, 0.67)
    pairs, truth = scored_pairs(utility)
    with Personalizer(":memory:", rewards=rewards, prior=prior) as p:
        session = p.onboarding("person", **options)
        session.run(answerer(utility, beta, seed, graded))
        asked, at_stop = len(session.state.asked), accuracy(p, pairs, truth)
    curve, first = [], None
    first_pairs, first_truth = scored_pairs(utility, FIRST_HELD_OUT)
    with Personalizer(":memory:", rewards=rewards, prior=prior) as p:
        session = p.onboarding("person", max_questions=10, min_questions=10)
        answer = answerer(utility, beta, seed, graded)
        for _ in range(10):
            ask_one(session, answer)
            curve.append(accuracy(p, pairs, truth))
            if len(curve) == 5:
                first = accuracy(p, first_pairs, first_truth)
        top = sorted(p.profile("person").coefficients.items(), key=lambda kv: -abs(kv[1]))[:3]
    return {"asked": asked, "at_stop": at_stop, "curve": curve, "beta": beta, "first": first,
            "learned": ", ".join(f"{k} {v:+.2f}" for k, v in top)}


def hard_table(args: argparse.Namespace, rewards: object) -> None:
    print("\nHarder people through Onboarding's defaults (stop: the session's own; "
          f"{args.people} seeds): answers asked, accuracy at the stop, curve after 1..10")
    print(f"{'person':<17}{'beta':>6}{'asked':>7}{'at stop':>9}   " +
          " ".join(f"{k:>5}" for k in range(1, 11)) + "   learned (seed 0)")
    hard_means, stops, firsts = [], [], []
    for name in [*HARD, *TASTES]:
        runs = [hard_person(name, 100 * i + 7, rewards, graded=args.graded, prior=args.prior)
                for i in range(args.people)]
        curve = np.mean([r["curve"] for r in runs], axis=0)
        at_stop = statistics.mean(r["at_stop"] for r in runs)
        if name in HARD:
            hard_means.append(at_stop)
        else:
            firsts.append(f"{name} {statistics.mean(r['first'] for r in runs):.3f}")
        stops.append(f"{name}: " + ", ".join(str(r["asked"]) for r in runs[:5]))
        print(f"{name:<17}{runs[0]['beta']:>6.2f}{statistics.mean(r['asked'] for r in runs):>7.1f}"
              f"{at_stop:>9.3f}   " + " ".join(f"{a:>5.2f}" for a in curve)
              + f"   {runs[0]['learned']}")
    print(f"harder people, mean accuracy at the stop: {statistics.mean(hard_means):.3f} "
          "(#35 target 0.80; single tastes >= 0.90 after 5)")
    print("single tastes after 5 answers on the first held-out set (4-6 answers a prompt, "
          "before #35 added mixed ones): " + ", ".join(firsts))
    print("answers asked, first 5 seeds: " + "; ".join(stops))


def crowd_table(args: argparse.Namespace, rewards: object) -> None:
    """Never worse than the crowd: an app's population (``--crowd`` people, every taste of
    this file, answers agreeing ~75% with their noise-free choice) onboards with the
    defaults; then newcomers of each taste. The crowd's prediction for a newcomer is the
    population prior's (a profile with no answers yet); the personal one is their profile
    after 1, 3, 5 answers and at the session's stop."""
    import tempfile

    names = [*TASTES, *[k for k in HARD if k != "noisy short"]]
    utilities = {k: (HARD[k][0] if k in HARD else TASTES[k]) for k in names}
    betas = {k: bank_agreement_beta(utilities[k], 0.75) for k in names}
    with tempfile.TemporaryDirectory() as tmp, \
            Personalizer(Path(tmp) / "app.db", rewards=rewards) as p:
        for i in range(args.crowd):
            taste = names[i % len(names)]
            p.onboarding(f"app-{i}").run(answerer(utilities[taste], betas[taste], 1000 + i,
                                                  False))
        print(f"\nNever worse than the crowd: {args.crowd} people onboarded (answers agree "
              f"~75% with their noise-free choice), then {args.people} newcomers a taste")
        print(f"{'taste':<17}{'crowd':>7}{'@1':>7}{'@3':>7}{'@5':>7}{'at stop':>9}"
              f"{'asked':>7}{'worse than crowd':>18}")
        rows = []
        for taste in names:
            utility, beta = utilities[taste], betas[taste]
            pairs, truth = scored_pairs(utility)
            crowd, curve, worse = [], [], 0
            for i in range(args.people):
                user = f"new-{i}"
                p.create_profile(user)
                crowd.append(accuracy(p, pairs, truth, user=user))
                session = p.onboarding(user)
                answer, points = answerer(utility, beta, 100 * i + 7, False), {}
                while not session.done:
                    q = session.next_question()
                    session.answer(q.id, answer(q))
                    asked = len(session.state.asked)
                    if asked in (1, 3, 5) or session.done:
                        points[asked if asked in (1, 3, 5) and not session.done else "stop"] = \
                            accuracy(p, pairs, truth, user=user)
                for k in (1, 3, 5):
                    points.setdefault(k, points["stop"])
                points["asked"] = asked
                worse += points["stop"] < crowd[-1] - 1e-9
                curve.append(points)
                p.delete_profile(user)
            row = [statistics.mean(crowd)] + [statistics.mean(c[k] for c in curve)
                                              for k in (1, 3, 5, "stop", "asked")]
            rows.append(row)
            print(f"{taste:<17}" + "".join(f"{v:>7.3f}" for v in row[:4])
                  + f"{row[4]:>9.3f}{row[5]:>7.1f}{worse:>12} of {args.people}")
        mean = np.mean(rows, axis=0)
        print(f"{'mean':<17}" + "".join(f"{v:>7.3f}" for v in mean[:4])
              + f"{mean[4]:>9.3f}{mean[5]:>7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=20, help="simulated people per taste")
    ap.add_argument("--beta", type=float, default=2.0, help="answer noise (higher: clearer)")
    ap.add_argument("--pool", help="a question-bank JSON file to onboard with instead of the "
                                   "shipped one (e.g. the first bank, for the baseline)")
    ap.add_argument("--prior", default="shipped", choices=("shipped", "standard"),
                    help="a newcomer's prior: the built-in one, or N(0, I)")
    ap.add_argument("--graded", action="store_true",
                    help="people answer 'much'/'slightly' better or 'both fine'")
    ap.add_argument("--stopping", action="store_true",
                    help="also the early-stopping table (clear, default and noisy people)")
    ap.add_argument("--crowd", type=int, default=0,
                    help="only the crowd table: an app of this many people, then newcomers")
    ap.add_argument("--hard", action="store_true",
                    help="only the harder people's table (mixed, outside-library, noisy)")
    ap.add_argument("--min-questions", type=int, default=None)
    ap.add_argument("--check-confidence", type=float, default=None)
    ap.add_argument("--stop-checks", type=int, default=None)
    args = ap.parse_args()
    rewards = default_reward_set()
    pool = json.loads(Path(args.pool).read_text())["questions"] if args.pool else None
    if args.hard:
        hard_table(args, rewards)
        return
    if args.crowd:
        crowd_table(args, rewards)
        return
    print(f"{len(held_out_pairs())} held-out pairs over {len(HELD_OUT)} prompts outside the "
          f"question bank; {args.people} people per taste; beta {args.beta}")
    head = "".join(f"{'acc@' + str(c):>9}" for c in CHECKPOINTS)
    print(f"{'taste':<8}{head}{'noise ceil':>12}   main coefficient @" +
          "/".join(str(c) for c in CHECKPOINTS))
    means: dict[int, list[float]] = {c: [] for c in CHECKPOINTS}
    for taste in TASTES:
        runs = [run_person(taste, 100 * i + 7, args.beta, rewards, pool=pool, prior=args.prior,
                           graded=args.graded) for i in range(args.people)]
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

    if args.stopping:
        stopping_table(args, rewards, pool)


def stopping_table(args: argparse.Namespace, rewards: object, pool: list | None) -> None:
    options = {k: v for k, v in (("min_questions", args.min_questions),
                                 ("check_confidence", args.check_confidence),
                                 ("stop_checks", args.stop_checks)) if v is not None}
    print(f"\nEarly stopping with Onboarding's defaults (max 10 questions){options or ''}: "
          "mean questions asked / accuracy at the stop")
    print(f"{'taste':<8}" + "".join(f"{name:>22}" for name in
                                     ("clear (beta 6)", "default (beta 2)", "noisy (beta 0.1)")))
    for taste in TASTES:
        cells = []
        for beta in (6.0, 2.0, 0.1):
            runs = [run_stopping(taste, 100 * i + 7, beta, rewards, pool=pool, prior=args.prior,
                                 graded=args.graded, **options) for i in range(args.people)]
            cells.append(f"{statistics.mean(r[0] for r in runs):>12.1f} / "
                         f"{statistics.mean(r[1] for r in runs):.3f}")
        print(f"{taste:<8}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
