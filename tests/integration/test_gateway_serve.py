"""``personalizer serve`` as its own process, as an operator runs it: two replicas over one
PostgreSQL database, two workers, a stop that lets a stream finish, and the refusal to serve
an open gateway beyond loopback. The upstream is the project's wire-format server (hosted
OpenAI generator), so no model loads."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")

import httpx  # noqa: E402
import openai  # noqa: E402
from support.gateway import serve_process  # noqa: E402
from support.provider_server import content_text  # noqa: E402

CHAT = [{"role": "user", "content": "How do I get better sleep?"}]
KEY = "gateway-key-0123456789abcdef"
SHORT = "Keep a fixed bedtime."
LONG = ("Keep a fixed bedtime and wake time every day, avoid screens for an hour before bed, "
        "keep the room cool, dark and quiet, skip caffeine after noon, and get daylight early.")


def system_of(body: dict) -> str:
    return " ".join(content_text(m.get("content")) for m in body["messages"]
                    if m["role"] == "system") or "(no system prompt)"


def env(server: Any, db: str, **more: str) -> dict[str, str]:
    return {"PERSONALIZER_DB": db, "PERSONALIZER_GENERATOR": "openai",
            "PERSONALIZER_MODEL": "upstream-m", "PERSONALIZER_BASE_URL": server.openai_base_url,
            "PERSONALIZER_API_KEY": "k", "PERSONALIZER_SERVER_KEYS": f"{KEY}=admin", **more}


@pytest.fixture
def upstream(server: Any) -> Any:
    server.clear()
    server.reply = system_of
    return server


def test_two_replicas_on_one_postgres_database_share_what_they_learn(
        upstream: Any, pg_url: str, tmp_path: Path) -> None:
    settings = env(upstream, pg_url)
    with serve_process(settings, tmp_path / "a.log") as a, \
            serve_process(settings, tmp_path / "b.log") as b:
        via_b = openai.OpenAI(base_url=b + "/v1", api_key=KEY, max_retries=0)
        first = via_b.chat.completions.create(model="upstream-m", messages=CHAT, user="carol")
        assert "<user_profile>" not in first.choices[0].message.content
        with httpx.Client(base_url=a, headers={"Authorization": f"Bearer {KEY}"}) as via_a:
            for prompt in ("Sleep tips?", "How to rest?", "Bedtime advice?"):
                got = via_a.post("/v1/profiles/carol/preferences",
                                 json={"prompt": prompt, "chosen": SHORT, "rejected": LONG})
                assert got.status_code == 200, got.text
        after = via_b.chat.completions.create(model="upstream-m", messages=CHAT, user="carol")
        block = after.choices[0].message.content
        assert "<user_profile>" in block and "short" in block.lower()
        assert after.model_extra["personalizer"]["personalized"] is True
        assert httpx.get(b + "/readyz").json() == {"status": "ready"}
    log = (tmp_path / "a.log").read_text()
    assert "route=/v1/profiles/{user_id}/preferences status=200" in log  # the access log
    assert "carol" not in log and "Sleep tips" not in log  # no user id or text at INFO


def test_two_workers_serve_and_a_stop_lets_the_stream_in_flight_finish(
        upstream: Any, tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    with serve_process(env(upstream, db), tmp_path / "w.log", "--workers", "2") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        for i in range(6):
            out = client.chat.completions.create(model="upstream-m", messages=CHAT,
                                                 user=f"u{i % 3}")
            assert out.choices[0].finish_reason == "stop"
        upstream.delay_s = 2.0  # the next answer is slow: stop the server meanwhile
        pieces: list[str] = []

        def read() -> None:
            for c in client.chat.completions.create(model="upstream-m", messages=CHAT,
                                                    user="u1", stream=True):
                if c.choices:
                    pieces.append(c.choices[0].delta.content or "")

        asked = len(upstream.requests)
        reader = threading.Thread(target=read)
        reader.start()
        deadline = time.monotonic() + 30
        while len(upstream.requests) == asked:  # the answer is in flight upstream now
            assert time.monotonic() < deadline and reader.is_alive()
            time.sleep(0.01)
        pids = _serve_pids(tmp_path / "w.log")
        assert pids, "the serve process was not found"
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert "".join(pieces) == "(no system prompt)"  # the whole answer came


def _serve_pids(log: Path) -> list[int]:
    """The main ``personalizer serve`` process (uvicorn logs 'Started parent process [pid]'
    with workers; 'Started server process [pid]' with one)."""
    import re

    text = log.read_text()
    found = re.findall(r"Started parent process \[(\d+)\]", text) or \
        re.findall(r"Started server process \[(\d+)\]", text)
    return [int(found[0])] if found else []


def _signal(pid: int, sig: int) -> None:
    import os

    os.kill(pid, sig)


def test_an_open_gateway_is_refused_beyond_loopback(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).with_name("personalizer"))
    done = subprocess.run([cli, "serve", "--host", "0.0.0.0", "--port", "1"], text=True,
                          capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "PERSONALIZER_DB": str(tmp_path / "p.db")})
    assert done.returncode == 1
    assert "without API keys" in done.stderr and "PERSONALIZER_SERVER_KEYS" in done.stderr
    assert not (tmp_path / "p.db").exists()
