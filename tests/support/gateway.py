"""Run the gateway for a test: ``in_thread(app)`` serves an ASGI app with uvicorn on
127.0.0.1 (a random port) in a thread of the test process; ``serve_process(env)`` starts
``personalizer serve`` as its own process (the CLI, as a user runs it) and waits until
``/healthz`` answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> str:
    return str(Path(sys.executable).with_name("personalizer"))


@contextlib.contextmanager
def serve_process(env: dict[str, str], log: Path, *args: str, timeout_s: float = 60
                  ) -> Iterator[str]:
    """``personalizer serve --port <free> *args`` with ``env`` added to this process's
    environment, its output written to ``log``; yields the base URL once ``/healthz``
    answers; stopped with SIGTERM."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen([_cli(), "serve", "--port", str(port), *args],
                            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"personalizer serve exited ({proc.returncode}):\n"
                                   f"{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("personalizer serve did not answer /healthz in time:\n"
                                   f"{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
