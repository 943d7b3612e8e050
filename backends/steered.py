"""Reward-guided decoding (ARGS) on a :class:`~personalizer.backends.LocalGenerator`.

This is the general, text-level path: each step the top-k candidate tokens are appended to
the decoded prefix and the k texts are scored by the reward set in one batched call (every
``score_every`` steps; between scoring steps the choice is plain top-k). Cost per scored step:
k detokenisations plus one reward-set call on k texts, on top of one LM forward.

Whole-answer attributes (length, list structure) say little about a prefix: every candidate
adds about one word. With ``whole_answer="lookahead"`` the loop, at each sentence end, also
weighs stopping now against one more (greedily drafted) sentence, both scored as finished
answers: ``logit(eos) + w r(prefix)`` against ``logit(best) + w r(prefix + sentence)``. The
draft costs up to ``lookahead_tokens`` plain decoding steps per sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from personalizer.errors import BackendError

from .args import args_scores, args_select, top_candidates
from .sampling import seeded_rng
from .steering import Steering
from .tree import TextScorer, TokenScorer, TreeRewardScorer
from .trunk import TrunkHeads, trunk_token_ids

if TYPE_CHECKING:  # pragma: no cover
    from .local import GenerationOptions, LocalGenerator

__all__ = ["args_token_ids"]

_SENTENCE_END = re.compile(r"[.!?:)]\s*$|\n\s*$")


class ModelLogits:
    """Next-token logits of one cached LM, step by step."""

    def __init__(self, gen: LocalGenerator, prompt_ids: Sequence[int]) -> None:
        self.gen, self.prompt_ids, self.cache = gen, prompt_ids, None

    def start(self) -> Any:
        self.cache = self.gen.new_cache()
        out = self.gen.forward(self.gen._torch.tensor([list(self.prompt_ids)],
                                                      device=self.gen.device),
                               self.cache, logits_to_keep=1)
        return out.logits[0, -1].float().cpu()

    def advance(self, token_id: int) -> Any:
        out = self.gen.forward(self.gen._torch.tensor([[token_id]], device=self.gen.device),
                               self.cache)
        return out.logits[0, -1].float().cpu()


def args_token_ids(gen: LocalGenerator, prompt_ids: Sequence[int], prompt_text: str,
                   opts: GenerationOptions, steering: Steering, rewards: Any,
                   logits_source: Any = None) -> Iterator[int]:
    """Yield the token ids ARGS chooses, until an end-of-turn id or the token limit.

    ``logits_source`` (``start()``/``advance(token)``) supplies the LM's logits; the default
    is the generator's own model, a :class:`~.proxy.ProxyLogits` combines ARGS with
    proxy-tuning.
    """
    torch = gen._torch
    coef = rewards.coefficient_vector(steering.coefficients,
                                      reward_set_id=steering.reward_set_id,
                                      reward_set_version=steering.reward_set_version)
    tok = gen.tokenizer
    eos = end_of_turn(gen)
    w = steering.strength
    rng = None
    if steering.do_sample:
        rng = seeded_rng(steering.seed)
    user_reward = text_reward(rewards, prompt_text, coef)
    trunk = trunk_heads(gen, rewards, steering) if logits_source is None else None
    if trunk is not None:
        yield from trunk_token_ids(gen, prompt_ids, opts, steering, trunk,
                                   *raw_weights(rewards, coef))
        return
    scorer = make_scorer(gen, rewards, coef, steering.scoring, user_reward)
    scorer.start(prompt_ids)
    ids: list[int] = []
    source = logits_source or ModelLogits(gen, prompt_ids)
    with torch.inference_mode():
        logits = source.start()
        for step in range(opts.max_new_tokens):
            if not torch.isfinite(logits).any():
                raise BackendError(f"{gen.name} produced no finite logits")
            values, cands = top_candidates(logits, steering.top_k)
            rewards_t = torch.zeros_like(values)
            if w > 0 and step % steering.score_every == 0:
                rewards_t = scorer.score(cands)
            scores = args_scores(values, rewards_t, w)
            tid = args_select(cands, scores, vocab_size=logits.shape[-1],
                              do_sample=steering.do_sample, temperature=steering.temperature,
                              generator=rng)
            if (w > 0 and steering.whole_answer == "lookahead" and ids
                    and tid not in gen.eos_ids and ends_sentence(tok.decode(ids))):
                if should_stop(gen, prompt_ids, ids, tid, logits, eos, w, user_reward,
                                steering.lookahead_tokens):
                    tid = eos
            yield tid
            if tid in gen.eos_ids:
                return
            ids.append(tid)
            scorer.accept(tid)
            logits = source.advance(tid)


def end_of_turn(gen: LocalGenerator) -> int:
    """The id that ends an answer: the tokenizer's eos when it ends a turn, else the lowest
    end-of-turn id."""
    eos = gen.tokenizer.eos_token_id
    return eos if eos in gen.eos_ids else min(gen.eos_ids)


def text_reward(rewards: Any, prompt_text: str, coef: np.ndarray) -> Any:
    """The user's reward of finished texts: ``features(prompt, texts) @ coef``."""
    def user_reward(texts: list[str]) -> np.ndarray:
        return rewards.features(prompt_text, texts) @ coef

    return user_reward


