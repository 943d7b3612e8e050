"""A fake OpenAI / Anthropic HTTP server on 127.0.0.1 for the tests (standard library only).

It speaks enough of the OpenAI Chat Completions API (``POST /v1/chat/completions``) and of
the Anthropic Messages API (``POST /v1/messages``) that the official ``openai`` and
``anthropic`` SDKs, sync and async, work against it with ``base_url=`` pointed at it,
streaming (SSE) included. Tests use it to see what our code sends (``requests``) and to
control what comes back (``reply``, ``script``, the flags)::

    with ProviderServer() as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert srv.requests[0].body["model"] == "m"

The assistant text
    ``reply(body) -> str`` is called once per answer with a *copy* of the request body that
    has two extra keys: ``"_choice"`` (index of the OpenAI choice being produced, 0 for a
    single choice and always 0 for Anthropic; with ``n`` > 1 it is called once per choice)
    and ``"_call"`` (0-based number of earlier requests to the same path, counting every
    recorded request, scripted ones included, since start or the last ``clear()``). The
    default, :func:`echo_reply`, answers ``"Echo: " + <last user message text>``.

Token counts
    are whitespace-separated words: prompt words over all message contents (and Anthropic's
    ``system``), completion words of the text. ``max_tokens`` (OpenAI also
    ``max_completion_tokens``) cuts the text to that many words and the answer ends with
    ``finish_reason="length"`` / ``stop_reason="max_tokens"``.

Scripted responses
    ``script(Scripted(429, headers={"retry-after-ms": "1"}), ...)`` queues one-shot answers
    that are consumed one per request (any path) in order, before the normal answer. With
    ``body=None`` an error body shaped like the provider's (by path) is built. A scripted
    status below 400 with ``body=None`` gives the normal answer (after its ``delay_s``).

Cutting streams
    ``cut_stream_after = N`` hangs up every stream after its N-th SSE event (a dropped
    connection mid-answer); ``clear()`` resets it.

Retry headers (as the SDKs read them): both SDKs honour ``retry-after-ms`` (milliseconds) and
``retry-after`` (seconds or an HTTP date) but only a value **above zero**; ``retry-after: 0``
falls back to their exponential backoff (about 0.5 s, 1 s, ...). Use
``{"retry-after-ms": "1"}`` for fast retries. ``x-should-retry: true|false`` overrides their
decision whether to retry at all.

Transport: HTTP/1.1 with keep-alive; JSON answers carry ``Content-Length``, SSE answers use
chunked transfer encoding so the connection stays reusable. ``close()`` wakes requests that
sleep on a delay and hangs up on them (the client sees a connection error), and ends idle
keep-alive connections. Note: ``anthropic`` 2.x sends ``api_key`` as
``authorization: Bearer <key>``, not ``x-api-key``.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

# status -> (message, OpenAI error type, OpenAI error code, Anthropic error type)
_ERRORS: dict[int, tuple[str, str, str, str]] = {
    400: ("Invalid request", "invalid_request_error", "invalid_request", "invalid_request_error"),
    401: ("Incorrect API key provided", "invalid_request_error", "invalid_api_key",
          "authentication_error"),
    403: ("Permission denied", "invalid_request_error", "permission_denied", "permission_error"),
    404: ("Not found", "invalid_request_error", "not_found", "not_found_error"),
    408: ("Request timed out", "timeout", "timeout", "timeout_error"),
    409: ("Conflict", "invalid_request_error", "conflict", "invalid_request_error"),
    413: ("Request too large", "invalid_request_error", "request_too_large", "request_too_large"),
    422: ("Unprocessable request", "invalid_request_error", "unprocessable_entity",
          "invalid_request_error"),
    429: ("Rate limit reached", "requests", "rate_limit_exceeded", "rate_limit_error"),
    500: ("The server had an error", "server_error", "server_error", "api_error"),
    502: ("Bad gateway", "server_error", "bad_gateway", "api_error"),
    503: ("The engine is currently overloaded", "server_error", "service_unavailable",
          "overloaded_error"),
    529: ("Overloaded", "server_error", "overloaded", "overloaded_error"),
}

@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class Scripted:
    """A one-shot answer; see :meth:`ProviderServer.script`."""

    status: int
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


# ---------------------------------------------------------------------------- text helpers


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of ``{"type": "text"}`` blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return " ".join(parts)
    return str(content)


def echo_reply(body: dict) -> str:
    """The default ``reply``: ``"Echo: "`` + the text of the last user message."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "Echo: " + content_text(message.get("content"))
    return "Echo: "


def count_words(text: str) -> int:
    return len(text.split())


def _prompt_words(body: dict) -> int:
    total = count_words(content_text(body.get("system")))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += count_words(content_text(message.get("content")))
    return total


