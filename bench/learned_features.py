"""Features learned from an app's own users: do they help a newcomer?

A simulated app: ``--users`` people (a ``--share`` of them with a taste the attributes have
no word for: ``--outside people``, answers that bring in other people (friends, colleagues,
family), or ``numbers``, concrete figures; the others single or mixed tastes of
bench/onboarding_people.py) each answered ``--history`` random pairs of the question bank
(Bradley-Terry, beta 2), recorded through ``Personalizer.record_preference``. Then
``Personalizer.learn_features`` learns extra features from that history, and newcomers of
each taste onboard through ``Personalizer.onboarding`` with its defaults, once over the
attributes alone (their prior: the app's population) and once over the extended set (their
prior: the population the features were learned from); scored on held-out answers to
prompts outside the bank, as in bench/onboarding_people.py. Also measured: a generic feature
for a newcomer whose taste no one shares, the top principal directions of MiniLM embeddings
of the bank's answers with a tight prior (``--pca``).

    .venv/bin/python bench/learned_features.py [--users 300] [--share 0.3] [--history 20]
        [--newcomers 10] [--features 1] [--pca]
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import onboarding_people as people

from personalizer import Personalizer
from personalizer.profiles import default_reward_set, question_bank
from personalizer.profiles.learning.app_features import extended_reward_set

SOCIAL = re.compile(r"\b(friends?|family|colleagues?|manager|partner|someone|others|people|"
                    r"team|neighbou?rs?|together|support)\b", re.IGNORECASE)
TASTES = {**{k: v for k, v in people.TASTES.items()},
          **{k: v[0] for k, v in people.HARD.items() if k != "noisy short"},
          # a taste about what an answer talks about (other people), not how it is written
          "people": lambda t: 1.5 * len(SOCIAL.findall(t))}
OUTSIDE = ("numbers", "people")
OTHERS = [k for k in TASTES if k not in OUTSIDE]
NEWCOMERS = ["short but warm", "long lists", "prose, not warm", "short", "lists"]


def app_population(db: Path, users: int, share: float, history: int, seed: int,
                   outside: str) -> None:
    rng = np.random.default_rng(seed)
    pairs = [(item.prompt, a, b) for item in question_bank(None)
             for a, b in itertools.combinations(item.responses, 2)]
    with Personalizer(db, rewards=default_reward_set()) as p:
        for u in range(users):
            taste = outside if rng.random() < share else OTHERS[rng.integers(len(OTHERS))]
            utility = TASTES[taste]
            for i in rng.choice(len(pairs), history, replace=False):
                prompt, a, b = pairs[i]
                z = 2.0 * (utility(a) - utility(b)) + rng.logistic()
                chosen, rejected = (a, b) if z > 0 else (b, a)
                p.record_preference(f"app-{u}", prompt, chosen, rejected)


def newcomer_accuracy(db: Path, rewards: object, taste: str, n: int) -> tuple[float, float]:
    """Mean answers asked and held-out accuracy at the stop of ``n`` newcomers."""
    utility = TASTES[taste]
    pairs, truth = people.scored_pairs(utility)
    asked, accs = [], []
    with Personalizer(db, rewards=rewards) as p:
        for i in range(n):
            user = f"new-{i}"
            session = p.onboarding(user)
            session.run(people.answerer(utility, 2.0, 100 * i + 7, False))
            asked.append(len(session.state.asked))
            accs.append(people.accuracy(p, pairs, truth, user=user))
            p.delete_profile(user)  # newcomers do not become each other's population
    return statistics.mean(asked), statistics.mean(accs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--newcomers", type=int, default=10)
    ap.add_argument("--features", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pca", action="store_true", help="also the generic embedding feature")
    ap.add_argument("--outside", default="people", choices=OUTSIDE,
                    help="the shared taste the attributes have no word for")
    ap.add_argument("--tastes", nargs="*", default=None,
                    help="newcomers' tastes (default: the outside one and five others)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, out = Path(tmp) / "app.db", Path(tmp) / "features.safetensors"
        start = time.perf_counter()
        app_population(db, args.users, args.share, args.history, args.seed, args.outside)
        print(f"app: {args.users} people, {args.share:.0%} with the {args.outside!r} taste, "
              f"{args.history} choices each ({time.perf_counter() - start:.0f} s)")
        start = time.perf_counter()
        with Personalizer(db, rewards=default_reward_set()) as p:
            report = p.learn_features(out, n_features=args.features)
        print(f"learn_features: {report.users} people, {report.comparisons} choices, "
              f"{time.perf_counter() - start:.0f} s; the app's own held-out choices "
              f"({report.held_out}): attributes {report.accuracy_base:.3f}, with learned "
              f"features {report.accuracy_learned:.3f}")
        extended = extended_reward_set(out)
        print(f"\nnewcomers ({args.newcomers} a taste, Onboarding defaults): answers asked / "
              "held-out accuracy at the stop")
        print(f"{'taste':<17}{'attributes':>18}{'+ learned':>18}")
        for taste in args.tastes or [args.outside, *NEWCOMERS]:
            cells = []
            for rewards in (default_reward_set(), extended):
                copy = Path(tmp) / "copy.db"
                shutil.copy(db, copy)
                asked, acc = newcomer_accuracy(copy, rewards, taste, args.newcomers)
                cells.append(f"{asked:>10.1f} / {acc:.3f}")
            print(f"{taste:<17}" + "".join(f"{c:>18}" for c in cells))
    if args.pca:
        pca_table()


def pca_table() -> None:
    """A newcomer alone (no app population): attributes vs attributes + the top principal
    directions of MiniLM embeddings of the bank's answers (prior sd 0.3), 10 random
    questions, 30 people a taste."""
    from personalizer.backends.rewards import SentenceEncoder
    from personalizer.profiles.learning.posterior import (
        Posterior,
        fit_posterior,
        preference_probability,
    )
    from personalizer.profiles.learning.priors import shipped_prior

    rw = default_reward_set()
    bank = question_bank(None)
    texts = [(item.prompt, r) for item in bank for r in item.responses]
    index = {t: i for i, t in enumerate(texts)}
    pairs = [(index[(item.prompt, a)], index[(item.prompt, b)]) for item in bank
             for a, b in itertools.combinations(item.responses, 2)]
    feats = np.concatenate([rw.features(item.prompt, item.responses) for item in bank])
    encoder = SentenceEncoder()
    emb = encoder.encode([t for _, t in texts])
    centre = emb.mean(0)
    _, _, vt = np.linalg.svd(emb - centre, full_matrices=False)
    held = people.held_out_pairs()
    print("\ngeneric embedding features for a newcomer (10 random questions, 30 people a "
          "taste): attributes / + top-k principal directions")
    for k in (2, 4):
        proj = (emb - centre) @ vt[:k].T
        scale = proj.std(0)
        ext = np.concatenate([feats, proj / scale], 1)
        base_prior = shipped_prior(rw)
        prior = Posterior(np.concatenate([base_prior.mean, np.zeros(k)]), np.block([
            [base_prior.cov, np.zeros((9, k))], [np.zeros((k, 9)), 0.09 * np.eye(k)]]))
        for taste in [*OUTSIDE, *NEWCOMERS]:
            utility = TASTES[taste]
            scored = [(pr, a, b) for pr, a, b in held if utility(a) != utility(b)]
            truth = np.array([utility(a) > utility(b) for _, a, b in scored])
            da = np.array([rw.features(pr, [a, b])[0] - rw.features(pr, [a, b])[1]
                           for pr, a, b in scored])
            de = (encoder.encode([a for _, a, _ in scored])
                  - encoder.encode([b for _, _, b in scored])) @ vt[:k].T / scale
            dx = np.concatenate([da, de], 1)
            acc: dict[str, list[float]] = {"a": [], "x": []}
            for s in range(30):
                rng = np.random.default_rng(100 + s)
                ya, yx = [], []
                for i in rng.choice(len(pairs), 10, replace=False):
                    a, b = pairs[i]
                    z = 2.0 * (utility(texts[a][1]) - utility(texts[b][1])) + rng.logistic()
                    sign = 1.0 if z > 0 else -1.0
                    ya.append(sign * (feats[a] - feats[b]))
                    yx.append(sign * (ext[a] - ext[b]))
                pa = fit_posterior(base_prior, np.array(ya))
                px = fit_posterior(prior, np.array(yx))
                acc["a"].append(np.mean((preference_probability(pa, da) > 0.5) == truth))
                acc["x"].append(np.mean((preference_probability(px, dx) > 0.5) == truth))
            print(f"k={k} {taste:<17} {np.mean(acc['a']):.3f} / {np.mean(acc['x']):.3f}")


if __name__ == "__main__":
    main()