def raw_weights(rewards: Any, coef: np.ndarray) -> tuple[np.ndarray, float]:
    """The user's reward as weights on the raw (unnormalised) base rewards plus a constant:
    ``coef . (raw - mean) / scale == weights . raw + offset``."""
    norm = rewards.normalization
    return coef / norm.scale, -float((coef * norm.mean / norm.scale).sum())


def trunk_heads(gen: LocalGenerator, rewards: Any, steering: Steering) -> TrunkHeads | None:
    """The reward set's trunk heads when it is one TrunkHeads on this very generator's model
    (the fast path needs whole-answer lookahead off: heads score prefixes)."""
    only = rewards.rewards[0] if len(rewards.rewards) == 1 else None
    if (isinstance(only, TrunkHeads) and only.generator.model is gen.model
            and steering.scoring in ("auto", "tree") and steering.score_every == 1
            and steering.whole_answer == "off"):
        return only
    return None


def tree_reward(gen: LocalGenerator, rewards: Any, scoring: str) -> Any:
    """The reward set's classifier RM when ``scoring`` asks for (``"tree"``) or allows
    (``"auto"``) tree-attention scoring and the RM shares the LM's vocabulary; else None."""
    from .rewards.classifier import ClassifierReward

    tree_ok = (len(rewards.rewards) == 1 and isinstance(rewards.rewards[0], ClassifierReward)
               and rewards.rewards[0].tokenizer.get_vocab() == gen.tokenizer.get_vocab())
    if scoring == "tree" and not tree_ok:
        raise BackendError("tree scoring needs a reward set made of one ClassifierReward "
                           "that shares the LM's tokenizer; use scoring='text'")
    return rewards.rewards[0] if tree_ok and scoring != "text" else None


def make_scorer(gen: LocalGenerator, rewards: Any, coef: np.ndarray, scoring: str,
                user_reward: Any) -> TokenScorer:
    """The tree-attention scorer when the reward set is one classifier RM with the LM's
    vocabulary (``scoring="auto"`` or ``"tree"``), else the text-level scorer."""
    rm = tree_reward(gen, rewards, scoring)
    if rm is None:
        return TextScorer(gen.tokenizer, user_reward)
    weights, offset = raw_weights(rewards, coef)
    return TreeRewardScorer(rm.model, weights.tolist(), offset=offset)


def ends_sentence(text: str) -> bool:
    return bool(text.strip()) and bool(_SENTENCE_END.search(text))


def should_stop(gen: LocalGenerator, prompt_ids: Sequence[int], ids: list[int], go: int,
                 logits: Any, eos: int, w: float, user_reward: Any, budget: int) -> bool:
    """Stop here, or go on with one more sentence? Both scored as finished answers."""
    from .local import GenerationOptions

    tok = gen.tokenizer
    draft: list[int] = [go]
    for tid in gen.token_ids([*prompt_ids, *ids, go], GenerationOptions(max_new_tokens=budget)):
        if tid in gen.eos_ids:
            break
        draft.append(tid)
        if len(draft) >= 3 and ends_sentence(tok.decode(draft)):
            break
    stop_text = tok.decode(ids, skip_special_tokens=True)
    go_text = tok.decode(ids + draft, skip_special_tokens=True)
    r_stop, r_go = user_reward([stop_text, go_text])
    return float(logits[eos]) + w * r_stop > float(logits[go]) + w * r_go