def _cut(text: str, limit: Any) -> tuple[str, bool]:
    """``text`` cut to ``limit`` words (if ``limit`` is an int), and whether it was cut."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        return text, False
    if count_words(text) <= limit:
        return text, False
    return "".join(re.findall(r"\s*\S+", text)[:limit]), True


def split_pieces(text: str) -> list[str]:
    """``text`` in stream pieces (a word and the whitespace after it) that join to ``text``."""
    pieces = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    if lead:
        if pieces:
            pieces[0] = lead + pieces[0]
        else:
            pieces = [lead]
    return pieces


def error_body(path: str, status: int, message: str | None = None) -> dict:
    """An error body shaped like the provider's for ``path`` (Anthropic for /v1/messages)."""
    default = _ERRORS.get(status)
    if default is None:
        default = (("Internal error", "server_error", "server_error", "api_error")
                   if status >= 500 else
                   ("Request failed", "invalid_request_error", "error", "invalid_request_error"))
    text, oa_type, oa_code, an_type = default
    if message is not None:
        text = message
    if path == ANTHROPIC_PATH:
        return {"type": "error", "error": {"type": an_type, "message": text}}
    return {"error": {"message": text, "type": oa_type, "param": None, "code": oa_code}}


# ---------------------------------------------------------------------------- HTTP plumbing


class _ReplyFailed(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # listen backlog: the default 5 drops bursts of connections

    def __init__(self, owner: ProviderServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Disconnects (client gone, or our own close()) are normal; anything else is a bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    # -- connection lifecycle

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK hold the body back ~40 ms on a kept-alive connection
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._connection_opened(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # BrokenPipe / ConnectionReset: the client went away mid-answer
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- methods

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    raise ConnectionResetError("client closed during chunked body")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        path = urlsplit(self.path).path
        bad_json = False
        body: Any
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body, bad_json = {"_raw": raw.decode("utf-8", "replace")}, True
        if not isinstance(body, dict):
            body, bad_json = {"_raw": body}, True
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        call, scripted = owner._record(Recorded(path=path, headers=headers, body=body))

        delay = owner.delay_s + (scripted.delay_s if scripted is not None else 0.0)
        if delay > 0 and owner._sleep(delay):
            self.close_connection = True  # close() during the delay: hang up, answer nothing
            return
        if scripted is not None and (scripted.body is not None or scripted.status >= 400):
            payload = (scripted.body if scripted.body is not None
                       else error_body(path, scripted.status))
            self._send_json(scripted.status, payload, scripted.headers)
            return
        extra = dict(scripted.headers) if scripted is not None else {}

        if self.command != "POST" or path not in (OPENAI_PATH, ANTHROPIC_PATH):
            self._send_json(404, {"error": {"message": f"Unknown path {self.command} {path}",
                                            "type": "not_found_error", "param": None,
                                            "code": "not_found"}}, extra)
            return
        if bad_json:
            self._send_json(400, error_body(path, 400, "Request body is not a JSON object"),
                            extra)
            return
        try:
            if path == OPENAI_PATH:
                self._openai(body, call, extra)
            else:
                self._anthropic(body, call, extra)
        except _ReplyFailed as exc:
            self._send_json(500, error_body(path, 500, str(exc)),
                            {**extra, "x-should-retry": "false"})

    # -- writing

    def _send_json(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers(headers)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _common_headers(self, headers: dict[str, str]) -> None:
        rid = self.server.owner._next_id("req_")
        self.send_header("x-request-id", rid)
        self.send_header("request-id", rid)
        for name, value in headers.items():
            self.send_header(name, value)

    def _start_sse(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._common_headers(headers)
        self.end_headers()

    def _sse(self, data: Any, event: str | None = None) -> None:
        owner = self.server.owner
        if owner.cut_stream_after is not None:
            self._sent_events = getattr(self, "_sent_events", 0) + 1
            if self._sent_events > owner.cut_stream_after:  # hang up mid-stream
                self._sent_events = 0
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                raise ConnectionResetError("stream cut by the test")
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        chunk = frame.encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _end_sse(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- providers

    def _texts(self, body: dict, call: int, n: int) -> list[str]:
        owner = self.server.owner
        out = []
        for i in range(n):
            request = dict(body)
            request["_choice"] = i
            request["_call"] = call
            try:
                text = owner.reply(request)
            except Exception as exc:  # the test's reply function is broken: say so
                raise _ReplyFailed(f"reply() raised {type(exc).__name__}: {exc}") from exc
            out.append(text if isinstance(text, str) else str(text))
        return out

    def _openai(self, body: dict, call: int, extra: dict[str, str]) -> None:
        owner = self.server.owner
        n = body.get("n")
        if not owner.supports_n or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            n = 1
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        answers = []
        for text in self._texts(body, call, n):
            cut, was_cut = _cut(text, limit)
            answers.append((cut, "length" if was_cut else "stop"))
        prompt = _prompt_words(body)
        completion = sum(count_words(text) for text, _ in answers)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        cid, created, model = owner._next_id("chatcmpl-"), int(time.time()), body.get("model", "")

        if not body.get("stream"):
            self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text,
                                                     "refusal": None},
                             "finish_reason": finish, "logprobs": None}
                            for i, (text, finish) in enumerate(answers)],
                "usage": usage, "system_fingerprint": None,
            }, extra)
            return

        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        send_usage = include_usage and owner.send_stream_usage

        def chunk(choices: list[dict]) -> dict:
            out = {"id": cid, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": None, "choices": choices}
            if send_usage:
                out["usage"] = None
            return out

        def choice(i: int, delta: dict, finish: str | None = None) -> dict:
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}

        self._start_sse(extra)
        for i in range(n):
            self._sse(chunk([choice(i, {"role": "assistant", "content": "", "refusal": None})]))
        pieces = [split_pieces(text) for text, _ in answers]
        for step in range(max(len(p) for p in pieces)):
            for i, mine in enumerate(pieces):
                if step < len(mine):
                    self._sse(chunk([choice(i, {"content": mine[step]})]))
        for i, (_, finish) in enumerate(answers):
            self._sse(chunk([choice(i, {}, finish)]))
        if send_usage:
            final = chunk([])
            final["usage"] = usage
            self._sse(final)
        self._sse("[DONE]")
        self._end_sse()

    def _anthropic(self, body: dict, call: int, extra: dict[str, str]) -> None:
        owner = self.server.owner
        limit = body.get("max_tokens")
        if isinstance(limit, bool) or not isinstance(limit, int):
            self._send_json(400, error_body(ANTHROPIC_PATH, 400, "max_tokens: Field required"),
                            extra)
            return
        (text,) = self._texts(body, call, 1)
        text, was_cut = _cut(text, limit)
        stop = "max_tokens" if was_cut else "end_turn"
        prompt, completion = _prompt_words(body), count_words(text)
        mid, model = owner._next_id("msg_"), body.get("model", "")
        message = {"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "stop_reason": stop,
                   "stop_sequence": None,
                   "usage": {"input_tokens": prompt, "output_tokens": completion}}

        if not body.get("stream"):
            self._send_json(200, message, extra)
            return

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": prompt, "output_tokens": 1}}
        self._start_sse(extra)
        self._sse({"type": "message_start", "message": start}, "message_start")
        self._sse({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}, "content_block_start")
        self._sse({"type": "ping"}, "ping")
        for piece in split_pieces(text):
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
        self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self._sse({"type": "message_delta",
                   "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": completion}}, "message_delta")
        self._sse({"type": "message_stop"}, "message_stop")
        self._end_sse()


