"""Training token heads: distilled from a reward set, refined from people's preferences.

:func:`distill_token_heads` fits heads (:class:`~.token.TokenHeads`) to any sequence-level
:class:`RewardSet` (attribute scorers, MiniLM heads, a classifier) on ``(prompt, response)``
samples: within each prompt, the heads' sequence scores are regressed on the reward set's
normalised features (centred per prompt), so that ``strength * c . s`` per token adds up to
the user's reward on the same scale as the other strategies use. :func:`learn_token_heads`
refines distilled heads jointly with users' coefficients from their pairwise preferences
(PReF's offline step). Both read the LM through a
:class:`~personalizer.backends.decoding.handle.ModelHandle`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from personalizer.errors import InvalidInput
from personalizer.types import Message

from personalizer.backends import _hf
from personalizer.backends.decoding.handle import ModelHandle, context_length, end_of_turn
from personalizer.backends.heads.token import TokenHeads, model_fingerprint

__all__ = ["PreferencePair", "distill_token_heads", "learn_token_heads", "sequence_scores"]

@dataclass
class _Sample:
    hidden: torch.Tensor  # (T+1, d): the states that chose each answer token and the end
    options: torch.Tensor  # (T+1, 1+top): the chosen token first, then the LM's top tokens
    mask: torch.Tensor  # (T+1, 1+top): False where a top token repeats the chosen one
    base: torch.Tensor  # (T+1, 1+top): the LM's own logits of the options


def _samples(generator: ModelHandle, prompt: str, responses: Sequence[str],
             top: int) -> list[_Sample]:
    """Teacher-forced states of each response (its end of turn appended); a prompt and
    response longer than the model's context are refused (never truncated: the score is of
    the whole answer)."""
    tok, model = generator.tokenizer, generator.model
    head = _hf.chat_prompt(tok, [Message(role="user", content=prompt)])
    eos = end_of_turn(generator)
    ctx = context_length(model)
    out = []
    for response in responses:
        body = [*tok(response, add_special_tokens=False)["input_ids"], eos]
        if ctx is not None and len(head) + len(body) > ctx:
            raise InvalidInput(
                f"a prompt and response of {len(head) + len(body)} tokens (end of turn "
                f"included) do not fit {generator.name}'s context of {ctx}: leave out or "
                f"shorten the response starting {response[:40]!r}")
        ids = torch.tensor([head + body], device=generator.device)
        with torch.inference_mode():
            states = model.base_model(input_ids=ids).last_hidden_state[0].float()
            h = states[len(head) - 1:len(head) - 1 + len(body)]
            logits = model.get_output_embeddings()(h.to(states.dtype)).float()
        k = min(top, logits.shape[-1])
        best = torch.topk(logits, k, dim=-1).indices.cpu()
        chosen = torch.tensor(body)[:, None]
        options = torch.cat([chosen, best], dim=1)
        mask = torch.ones_like(options, dtype=torch.bool)
        mask[:, 1:] = best != chosen
        base = logits.cpu().gather(1, options)
        out.append(_Sample(hidden=h.cpu().clone(), options=options, mask=mask, base=base))
    return out


def _sequence_scores(samples: Sequence[_Sample], down: torch.Tensor, up: torch.Tensor,
                     bias: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``(n, J)``: each sample's sum over its tokens of ``log pi_j(y_t) - log pi(y_t)``, the
    LM tilted by head ``j`` against the LM itself, both normalised over the step's options
    (a log-ratio reward: 0 for heads that are 0), per base reward."""
    rows = []
    for s in samples:
        g = torch.einsum("td,jdr->tjr", s.hidden, down)
        g = torch.einsum("tjr,jrd->tjd", g, up) + bias  # (T, J, d)
        tilt = torch.einsum("tjd,tmd->tjm", g, w_out[s.options])  # (T, J, 1+top)
        base = s.base.masked_fill(~s.mask, float("-inf"))
        z = base[:, None, :] + tilt
        own = base[:, 0] - torch.logsumexp(base, dim=-1)  # (T,)
        rows.append((z[:, :, 0] - torch.logsumexp(z, dim=-1) - own[:, None]).sum(0))
    return torch.stack(rows)


