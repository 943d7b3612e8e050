"""Onboarding: a resumable session of pairwise questions chosen by active learning
(:mod:`.session`), the question bank and pools it asks from (:mod:`.bank`), the rewrites that
make a pool's answers differ along one attribute at a time (:mod:`.pool`), and simulated
people who answer like a person of a given taste (:mod:`.simulate`)."""
