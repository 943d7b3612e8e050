"""Learning a person's coefficients: the Bradley-Terry posterior (:mod:`.posterior`, pure
math), which question to ask (:mod:`.questions`), where the prior comes from (:mod:`.priors`),
the learner that keeps a profile's posterior in step with its history (:mod:`.learner`), and
base rewards learned from many people's choices (:mod:`.features`)."""