def sequence_scores(generator: ModelHandle, heads: TokenHeads, prompt: str,
                    responses: Sequence[str], *, top: int = 64) -> torch.Tensor:
    """The heads' sequence-level score of each response, ``(n, J)``: what distillation
    fits to the reward set's features (up to a constant per prompt). Heads trained on
    another model are refused (:meth:`TokenHeads.check_model`)."""
    heads.check_model(generator.model)
    w_out = generator.model.get_output_embeddings().weight.detach().float().cpu()
    with torch.no_grad():
        return _sequence_scores(_samples(generator, prompt, responses, top), heads.down,
                                heads.up, heads.bias, w_out)


def distill_token_heads(generator: ModelHandle, rewards: Any,
                        samples: Sequence[tuple[str, str]], *, rank: int = 4,
                        steps: int = 300, lr: float = 0.01, top: int = 64,
                        batch_prompts: int = 8, seed: int = 0) -> TokenHeads:
    """Token heads for ``rewards`` on ``generator``'s LM, fitted on ``(prompt, response)``
    samples (at least two responses per prompt: only differences within a prompt are
    fitted). Per base reward, the heads' sequence scores (centred within the prompt) are
    regressed on the reward set's normalised features (centred the same way) by Adam over
    ``steps`` steps of ``batch_prompts`` prompts. A sample longer than the model's context
    is refused."""
    if rewards is None or not hasattr(rewards, "features"):
        raise InvalidInput("distilling token heads needs a RewardSet")
    by_prompt: dict[str, list[str]] = {}
    for prompt, response in samples:
        by_prompt.setdefault(prompt, []).append(response)
    groups = {p: list(dict.fromkeys(r)) for p, r in by_prompt.items()}
    groups = {p: r for p, r in groups.items() if len(r) >= 2}
    if not groups:
        raise InvalidInput("distilling token heads needs at least two different responses "
                           "to one prompt (only differences within a prompt are fitted)")
    if rank < 1 or steps < 1 or lr <= 0 or top < 1 or batch_prompts < 1:
        raise InvalidInput("rank, steps, top and batch_prompts must be positive, lr > 0")
    data = []
    for prompt, responses in groups.items():
        feats = torch.tensor(rewards.features(prompt, responses), dtype=torch.float32)
        data.append((_samples(generator, prompt, responses, top), feats - feats.mean(0)))
    w_out = generator.model.get_output_embeddings().weight.detach().float().cpu()
    j, d = len(rewards.names), int(w_out.shape[1])
    g = torch.Generator().manual_seed(seed)
    down = (torch.randn(j, d, rank, generator=g) / d ** 0.5).requires_grad_()
    up = torch.zeros(j, rank, d, requires_grad=True)
    bias = torch.zeros(j, d, requires_grad=True)
    opt = torch.optim.Adam([down, up, bias], lr=lr)
    order = torch.randperm(len(data), generator=g).tolist()
    at = 0
    with torch.enable_grad():
        for _ in range(steps):
            batch = []
            while len(batch) < min(batch_prompts, len(data)):
                if at == len(order):
                    order, at = torch.randperm(len(data), generator=g).tolist(), 0
                batch.append(data[order[at]])
                at += 1
            loss = torch.zeros(())
            for group, target in batch:
                s = _sequence_scores(group, down, up, bias, w_out)
                loss = loss + ((s - s.mean(0)) - target).pow(2).mean()
            opt.zero_grad()
            (loss / len(batch)).backward()
            opt.step()
    return TokenHeads(down=down.detach().clone(), up=up.detach().clone(),
                      bias=bias.detach().clone(), names=tuple(rewards.names),
                      reward_set_id=rewards.id, reward_set_version=rewards.version,
                      model=model_fingerprint(generator.model))


@dataclass(frozen=True)
class PreferencePair:
    """One user's judgement: ``chosen`` was preferred to ``rejected`` as an answer to
    ``prompt`` (a :class:`~personalizer.profiles.models.Preference` carries the same)."""

    user: str
    prompt: str
    chosen: str
    rejected: str


