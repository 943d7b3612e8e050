"""Onboarding: held-out pairwise accuracy after 1..N questions, active vs random selection.

    .venv/bin/python bench/onboarding.py [--users 200] [--questions 40] [--png bench/out/onboarding.png]

Settings (J=8 features, 900 candidate pairs, 300 held-out pairs, answers agreeing with the
user's noise-free preference ~76% of the time):

* ``independent`` / ``pairwise-0.6``: feature differences N(0, I), or with correlation 0.6
  between every two features; coefficients N(0, I).
* ``rank4``: the correlated setting as DESIGN.md describes it (and PReF's anchor): 60 prompts
  x 6 responses whose features are ``phi = A z + 0.1 eps`` (A an 8x4 Gaussian matrix, rows
  rescaled to unit feature variance, z ~ N(0, I_4)), the 900 same-prompt pairs as the pool,
  2000 fresh pairs held out; coefficients N(0, c^2 I) with c such that std(c . d) over the
  pool is 2.0, answers Bradley-Terry on ``c . d`` (no further noise scaling). Anchor numbers
  to reach 90% of the ceiling: PReF 16, PReF's rule + MAP 10, Laplace/EIG 6.
* ``population``: our simulator, where tastes have structure (coefficients share a mean and
  correlations); here the population prior, fitted on 200 *other* users' posteriors after 20
  answers each, can help.

Methods, run on the same users, pools and answer noise:

* ``pref-sgd``: PReF as published: its rule ``sigmoid'(c.d)^2 d^T A^-1 d`` (A the accumulated
  Fisher information) and a prior-free SGD refit from a fresh random start after every answer;
* ``pref-map``: the same rule with a MAP fit under N(0, I);
* ``random``: random questions, MAP fit;
* ``eig``: ours, Laplace posterior with expected-information-gain selection, prior N(0, I);
* ``eig-pop``: ours with the population prior (``population`` setting only).

The ceiling is the MAP fit on 200 random answers. "Reaches 90%" is the first question count
where the mean held-out accuracy is at least 0.9 x the ceiling's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from personalizer.profiles.learning.posterior import Posterior, fit_posterior
from personalizer.profiles.learning.priors import population_prior
from personalizer.profiles.learning.questions import pref_rule, select_question
from personalizer.profiles.onboarding.simulate import calibrate_beta

J, POOL, HELD_OUT, AGREEMENT = 8, 900, 300, 0.76
CORR = 0.6  # correlation between features in the "correlated" setting


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def rank4_setting(users: int, seed: int) -> dict:
    """The ``rank4`` setting (see the module docstring)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((J, 4))
    a /= np.sqrt((a**2).sum(axis=1) + 0.1**2)[:, None]  # unit variance per feature

    def pairs(prompts: int) -> np.ndarray:
        phi = rng.standard_normal((prompts, 6, 4)) @ a.T + 0.1 * rng.standard_normal(
            (prompts, 6, J))
        i, j = np.triu_indices(6, 1)
        return (phi[:, i] - phi[:, j]).reshape(-1, J)

    pool, held = pairs(60), pairs(134)[:2000]
    lam = rng.standard_normal((2 * users, J))
    lam *= 2.0 / float(np.std(pool @ lam.T))  # std(lambda . d) over the pool: 2.0
    test, others = lam[:users], lam[users:]
    u = rng.random((2 * users, len(pool)))
    answers = u < _sigmoid(lam @ pool.T)
    return {"pool": pool, "held": held, "test": test, "others": others,
            "answers": answers[:users], "other_answers": answers[users:], "beta": 1.0,
            "rng": rng}


def setting(name: str, users: int, seed: int, corr: float = CORR) -> dict:
    if name == "rank4":
        return rank4_setting(users, seed)
    rng = np.random.default_rng(seed)
    if name == "correlated":
        cov_d = (1 - corr) * np.eye(J) + corr * np.ones((J, J))
    else:
        cov_d = np.eye(J)
    diffs = rng.multivariate_normal(np.zeros(J), cov_d, size=POOL + HELD_OUT)
    if name == "population":
        mean_c = np.linspace(1.2, -0.8, J)
        a = rng.standard_normal((J, 3))
        cov_c = 0.3 * np.eye(J) + a @ a.T / 3
        coeffs = rng.multivariate_normal(mean_c, cov_c, size=2 * users)
    else:
        coeffs = rng.standard_normal((2 * users, J))
    test, others = coeffs[:users], coeffs[users:]
    beta = calibrate_beta(test, diffs, AGREEMENT)
    # every user's noisy answer to every pool pair, drawn once: all methods see the same answers
    u = rng.random((2 * users, POOL))
    answers = u < _sigmoid(beta * coeffs @ diffs[:POOL].T)  # True: first preferred
    return {"pool": diffs[:POOL], "held": diffs[POOL:], "test": test, "others": others,
            "answers": answers[:users], "other_answers": answers[users:], "beta": beta,
            "rng": rng}


def sgd_fit(rows: np.ndarray, rng: np.random.Generator, steps: int = 100,
            lr: float = 0.5) -> np.ndarray:
    """PReF's published fit: plain gradient descent on the Bradley-Terry loss from a fresh
    random start, no prior."""
    c = rng.standard_normal(J) * 0.1
    for _ in range(steps):
        s = _sigmoid(rows @ c)
        c = c + lr * rows.T @ (1.0 - s) / len(rows)
    return c


