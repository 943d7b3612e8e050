"""A hosted chat model (no logits) as a :class:`~personalizer.seams.Generator`.

A :class:`HostedGenerator` binds a :class:`~.provider.Provider` (the vendor's adapter) to a
:class:`~.connection.Connection` (its clients) and answers through the sans-I/O core
(:mod:`.core`), driven sync or async (:mod:`.drivers`). It is personalized by the profile in
the system prompt (the facade puts it there) and, when a Steering asks for it, by best-of-n
reranking (:mod:`.rerank`). What needs logits is refused with an error that says what works.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from personalizer._boundary import Unchecked, public_api
from personalizer.errors import InvalidInput
from personalizer.seams import ProfilePrompt
from personalizer.steering import Steering
from personalizer.streams import AsyncStream, Stream
from personalizer.types import Generation, MessagesLike

from .connection import Connection
from .core import Plan, Request, plan, prepare
from .drivers import arun, run
from .errors import without_credentials
from .options import HostedOptions, ModelName, Parallel, Retries, Seconds, Url, Weight
from .provider import Provider
from .streaming import astream_of, stream_of

__all__ = ["HostedGenerator"]

_SYSTEM = ProfilePrompt(where="system")


@public_api
class HostedGenerator:
    """A chat model behind a hosted API, spoken to through ``provider``'s adapter.

    ``rewards`` (a :class:`~personalizer.backends.rewards.RewardSet` that scores text; or the
    one a :class:`~personalizer.steering.Steering` hands in) and/or ``judge`` (a
    :class:`~personalizer.backends.rewards.JudgeReward`, given the user's summary as
    principles) rerank best-of-n candidates: a candidate's score is the user's reward
    (coefficients . features, divided by the coefficients' norm like local steering) plus
    ``judge_weight`` times the judge's score. The public generators bind a provider:
    :class:`~personalizer.backends.OpenAIGenerator`,
    :class:`~personalizer.backends.AnthropicGenerator`.
    """

    default_strategy = None  # the prompt only; best-of-n when a Steering asks for it

    def __init__(self, model: ModelName, *, provider: Unchecked[Provider],
                 client: Unchecked[Any] = None, async_client: Unchecked[Any] = None,
                 api_key: Unchecked[str | SecretStr | None] = None,
                 base_url: Url | None = None, timeout: Seconds | None = None,
                 max_retries: Retries | None = None, rewards: Unchecked[Any] = None,
                 judge: Unchecked[Any] = None, judge_weight: Weight = 1.0,
                 max_parallel: Parallel = 8) -> None:
        name = type(self).__name__
        if not isinstance(provider, Provider):
            raise InvalidInput(f"{name}: provider must be a personalizer.backends.hosted."
                               f"Provider, not {type(provider).__name__}")
        self._conn = Connection(provider, name, client=client, async_client=async_client,
                                api_key=api_key, base_url=base_url, timeout=timeout,
                                max_retries=max_retries)
        for what, value, needs in (("rewards", rewards, "coefficient_vector"),
                                   ("judge", judge, "score")):
            if value is not None and not hasattr(value, needs):
                raise InvalidInput(f"{name}: {what} must have .{needs} (got "
                                   f"{type(value).__name__}); see {name}'s docstring")
        self.provider: Provider = provider
        self.model = model
        self.rewards, self.judge, self.judge_weight = rewards, judge, float(judge_weight)
        self.max_parallel = max_parallel

    @property
    def profile_prompt(self) -> ProfilePrompt:
        """The profile goes into the system prompt, as a delimited block."""
        return _SYSTEM

    @property
    def client(self) -> Any:
        """The caller's sync client, or one built from this generator's settings."""
        return self._conn.client

    @property
    def async_client(self) -> Any:
        """The caller's async client, else one built for the running event loop."""
        return self._conn.async_client

    def with_rewards(self, rewards: Unchecked[Any]) -> HostedGenerator:
        """This generator with a reward set to rerank best-of-n candidates by (the same
        clients); this object is left as it is."""
        if rewards is not None and not hasattr(rewards, "coefficient_vector"):
            raise InvalidInput("rewards must be a RewardSet (or None)")
        twin = copy.copy(self)
        twin.rewards = rewards
        return twin

    def __repr__(self) -> str:
        url = self._conn.base_url
        where = f", base_url={without_credentials(url)!r}" if url else ""
        return f"{type(self).__name__}({self.model!r}{where})"

    def _prepare(self, messages: MessagesLike, steering: Any,
                 options: Mapping[str, Any]) -> Request:
        return prepare(messages, steering, options, provider=self.provider,
                            owner=type(self).__name__, rewards=self.rewards,
                            judge=self.judge, judge_weight=self.judge_weight)

    def _plan(self, req: Request) -> Plan:
        return plan(req, self.provider, self.model)

    def _stream_request(self, req: Request) -> dict[str, Any] | None:
        if req.rerank is not None:
            return None
        return self.provider.stream_request(
            self.provider.request(self.model, req.messages, req.options, 1))

    # -- the Generator protocol --------------------------------------------------------------

    def generate(self, messages: MessagesLike, *,
                 steering: Unchecked[Steering | None] = None, **options: Any) -> Generation:
        """Answer ``messages``. ``options``: :class:`HostedOptions`. With a best-of-n
        ``steering``, n candidates are drawn and the one the user's reward likes best is
        returned; the record holds every candidate's score. A steering without a strategy,
        or with nothing of the user's that can rank candidates yet, is one plain call."""
        return run(self._plan(self._prepare(messages, steering, options)), self._conn,
                   self.max_parallel)

    async def agenerate(self, messages: MessagesLike, *,
                        steering: Unchecked[Steering | None] = None,
                        **options: Any) -> Generation:
        """:meth:`generate` with the async client: the event loop is never blocked."""
        return await arun(self._plan(self._prepare(messages, steering, options)),
                          self._conn, self.max_parallel)

    def stream(self, messages: MessagesLike, *, steering: Unchecked[Steering | None] = None,
               **options: Any) -> Stream:
        """Answer piece by piece; the pieces join to the answer. With best-of-n the chosen
        answer comes as one piece once chosen. After the last piece, ``.generation`` holds
        the whole generation (token usage when the server reported it, else None)."""
        req = self._prepare(messages, steering, options)
        return stream_of(self._conn, self.model, self._stream_request(req),
                         lambda: run(self._plan(req), self._conn, self.max_parallel),
                         f"{type(self).__name__}.stream")

    def astream(self, messages: MessagesLike, *,
                steering: Unchecked[Steering | None] = None, **options: Any) -> AsyncStream:
        """:meth:`stream` with the async client."""
        req = self._prepare(messages, steering, options)
        return astream_of(self._conn, self.model, self._stream_request(req),
                          lambda: arun(self._plan(req), self._conn, self.max_parallel),
                          f"{type(self).__name__}.astream")

    def option_names(self) -> Sequence[str]:
        """The generation options this generator takes."""
        return [n for n in HostedOptions.model_fields if n not in self.provider.lacks]
