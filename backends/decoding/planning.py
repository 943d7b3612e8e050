"""The one place that chooses a request's decoding path.

Given a request (messages, options, an optional user :class:`Steering`), :class:`Planner`
fits the prompt to the model's context and picks the path, then returns the row for the
decoding loop and the record of what was chosen:

* no steering -> plain decoding;
* ARGS whose reward cannot change the answer (strength 0, or all coefficients 0 without
  sampled lookahead) -> plain decoding limited to the same k candidates: identical answers,
  faster;
* ARGS -> the reward's own fast token scorer when it offers one for this model
  (``scoring="auto"`` or ``"fast"``), else candidate texts scored by the reward set. The
  user's reward is divided by the norm of their coefficients (``Steering.relative``);
  whole-answer attributes (``per_token=False``: length) count only when finished answers are
  compared; the generator's quality term (substance) joins them there with a fixed weight,
  and an answer may end only once it clears the quality floor;
* best-of-n -> n rows per block, sampled or greedy branches (:mod:`.best_of_n`), path
  ``"best-of-n"`` or ``"branch"``; ``draw="branch"`` with ``do_sample=True`` samples its
  rows (path ``"best-of-n"``);
* token-level rewards -> the generator's token heads folded with the user's coefficients
  into one hidden-state shift per step (:mod:`.token_heads`), path ``"token-rewards"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from personalizer.errors import InvalidInput
from personalizer.types import (
    Message,
    QualityTerm,
    RewardTerm,
    SteeringRecord,
    last_user_text,
    with_request,
)

from personalizer.backends.decoding.tensor_math import seeded_rng
from personalizer.backends.decoding.engine import RowSpec
from personalizer.backends.decoding.handle import ModelHandle, context_length, end_of_turn
from personalizer.backends.decoding.policies import PLAIN, ArgsPolicy, PlainPolicy, TokenRewardPolicy
from personalizer.backends.request import (
    CLEAR_NORM,
    BestOfN,
    GenerationOptions,
    Steering,
    TokenRewards,
    reward_scale,
)
from personalizer.backends.decoding.scorers import TextScorer

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.proxy import ProxyTuning
    from personalizer.backends.decoding.scorers import TokenScorer

__all__ = ["CLEAR_NORM", "Plan", "Planner", "fit_context"]



@dataclass(frozen=True)
class Plan:
    """A request, ready for the loop."""

    spec: RowSpec
    record: SteeringRecord
    dropped: int = 0  # prompt tokens dropped to fit the context
    best_of_n: BestOfN | None = None
    # best-of-n: the user's reward of texts, (all of it, its whole-answer part)
    user_reward: Callable[[list[str]], tuple[Any, Any]] | None = None
    quality: Any = None  # the quality model that kept the answer an answer
    strength: float = 0.0  # best-of-n: the user's reward's weight beside quality


def fit_context(handle: ModelHandle, prompt: list[int],
                options: GenerationOptions) -> tuple[list[int], int, int]:
    """``(prompt, dropped, max_new_tokens)`` within the model's context: a prompt that fills
    it is refused, or with ``truncate='left'`` loses its oldest tokens; the token limit is
    clipped to the room left (the answer then ends with finish reason 'length')."""
    ctx = context_length(handle.model)
    if ctx is None:
        return prompt, 0, options.max_new_tokens
    dropped = 0
    if len(prompt) >= ctx:
        if options.truncate == "error":
            raise InvalidInput(
                f"the prompt has {len(prompt)} tokens but {handle.name} holds {ctx}; shorten "
                "the conversation, or pass truncate='left' to drop its oldest tokens")
        keep = max(1, ctx - min(options.max_new_tokens, ctx // 2))
        dropped = len(prompt) - keep
        prompt = prompt[-keep:]
    return prompt, dropped, min(options.max_new_tokens, ctx - len(prompt))


class Planner:
    """Plans the requests of one decoding run; rows steered with the same reward set share
    one token scorer per kind."""

    def __init__(self, handle: ModelHandle, rewards: Any, proxy: ProxyTuning | None,
                 quality: Any = None, token_heads: Any = None) -> None:
        self.handle, self.rewards, self.proxy = handle, rewards, proxy
        self.token_heads = token_heads  # TokenHeads for this model (checked when set)
        self.quality = quality  # a QualityModel: substance, with a fixed weight
        self._fast: Any = None
        self._fast_known = False
        self._text: TextScorer | None = None
        # rewards any row of this run weighs per token (text scoring computes only those)
        self._needed = np.zeros(len(rewards.names) if rewards is not None else 0, dtype=bool)

    def plan(self, messages: Sequence[Message], options: GenerationOptions,
             steering: Steering | None) -> Plan:
        request = steering.instruction if isinstance(steering, Steering) else None
        asked = with_request(messages, request)  # what the model reads
        prompt, dropped, max_new = fit_context(self.handle, self.handle.prompt_ids(asked),
                                               options)
        text = last_user_text(messages)  # what rewards score against: the user's own words
        base = (("prompt",) if request else ()) + (("proxy",) if self.proxy is not None else ())

        def row(policy: Any, sample_default: bool = False) -> RowSpec:
            sampling = options.sampling(sample_default)
            rng = seeded_rng(options.seed) if sampling else None
            opts = options.model_copy(update={"do_sample": sampling})
            return RowSpec(prompt=prompt, prompt_text=text, options=opts, policy=policy,
                           max_new_tokens=max_new, rng=rng, messages=tuple(asked))

        if steering is None:
            return Plan(row(PLAIN), SteeringRecord(path="plain", levers=base), dropped)
        if not isinstance(steering, Steering):
            raise InvalidInput("steering must be a personalizer.backends.Steering, not "
                               f"{type(steering).__name__}")
        rs = self.rewards
        if rs is None:
            raise InvalidInput("steering needs the reward set its coefficients refer to: "
                               "LocalGenerator(..., rewards=reward_set)")
        coef = rs.coefficient_vector(steering.coefficients,
                                     reward_set_id=steering.reward_set_id,
                                     reward_set_version=steering.reward_set_version)
        strategy = steering.strategy

        def record(path: str, levers: tuple[str, ...],
                   quality: QualityTerm | None = None) -> SteeringRecord:
            return SteeringRecord(
                path=path, levers=(*base, *levers), strategy=strategy.model_dump(),
                strength=steering.strength, reward_set_id=rs.id, reward_set_version=rs.version,
                terms=tuple(RewardTerm(name=n, description=d, coefficient=float(c))
                            for n, d, c in zip(rs.names, rs.descriptions, coef, strict=True)),
                quality=quality)

        # relative: the user's reward on a unit scale once the profile is clear (norm >=
        # CLEAR_NORM); a faint profile (a few answers) stays proportionally weaker
        user = coef / reward_scale(coef, steering.relative)
        if isinstance(strategy, TokenRewards):
            return self._token_rewards(strategy, steering, user, row, record, dropped,
                                       asked)
        if isinstance(strategy, BestOfN):
            if steering.strength == 0 or not coef.any():
                return Plan(row(PLAIN), record("plain", ()), dropped)
            if options.do_sample is False and strategy.draw == "sample":
                raise InvalidInput(
                    "best-of-n draws n samples, which do_sample=False would make identical; "
                    "leave do_sample unset (or True), or decode greedily with "
                    "BestOfN(draw='branch') (the default local strategy), 'args' or "
                    "'token_rewards'")
            # draw='branch' samples too when asked: its rows are then sampled blocks
            sampled = options.sampling(strategy.draw == "sample")

            whole = 1.0 - np.asarray(rs.per_token, dtype=float)  # 1: a whole-answer reward

            def user_reward(texts: list[str]) -> Any:
                """The user's reward of each text: all of it, and its whole-answer part
                (length), the only part that decides whether to end early."""
                feats = rs.features(text, texts)
                return feats @ user, feats @ (user * whole)

            quality = self.quality if strategy.quality_weight > 0 else None
            path = "best-of-n" if sampled else "branch"
            # one row per block (n=1 branch, sampled or not) chooses among nothing
            levers = ("best_of_n" if sampled else "branch",) \
                if strategy.n > 1 or strategy.draw == "sample" else ()
            levers += tuple(n for n in ("end_early", "trim_opening") if getattr(strategy, n))
            return Plan(row(PLAIN, sample_default=sampled),
                        record(path, levers,
                               self._term(quality, strategy.quality_weight)),
                        dropped, best_of_n=strategy, user_reward=user_reward, quality=quality,
                        strength=steering.strength)
        lookahead = strategy.whole_answer == "lookahead"
        if steering.strength == 0 or (not coef.any()
                                      and not (lookahead and options.sampling())):
            return Plan(row(PlainPolicy(limit=strategy.candidates)), record("plain", ()),
                        dropped)
        # whole-answer attributes (length) only count when finished answers are compared
        whole = 1.0 - np.asarray(rs.per_token, dtype=float)  # 1: a whole-answer attribute
        weights, offset = rs.raw_weights(user * (1 - whole))
        self._needed |= weights != 0
        scorer = self._scorer(strategy.scoring, needed=self._needed)
        quality = self.quality if strategy.quality_weight > 0 else None
        term = self._term(quality, strategy.quality_weight)
        policy = ArgsPolicy(
            k=strategy.candidates, strength=steering.strength,
            weights=torch.tensor(weights, dtype=torch.float32), offset=offset, scorer=scorer,
            score_every=strategy.score_every,
            lookahead=strategy.lookahead_tokens if lookahead else None,
            text_reward=lambda prompt_text, texts: (
                rs.features(prompt_text, texts) @ (user * whole), rs.features(prompt_text, texts)
                @ (user * (1 - whole))),
            eos=end_of_turn(self.handle), quality=quality,
            quality_weight=strategy.quality_weight, lookahead_weight=strategy.lookahead_weight)
        levers = ("args", "lookahead") if lookahead else ("args",)
        return Plan(row(policy), record(f"args-{scorer.kind}", levers, term), dropped,
                    quality=quality)

    def _token_rewards(self, strategy: TokenRewards, steering: Steering, user: np.ndarray,
                       row: Callable[..., RowSpec], record: Callable[..., SteeringRecord],
                       dropped: int, messages: Sequence[Any] = ()) -> Plan:
        """Token-level rewards: the user's coefficients fold the generator's token heads
        into one shift of the row's hidden state per step."""
        heads = self.token_heads
        if heads is None:
            raise InvalidInput(
                f"strategy 'token_rewards' needs token heads for {self.handle.name}: "
                "LocalGenerator(..., token_heads=heads), with heads from "
                "personalizer.backends.distill_token_heads(generator, rewards, samples) or "
                "TokenHeads.load(path, generator); or use strategy='args' or 'best_of_n'")
        heads.check(self.rewards)
        if steering.strength == 0 or not user.any():
            return Plan(row(PLAIN), record("plain", ()), dropped)
        from personalizer.backends.heads.token import HiddenSteer
        from personalizer.backends.heads.rules import lexicon_bias, line_tokens, ruled_mask, token_rules

        scale = steering.strength * strategy.rule_scale
        # rule_scale 0 turns every rule off (the ruled rewards go back to their heads)
        end_scale = steering.strength * strategy.end_scale if scale else 0.0
        rules = token_rules(self.rewards, user, scale, end_scale)
        # a reward with a token rule acts through its tokens, not through its head
        by_head = user * (1.0 - ruled_mask(self.rewards)) if strategy.rule_scale > 0 else user
        steer = HiddenSteer(heads=heads, coefficients=torch.tensor(by_head,
                                                                   dtype=torch.float32),
                            strength=steering.strength)
        quality = self.quality if strategy.floor else None
        prefill = messages[-1].content if messages and messages[-1].role == "assistant" \
            else None  # an answer the model continues: a line starts only after a newline
        policy = TokenRewardPolicy(steer=steer, quality=quality, end_bias=rules["end_of_turn"],
                                   marker_bias=rules["list_marker"],
                                   lines=line_tokens(self.handle.tokenizer)
                                   if rules["list_marker"] or rules["end_of_turn"] > 0
                                   else None,
                                   starts_line=not prefill or prefill.endswith("\n"),
                                   word_bias=lexicon_bias(self.rewards, user, scale,
                                                          self.handle.tokenizer))
        return Plan(row(policy),
                    record("token-rewards", ("token_rewards",), self._term(quality, 0.0)),
                    dropped, quality=quality)

    @staticmethod
    def _term(quality: Any, weight: float) -> QualityTerm | None:
        return None if quality is None else QualityTerm(
            name=quality.name, description=quality.description, weight=weight,
            floor=quality.floor)

    def _scorer(self, scoring: str, needed: Any = None) -> TokenScorer:
        if scoring != "text":
            if not self._fast_known:
                self._fast, self._fast_known = self.rewards.token_scorer(self.handle), True
            if self._fast is not None:
                return self._fast
            if scoring == "fast":
                raise InvalidInput(
                    f"scoring='fast' needs rewards with their own token scorer for "
                    f"{self.handle.name} (a ClassifierReward sharing its tokenizer, TrunkHeads "
                    f"fitted on it); reward set {self.rewards.id!r} has none: use "
                    "scoring='auto' or 'text'")
        if self._text is None:
            rs = self.rewards
            self._text = TextScorer(self.handle.tokenizer,
                                    lambda prompt, texts: rs.raw_features(prompt, texts,
                                                                          needed=needed))
        return self._text

