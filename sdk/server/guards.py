"""What stands before every route: the API-key check (a dependency per scope), the body
size limit and structured access logs without user text (one ASGI middleware), and the
error handlers that give every failure OpenAI's error shape."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from personalizer.errors import PersonalizerError

from .keys import ApiKeys, allows
from .problems import Problem, problem_of

__all__ = ["Guard", "error_reply", "install_handlers", "need"]

log = logging.getLogger("personalizer.server")


def error_reply(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status,
                        headers=dict(problem.headers))


def need(keys: ApiKeys | None, scope: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency that admits a request whose ``Authorization: Bearer <key>`` has
    ``scope`` (every request, when the gateway has no keys: loopback only). Async: it runs
    on the event loop, not in a worker thread."""

    async def check(request: Request) -> None:
        if keys is None:
            return
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            raise Problem(401, "invalid_request_error", "missing_api_key",
                          "no API key: send Authorization: Bearer <key> (the OpenAI SDK's "
                          "api_key=)")
        scopes = keys.scopes_of(presented.strip())
        if scopes is None:
            raise Problem(401, "invalid_request_error", "invalid_api_key",
                          "the API key was not accepted")
        if not allows(scopes, scope):
            raise Problem(403, "invalid_request_error", "insufficient_scope",
                          f"this API key may not do this: it needs the {scope!r} scope")
    return check


class _TooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware around every request: a body over ``max_bytes`` is refused
    with 413 before it is read (Content-Length) or as soon as it passes the limit (a
    chunked body); then one INFO line per request: method, route (its template: never a
    user id or text), status and milliseconds."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

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
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                raise _TooLarge
            await self.app(scope, counted, sending)
        except _TooLarge:
            if status == 500:  # nothing sent yet
                status = 413
                await self._refuse(send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            ms = (time.perf_counter() - start) * 1000
            log.info("method=%s route=%s status=%d ms=%.1f", scope["method"], route or "-",
                     status, ms, extra={"method": scope["method"], "route": route,
                                        "status": status, "ms": round(ms, 1)})

    async def _refuse(self, send: Callable) -> None:
        problem = Problem(413, "invalid_request_error", "request_too_large",
                          f"the request body is larger than {self.max_bytes} bytes (the "
                          "server_max_body_bytes setting)")
        body = json.dumps(problem.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def install_handlers(app: FastAPI) -> None:
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
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return error_reply(Problem(400, "invalid_request_error", "invalid_json",
                                       "the request body is not valid JSON"))
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error_reply(Problem(422, "invalid_request_error", "invalid_value",
                                   f"{param or 'body'}: {first.get('msg')}{more}", param=param))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = {404: "no such endpoint (see /docs)",
                   405: "this endpoint does not take that method"}.get(exc.status_code,
                                                                      str(exc.detail))
        return error_reply(Problem(exc.status_code, "invalid_request_error", code, message))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return error_reply(problem_of(exc))
