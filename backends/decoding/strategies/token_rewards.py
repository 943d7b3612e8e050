"""Token-level rewards (GenARM-style): the generator's token heads score every next token
from the LM's own hidden state; the user's coefficients fold them into one shift of the
row's hidden state per step, and base rewards with a token rule act on their tokens.

Torch is imported where it is used, so that naming the strategy needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from personalizer.errors import InvalidInput
from personalizer.steering import Strategy

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from personalizer.backends.decoding.engine import Decoding, DecodeRow
    from personalizer.backends.decoding.planning import Plan, PlanContext
    from personalizer.backends.rewards.quality import QualityModel

__all__ = ["TokenRewardPolicy", "TokenRewards"]


class TokenRewards(Strategy):
    """Token-level base rewards (GenARM-style): the generator's
    :class:`~personalizer.backends.TokenHeads` score every next token from the
    LM's own hidden state, and the user's steered logits are
    ``logits + strength * sum_j c_j s_j``, folded into one per-row shift of the hidden state
    (no candidates, no lookahead). Base rewards with a token rule act directly on their
    tokens (:mod:`~personalizer.backends.heads.rules`): the user's coefficient on length
    biases the end-of-turn tokens (``end_scale``; toward ending only after a finished
    sentence), on structure the list markers at the start of a line, on a lexical reward
    (hedging, examples, formality, warmth) the tokens of its words (``rule_scale`` nats per
    unit of coefficient, times the strength). Needs ``LocalGenerator(..., token_heads=heads)``
    (see :func:`~personalizer.backends.distill_token_heads`).

    With ``floor`` and a generator quality term, an end of turn chosen from the steered
    logits is allowed below the quality floor only when the greedy argmax of the unsteered
    logits is an end of turn too (the model's own choice), whether the row decodes greedily
    or samples; otherwise the end-of-turn tokens are masked and the token chosen again."""

    kind: Literal["token_rewards"] = "token_rewards"
    rule_scale: float = Field(
        default=2.0, ge=0, le=50,
        description="Logit bias per unit of the user's (relatively scaled) coefficient on a "
                    "base reward with a token rule (structure: list markers at the start "
                    "of a line; lexical rewards: their words, by weight; length: see "
                    "end_scale), times the strength (before a sampling temperature divides "
                    "the logits); 0 turns every rule off and leaves those rewards to their "
                    "heads.")
    end_scale: float = Field(
        default=8.0, ge=0, le=50,
        description="The end-of-turn rule's logit bias per unit of the user's (relative) "
                    "length coefficient, times the strength. Ending is the one token where "
                    "a whole answer's length is decided (SmolLM2's end of turn trails the "
                    "next sentence by 3-10 nats after a finished sentence), so it takes a "
                    "larger bias than a word; a bias toward ending applies only after a "
                    "finished sentence or line. rule_scale=0 turns it off with the other "
                    "rules.")
    floor: bool = Field(
        default=True,
        description="The reward may not end an answer whose substance is below the "
                    "generator's quality floor (the model itself still may: an end of "
                    "turn counts as the model's own when it is the greedy argmax of the "
                    "unsteered logits, also when sampling).")

    def plan(self, ctx: PlanContext) -> Plan:
        """The token heads folded with the user's coefficients into one hidden-state shift
        per step, path ``"token-rewards"``."""
        import torch

        from personalizer.backends.heads.rules import (
            lexicon_bias,
            line_tokens,
            ruled_mask,
            token_rules,
        )
        from personalizer.backends.heads.token import HiddenSteer

        heads = ctx.token_heads
        if heads is None:
            raise InvalidInput(
                f"strategy 'token_rewards' needs token heads for {ctx.handle.name}: "
                "LocalGenerator(..., token_heads=heads), with heads from "
                "personalizer.backends.distill_token_heads(generator, rewards, samples) or "
                "TokenHeads.load(path, generator); or use strategy='args' or 'best_of_n'")
        heads.check(ctx.rewards)
        user, strength, rs = ctx.user, ctx.steering.strength, ctx.rewards
        if strength == 0 or not user.any():
            return ctx.plain()
        scale = strength * self.rule_scale
        # rule_scale 0 turns every rule off (the ruled rewards go back to their heads)
        end_scale = strength * self.end_scale if scale else 0.0
        rules = token_rules(rs, user, scale, end_scale)
        # a reward with a token rule acts through its tokens, not through its head
        by_head = user * (1.0 - ruled_mask(rs)) if self.rule_scale > 0 else user
        steer = HiddenSteer(heads=heads, coefficients=torch.tensor(by_head,
                                                                   dtype=torch.float32),
                            strength=strength)
        quality = ctx.quality_model if self.floor else None
        messages = ctx.messages
        prefill = messages[-1].content if messages and messages[-1].role == "assistant" \
            else None  # an answer the model continues: a line starts only after a newline
        tokenizer = ctx.handle.tokenizer
        policy = TokenRewardPolicy(steer=steer, quality=quality, end_bias=rules["end_of_turn"],
                                   marker_bias=rules["list_marker"],
                                   lines=line_tokens(tokenizer)
                                   if rules["list_marker"] or rules["end_of_turn"] > 0
                                   else None,
                                   starts_line=not prefill or prefill.endswith("\n"),
                                   word_bias=lexicon_bias(rs, user, scale, tokenizer))
        return ctx.plan(policy, "token-rewards", ("token_rewards",), quality=quality)


@dataclass(frozen=True)
class TokenRewardPolicy:
    """Token-level rewards: the loop projects this row's hidden state shifted by ``steer``
    (its user's folded token heads), the token rules add their biases (``end_bias`` on the
    end of turn, ``marker_bias`` on list markers at a line start, ``word_bias`` on the words
    of lexical rewards), and the row chooses from those logits as plain decoding would. With
    a ``quality`` term, the steering may not end an answer whose substance is below the
    floor: an end of turn that the unsteered logits would not choose is then masked (the
    model's own end stays). "The model's own choice" is the greedy argmax of the unsteered
    logits (proxy-tuned when the run is), also when the row samples: a sampled end of turn
    below the floor is kept only when the unsteered argmax is an end of turn, and is
    otherwise redrawn without the end-of-turn tokens."""

    steer: Any  # a heads.token.HiddenSteer
    quality: QualityModel | None = None
    end_bias: float = 0.0  # added to the end-of-turn logits (token rule of length); a
    #                        positive one only after a finished sentence or line
    marker_bias: float = 0.0  # added to list markers at a line start (rule of structure)
    lines: Any = None  # heads.rules.LineTokens, with a marker or a positive end bias
    starts_line: bool = True  # whether the answer starts a line (False after a prefill
    #                           that ends mid-line)
    word_bias: Any = None  # heads.rules.WordBias: the lexical rewards' rule
    k: int = 0
    scorer: None = None

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        from personalizer.backends.decoding.policies import floored, sample

        logits = self._ruled(logits, row, run.handle.eos_ids)
        return floored(run, row, logits, sample(logits, row, row.spec.options.top_k),
                       self.quality)

    def _ruled(self, logits: torch.Tensor, row: DecodeRow, eos: set[int]) -> torch.Tensor:
        """``logits`` with the token rules' biases: the words of lexical rewards (a raised
        word once it is in the answer no more), the end of turn (toward ending only after
        a finished sentence or line), and list markers when the answer starts or its last
        token ended a line."""
        last = row.token_ids[-1] if row.token_ids else None
        at_line_start = self.marker_bias != 0 and self.lines is not None and (
            last in self.lines.newline if last is not None else self.starts_line)
        end = self.end_bias if self.end_bias <= 0 or self._may_end(row, last) else 0.0
        if end == 0 and not at_line_start and self.word_bias is None:
            return logits
        out = logits.clone()
        if self.word_bias is not None:  # a raised word is earned once
            out += self.word_bias.at(row.token_ids, out.shape[-1]).to(out.dtype)
        if end:
            out[[e for e in eos if e < out.shape[-1]]] += end
        if at_line_start:
            out[[m for m in self.lines.markers if m < out.shape[-1]]] += self.marker_bias
        return out

    def _may_end(self, row: DecodeRow, last: int | None) -> bool:
        """Whether the answer so far ends a sentence or a line (so ending is whole): its
        last token may end one, and its text does (not "2." nor "e.g.")."""
        from personalizer.backends.heads.rules import ends_whole

        return last is not None and self.lines is not None and \
            last in self.lines.sentence_end and ends_whole(row.tracker.decode())
