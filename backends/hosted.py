"""Hosted chat models (no logits): the request logic shared by every provider, sync and async.

A hosted API is a black box: it takes messages and returns text. It is personalized by the
profile in the system prompt (the facade puts it there) and, when asked, by best-of-n
reranking: n candidates, each scored with the user's reward, the best returned. What needs
logits (ARGS, proxy-tuning, trunk heads, seed-exact sampling) is refused with an error that
says what works instead.

One implementation for sync and async: a request is a plan — a generator that yields the
steps it needs (:class:`Calls` to the provider, :class:`Compute` for CPU work such as scoring
candidates) and returns the :class:`~personalizer.types.Generation`. :meth:`HostedGenerator.
generate` drives it with the sync client (parallel calls on threads), :meth:`agenerate` with
the async client (``asyncio.gather``; CPU steps in a worker thread), so the event loop is never
blocked and the logic is written once. Streams share one parser the same way.

A provider subclass says how to build its request, read its reply and its stream events, and
which options it lacks (:mod:`.openai_api`, :mod:`.anthropic_api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import os
import threading
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from personalizer._boundary import Unchecked, public_api
from personalizer.errors import (
    InvalidInput,
    PersonalizerError,
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    UnsupportedRequest,
)
from personalizer.types import (
    Generation,
    Message,
    MessagesLike,
    RewardTerm,
    ScoredCandidate,
    SteeringRecord,
    Timings,
    as_messages,
    last_user_text,
)

from personalizer.seams import ProfilePrompt
from personalizer.steering import Steering, StopStrings, reward_scale
from personalizer.steering import no_bool as _no_bool
from personalizer.types import validation_message

from .decoding.strategies import BestOfN

__all__ = ["HostedGenerator", "HostedOptions", "HostedStream", "AsyncHostedStream"]

ModelName = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=100)]
Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Parallel = Annotated[int, Field(ge=1, le=256)]

# Options of local generators that no hosted API has, with what to do instead.
LOCAL_ONLY: dict[str, str] = {
    "do_sample": "hosted models always sample (do_sample=True is accepted and changes "
                 "nothing); set temperature=0 for their most likely answer",
    "seed": "hosted models give no seed-exact sampling",
    "truncate": "the provider decides how long a prompt may be",
    "proxy": "proxy-tuning needs the model's logits; use a LocalGenerator",
    "top_logprobs": "hosted generators return text only",
}


class HostedOptions(BaseModel):
    """Options of one hosted request. Only what the caller set is sent (plus what the API
    requires), so a model that refuses a parameter never receives one it was not given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int | None = Field(default=None, ge=1, le=1_000_000,
                                       description="Most tokens to generate.")
    temperature: float | None = Field(default=None, ge=0, le=2,
                                      description="Sampling temperature.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus sampling.")
    top_k: int | None = Field(default=None, ge=1, le=1_000_000, description="Sample among "
                              "the k most likely tokens (Anthropic only).")
    stop: StopStrings | None = Field(default=None, description="Stop strings.")

    _numbers = field_validator("max_new_tokens", "temperature", "top_p", "top_k",
                               mode="before")(_no_bool)

    def given(self) -> dict[str, Any]:
        """The options the caller set (None counts as not set)."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


@dataclass(frozen=True)
class Reply:
    """One candidate answer as the provider returned it."""

    text: str
    finish: Literal["stop", "length"] | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class Calls:
    """A plan step: send these requests (in parallel) and send back their replies."""

    requests: list[dict[str, Any]]


@dataclass(frozen=True)
class Compute:
    """A plan step: run this CPU-bound function (scoring) and send back its result."""

    fn: Callable[[], Any]


Plan = Generator["Calls | Compute", Any, Generation]


@dataclass
class StreamState:
    """What a stream said besides its text; filled in by the provider's event parser."""

    finish: Literal["stop", "length"] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    pieces: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    """A validated request, before any I/O."""

    messages: list[Message]
    options: HostedOptions
    rerank: BestOfN | None
    steering: Steering | None


def _secret(value: str | SecretStr | None, env: str) -> SecretStr | None:
    if value is None:
        value = os.environ.get(env) or None
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


