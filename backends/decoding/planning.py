"""Planning: one request becomes a row of the decoding loop and the record of its path.

:class:`Planner` does what every request needs (the prompt within the model's context, the
user's coefficients checked against the reward set and put on their relative scale) and
hands a :class:`PlanContext` to the request's strategy, whose ``plan(context)`` chooses the
path (:mod:`.strategies`: one module per strategy, registered in
:data:`personalizer.steering.STRATEGIES`). Without steering, or with nothing to steer by (no
coefficients), the answer is plain decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from personalizer.backends.decoding.engine import RowSpec
from personalizer.backends.decoding.handle import ModelHandle, context_length
from personalizer.backends.decoding.policies import PLAIN
from personalizer.backends.decoding.repetition import RepeatGuard
from personalizer.backends.decoding.scorers import TextScorer
from personalizer.backends.decoding.tensor_math import seeded_rng
from personalizer.errors import InvalidInput, UnsupportedRequest
from personalizer.seams import RewardSet
from personalizer.steering import GenerationOptions, Steering, Strategy, reward_scale
from personalizer.types import (
    Message,
    QualityTerm,
    RewardTerm,
    SteeringRecord,
    last_user_text,
    with_request,
)

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.engine import TokenPolicy
    from personalizer.backends.decoding.proxy import ProxyTuning
    from personalizer.backends.decoding.scorers import TokenScorer
    from personalizer.backends.experts.lora import ExpertMix
    from personalizer.backends.rewards.quality import QualityModel

__all__ = ["BlockRun", "LocalStrategy", "Plan", "PlanContext", "Planner", "fit_context"]


class BlockRun(Protocol):
    """A strategy's own run in place of the one decoding loop (best-of-n decodes its blocks
    as loops of their own): iterate for the answer's pieces, then read the result."""

    start: float
    token_ids: list[int]
    finish: str
    first_s: float | None

    def __iter__(self) -> Iterator[str]: ...

    def record(self, record: SteeringRecord) -> SteeringRecord:
        """The plan's record with what the run chose."""
        ...


@dataclass(frozen=True)
class Plan:
    """A request, ready for the loop."""

    spec: RowSpec
    record: SteeringRecord
    dropped: int = 0  # prompt tokens dropped to fit the context
    quality: QualityModel | None = None  # the quality model that kept the answer an answer
    # a strategy that runs its own loops (best-of-n): (handle, row, proxy) -> the run
    run: Callable[[ModelHandle, RowSpec, ProxyTuning | None], BlockRun] | None = None


@runtime_checkable
class LocalStrategy(Protocol):
    """A strategy a local model can run: it plans one request."""

    kind: str

    def plan(self, context: PlanContext) -> Plan: ...


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


