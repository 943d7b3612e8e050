"""The gateway as an ASGI app: :func:`create_app` for a :class:`~personalizer.Personalizer`
you built, :func:`from_settings` for ``personalizer serve`` (each worker process builds its
own Personalizer, and so its own store pool, from the settings)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from personalizer import __version__
from personalizer.errors import InvalidInput

from .chat import chat_router
from .guards import Guard, error_reply, install_handlers
from .keys import ApiKeys
from .problems import problem_of
from .profile_routes import profile_router

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "from_settings"]

log = logging.getLogger("personalizer.server")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

KeysLike = ApiKeys | str | Mapping[str, Iterable[str]] | None


def _keys(keys: KeysLike) -> ApiKeys | None:
    if keys is None or isinstance(keys, ApiKeys):
        return keys
    if isinstance(keys, str):
        return ApiKeys.parse(keys)
    if isinstance(keys, Mapping):
        return ApiKeys.of(keys)
    raise InvalidInput(f"keys must be an ApiKeys, a 'key=scope,...;...' string or a mapping, "
                       f"not {type(keys).__name__}")


def create_app(personalizer: Any, *, model: str = "personalizer", keys: KeysLike = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_concurrent: int | None = None,
               close_on_shutdown: bool = False) -> FastAPI:
    """The gateway for ``personalizer``: the OpenAI surface (``/v1/chat/completions``,
    ``/v1/models``, serving ``model``), the profile endpoints (``/v1/profiles/...``),
    ``/healthz`` and ``/readyz``, and the OpenAPI document at ``/openapi.json``.

    ``keys``: the API keys and their scopes (``"key1=chat,profiles:read;key2=admin"``, a
    mapping or :class:`~personalizer.server.ApiKeys`); None admits every request, so only
    bind such an app to a loopback address (``personalizer serve`` refuses otherwise).
    ``max_body_bytes`` refuses larger bodies with 413. ``max_concurrent`` answers at most
    that many chat requests at once (more get 503 with ``Retry-After``; None: no limit; a
    local model in the process is best kept to a few). ``close_on_shutdown`` closes the
    Personalizer when the app stops (the app factory's own).

    Mount it into your own ASGI app with ``app.mount("/llm", create_app(p))``.
    """
    from personalizer.client import Personalizer

    if not isinstance(personalizer, Personalizer):
        raise InvalidInput(f"create_app needs a Personalizer, not "
                           f"{type(personalizer).__name__}")
    if not isinstance(model, str) or not model or len(model) > 256:
        raise InvalidInput("model must be the name clients send (1-256 characters)")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) \
            or max_body_bytes < 1024:
        raise InvalidInput("max_body_bytes must be an int of at least 1024")
    if max_concurrent is not None and (isinstance(max_concurrent, bool) or
                                       not isinstance(max_concurrent, int) or
                                       max_concurrent < 1):
        raise InvalidInput("max_concurrent must be a whole number >= 1, or None")
    api_keys = _keys(keys)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            personalizer.close()

    app = FastAPI(title="personalizer gateway", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible chat completions personalized per person, "
                  "and the profile endpoints.")
    install_handlers(app, max_body_bytes)
    app.add_middleware(Guard, max_bytes=max_body_bytes, keys=api_keys)
    app.include_router(chat_router(personalizer, model, api_keys, max_concurrent))
    app.include_router(profile_router(personalizer, api_keys))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=None)
    async def readyz() -> dict[str, str] | JSONResponse:
        """The store answers (503 while it does not)."""
        try:
            await asyncio.to_thread(personalizer.store.list_profiles, limit=1)
        except Exception as exc:  # noqa: BLE001 - not ready, whatever the cause
            log.warning("not ready: %s", type(exc).__name__)
            return error_reply(problem_of(exc) if problem_of(exc).status == 503 else
                               problem_of(_unready()))
        return {"status": "ready"}

    return app


def _unready() -> Exception:
    from personalizer.errors import StoreUnavailable

    return StoreUnavailable("the profile store does not answer")


def from_settings() -> FastAPI:
    """The app ``personalizer serve`` runs in each worker: a Personalizer from the settings
    (``PERSONALIZER_*`` and ``$PERSONALIZER_CONFIG``), closed when the worker stops."""
    from personalizer.client import Personalizer
    from personalizer.settings import PersonalizerSettings

    settings = PersonalizerSettings.load()
    personalizer = Personalizer(**settings.arguments())
    keys = settings.server_keys.get_secret_value() if settings.server_keys is not None \
        else None  # an empty setting is refused by the parser, never an open gateway
    return create_app(personalizer, model=settings.served_model(), keys=keys,
                      max_body_bytes=settings.server_max_body_bytes,
                      max_concurrent=settings.server_max_concurrent, close_on_shutdown=True)
