"""A LangChain chat model personalized per user: ``PersonalizedChatModel`` (extra ``langchain``).

It wraps a :class:`~personalizer.Personalizer` (and its generator: a local model or a hosted
API) and reads the user from the run's config::

    model = PersonalizedChatModel(personalizer=p)
    chain = prompt | model | StrOutputParser()
    chain.invoke({"question": "..."}, config={"configurable": {"user_id": "alice"}})

Without a user id it answers plainly (no profile is read or created) and says so in the
message's ``response_metadata["personalized"]``. Each answer's ``response_metadata`` carries
the generation's steering record (``"steering"``: levers, coefficients with descriptions,
candidates) and its ``usage_metadata`` the token counts when the generator knows them. No
tool calling and no structured output: the model declares neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from personalizer._optional import require

require("langchain_core", extra="langchain", feature="PersonalizedChatModel")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput  # noqa: E402
from langchain_core.language_models.chat_models import LangSmithParams  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
)
from langchain_core.messages.ai import UsageMetadata  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402
from langchain_core.runnables import RunnableConfig, ensure_config  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from personalizer.answering import as_generator  # noqa: E402
from personalizer.client import Personalizer  # noqa: E402
from personalizer.errors import InvalidInput  # noqa: E402
from personalizer.types import Generation, Message  # noqa: E402
from personalizer.seams import Generator, SteerableGenerator  # noqa: E402

__all__ = ["PersonalizedChatModel"]

NO_USER = ("no user id in config['configurable']['user_id']: answered plainly, no profile "
           "read or created")


class PersonalizedChatModel(BaseChatModel):
    """A LangChain chat model that personalizes each answer for the run's user (see module
    docstring). ``temperature``, ``max_tokens`` and ``stop`` become generation options;
    ``timeout`` and ``max_retries`` are accepted as LangChain's standard parameters, but a
    hosted generator keeps its own client's (set them on the generator)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    personalizer: Personalizer = Field(exclude=True,
                                       description="The Personalizer that answers.")
    model_name: str | None = Field(default=None, alias="model",
                                   description="Shown in traces; the generator's by default.")
    user_id_key: str = Field(default="user_id", description="The configurable key of the "
                                                            "user id.")
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False
    strength: float | None = Field(default=None, ge=0, description="Steering strength "
                                   "(Personalizer.generate's default when None).")
    strategy: Any = Field(default=None, description="'args', 'best_of_n' or a strategy "
                                                    "object (the generator's default: None).")
    prompt_profile: bool | None = Field(default=None, description="The profile block in the "
                                        "system prompt (None: the generator's default).")

    # -- what LangChain asks of a chat model ---------------------------------------------

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Not offered: personalizer answers in text; tool calling is not supported.

        Raises:
            NotImplementedError: always, saying so (LangChain's convention for a model
                without tools).
        """
        raise NotImplementedError(
            "PersonalizedChatModel does not support tool calling (bind_tools): it returns "
            "text answers personalized per user; call tools with another chat model and "
            "pass their results into the messages")

    @property
    def _llm_type(self) -> str:
        return "personalizer"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self._model_name(), "generator": type(self._generator()).__name__,
                "strength": self.strength, "strategy": str(self.strategy),
                "prompt_profile": self.prompt_profile}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="personalizer",
                                 ls_model_name=kwargs.get("model") or self._model_name(),
                                 ls_model_type="chat")
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- the user comes from the run's config ---------------------------------------------

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,  # noqa: A002
               *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._user(config, kwargs))

    async def ainvoke(self, input: LanguageModelInput,  # noqa: A002
                      config: RunnableConfig | None = None, *, stop: list[str] | None = None,
                      **kwargs: Any) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **self._user(config, kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None,  # noqa: A002
               *, stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **self._user(config, kwargs))

    async def astream(self, input: LanguageModelInput,  # noqa: A002
                      config: RunnableConfig | None = None, *, stop: list[str] | None = None,
                      **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        async for chunk in super().astream(input, config, stop=stop,
                                           **self._user(config, kwargs)):
            yield chunk

    def _user(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        user = ensure_config(config).get("configurable", {}).get(self.user_id_key)
        return {**kwargs, "user_id": user} if user is not None else kwargs

    # -- answering ------------------------------------------------------------------------

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        user, msgs, options = self._request(messages, stop, kwargs)
        if user is None:
            out = self._generator().generate(msgs, **options)
        else:
            out = self.personalizer.generate(user, msgs, **self._steering(), **options)
        return self._result(out, user)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        user, msgs, options = self._request(messages, stop, kwargs)
        if user is not None:
            out = await self.personalizer.agenerate(user, msgs, **self._steering(), **options)
        else:
            out = await self._generator().agenerate(msgs, **options)
        return self._result(out, user)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        user, msgs, options = self._request(messages, stop, kwargs)
        stream = (self._generator().stream(msgs, **options) if user is None else
                  self.personalizer.stream(user, msgs, **self._steering(), **options))
        for piece in stream:
            if run_manager is not None:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield self._last_chunk(stream.generation, user)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        user, msgs, options = self._request(messages, stop, kwargs)
        stream = (self._generator().astream(msgs, **options) if user is None else
                  self.personalizer.astream(user, msgs, **self._steering(), **options))
        async for piece in stream:
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield self._last_chunk(stream.generation, user)

    # -- shared parts ---------------------------------------------------------------------

    def _generator(self) -> Generator:
        """The Personalizer's generator as a full :class:`~personalizer.seams.Generator` (a
        simple one adapted), for answers without a user."""
        gen = self.personalizer.generator
        if gen is None:
            raise InvalidInput("PersonalizedChatModel needs a Personalizer with a generator: "
                               "Personalizer(db, generator=...)")
        return as_generator(gen)

    def _model_name(self) -> str:
        if self.model_name:
            return self.model_name
        gen = self.personalizer.generator
        return str(getattr(gen, "model", None) if isinstance(getattr(gen, "model", None), str)
                   else getattr(gen, "name", None) or type(gen).__name__)

    def _steering(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy, "prompt_profile": self.prompt_profile}
        if self.strength is not None:
            out["strength"] = self.strength
        return out

    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None,
                 kwargs: dict[str, Any]) -> tuple[str | None, list[Message], dict[str, Any]]:
        kwargs = dict(kwargs)
        user = kwargs.pop("user_id", None)
        kwargs.pop("model", None)  # a per-call model name only labels traces here
        options: dict[str, Any] = {}
        local = isinstance(self._generator(), SteerableGenerator)
        if self.temperature is not None:
            if local and self.temperature == 0:
                options["do_sample"] = False  # greedy: a local model's temperature 0
            elif local:
                options |= {"do_sample": True, "temperature": self.temperature}
            else:
                options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options["max_new_tokens"] = self.max_tokens
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            options["stop"] = stops
        return user, [_message(m) for m in messages], {**options, **kwargs}

    def _result(self, out: Generation, user: str | None) -> ChatResult:
        message = AIMessage(content=out.text, response_metadata=self._metadata(out, user),
                            usage_metadata=_usage(out))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _last_chunk(self, out: Generation | None, user: str | None) -> ChatGenerationChunk:
        metadata = self._metadata(out, user)
        return ChatGenerationChunk(message=AIMessageChunk(
            content="", response_metadata=metadata, chunk_position="last",
            usage_metadata=None if out is None else _usage(out)))

    def _metadata(self, out: Generation | None, user: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"model_name": self._model_name(),
                                "personalized": user is not None}
        if user is None:
            meta["note"] = NO_USER
        else:
            meta["user_id"] = user
        if out is not None:
            meta["finish_reason"] = out.finish_reason
            if out.id is not None and user is not None:
                meta["generation_id"] = out.id
            if out.steering is not None:
                meta["steering"] = out.steering.model_dump(mode="json")
        return meta

    # -- feedback on a run's answer ----------------------------------------------------------

    def record_feedback(self, message: BaseMessage, *, preferred_over: BaseMessage | None = None,
                        edited: str | None = None, rating: str | None = None,
                        reason: str | None = None) -> Any:
        """Learn from what the person did with an answer this model gave (an ``AIMessage``
        from ``invoke``/``stream``/a chain's output message): ``rating="up"``/``"down"``,
        ``edited=`` their edit, or ``preferred_over=`` another answer shown beside it. See
        :meth:`Personalizer.record_feedback`. Returns the updated profile."""
        user, generation = _ids(message)
        other = None
        if preferred_over is not None:
            other_user, other = _ids(preferred_over)
            if other_user != user:
                raise InvalidInput("the two answers were given to different users")
        return self.personalizer.record_feedback(user, generation, preferred_over=other,
                                                 edited=edited, rating=rating,  # type: ignore[arg-type]
                                                 reason=reason)


def _ids(message: BaseMessage) -> tuple[str, str]:
    meta = getattr(message, "response_metadata", None) or {}
    user, generation = meta.get("user_id"), meta.get("generation_id")
    if not user or not generation:
        raise InvalidInput("this message carries no user and generation id: feedback needs "
                           "an answer given to a user (config={'configurable': {'user_id': "
                           "...}}) and kept for feedback")
    return user, generation


def _message(m: BaseMessage) -> Message:
    role = {"system": "system", "human": "user", "ai": "assistant"}.get(m.type)
    if isinstance(m, ChatMessage):
        role = {"system": "system", "user": "user", "human": "user",
                "assistant": "assistant", "ai": "assistant"}.get(m.role)
    if role is None or getattr(m, "tool_calls", None):
        raise InvalidInput(f"PersonalizedChatModel answers chats of system, human and AI "
                           f"messages; a {m.type!r} message (or a tool call) is not supported")
    return Message(role=role, content=m.text if not isinstance(m.content, str) else m.content)


def _usage(out: Generation) -> UsageMetadata | None:
    if out.prompt_tokens is None or out.completion_tokens is None:
        return None
    return UsageMetadata(input_tokens=out.prompt_tokens, output_tokens=out.completion_tokens,
                         total_tokens=out.prompt_tokens + out.completion_tokens)

