"""Best-of-n: sample n continuations as one batch and keep the one the user's reward likes
best, per whole answer or per sentence (the run: :mod:`personalizer.backends.decoding.blocks`).

The model is torch-free, so hosted generators (which rerank whole answers) take it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from personalizer.errors import InvalidInput
from personalizer.steering import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.planning import Plan, PlanContext

__all__ = ["BestOfN"]


class BestOfN(Strategy):
    """Best-of-n: sample ``n`` continuations as one batch and keep the one the user's reward
    likes best, per whole answer or per sentence.

    Candidates are scored as finished texts (the kept prefix with the block):
    ``strength * r_user + quality_weight * quality``, with ``r_user`` on the profile's
    relative scale (:attr:`Steering.relative`) and ``quality`` the generator's quality term
    (local models: substance), so that a block which says nothing loses to one that does.
    """

    kind: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=4, ge=1, le=64, description="Samples per block.")
    block: Literal["answer", "sentence"] = Field(
        default="answer", description="A block is a whole answer, or one sentence.")
    block_tokens: int = Field(default=32, ge=1, le=512,
                              description="Token limit of one sentence block.")
    end_early: bool = Field(
        default=False,
        description="Sentence blocks: the answer may also end after a block, once its last "
                    "sentence is finished and it clears the quality floor, when ending scores "
                    "better than every sampled continuation ('short' means the shortest "
                    "answer that still answers); and it never stops mid-sentence at the "
                    "token limit: a last sentence the limit would cut is left out (finish "
                    "reason 'length').")
    go_on: bool = Field(
        default=False,
        description="Sentence blocks: where the model ends the answer (after a finished "
                    "sentence, with room under the token limit), one more block is drawn "
                    "with the end of turn ruled out, and kept when the user's whole-answer "
                    "reward (length) and quality prefer the answer with it: a thorough "
                    "person's answer goes on where the model would stop. The mirror of "
                    "end_early.")
    draw: Literal["sample", "branch"] = Field(
        default="sample",
        description="How a block's n candidates are drawn: 'sample' with the generation's "
                    "sampling options; 'branch' (local models): the n most likely first "
                    "tokens (those within branch_gap of the best), each continued greedily "
                    "-- deterministic, fluent, and different where answers part ways (a "
                    "list marker, a new line, the end of the answer). A generation with "
                    "do_sample=True samples 'branch' blocks as 'sample' does (every token "
                    "with its temperature, top_k, top_p and seed; with n=1, one sampled "
                    "sentence per block).")
    branch_gap: float = Field(
        default=3.0, gt=0, le=50,
        description="'branch': a first token whose log-probability is more than this below "
                    "the most likely one's is not branched on (that row repeats the greedy "
                    "block).")
    trim_opening: bool = Field(
        default=False,
        description="Sentence blocks: an opening that says nothing yet (its quality below a "
                    "tenth of the floor: 'The age-old question of ...') is held back, and "
                    "left out when the answer's first sentence with content does not lean on "
                    "it ('However, ...', 'This ...') and the user's reward prefers the answer "
                    "without it. The model still reads it; the answer streams from there, "
                    "with no blank start. Off by default: on SmolLM2 (bench/quality.py) it "
                    "made terse answers shorter (-23% words against -14.5%) but they named "
                    "fewer key terms (84% of plain's against 92%).")
    experts: float = Field(
        default=0.5, ge=0, le=20,
        description="Local models with attribute experts (LocalGenerator(experts=...)): "
                    "each block is decoded with the person's experts weighed in (their "
                    "relative coefficients times the strength times this scale; "
                    "personalizer.backends.experts). 0: off. Ignored without experts. "
                    "0.5 was chosen on bench/quality.py's tuning prompts: at 1.0 a terse "
                    "person's answers named 54% of plain's key terms (0.5: 69%).")
    quality_weight: float = Field(
        default=1.0, ge=0, le=100,
        description="Weight of the generator's quality term (substance) beside the user's "
                    "reward; a local generator's answer may only end early once it clears "
                    "the term's floor. 0: off. Hosted generators have no quality term.")

    @model_validator(mode="after")
    def _sentence_only(self) -> BestOfN:
        for name in ("end_early", "go_on", "trim_opening"):
            if getattr(self, name) and self.block != "sentence":
                raise ValueError(f"{name} applies to sentence blocks: "
                                 f"BestOfN(block='sentence', {name}=True)")
        return self

    def plan(self, ctx: PlanContext) -> Plan:
        """n rows per block, sampled or greedy branches; path ``"best-of-n"`` or
        ``"branch"`` (``draw="branch"`` with ``do_sample=True`` samples its rows)."""
        from personalizer.backends.decoding.blocks import BestOfNRun
        from personalizer.backends.decoding.policies import PLAIN
        from personalizer.backends.rewards.user import UserReward

        if ctx.idle:
            return ctx.plain()
        if ctx.options.do_sample is False and self.draw == "sample":
            raise InvalidInput(
                "best-of-n draws n samples, which do_sample=False would make identical; "
                "leave do_sample unset (or True), or decode greedily with "
                "BestOfN(draw='branch') (the default local strategy), 'args' or "
                "'token_rewards'")
        # draw='branch' samples too when asked: its rows are then sampled blocks
        sampled = ctx.options.sampling(self.draw == "sample")
        reward = UserReward(ctx.rewards, ctx.user)
        quality = ctx.quality_model if self.quality_weight > 0 else None
        path = "best-of-n" if sampled else "branch"
        # one row per block (n=1 branch, sampled or not) chooses among nothing
        levers = ("best_of_n" if sampled else "branch",) \
            if self.n > 1 or self.draw == "sample" else ()
        levers += tuple(n for n in ("end_early", "go_on", "trim_opening") if getattr(self, n))
        strength = ctx.steering.strength
        return ctx.plan(
            PLAIN, path, levers, sample_default=sampled, quality=quality,
            quality_weight=self.quality_weight, mix=ctx.expert_mix(self.experts),
            run=lambda handle, spec, proxy: BestOfNRun(
                handle, spec, self, lambda texts: reward.with_whole(spec.prompt_text, texts),
                proxy, strength=strength, quality=quality))