@public_api
class HostedGenerator:
    """The shared part of a hosted chat model; see the module docstring.

    ``rewards`` (a :class:`~personalizer.backends.rewards.RewardSet` that scores text) and/or
    ``judge`` (a :class:`~personalizer.backends.rewards.JudgeReward`, given the user's summary
    as principles) rerank best-of-n candidates: a candidate's score is the user's reward
    (coefficients . features, divided by the coefficients' norm like local steering) plus
    ``judge_weight`` times the judge's score.
    """

    provider: ClassVar[str]
    client_attr: ClassVar[str]  # what a ready client must have (its API's namespace)
    sdk_module: ClassVar[str]
    api_key_env: ClassVar[str]
    native_n: ClassVar[bool] = False  # one call can return n candidates
    # options this provider lacks, with what to do instead (beside LOCAL_ONLY)
    lacks: ClassVar[dict[str, str]] = {}
    default_strategy: ClassVar[Any] = None  # the prompt only, unless best-of-n is asked
    profile_prompt: ClassVar[ProfilePrompt] = ProfilePrompt(where="system")

    def __init__(self, model: ModelName, *, client: Unchecked[Any] = None,
                 async_client: Unchecked[Any] = None,
                 api_key: Unchecked[str | SecretStr | None] = None,
                 base_url: Url | None = None, timeout: Seconds | None = None,
                 max_retries: Retries | None = None, rewards: Unchecked[Any] = None,
                 judge: Unchecked[Any] = None, judge_weight: Weight = 1.0,
                 max_parallel: Parallel = 8) -> None:
        name = type(self).__name__
        if not (api_key is None or isinstance(api_key, SecretStr)
                or (isinstance(api_key, str) and 0 < len(api_key) <= 1000)):
            raise InvalidInput(f"{name}: api_key must be a non-empty string or a SecretStr "
                               f"(got {type(api_key).__name__}; its value is not shown)")
        for what, value, needs in (("client", client, self.client_attr),
                                   ("async_client", async_client, self.client_attr),
                                   ("rewards", rewards, "coefficient_vector"),
                                   ("judge", judge, "score")):
            if value is not None and not hasattr(value, needs):
                raise InvalidInput(f"{name}: {what} must have .{needs} (got "
                                   f"{type(value).__name__}); see {name}'s docstring")
        self.model = model
        self.rewards, self.judge, self.judge_weight = rewards, judge, float(judge_weight)
        self.max_parallel = max_parallel
        self._client, self._async_client = client, async_client
        self._given = (client is not None, async_client is not None)  # the caller's own
        self._loop_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._api_key = _secret(api_key, self.api_key_env)
        self._base_url, self._timeout, self._max_retries = base_url, timeout, max_retries
        if client is None and async_client is None and self._api_key is None \
                and base_url is None:
            raise InvalidInput(
                f"{type(self).__name__} needs an API key: set {self.api_key_env}, pass "
                "api_key=, or pass a ready client=")

    example_model: ClassVar[str] = ""

    def with_rewards(self, rewards: Unchecked[Any]) -> HostedGenerator:
        """This generator with a reward set to rerank best-of-n candidates by (the same
        clients); this object is left as it is."""
        if rewards is not None and not hasattr(rewards, "coefficient_vector"):
            raise InvalidInput("rewards must be a RewardSet (or None)")
        twin = copy.copy(self)
        twin.rewards = rewards
        return twin

    def __repr__(self) -> str:
        where = f", base_url={_without_credentials(self._base_url)!r}" if self._base_url else ""
        return f"{type(self).__name__}({self.model!r}{where})"

    # -- clients (built on first use; a caller's client is used as given) -----------------

    def _settings(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "api_key": self._api_key.get_secret_value() if self._api_key else "not-needed"}
        if self._base_url is not None:
            kw["base_url"] = self._base_url
        if self._timeout is not None:
            kw["timeout"] = self._timeout
        if self._max_retries is not None:
            kw["max_retries"] = self._max_retries
        return kw

    def _only_given(self, given: str, needed: str, methods: str) -> UnsupportedRequest:
        name = type(self).__name__
        return UnsupportedRequest(
            f"{name} was given only {given}=; pass {needed}= too for {methods} (a client "
            "built from yours could miss its settings: headers, proxies, auth)")

    @property
    def client(self) -> Any:
        """The caller's sync client, or one built from this generator's settings."""
        with self._lock:
            if self._client is None:
                if self._given[1]:
                    raise self._only_given("async_client", "client", "generate and stream")
                self._client = getattr(self._sdk(), self.sync_class)(**self._settings())
            return self._client

    @property
    def async_client(self) -> Any:
        """The caller's async client, else one built for the running event loop (an async
        HTTP client's connections belong to the loop that opened them, and applications that
        call ``asyncio.run`` more than once run more than one loop)."""
        if self._async_client is not None:
            return self._async_client
        if self._given[0]:
            raise self._only_given("client", "async_client", "agenerate and astream")
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._loop_clients.get(loop)
            if client is None:
                client = self._loop_clients[loop] = getattr(self._sdk(), self.async_class)(
                    **self._settings())
        return client

    sync_class: ClassVar[str]
    async_class: ClassVar[str]

    def _sdk(self) -> Any:
        from personalizer._optional import require

        return require(self.sdk_module, extra=self.sdk_module,
                       feature=f"{type(self).__name__}")

    # -- what a provider subclass supplies -------------------------------------------------

    def _endpoint(self, client: Any) -> Callable[..., Any]:
        raise NotImplementedError

    def _request(self, messages: list[Message], options: HostedOptions, n: int
                 ) -> dict[str, Any]:
        raise NotImplementedError

    def _replies(self, response: Any) -> list[Reply]:
        raise NotImplementedError

    def _stream_request(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _event(self, state: StreamState, event: Any) -> str | None:
        """Read one stream event into ``state``; the text piece it carries, if any."""
        raise NotImplementedError

    # -- validation ----------------------------------------------------------------------

    def _prepare(self, messages: MessagesLike, steering: Any,
                 options: Mapping[str, Any]) -> _Request:
        msgs = as_messages(messages)
        if options.get("do_sample") is True and options.get("temperature") == 0:
            raise InvalidInput(
                "do_sample=True asks the provider to sample, and temperature=0 for its most "
                "likely answer: give one of them (hosted models sample unless temperature=0)")
        options = {k: v for k, v in options.items()
                   if v is not None and not (k == "do_sample" and v is True)}
        for name in options:
            reason = self.lacks.get(name) or LOCAL_ONLY.get(name)
            if reason is not None:
                raise UnsupportedRequest(
                    f"{type(self).__name__} cannot take {name!r}: {reason}")
        try:
            opts = HostedOptions.model_validate(options)
        except ValidationError as exc:
            raise InvalidInput(
                f"generation option {validation_message(exc)} (options of "
                f"{type(self).__name__}: {', '.join(HostedOptions.model_fields)})") from None
        rerank = None
        if steering is not None:
            if not isinstance(steering, Steering):
                raise InvalidInput("steering must be a personalizer.backends.Steering, not "
                                   f"{type(steering).__name__}")
            if steering.strategy is None:  # no strategy: the prompt only
                steering = None
            else:
                rerank = self._check_rerank(steering)
                rs, judge = steering.reward_set(self.rewards), self.judge
                rankable = (steering.coefficients and rs is not None) or \
                    (steering.principles and judge is not None)
                if not rankable:  # nothing of this user's can rank candidates yet
                    rerank, steering = None, None
        return _Request(msgs, opts, rerank, steering)

    def _check_rerank(self, steering: Steering) -> BestOfN:
        strategy = steering.strategy
        name = type(self).__name__
        if steering.instruction:
            raise UnsupportedRequest(
                f"{name} takes the profile in the system prompt (Personalizer puts the "
                "profile block there); Steering.instruction, a request added to the user's "
                "turn, is for local models that ignore system prompts")
        if not isinstance(strategy, BestOfN):
            raise UnsupportedRequest(
                f"{name} cannot do {strategy.kind}: a hosted API exposes no logits or "
                "hidden states to steer. Use "
                "best-of-n reranking (Steering(..., strategy='best_of_n'), or "
                "Personalizer.generate(..., strategy='best_of_n')) or the profile in the "
                "prompt (Personalizer does that by default); reward-guided decoding needs a "
                "LocalGenerator")
        if strategy.block != "answer":
            raise UnsupportedRequest(
                f"{name} cannot do sentence-blockwise best-of-n (a hosted answer cannot be "
                "continued from a chosen sentence); use BestOfN(block='answer')")
        if strategy.draw != "sample":
            raise UnsupportedRequest(
                f"{name} cannot branch on the most likely first tokens (a hosted API gives "
                "no logits); use BestOfN(draw='sample')")
        if steering.reward_set(self.rewards) is None and self.judge is None:
            raise UnsupportedRequest(
                f"best-of-n needs a reward to rerank by: {name}(..., rewards=reward_set) "
                "and/or judge=JudgeReward(...)")
        if steering.reward_set(self.rewards) is not None and steering.coefficients:
            steering.reward_set(self.rewards).coefficient_vector(  # RewardSetMismatch before any call is made
                steering.coefficients, reward_set_id=steering.reward_set_id,
                reward_set_version=steering.reward_set_version)
        return strategy

    # -- the plan: one implementation, driven sync or async --------------------------------

    def _plan(self, req: _Request) -> Plan:
        start = time.perf_counter()
        n = req.rerank.n if req.rerank is not None else 1
        replies: list[Reply] = []
        if self.native_n or n == 1:
            responses = yield Calls([self._request(req.messages, req.options, n)])
            replies = [r for rs in responses for r in self._read(rs)]
        while len(replies) < n:  # a server that ignores n: one call per missing candidate
            single = self._request(req.messages, req.options, 1)
            more = yield Calls([single] * (n - len(replies)))
            got = [r for rs in more for r in self._read(rs)]
            if not got:
                raise ProviderError(self.provider, "the reply held no answer")
            replies += got
        replies = replies[:n]
        record = SteeringRecord(path="plain")
        chosen = replies[0]
        if req.rerank is not None:
            assert req.steering is not None
            prompt = last_user_text(req.messages)
            texts = [r.text for r in replies]
            scores, terms = yield Compute(lambda: self._scores(prompt, texts, req.steering))
            best = int(np.argmax(scores))
            chosen = replies[best]
            record = self._record(req.steering, terms, texts, scores, best)
        total = time.perf_counter() - start
        return Generation(
            text=chosen.text, completion_tokens=_sum(r.completion_tokens for r in replies),
            prompt_tokens=chosen.prompt_tokens, finish_reason=chosen.finish,
            timings=Timings(total_s=total), model=chosen.model or self.model, steering=record)

    def _scores(self, prompt: str, texts: list[str], steering: Steering
                ) -> tuple[np.ndarray, tuple[RewardTerm, ...]]:
        total = np.zeros(len(texts))
        terms: tuple[RewardTerm, ...] = ()
        rs = steering.reward_set(self.rewards)
        if rs is not None and steering.coefficients:
            coef = rs.coefficient_vector(steering.coefficients,
                                         reward_set_id=steering.reward_set_id,
                                         reward_set_version=steering.reward_set_version)
            total += rs.features(prompt, texts) @ coef / reward_scale(coef, steering.relative)
            terms = tuple(RewardTerm(name=n, description=d, coefficient=float(c))
                          for n, d, c in zip(rs.names, rs.descriptions, coef, strict=True))
        if self.judge is not None:
            judge = self.judge
            if steering.principles and hasattr(judge, "with_principles"):
                judge = judge.with_principles(steering.principles)
            total += self.judge_weight * np.asarray(judge.score(prompt, texts), dtype=float)
        return total, terms

    def _record(self, steering: Steering, terms: tuple[RewardTerm, ...], texts: list[str],
                scores: np.ndarray, best: int) -> SteeringRecord:
        rs = steering.reward_set(self.rewards) if terms else None
        return SteeringRecord(
            path="best-of-n", levers=("best_of_n",), strategy=steering.strategy.model_dump(),
            strength=steering.strength, reward_set_id=rs.id if rs else None,
            reward_set_version=rs.version if rs else None, terms=terms,
            candidates=tuple(ScoredCandidate(text=t, reward=float(s))
                             for t, s in zip(texts, scores, strict=True)),
            chosen=best)

    # -- drivers -------------------------------------------------------------------------

    def _call(self, request: dict[str, Any]) -> Any:
        with self._errors():
            endpoint = self._endpoint(self.client)
            return endpoint(**_as_sdk_arguments(endpoint, request))

    async def _acall(self, request: dict[str, Any]) -> Any:
        with self._errors():
            endpoint = self._endpoint(self.async_client)
            return await endpoint(**_as_sdk_arguments(endpoint, request))

    def _read(self, response: Any) -> list[Reply]:
        with self._errors():
            return self._replies(response)

    def _run(self, plan: Plan) -> Generation:
        result: Any = None
        try:
            while True:
                step = plan.send(result)
                if isinstance(step, Compute):
                    result = step.fn()
                elif len(step.requests) == 1:
                    result = [self._call(step.requests[0])]
                else:
                    result = self._parallel(step.requests)
        except StopIteration as done:
            return done.value

    def _parallel(self, requests: list[dict[str, Any]]) -> list[Any]:
        """The requests on threads; when one fails, those not yet sent are not sent."""
        self.client  # noqa: B018 - built once, before the threads race to build it
        ex = ThreadPoolExecutor(min(len(requests), self.max_parallel),
                                thread_name_prefix="personalizer")
        try:
            return list(ex.map(self._call, requests))
        finally:
            ex.shutdown(wait=False, cancel_futures=True)

    async def _arun(self, plan: Plan) -> Generation:
        result: Any = None
        limit = asyncio.Semaphore(self.max_parallel)

        async def call(request: dict[str, Any]) -> Any:
            async with limit:
                return await self._acall(request)

        try:
            while True:
                step = plan.send(result)
                if isinstance(step, Compute):
                    result = await asyncio.to_thread(step.fn)
                    continue
                tasks = [asyncio.ensure_future(call(r)) for r in step.requests]
                try:
                    result = list(await asyncio.gather(*tasks))
                except BaseException:
                    for task in tasks:  # one failed: the others stop (and stop billing)
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise
        except StopIteration as done:
            return done.value

    # -- public API ----------------------------------------------------------------------

    def generate(self, messages: MessagesLike, *, steering: Steering | None = None,
                 **options: Any) -> Generation:
        """Answer ``messages``. ``options``: :class:`HostedOptions`. With a best-of-n
        ``steering``, n candidates are drawn and the one the user's reward likes best is
        returned; the record holds every candidate's score."""
        return self._run(self._plan(self._prepare(messages, steering, options)))

    async def agenerate(self, messages: MessagesLike, *, steering: Steering | None = None,
                        **options: Any) -> Generation:
        """:meth:`generate` with the async client: the event loop is never blocked."""
        return await self._arun(self._plan(self._prepare(messages, steering, options)))

    def stream(self, messages: MessagesLike, *, steering: Steering | None = None,
               **options: Any) -> HostedStream:
        """Answer piece by piece; the pieces join to the answer. With best-of-n the chosen
        answer comes as one piece once chosen. After the last piece, ``.generation`` holds
        the whole generation (token usage when the server reported it, else None)."""
        return HostedStream(self, self._prepare(messages, steering, options))

    def astream(self, messages: MessagesLike, *, steering: Steering | None = None,
                **options: Any) -> AsyncHostedStream:
        """:meth:`stream` with the async client."""
        return AsyncHostedStream(self, self._prepare(messages, steering, options))

    def option_names(self) -> Sequence[str]:
        """The generation options this generator takes."""
        return [n for n in HostedOptions.model_fields if n not in self.lacks]

    # -- errors --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The SDK's errors as ours (the SDK's own retries have already run)."""
        sdk = self._sdk()
        try:
            yield
        except PersonalizerError:
            raise
        except sdk.APIError as exc:
            raise provider_error(self.provider, sdk, exc) from exc
        except Exception as exc:
            raise _unexpected(self.provider, sdk, exc) from exc


def _as_sdk_arguments(endpoint: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """``request`` as keyword arguments of the SDK's method: fields that this SDK version's
    method does not name (some releases dropped sampling parameters that older models still
    take) travel in ``extra_body``, exactly as given."""
    try:
        known = _parameters(endpoint)
    except (TypeError, ValueError):  # no signature: send everything as named arguments
        return request
    extra = {k: v for k, v in request.items() if k not in known}
    if not extra:
        return request
    return {k: v for k, v in request.items() if k in known} | {"extra_body": extra}


@functools.lru_cache(maxsize=32)
def _parameters_of(func: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(func).parameters)


def _parameters(endpoint: Callable[..., Any]) -> frozenset[str]:
    return _parameters_of(getattr(endpoint, "__func__", endpoint))


def provider_error(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """An SDK exception (openai and anthropic share the shape) as a :class:`ProviderError`."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(provider, "the request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderUnavailable(provider, f"could not connect ({exc})")
    status = getattr(exc, "status_code", None)
    message = _provider_message(exc)
    kind: type[ProviderError] = ProviderError
    if status in (401, 403):
        kind = ProviderAuthFailed
    elif status == 429:
        kind = ProviderRateLimited
    elif status == 408:
        kind = ProviderTimeout
    elif status in (400, 404, 409, 413, 422):
        kind = ProviderBadRequest
    elif status is not None and status >= 500:
        kind = ProviderServerError
    return kind(provider, message, status_code=status)


def _unexpected(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """Anything else raised while talking to a provider: a transport error the SDK did not
    wrap (a stream cut mid-way), the SDK refusing its settings, a reply we cannot read."""
    kind = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module in ("httpx", "httpx2", "httpcore", "h11", "h2", "anyio"):
        if "Timeout" in kind:
            return ProviderTimeout(provider, f"the request timed out ({kind})")
        return ProviderUnavailable(provider, f"the connection failed ({kind}: {exc})")
    base = getattr(sdk, "OpenAIError", None) or getattr(sdk, "AnthropicError", None)
    if base is not None and isinstance(exc, base):
        return ProviderError(provider, f"{kind}: {exc}")
    if isinstance(exc, (AttributeError, TypeError, KeyError, IndexError, ValueError)):
        return ProviderError(provider, f"the reply could not be read ({kind}: {exc}); is "
                                       "base_url a server that speaks this API?")
    return ProviderError(provider, f"{kind}: {exc}")


def _without_credentials(url: str) -> str:
    """``url`` without a user name or password."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _provider_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", None) or exc)


def _sum(values: Any) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


class _StreamBase:
    """The parts of a hosted stream that sync and async share."""

    def __init__(self, gen: HostedGenerator, req: _Request) -> None:
        self._gen, self._req = gen, req
        self._state = StreamState()
        self._start = time.perf_counter()
        self._first: float | None = None
        self._used = False
        self.generation: Generation | None = None  # set once the stream is exhausted

    def _begin(self) -> None:
        if self._used:
            raise InvalidInput("a stream can be iterated once; call stream() again for "
                               "another answer")
        self._used = True
        self._start = time.perf_counter()

    def _stream_request(self) -> dict[str, Any]:
        return self._gen._stream_request(self._gen._request(self._req.messages,
                                                             self._req.options, 1))

    def _piece(self, event: Any) -> str | None:
        piece = self._gen._event(self._state, event)
        if piece:
            if self._first is None:
                self._first = time.perf_counter() - self._start
            self._state.pieces.append(piece)
        return piece or None

    def _finish(self) -> None:
        s = self._state
        self.generation = Generation(
            text="".join(s.pieces), completion_tokens=s.completion_tokens,
            prompt_tokens=s.prompt_tokens, finish_reason=s.finish,
            timings=Timings(total_s=time.perf_counter() - self._start,
                            first_token_s=self._first),
            model=s.model or self._gen.model, steering=SteeringRecord(path="plain"))


class HostedStream(_StreamBase):
    """A sync stream of text pieces; ``generation`` is set after the last one."""

    def __iter__(self) -> Iterator[str]:
        self._begin()
        if self._req.rerank is not None:  # best-of-n: the chosen answer, once chosen
            self.generation = self._gen._run(self._gen._plan(self._req))
            yield self.generation.text
            return
        gen = self._gen
        stream = gen._call(self._stream_request())
        try:
            with gen._errors():
                for event in stream:
                    piece = self._piece(event)
                    if piece:
                        yield piece
        finally:
            stream.close()
        self._finish()


class AsyncHostedStream(_StreamBase):
    """An async stream of text pieces; ``generation`` is set after the last one."""

    _pieces: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        self._pieces = self._run()
        return self._pieces

    async def aclose(self) -> None:
        """Stop early: the provider's stream is closed (its connection released) now."""
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()

    async def _run(self) -> AsyncIterator[str]:
        self._begin()
        if self._req.rerank is not None:
            self.generation = await self._gen._arun(self._gen._plan(self._req))
            yield self.generation.text
            return
        gen = self._gen
        stream = await gen._acall(self._stream_request())
        try:
            with gen._errors():
                async for event in stream:
                    piece = self._piece(event)
                    if piece:
                        yield piece
        finally:
            await stream.close()
        self._finish()
