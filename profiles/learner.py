"""Moved to :mod:`personalizer.profiles.learning.learner`."""

# TEMPORARY: sdk/client.py moves to the new path in #32
from .learning.learner import make_preference  # noqa: F401