def accuracy(mean: np.ndarray, held: np.ndarray, true_c: np.ndarray) -> float:
    return float(np.mean((held @ mean > 0) == (held @ true_c > 0)))


def run_method(method: str, s: dict, questions: int, prior: Posterior) -> np.ndarray:
    pool, held, answers = s["pool"], s["held"], s["answers"]
    acc = np.zeros((len(s["test"]), questions))
    for ui, true_c in enumerate(s["test"]):
        rng = np.random.default_rng(1000 + ui)
        order = rng.permutation(POOL)
        post = prior if method == "eig-pop" else Posterior.standard(J)
        start = post
        rows: list[np.ndarray] = []
        asked: set[int] = set()
        c_sgd = rng.standard_normal(J) * 0.1
        fisher = np.eye(J)
        for q in range(questions):
            if method == "random":
                i = int(order[q])
            elif method in ("eig", "eig-pop"):
                i = select_question(post, pool, asked=asked, rule="eig")
            else:  # PReF's rule around its current estimate and accumulated information
                mean = c_sgd if method == "pref-sgd" else post.mean
                cur = Posterior(mean, np.linalg.inv(fisher))
                scores = pref_rule(cur, pool)
                scores[list(asked)] = -np.inf
                i = int(np.argmax(scores))
            asked.add(i)
            d = pool[i] if answers[ui, i] else -pool[i]
            rows.append(d)
            if method == "pref-sgd":
                c_sgd = sgd_fit(np.array(rows), rng)
                s_ = _sigmoid(d @ c_sgd)
                fisher = fisher + s_ * (1 - s_) * np.outer(d, d)
                acc[ui, q] = accuracy(c_sgd, held, true_c)
                continue
            post = fit_posterior(start, np.array(rows))
            if method == "pref-map":
                s_ = _sigmoid(d @ post.mean)
                fisher = fisher + s_ * (1 - s_) * np.outer(d, d)
            acc[ui, q] = accuracy(post.mean, held, true_c)
    return acc


def ceiling(s: dict, n: int = 200) -> float:
    accs = []
    for ui, true_c in enumerate(s["test"]):
        idx = np.random.default_rng(5000 + ui).permutation(POOL)[:n]
        rows = np.where(s["answers"][ui, idx][:, None], s["pool"][idx], -s["pool"][idx])
        accs.append(accuracy(fit_posterior(Posterior.standard(J), rows).mean, s["held"], true_c))
    return float(np.mean(accs))


def learned_prior(s: dict, answers_each: int = 20) -> Posterior:
    posts = []
    for ui in range(len(s["others"])):
        idx = np.random.default_rng(9000 + ui).permutation(POOL)[:answers_each]
        rows = np.where(s["other_answers"][ui, idx][:, None], s["pool"][idx], -s["pool"][idx])
        posts.append(fit_posterior(Posterior.standard(J), rows))
    return population_prior(posts)


def reach(curve: np.ndarray, target: float) -> str:
    hit = np.nonzero(curve >= target)[0]
    return str(int(hit[0]) + 1) if hit.size else f">{len(curve)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--png", default="bench/out/onboarding.png")
    ap.add_argument("--corr", type=float, nargs="+", default=[CORR],
                    help="feature correlations of the correlated setting (one run each)")
    ap.add_argument("--settings", nargs="+", default=["independent", "correlated", "rank4",
                                                       "population"],
                    help="which settings to run (correlated: pairwise, once per --corr)")
    args = ap.parse_args()
    curves: dict[str, dict[str, np.ndarray]] = {}
    runs = [("independent", CORR), *(("correlated", c) for c in args.corr),
            ("rank4", CORR), ("population", CORR)]
    runs = [(name, corr) for name, corr in runs if name in args.settings]
    for name, corr in runs:
        t = time.perf_counter()
        s = setting(name, args.users, seed=7, corr=corr)
        if name == "correlated":
            name = f"pairwise-{corr:g}"
        ceil = ceiling(s)
        methods = ["pref-sgd", "pref-map", "random", "eig"]
        prior = Posterior.standard(J)
        if name.startswith("population"):
            methods.append("eig-pop")
            prior = learned_prior(s)
        curves[name] = {m: run_method(m, s, args.questions, prior).mean(axis=0)
                        for m in methods}
        print(f"\n== {name}: ceiling (200 answers) {ceil:.3f}, 90% of it = {0.9 * ceil:.3f}, "
              f"beta {s['beta']:.2f} ({time.perf_counter() - t:.0f}s)")
        shown = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]
        print(f"{'method':<10}{'reaches 90%':>12}  " + "".join(f"{q:>7}" for q in shown))
        for m, curve in curves[name].items():
            print(f"{m:<10}{reach(curve, 0.9 * ceil):>12}  "
                  + "".join(f"{curve[q - 1]:>7.3f}" for q in shown if q <= len(curve)))
        curves[name]["ceiling"] = np.full(args.questions, ceil)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no PNG; `pip install matplotlib`)")
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.5), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, (name, by_method) in zip(axes, curves.items(), strict=True):
        x = np.arange(1, args.questions + 1)
        for m, curve in by_method.items():
            style = ":" if m == "ceiling" else "-"
            ax.plot(x, curve, style, label=m)
        ax.axhline(0.9 * by_method["ceiling"][0], color="grey", lw=0.5)
        ax.set_title(name)
        ax.set_xlabel("questions answered")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out pairwise accuracy")
    axes[-1].legend(loc="lower right")
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"\nplot saved to {args.png}")


if __name__ == "__main__":
    main()