@dataclass
class PlanContext:
    """What a strategy plans with: the request, the user's coefficients (``coef``, in the
    reward set's order; ``user``: on the relative scale), the model and its parts, and
    helpers that build rows, records and plans."""

    handle: ModelHandle
    rewards: RewardSet
    steering: Steering
    strategy: Strategy
    options: GenerationOptions
    messages: Sequence[Message]  # what the model reads (the profile request added)
    prompt_text: str  # what rewards score against: the user's own words
    prompt: list[int]
    max_new: int
    dropped: int
    levers: tuple[str, ...]  # levers of every path (the prompt request, proxy-tuning)
    coef: np.ndarray
    user: np.ndarray
    planner: Planner

    @property
    def quality_model(self) -> QualityModel | None:
        """The generator's quality term (substance), the same for every user, or None."""
        return self.planner.quality

    @property
    def experts(self) -> Any:
        """The generator's attribute experts (an ExpertSet), or None."""
        return self.planner.experts

    def expert_mix(self, scale: float, min_weight: float = 0.2) -> ExpertMix | None:
        """This person's experts: each expert of a base reward in the reward set weighed by
        the person's relative coefficient on it times the strength and ``scale``; experts
        whose weight is below ``min_weight`` are left out (None: no expert left, no
        experts on this generator, experts trained for another reward set's attributes,
        or idle)."""
        from personalizer.backends.experts.lora import ExpertMix

        experts = self.planner.experts
        if experts is None or self.idle or scale == 0 or not experts.serves(self.rewards):
            return None
        pairs = [(experts.index(n), float(self.steering.strength * scale * u))
                 for n, u in zip(self.rewards.names, self.user, strict=True)
                 if n in experts.names]
        pairs = [(i, w) for i, w in pairs if w != 0 and abs(w) >= min_weight]
        if not pairs:
            return None
        return ExpertMix(experts, tuple(i for i, _ in pairs), tuple(w for _, w in pairs))

    @property
    def token_heads(self) -> Any:
        """The generator's token-level reward heads (TokenHeads), or None."""
        return self.planner.token_heads

    @property
    def whole(self) -> np.ndarray:
        """1 for each whole-answer reward (length: only finished answers show it), else 0."""
        return 1.0 - np.asarray(self.rewards.per_token, dtype=float)

    def row(self, policy: TokenPolicy, sample_default: bool = False, *,
            steered: bool = False, mix: ExpertMix | None = None) -> RowSpec:
        """The request's row with ``policy`` (sampling when the options or, unset, the
        strategy's ``sample_default`` say so); a ``steered`` row gets the repetition guard
        when the options ask for it."""
        sampling = self.options.sampling(sample_default)
        rng = seeded_rng(self.options.seed) if sampling else None
        opts = self.options.model_copy(update={"do_sample": sampling})
        guard = RepeatGuard() if steered and self.options.repetition_guard else None
        return RowSpec(prompt=self.prompt, prompt_text=self.prompt_text, options=opts,
                       policy=policy, max_new_tokens=self.max_new, rng=rng,
                       messages=tuple(self.messages), guard=guard, mix=mix)

    def record(self, path: str, levers: tuple[str, ...],
               quality: QualityTerm | None = None,
               mix: ExpertMix | None = None) -> SteeringRecord:
        """The record of a steered path (the user's terms, the strategy, the strength)."""
        rs = self.rewards
        return SteeringRecord(
            path=path, levers=(*self.levers, *levers), strategy=self.strategy.model_dump(),
            strength=self.steering.strength, reward_set_id=rs.id,
            reward_set_version=rs.version,
            terms=tuple(RewardTerm(name=n, description=d, coefficient=float(c))
                        for n, d, c in zip(rs.names, rs.descriptions, self.coef,
                                           strict=True)),
            quality=quality, experts={} if mix is None else mix.named())

    def plan(self, policy: TokenPolicy, path: str, levers: tuple[str, ...] = (), *,
             sample_default: bool = False, quality: QualityModel | None = None,
             quality_weight: float = 0.0, run: Any = None,
             mix: ExpertMix | None = None) -> Plan:
        """A plan of ``policy`` recorded as ``path`` with ``levers``; ``quality``: the
        quality model that keeps the answer an answer (recorded with its weight); ``mix``:
        the person's attribute experts (:meth:`expert_mix`)."""
        row = self.row(policy, sample_default, steered=True, mix=mix)
        if mix is not None:
            levers = (*levers, "experts")
        if row.guard is not None:
            levers = (*levers, "no_repeat")
        return Plan(row, self.record(path, levers, self.term(quality, quality_weight), mix),
                    self.dropped, quality=quality, run=run)

    def plain(self, policy: TokenPolicy = PLAIN) -> Plan:
        """Plain decoding (the reward cannot change the answer), recorded as steered."""
        return Plan(self.row(policy), self.record("plain", ()), self.dropped)

    @property
    def idle(self) -> bool:
        """Whether the user's reward cannot move the answer (strength 0 or no weight)."""
        return self.steering.strength == 0 or not self.coef.any()

    @staticmethod
    def term(quality: QualityModel | None, weight: float) -> QualityTerm | None:
        return None if quality is None else QualityTerm(
            name=quality.name, description=quality.description, weight=weight,
            floor=quality.floor)

    def scorer(self, scoring: str, weights: np.ndarray) -> TokenScorer:
        """A token scorer of the raw base rewards: the reward set's own fast one
        (``scoring`` 'auto' or 'fast'), else candidate texts scored by the reward set
        (computing only the rewards some row of this run weighs)."""
        return self.planner.scorer(self.rewards, scoring, weights)


