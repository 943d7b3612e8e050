"""Fits the built-in prior shipped with the default reward set
(``profiles/data/attributes_prior.json``): the population prior a newcomer starts from
before an application has the 20 users of its own that the population prior needs.

    .venv/bin/python bench/make_prior.py [--people 300] [--out profiles/data/attributes_prior.json]

The population is simulated: each person's taste is a random sparse mix of *text measures*
(sentence count, characters, list items, exclamation and question marks, second-person
words, digits, word length, hedge and politeness words: plain counts on the text, none of
them an attribute scorer), answering every pair of the shipped question bank with
Bradley-Terry noise. Their coefficients are learned from those answers under a broad prior;
the built-in prior is the population's spread (mean, and covariance of the means plus the
mean posterior covariance, as
:func:`personalizer.profiles.learning.priors.population_prior`), plus ``--floor`` on every
variance so that a taste the population rarely has is not shrunk away (measured: a
population that weighs none of the evaluated kinds of measure then costs nothing against
N(0, I); without the floor it costs 8 points after 5 answers).
These tastes are not the ones bench/onboarding_people.py evaluates on.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from personalizer.profiles import default_reward_set, question_bank
from personalizer.profiles.learning.posterior import Posterior, fit_posterior, sigmoid
from personalizer.profiles.learning.priors import population_prior

_LIST = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s", re.MULTILINE)
MEASURES = {
    "sentences": lambda t: len(re.findall(r"[.!?](?:\s|$)", t)) / 3.0,
    "characters": lambda t: len(t) / 200.0,
    "list items": lambda t: len(_LIST.findall(t)) / 2.0,
    "exclamations": lambda t: t.count("!") * 1.0,
    "questions": lambda t: t.count("?") * 1.0,
    "you": lambda t: len(re.findall(r"\byou(?:r|'re|'ll|'ve)?\b", t, re.IGNORECASE)) / 2.0,
    "digits": lambda t: len(re.findall(r"\d+", t)) / 2.0,
    "word length": lambda t: np.mean([len(w) for w in t.split()] or [0]) - 4.5,
    "hedge words": lambda t: len(re.findall(r"\b(?:maybe|perhaps|might|usually|generally|"
                                            r"often|depend\w*)\b", t, re.IGNORECASE)) * 1.0,
    "politeness": lambda t: len(re.findall(r"\b(?:please|thank\w*|hope|glad|happy|sorry)\b",
                                           t, re.IGNORECASE)) * 1.0,
}


def person_utility(rng: np.random.Generator, keys: list[str]):  # noqa: ANN201
    picked = rng.choice(len(keys), size=int(rng.integers(1, 4)), replace=False)
    weights = {keys[k]: float(rng.normal(0.0, 1.5)) for k in picked}
    return lambda t: sum(w * MEASURES[k](t) for k, w in weights.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--beta", type=float, default=2.0)
    ap.add_argument("--out", default="profiles/data/attributes_prior.json")
    ap.add_argument("--floor", type=float, default=0.25,
                    help="variance added to every reward, so that a taste the population "
                         "rarely has is still learned quickly")
    ap.add_argument("--exclude", nargs="*", default=[], choices=sorted(MEASURES),
                    help="measures no simulated person weighs (an ablation)")
    args = ap.parse_args()
    rewards = default_reward_set()
    texts, diffs = [], []
    for item in question_bank():
        feats = rewards.features(item.prompt, item.responses)
        for a in range(len(item.responses)):
            for b in range(a + 1, len(item.responses)):
                texts.append((item.responses[a], item.responses[b]))
                diffs.append(feats[a] - feats[b])
    d = np.array(diffs)
    rng = np.random.default_rng(0)
    broad = Posterior.standard(len(rewards), 3.0)
    posts = []
    for _ in range(args.people):
        u = person_utility(rng, [k for k in MEASURES if k not in args.exclude])
        margin = np.array([u(a) - u(b) for a, b in texts])
        first = rng.random(len(texts)) < sigmoid(args.beta * margin)
        posts.append(fit_posterior(broad, np.where(first[:, None], d, -d)))
    prior = population_prior(posts, min_users=1)
    # a reward the bank never varies (emoji) learns nothing: it keeps the standard prior
    still = np.flatnonzero(np.abs(d).max(axis=0) < 1e-9)
    mean, cov = prior.mean.copy(), prior.cov.copy()
    mean[still], cov[still, :], cov[:, still] = 0.0, 0.0, 0.0
    cov[still, still] = 1.0
    prior = Posterior(mean, cov + args.floor * np.eye(len(mean)) * (np.abs(d).max(axis=0)
                                                                   >= 1e-9))
    data = {"reward_set": rewards.id, "version": rewards.version, "names": list(rewards.names),
            "people": args.people, "note": __doc__.split("\n\n")[0],
            "mean": prior.mean.tolist(), "cov": prior.cov.tolist()}
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} from {args.people} simulated people over {len(texts)} pairs")
    print("prior sd per reward: " + ", ".join(
        f"{n} {s:.2f}" for n, s in zip(rewards.names, np.sqrt(np.diag(prior.cov)), strict=True)))
    print("prior mean: " + ", ".join(f"{n} {m:+.2f}" for n, m in
                                     zip(rewards.names, prior.mean, strict=True)))


if __name__ == "__main__":
    main()