def learn_token_heads(generator: ModelHandle, heads: TokenHeads,
                      pairs: Sequence[PreferencePair],
                      coefficients: dict[str, Any] | None = None, *, steps: int = 150,
                      lr: float = 0.02, anchor: float = 0.1, prior: float = 1.0,
                      top: int = 64, seed: int = 0) -> tuple[TokenHeads, dict[str, np.ndarray]]:
    """Learn token heads jointly with the users' coefficients from their preferences
    (PReF's offline step, on token heads): Bradley-Terry on the heads' sequence scores,
    ``P(chosen > rejected) = sigmoid(c_u . (S(chosen) - S(rejected)))``, by Adam over the
    heads and every user's coefficients together.

    ``heads`` (distilled from a reward set, :func:`distill_token_heads`) are the start and
    the anchor: the squared distance of each of the heads' parameter tensors to theirs,
    relative to its size, is weighed by ``anchor``, so the heads stay the reward set's base
    rewards, refined where people's choices disagree with them. Users start from
    ``coefficients`` (their profiles, in the heads' reward order; ``prior`` is the weight of
    ``N(profile, I)``) or, unknown, from small random values (under ``N(0, I)``). Returns the
    refined heads (same reward set and model) and every user's learned coefficients.
    Decoding with token rules (``TokenRewards(rule_scale>0)``) applies a ruled reward's
    coefficient through its tokens, not its head: those heads are refined here but used
    only with ``rule_scale=0``."""
    if not pairs:
        raise InvalidInput("learning token heads from preferences needs at least one pair")
    same = next((p for p in pairs if p.chosen == p.rejected), None)
    if same is not None:
        raise InvalidInput(f"a preference of user {same.user!r} compares an answer with "
                           "itself: leave such pairs out (they carry no choice)")
    heads.check_model(generator.model)
    if steps < 1 or lr <= 0 or anchor < 0 or prior < 0 or top < 1:
        raise InvalidInput("steps and top must be positive, lr > 0, anchor and prior >= 0")
    j = len(heads.names)
    g = torch.Generator().manual_seed(seed)
    users = list(dict.fromkeys(p.user for p in pairs))
    start, centre = [], []
    for u in users:
        given = (coefficients or {}).get(u)
        try:
            c = torch.as_tensor(np.asarray(given, dtype=np.float32)) if given is not None \
                else 0.1 * torch.randn(j, generator=g)
        except (TypeError, ValueError):
            c = torch.full((0,), float("nan"))
        if c.shape != (j,) or not bool(torch.isfinite(c).all()):
            raise InvalidInput(f"coefficients of user {u!r} must be {j} finite numbers, "
                               f"one per base reward ({', '.join(heads.names)})")
        start.append(c)
        centre.append(c if given is not None else torch.zeros(j))
    c0, prior_mean = torch.stack(start), torch.stack(centre)
    texts: dict[tuple[str, str], int] = {}
    for p in pairs:
        for r in (p.chosen, p.rejected):
            texts.setdefault((p.prompt, r), len(texts))
    by_prompt: dict[str, list[str]] = {}
    for prompt, r in texts:
        by_prompt.setdefault(prompt, []).append(r)
    samples: list[_Sample] = [None] * len(texts)  # type: ignore[list-item]
    for prompt, responses in by_prompt.items():
        for r, s in zip(responses, _samples(generator, prompt, responses, top), strict=True):
            samples[texts[(prompt, r)]] = s
    win = torch.tensor([texts[(p.prompt, p.chosen)] for p in pairs])
    lose = torch.tensor([texts[(p.prompt, p.rejected)] for p in pairs])
    who = torch.tensor([users.index(p.user) for p in pairs])
    w_out = generator.model.get_output_embeddings().weight.detach().float().cpu()
    theta0 = (heads.down.float(), heads.up.float(), heads.bias.float())
    params = [t.clone().requires_grad_() for t in theta0]
    coef = c0.clone().requires_grad_()
    opt = torch.optim.Adam([*params, coef], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            s = _sequence_scores(samples, *params, w_out)
            margin = (coef[who] * (s[win] - s[lose])).sum(-1)
            loss = torch.nn.functional.softplus(-margin).mean()
            loss = loss + anchor * sum((p - p0).pow(2).sum() / (p0.pow(2).sum() + 1e-8)
                                       for p, p0 in zip(params, theta0, strict=True))
            loss = loss + prior * (coef - prior_mean).pow(2).sum() / (2 * len(pairs))
            opt.zero_grad()
            loss.backward()
            opt.step()
    down, up, bias = (p.detach().clone() for p in params)
    learned = dataclasses.replace(heads, down=down, up=up, bias=bias)
    return learned, {u: coef[i].detach().numpy().astype(float) for i, u in enumerate(users)}