# ---------------------------------------------------------------------------- the server


class ProviderServer:
    """Threaded fake provider on 127.0.0.1 and a free port.

    A context manager (starts on ``__enter__``, shuts down and joins on ``__exit__``); also
    ``start()`` / ``close()``. See the module docstring for what it answers.
    """

    def __init__(self, reply: Callable[[dict], str] | None = None) -> None:
        self.reply: Callable[[dict], str] = reply if reply is not None else echo_reply
        self.requests: list[Recorded] = []
        self.supports_n: bool = True
        self.send_stream_usage: bool = True
        self.cut_stream_after: int | None = None  # hang up after this many SSE events
        self.delay_s: float = 0.0
        self.url = ""
        self.openai_base_url = ""
        self.anthropic_base_url = ""
        self._lock = threading.Lock()
        self._scripts: deque[Scripted] = deque()
        self._calls: dict[str, int] = {}
        self._seq = 0
        self._stop = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- public

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer(self)
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.openai_base_url = self.url + "/v1"
        self.anthropic_base_url = self.url
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"provider-server-{port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stop.set()  # wakes requests sleeping on a delay
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(5)
        with self._lock:
            open_connections = list(self._connections.items())
        for sock, _ in open_connections:  # idle keep-alive connections: end their threads
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, handler in open_connections:
            if handler is not threading.current_thread():
                handler.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def script(self, *responses: Scripted) -> None:
        """Queue one-shot answers, used one per request (any path) in FIFO order."""
        with self._lock:
            self._scripts.extend(responses)

    def clear(self) -> None:
        """Forget recorded requests, scripted answers and call counters; reset the flags."""
        with self._lock:
            self.requests.clear()
            self._scripts.clear()
            self._calls.clear()
        self.supports_n = True
        self.send_stream_usage = True
        self.cut_stream_after = None
        self.delay_s = 0.0

    # -- used by the handler

    def _record(self, rec: Recorded) -> tuple[int, Scripted | None]:
        with self._lock:
            self.requests.append(rec)
            call = self._calls.get(rec.path, 0)
            self._calls[rec.path] = call + 1
            scripted = self._scripts.popleft() if self._scripts else None
        return call, scripted

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}ps{self._seq:010d}"

    def _sleep(self, seconds: float) -> bool:
        """Sleep; True when ``close()`` cut the sleep short."""
        return self._stop.wait(seconds)

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections[sock] = threading.current_thread()

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)


__all__ = ["ANTHROPIC_PATH", "OPENAI_PATH", "ProviderServer", "Recorded", "Scripted",
           "content_text", "count_words", "echo_reply", "error_body", "split_pieces"]
