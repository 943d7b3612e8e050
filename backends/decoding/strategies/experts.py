"""Per-person proxy-tuning with attribute experts, token by token.

The generator's experts (:class:`~personalizer.backends.experts.ExpertSet`: one LoRA adapter
per base reward, trained by DPO to prefer "more of" it) are weighed by the person's
coefficients: ``logits = base + sum_j w_j (expert_j - base)``, ``w_j = strength * scale *
c_j`` on the profile's relative scale. A DPO expert's log-ratio to its base is a token-level
reward (GenARM), so this is the person's reward decoded token by token (the multi-objective
decoding of MOD and PAD). The base and the experts run as rows of one forward.

The default strategy (:class:`~.best_of_n.BestOfN`) weighs the same experts into its
sentence blocks (its ``experts`` scale), keeping its ending rules; this strategy is the
experts alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from personalizer.errors import InvalidInput
from personalizer.steering import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.planning import Plan, PlanContext

__all__ = ["Experts"]


class Experts(Strategy):
    """Attribute experts weighed by the person's coefficients, every token
    (``LocalGenerator(..., experts=...)``; SmolLM2 ships with its own). With ``floor`` and a
    generator quality term, the experts may not end an answer below the quality floor (the
    model's own end of turn stays)."""

    kind: Literal["experts"] = "experts"
    scale: float = Field(
        default=1.0, gt=0, le=20,
        description="Each expert's weight is the person's relative coefficient on its base "
                    "reward times the strength times this scale.")
    min_weight: float = Field(
        default=0.2, ge=0, le=10,
        description="Experts with a smaller weight are left out of the forward (each one "
                    "costs a row of the batch; a smaller weight moves little).")
    floor: bool = Field(
        default=True,
        description="The experts may not end an answer whose substance is below the "
                    "generator's quality floor.")

    def plan(self, ctx: PlanContext) -> Plan:
        """The person's experts on one row, path ``"experts"``."""
        from personalizer.backends.decoding.policies import PlainPolicy

        if ctx.experts is None:
            raise InvalidInput(
                f"strategy 'experts' needs attribute experts for {ctx.handle.name}: "
                "LocalGenerator(..., experts='auto') for SmolLM2's shipped ones, or "
                "ExpertSet.load(folder) from `personalizer experts train`; or use "
                "strategy='best_of_n'")
        if not ctx.experts.serves(ctx.rewards):
            raise InvalidInput(
                f"the experts of {ctx.handle.name} were trained for the base rewards of "
                f"reward set {ctx.experts.reward_set!r}, not {ctx.rewards.id!r}: steer with "
                "that reward set, or train experts for yours")
        mix = ctx.expert_mix(self.scale, self.min_weight)
        if mix is None:
            return ctx.plain()
        quality = ctx.quality_model if self.floor else None
        return ctx.plan(PlainPolicy(quality=quality), "experts", (), quality=quality, mix=mix)