class Planner:
    """Plans the requests of one decoding run; rows steered with the same reward set share
    one token scorer per kind."""

    def __init__(self, handle: ModelHandle, rewards: RewardSet | None,
                 proxy: ProxyTuning | None, quality: QualityModel | None = None,
                 token_heads: Any = None, default_strategy: Strategy | None = None,
                 experts: Any = None) -> None:
        self.handle, self.rewards, self.proxy = handle, rewards, proxy
        self.experts = experts  # an ExpertSet for this model (checked when set), or None
        self.token_heads = token_heads  # TokenHeads for this model (checked when set)
        self.quality = quality  # a QualityModel: substance, with a fixed weight
        self.default_strategy = default_strategy
        self._fast: dict[int, Any] = {}
        self._text: dict[int, TextScorer] = {}
        # per reward set: the rewards any row of this run weighs per token
        self._needed: dict[int, np.ndarray] = {}

    def plan(self, messages: Sequence[Message], options: GenerationOptions,
             steering: Steering | None) -> Plan:
        if steering is not None and not isinstance(steering, Steering):
            raise InvalidInput("steering must be a personalizer.steering.Steering, not "
                               f"{type(steering).__name__}")
        request = steering.instruction if steering is not None else None
        asked = with_request(messages, request)  # what the model reads
        prompt, dropped, max_new = fit_context(self.handle, self.handle.prompt_ids(asked),
                                               options)
        text = last_user_text(messages)  # what rewards score against: the user's own words
        base = (("prompt",) if request else ()) + (("proxy",) if self.proxy is not None else ())
        if steering is None or not steering.coefficients:  # nothing to steer by
            sampling = options.sampling()
            spec = RowSpec(prompt=prompt, prompt_text=text,
                           options=options.model_copy(update={"do_sample": sampling}),
                           policy=PLAIN, max_new_tokens=max_new,
                           rng=seeded_rng(options.seed) if sampling else None,
                           messages=tuple(asked))
            return Plan(spec, SteeringRecord(path="plain", levers=base), dropped)
        rs = steering.reward_set(self.rewards)
        if rs is None:
            raise InvalidInput("steering needs the reward set its coefficients refer to: "
                               "LocalGenerator(..., rewards=reward_set), or "
                               "Steering(..., rewards=reward_set)")
        strategy = steering.strategy or self.default_strategy
        if strategy is None:
            raise InvalidInput("steering names no strategy and the generator has no default: "
                               "Steering(..., strategy='args')")
        if not isinstance(strategy, LocalStrategy):
            raise UnsupportedRequest(f"strategy {strategy.kind!r} cannot run on a local model: "
                                     "it has no plan(context) method")
        coef = rs.coefficient_vector(steering.coefficients,
                                     reward_set_id=steering.reward_set_id,
                                     reward_set_version=steering.reward_set_version)
        # relative: the user's reward on a unit scale once the profile is clear (norm >=
        # CLEAR_NORM); a faint profile (a few answers) stays proportionally weaker
        user = coef / reward_scale(coef, steering.relative)
        return strategy.plan(PlanContext(
            handle=self.handle, rewards=rs, steering=steering, strategy=strategy,
            options=options, messages=asked, prompt_text=text, prompt=prompt, max_new=max_new,
            dropped=dropped, levers=base, coef=coef, user=user, planner=self))

    def scorer(self, rewards: RewardSet, scoring: str, weights: np.ndarray) -> TokenScorer:
        key = id(rewards)
        needed = self._needed.setdefault(key, np.zeros(len(rewards.names), dtype=bool))
        needed |= weights != 0
        if scoring != "text":
            if key not in self._fast:
                self._fast[key] = rewards.token_scorer(self.handle)  # type: ignore[attr-defined]
            if self._fast[key] is not None:
                return self._fast[key]
            if scoring == "fast":
                raise InvalidInput(
                    f"scoring='fast' needs rewards with their own token scorer for "
                    f"{self.handle.name} (a ClassifierReward sharing its tokenizer, TrunkHeads "
                    f"fitted on it); reward set {rewards.id!r} has none: use "
                    "scoring='auto' or 'text'")
        if key not in self._text:
            self._text[key] = TextScorer(
                self.handle.tokenizer,
                lambda prompt, texts: rewards.raw_features(  # type: ignore[attr-defined]
                    prompt, texts, needed=needed))
        return self._text[key]
