"""The decoding strategies: one module each (its settings model, its ``plan(context)`` and
its token policy), registered in the one table, :data:`personalizer.steering.STRATEGIES`.

A new strategy is one module here (or anywhere: a model subclassing
:class:`personalizer.steering.Strategy` with a ``plan(context)`` method, see
:class:`~personalizer.backends.decoding.planning.PlanContext`) and one line below.
"""

from __future__ import annotations

from personalizer.steering import STRATEGIES

from .args import Args
from .best_of_n import BestOfN
from .experts import Experts
from .token_rewards import TokenRewards

__all__ = ["Args", "BestOfN", "Experts", "TokenRewards"]

STRATEGIES.register(Args)
STRATEGIES.register(BestOfN)
STRATEGIES.register(Experts)
STRATEGIES.register(TokenRewards)
