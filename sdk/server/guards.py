"""What stands before every route: the API key (checked before a body is read, then each
route's scope by a dependency), the body size limit and structured access logs without user
text (one ASGI middleware), and the error handlers that give every failure OpenAI's error
shape."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from personalizer.errors import PersonalizerError

from .keys import SCOPES, ApiKeys, allows
from .problems import Problem, problem_of

__all__ = ["Guard", "error_reply", "install_handlers", "need"]

log = logging.getLogger("personalizer.server")

ALL_SCOPES = frozenset(SCOPES)
# Paths anyone may call (a load balancer's probes), relative to where the app is mounted.
OPEN_PATHS = ("/healthz", "/readyz")
# OpenAI's routes answer a malformed field with 400 (its SDKs raise BadRequestError); the
# profile endpoints with 422, as FastAPI apps do.
OPENAI_PREFIXES = ("/v1/chat/", "/v1/models")


def error_reply(problem: Problem) -> JSONResponse:
    """The problem as a JSON reply. Only a rate limit, an overloaded or timed-out upstream
    or store and a version conflict are worth retrying: everything else tells the official
    SDKs not to (``x-should-retry: false``), so a permanent failure is not sent thrice."""
    headers = dict(problem.headers)
    if problem.status not in (429, 503, 504) and problem.code != "version_conflict":
        headers["x-should-retry"] = "false"
    return JSONResponse(problem.body(), status_code=problem.status, headers=headers)


def _scopes(keys: ApiKeys | None, authorization: str) -> frozenset[str]:
    """The scopes the ``Authorization`` header grants (all, without keys), or the 401."""
    if keys is None:
        return ALL_SCOPES
    kind, _, presented = authorization.partition(" ")
    if kind.lower() != "bearer" or not presented.strip():
        raise Problem(401, "invalid_request_error", "missing_api_key",
                      "no API key: send Authorization: Bearer <key> (the OpenAI SDK's "
                      "api_key=)")
    scopes = keys.scopes_of(presented.strip())
    if scopes is None:
        raise Problem(401, "invalid_request_error", "invalid_api_key",
                      "the API key was not accepted")
    return scopes


def need(keys: ApiKeys | None, scope: str) -> Callable[[Request], Awaitable[frozenset[str]]]:
    """A dependency that admits a request whose key has ``scope`` and returns the key's
    scopes (all of them when the gateway has no keys: loopback only). Async: it runs on the
    event loop, not in a worker thread."""

    async def check(request: Request) -> frozenset[str]:
        scopes = _scopes(keys, request.headers.get("authorization", ""))
        if not allows(scopes, scope):
            raise Problem(403, "invalid_request_error", "insufficient_scope",
                          f"this API key may not do this: it needs the {scope!r} scope")
        return scopes
    return check


class _TooLarge(HTTPException):
    """A body past the limit, found while it is read (FastAPI passes HTTP exceptions on)."""

    def __init__(self) -> None:
        super().__init__(413)


class Guard:
    """Pure ASGI middleware around every request: without a valid API key a request is
    refused (401) before its body is read; a body over ``max_bytes`` is refused with 413
    before it is read (Content-Length) or as soon as it passes the limit (a chunked body);
    then one INFO line per request: method, route (its template: never a user id or text),
    status and milliseconds."""

    def __init__(self, app: Any, max_bytes: int, keys: ApiKeys | None) -> None:
        self.app, self.max_bytes, self.keys = app, max_bytes, keys

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            if self.keys is not None and not _open(scope):
                _scopes(self.keys, headers.get(b"authorization", b"").decode("latin-1"))
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                raise _TooLarge
            await self.app(scope, counted, sending)
        except Problem as problem:
            status = problem.status
            await _send(send, problem)
        except _TooLarge:
            if status == 500:  # nothing sent yet
                status = 413
                await _send(send, self._too_large())
        finally:
            route = getattr(scope.get("route"), "path", None)
            ms = (time.perf_counter() - start) * 1000
            log.info("method=%s route=%s status=%d ms=%.1f", scope["method"], route or "-",
                     status, ms, extra={"method": scope["method"], "route": route,
                                        "status": status, "ms": round(ms, 1)})

    def _too_large(self) -> Problem:
        return Problem(413, "invalid_request_error", "request_too_large",
                       f"the request body is larger than {self.max_bytes} bytes (the "
                       "server_max_body_bytes setting)")


def _open(scope: dict) -> bool:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return (path[len(root):] if root and path.startswith(root) else path) in OPEN_PATHS


async def _send(send: Callable, problem: Problem) -> None:
    reply = error_reply(problem)
    await send({"type": "http.response.start", "status": problem.status,
                "headers": [*reply.raw_headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": reply.body})


def install_handlers(app: FastAPI, max_bytes: int) -> None:
    """Every error as OpenAI's error body."""

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return error_reply(exc)

    @app.exception_handler(PersonalizerError)
    async def _ours(_request: Request, exc: PersonalizerError) -> JSONResponse:
        problem = problem_of(exc)
        if problem.status >= 500:
            log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return error_reply(problem)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return error_reply(Problem(400, "invalid_request_error", "invalid_json",
                                       "the request body is not valid JSON"))
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        status = 400 if request.url.path.startswith(
            tuple(request.scope.get("root_path", "") + p for p in OPENAI_PREFIXES)) else 422
        return error_reply(Problem(status, "invalid_request_error", "invalid_value",
                                   f"{param or 'body'}: {first.get('msg')}{more}", param=param))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return error_reply(Problem(413, "invalid_request_error", "request_too_large",
                                       f"the request body is larger than {max_bytes} bytes "
                                       "(the server_max_body_bytes setting)"))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = {404: "no such endpoint (see /docs)",
                   405: "this endpoint does not take that method"}.get(
                       exc.status_code, "the request could not be read")
        return error_reply(Problem(exc.status_code, "invalid_request_error", code, message))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return error_reply(problem_of(exc))
