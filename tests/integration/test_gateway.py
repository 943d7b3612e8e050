"""The gateway (personalizer.server), driven as apps meet it: the official openai SDK, sync
and async, streaming and not, against uvicorn on 127.0.0.1; behind it a tiny local model
(steered) or the hosted OpenAI generator pointed at the project's wire-format server (an
OpenAI-compatible upstream, as vLLM's would be). Raw HTTP for what the SDK cannot send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")

import httpx  # noqa: E402
import openai  # noqa: E402
from support import tiny  # noqa: E402
from support.gateway import in_thread  # noqa: E402
from support.provider_server import Scripted, content_text  # noqa: E402

from personalizer import Personalizer  # noqa: E402
from personalizer.backends import LocalGenerator, OpenAIGenerator  # noqa: E402
from personalizer.backends.rewards import AttributeScorer, RewardSet  # noqa: E402
from personalizer.profiles import default_reward_set  # noqa: E402
from personalizer.server import ApiKeys, create_app  # noqa: E402

LETTERS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"),
                                                more="Use the letter e.")])
CHAT = [{"role": "user", "content": "Hello there, how are you?"}]
CHAT_KEY = "chat-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = f"{CHAT_KEY}=chat;{READ_KEY}=profiles:read;{ADMIN_KEY}=admin"


def sdk(url: str, key: str = ADMIN_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def wait_for(condition: Any, timeout_s: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def extension(obj: Any) -> dict[str, Any]:
    """The reply's ``personalizer`` object, as the official SDK exposes an extra field."""
    return obj.model_extra["personalizer"]


# -------------------------------------------------------------- a local model, steered


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Personalizer]]:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=LETTERS, quality=None,
                         prompt_rewards=None)
    db = tmp_path_factory.mktemp("gateway") / "profiles.db"
    with Personalizer(db, generator=gen) as p, in_thread(create_app(p, model="tiny")) as url:
        for user, weight in (("eve", 3.0), ("zed", -3.0)):  # likes / dislikes the letter e
            p.store.get_or_create(user)
            p.store.modify(user, lambda prof, w=weight: prof.model_copy(update={
                "coefficients": {"e_count": w}, "reward_set_id": LETTERS.id,
                "reward_set_version": LETTERS.version}))
        yield url, p


def test_a_local_model_is_steered_toward_the_person_and_strength_0_is_plain(
        local_gateway: tuple[str, Personalizer]) -> None:
    url, _ = local_gateway
    client = sdk(url)
    plain = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=24)
    assert extension(plain)["personalized"] is False
    assert "no user" in extension(plain)["hint"]
    steered = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=24,
                                             user="eve")
    ext = extension(steered)
    assert ext["personalized"] is True and ext["generation_id"]
    assert ext["steering"]["terms"][0]["name"] == "e_count"
    text = steered.choices[0].message.content
    assert text.count("e") > plain.choices[0].message.content.count("e")  # the reward rose
    off = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=24, user="eve",
        extra_body={"personalizer": {"strength": 0, "prompt_profile": False}})
    assert off.choices[0].message.content == plain.choices[0].message.content
    assert extension(off)["personalized"] is False  # both levers off: nothing personalized
    assert steered.usage.completion_tokens > 0 and steered.choices[0].finish_reason in (
        "stop", "length")


def test_a_stream_joins_to_the_answer_and_reports_usage_and_the_record(
        local_gateway: tuple[str, Personalizer]) -> None:
    url, _ = local_gateway
    client = sdk(url)
    whole = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=20,
                                           user="eve")
    chunks = list(client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=20, user="eve", stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == whole.choices[0].finish_reason
    assert extension(last)["personalized"] is True
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == \
        whole.usage.completion_tokens
    plain = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=20)
    anonymous = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=20,
                                               stream=True)
    pieces = [c.choices[0].delta.content or "" for c in anonymous if c.choices]
    assert "".join(pieces) == plain.choices[0].message.content  # no user: the plain answer


def test_two_people_interleaved_on_one_local_model_each_get_their_own_steering(
        local_gateway: tuple[str, Personalizer]) -> None:
    url, _ = local_gateway
    client = sdk(url)

    def ask(user: str) -> tuple[str, float, str]:
        out = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=16,
                                             user=user)
        weight = extension(out)["steering"]["terms"][0]["coefficient"]
        return user, weight, out.choices[0].message.content

    alone = {user: ask(user)[2] for user in ("eve", "zed")}  # one at a time (greedy)
    assert alone["eve"] != alone["zed"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, ["eve", "zed"] * 4))
    for user, weight, text in answers:  # side by side: each exactly their own answer
        assert (weight > 0) == (user == "eve") and text == alone[user], answers


async def test_the_async_sdk_streams_and_answers(local_gateway: tuple[str, Personalizer]
                                                 ) -> None:
    url, _ = local_gateway
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    whole, stream = await asyncio.gather(
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=16,
                                       user="eve"),
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=16,
                                       user="eve", stream=True))
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    await client.close()


def test_what_a_steered_local_model_cannot_do_is_a_400_naming_what_works(
        local_gateway: tuple[str, Personalizer]) -> None:
    url, p = local_gateway
    client = sdk(url)
    before = p.list_profiles()
    for extra, name in (({"n": 2}, "'n'"),
                        ({"tools": [{"type": "function", "function": {"name": "f"}}]},
                         "'tools'"),
                        ({"response_format": {"type": "json_object"}}, "'response_format'"),
                        ({"logit_bias": {"1": 5}}, "'logit_bias'")):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="tiny", messages=CHAT, user="zed", **extra)
        assert err.value.code == "unsupported_parameter" and name in err.value.message
        assert "parameters it takes" in err.value.message or "n requests" in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    assert err.value.code == "model_not_found"
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert p.list_profiles() == before  # nothing refused was stored: "zed" was never created


# ------------------------------------------------------- a hosted upstream (wire-format)


def system_of(body: dict) -> str:
    """The upstream's answer: the system prompt it was sent (so the test sees the profile
    block each request carried)."""
    return " ".join(content_text(m.get("content")) for m in body["messages"]
                    if m["role"] == "system") or "(no system prompt)"


@pytest.fixture
def hosted(server: Any, tmp_path: Any) -> Iterator[tuple[str, Personalizer]]:
    server.clear()
    server.reply = system_of
    rewards = default_reward_set()
    gen = OpenAIGenerator("upstream-m", base_url=server.openai_base_url, api_key="k",
                          rewards=rewards, max_retries=0)
    with Personalizer(tmp_path / "p.db", rewards=rewards, generator=gen) as p, \
            in_thread(create_app(p, model="upstream-m", keys=KEYS)) as url:
        yield url, p


def test_each_person_gets_their_own_profile_and_never_anothers(
        hosted: tuple[str, Personalizer]) -> None:
    url, p = hosted
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    for user in ("ann", "bob"):
        reply = admin.put(f"/v1/profiles/{user}/summary",
                          json={"summary": f"{user.upper()}-MARK likes short answers"})
        assert reply.status_code == 200 and reply.json()["source"] == "user"
    client = sdk(url, CHAT_KEY)

    def ask(i: int) -> tuple[str, str, bool]:
        user = ("ann", "bob")[i % 2]
        stream = i % 3 == 0
        if stream:
            chunks = list(client.chat.completions.create(model="upstream-m", messages=CHAT,
                                                         user=user, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            personalized = extension([c for c in chunks if c.choices][-1])["personalized"]
        else:
            out = client.chat.completions.create(model="upstream-m", messages=CHAT, user=user)
            text, personalized = out.choices[0].message.content, \
                extension(out)["personalized"]
        return user, text, personalized

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(48)))
    for user, text, personalized in answers:
        other = "BOB" if user == "ann" else "ANN"
        assert f"{user.upper()}-MARK" in text and f"{other}-MARK" not in text
        assert personalized
    plain = client.chat.completions.create(model="upstream-m", messages=CHAT)
    assert "MARK" not in plain.choices[0].message.content


def test_a_newcomer_gets_a_plain_answer_marked_and_the_header_names_the_person(
        hosted: tuple[str, Personalizer]) -> None:
    url, p = hosted
    client = sdk(url, CHAT_KEY)
    out = client.chat.completions.create(
        model="upstream-m", messages=CHAT,
        extra_headers={"X-Personalizer-User": "newbie"})
    ext = extension(out)
    assert ext["personalized"] is False and "onboarding" in ext["hint"]
    assert "user_profile" not in out.choices[0].message.content
    assert p.profile("newbie").version >= 1  # created once served, as the facade does
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="upstream-m", messages=CHAT, user="a",
                                       extra_headers={"X-Personalizer-User": "b"})
    assert err.value.code == "invalid_user"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="upstream-m", messages=CHAT, user="not an id!")
    assert err.value.code == "invalid_user" and "not an id" not in err.value.message


def test_sampling_fields_reach_the_upstream_and_its_errors_come_back_in_openai_shape(
        hosted: tuple[str, Personalizer], server: Any) -> None:
    url, _ = hosted
    client = sdk(url, CHAT_KEY)
    client.chat.completions.create(model="upstream-m", messages=CHAT, user="ann",
                                   temperature=0.3, top_p=0.5, max_tokens=7, stop=["\n"])
    sent = server.requests[-1].body
    assert (sent["temperature"], sent["top_p"], sent["stop"]) == (0.3, 0.5, ["\n"])
    assert sent["model"] == "upstream-m" and 7 in (sent.get("max_tokens"),
                                                   sent.get("max_completion_tokens"))
    for status, ours, code in ((429, 429, "upstream_rate_limited"),
                               (500, 503, "upstream_unavailable"),
                               (401, 502, "upstream_auth_failed"),
                               (404, 502, "upstream_not_found"),
                               (400, 400, "upstream_bad_request")):
        server.script(Scripted(status, body={"error": {
            "message": f"upstream says {status} about sk-...SECRET", "type": "x", "code": "x"}}))
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="upstream-m", messages=CHAT, user="ann")
        assert (err.value.status_code, err.value.code) == (ours, code)
        assert "Traceback" not in err.value.message
        # the upstream's words reach the client only about its request (400, 429)
        assert ("SECRET" in err.value.message) == (ours in (400, 429)), err.value.message
    server.script(Scripted(429))
    with pytest.raises(openai.APIError) as err:  # a stream refused upstream: still a status
        list(client.chat.completions.create(model="upstream-m", messages=CHAT, user="ann",
                                            stream=True))
    assert getattr(err.value, "status_code", None) == 429
    server.cut_stream_after = 2  # the upstream hangs up midway: an error event, no [DONE]
    with pytest.raises(openai.APIError) as err:
        list(client.chat.completions.create(model="upstream-m", messages=CHAT, user="ann",
                                            stream=True))
    assert "upstream" in str(err.value)


def test_a_chat_key_sees_whether_an_answer_was_personalized_but_not_the_weights(
        hosted: tuple[str, Personalizer]) -> None:
    url, _ = hosted
    httpx.put(f"{url}/v1/profiles/ann/summary", json={"summary": "short answers"},
              headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    shown = {}
    for key in (CHAT_KEY, ADMIN_KEY):
        out = sdk(url, key).chat.completions.create(model="upstream-m", messages=CHAT,
                                                    user="ann")
        shown[key] = extension(out)
    assert shown[CHAT_KEY]["personalized"] is True and shown[CHAT_KEY]["generation_id"]
    assert "steering" not in shown[CHAT_KEY] and "why" not in shown[CHAT_KEY]
    assert shown[ADMIN_KEY]["steering"]["levers"] == ["prompt"]


def test_at_most_max_concurrent_answers_at_once_then_503_with_retry_after(
        server: Any, tmp_path: Any) -> None:
    server.clear()
    server.reply = system_of
    gen = OpenAIGenerator("m", base_url=server.openai_base_url, api_key="k", max_retries=0)
    with Personalizer(tmp_path / "p.db", generator=gen) as p, \
            in_thread(create_app(p, model="m", max_concurrent=1)) as url:
        server.delay_s = 2.0
        body = {"model": "m", "messages": CHAT}
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body,
                               timeout=30)
            wait_for(lambda: len(server.requests) == 1)  # it holds the one place now
            busy = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            assert slow.result().status_code == 200
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "overloaded"
        assert busy.headers["retry-after"] == "1"
        server.delay_s = 0.0
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200


# ------------------------------------------------------------------ the profile endpoints


def test_a_stream_whose_client_left_before_the_reply_gives_its_place_back(
        server: Any, tmp_path: Any) -> None:
    """Driven as ASGI: the client is gone when the reply starts (send fails), so the
    stream's events are never iterated; with max_concurrent=1 the next request is still
    served, not refused as overloaded."""
    import gc

    server.clear()
    server.reply = system_of
    gen = OpenAIGenerator("m", base_url=server.openai_base_url, api_key="k", max_retries=0)
    body = json.dumps({"model": "m", "messages": CHAT, "stream": True}).encode()

    async def call(app: Any, fail: bool) -> list[dict]:
        sent: list[dict] = []
        read = []

        async def receive() -> dict:
            if not read:  # the body once; then the client is gone, or waits for the reply
                read.append(True)
                return {"type": "http.request", "body": body, "more_body": False}
            if fail:
                return {"type": "http.disconnect"}
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: dict) -> None:
            if fail and message["type"] == "http.response.start":
                raise OSError("the client hung up")
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
                 "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 1), "headers": [(b"content-type",
                                                          b"application/json")]}
        try:
            await app(scope, receive, send)
        except Exception:  # noqa: BLE001 - the server's own reaction to the hang-up
            assert fail
        return sent

    with Personalizer(tmp_path / "p.db", generator=gen) as p:
        app = create_app(p, model="m", max_concurrent=1)
        asyncio.run(call(app, fail=True))
        gc.collect()
        sent = asyncio.run(call(app, fail=False))
    assert sent[0]["status"] == 200, sent[:2]


def test_the_profile_endpoints_do_what_the_facade_does(hosted: tuple[str, Personalizer]
                                                       ) -> None:
    url, p = hosted
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    client = sdk(url, CHAT_KEY)
    got = http.post("/v1/profiles/kim/preferences", json={
        "prompt": "Tips?", "chosen": "Sleep.", "rejected": "Sleep well, eat well, and walk "
        "every single day for at least half an hour."})
    assert got.status_code == 200 and got.json()["preference_count"] == 1
    answer = client.chat.completions.create(model="upstream-m", messages=CHAT, user="kim")
    gid = extension(answer)["generation_id"]
    got = http.post("/v1/profiles/kim/feedback", json={"generation_id": gid, "rating": "up"})
    assert got.status_code == 200
    q = http.get("/v1/profiles/kim/onboarding").json()
    assert q["done"] is False and q["number"] == 1 and len(q["options"]) == 2
    got = http.post("/v1/profiles/kim/onboarding", json={"question_id": q["id"], "choice": 0,
                                                         "strength": "much"})
    assert got.status_code == 200 and got.json()["preference_count"] == 2
    assert http.get("/v1/profiles/kim/onboarding").json()["number"] == 2
    exported = http.get("/v1/profiles/kim/export").json()
    assert exported == json.loads(json.dumps(p.export_profile("kim"), default=str)) | {
        "exported_at": exported["exported_at"]}
    assert http.get("/v1/profiles").json()["profiles"][0]["user_id"] == "kim"
    deleted = http.delete("/v1/profiles/kim").json()
    assert deleted["rows_deleted"] > 0
    assert http.get("/v1/profiles/kim").status_code == 404
    restored = http.post("/v1/profiles/import", json=exported)
    assert restored.status_code == 201 and p.profile("kim").preference_count == 2
    assert http.post("/v1/profiles/import", json=exported).json()["error"]["code"] == \
        "profile_exists"
    assert "/v1/chat/completions" in http.get("/openapi.json").json()["paths"]
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}


# ------------------------------------------------------------------- keys and bad input


def stored(p: Personalizer) -> list[dict[str, Any]]:
    out = []
    for prof in p.list_profiles(limit=1000).profiles:
        data = p.export_profile(prof.user_id)
        data.pop("exported_at")
        out.append(data)
    return out


def test_keys_scopes_and_bad_input_get_the_documented_status_and_change_nothing(
        hosted: tuple[str, Personalizer]) -> None:
    url, p = hosted
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    httpx.put(f"{url}/v1/profiles/ann/summary", json={"summary": "short"}, headers=admin)
    before = stored(p)
    chat = {"model": "upstream-m", "messages": CHAT, "user": "ann"}
    pref = {"prompt": "a", "chosen": "b", "rejected": "c"}
    cases = [  # (method, path, key, body or raw bytes, status, code)
        ("POST", "/v1/chat/completions", None, chat, 401, "missing_api_key"),
        ("POST", "/v1/chat/completions", "wrong-key-0123456789", chat, 401, "invalid_api_key"),
        ("POST", "/v1/chat/completions", READ_KEY, chat, 403, "insufficient_scope"),
        ("GET", "/v1/profiles/ann", CHAT_KEY, None, 403, "insufficient_scope"),
        ("DELETE", "/v1/profiles/ann", READ_KEY, None, 403, "insufficient_scope"),
        ("GET", "/v1/profiles", READ_KEY, None, 403, "insufficient_scope"),
        ("POST", "/v1/profiles/ann/preferences", ADMIN_KEY, b"{not json", 400, "invalid_json"),
        ("POST", "/v1/chat/completions", ADMIN_KEY, b"[1, 2", 400, "invalid_json"),
        ("POST", "/v1/chat/completions", None, b"{not json", 401, "missing_api_key"),
        ("POST", "/v1/chat/completions", ADMIN_KEY, chat | {"messages": "hi"}, 400,
         "invalid_value"),
        ("POST", "/v1/chat/completions", ADMIN_KEY, chat | {"temperature": "hot"}, 400,
         "invalid_value"),
        ("POST", "/v1/chat/completions", ADMIN_KEY,
         chat | {"messages": [{"role": "tool", "content": "x"}]}, 400, "invalid_request"),
        ("POST", "/v1/profiles/ann/preferences", ADMIN_KEY, pref | {"chosen": 3}, 422,
         "invalid_value"),
        ("POST", "/v1/profiles/ann/preferences", ADMIN_KEY, pref | {"extra": 1}, 422,
         "invalid_value"),
        ("POST", "/v1/profiles/bad%20id/preferences", ADMIN_KEY, pref, 400, "invalid_user"),
        ("POST", "/v1/profiles/ann/feedback", ADMIN_KEY,
         {"generation_id": "0" * 32, "rating": "up"}, 400, "invalid_request"),
        ("POST", "/v1/profiles/ann/feedback", ADMIN_KEY,
         {"generation_id": "x", "rating": "sideways"}, 422, "invalid_value"),
        ("GET", "/v1/profiles/nobody", ADMIN_KEY, None, 404, "profile_not_found"),
        ("DELETE", "/v1/profiles/nobody", ADMIN_KEY, None, 404, "profile_not_found"),
        ("POST", "/v1/profiles/import", ADMIN_KEY, {"schema_version": 99}, 400, None),
        ("POST", "/v1/profiles/ann/onboarding", ADMIN_KEY,
         {"question_id": "nope", "choice": 0}, 400, "invalid_request"),
        ("POST", "/v1/profiles/ann/preferences", ADMIN_KEY,
         pref | {"chosen": "x" * 70_000}, 400, "invalid_request"),
        ("POST", "/v1/profiles/ann/preferences", ADMIN_KEY,
         b'{"prompt": "' + b"x" * (9 * 1024 * 1024) + b'"}', 413, "request_too_large"),
        ("GET", "/v1/nowhere", ADMIN_KEY, None, 404, "not_found"),
    ]
    # every endpoint: no key, a key without its scope, and (with a body) malformed JSON and
    # a body of the wrong type
    endpoints = [  # (method, path, scope its key needs, body or None, wrong type's status)
        ("POST", "/v1/chat/completions", "chat", chat, 400),
        ("GET", "/v1/models", "chat", None, 0),
        ("GET", "/v1/profiles", "admin", None, 0),
        ("POST", "/v1/profiles/import", "profiles:write", {"profile": {}}, 422),
        ("GET", "/v1/profiles/ann", "profiles:read", None, 0),
        ("GET", "/v1/profiles/ann/export", "profiles:read", None, 0),
        ("DELETE", "/v1/profiles/ann", "profiles:write", None, 0),
        ("POST", "/v1/profiles/ann/preferences", "profiles:write", pref, 422),
        ("POST", "/v1/profiles/ann/feedback", "profiles:write", {"generation_id": "x"}, 422),
        ("GET", "/v1/profiles/ann/summary", "profiles:read", None, 0),
        ("PUT", "/v1/profiles/ann/summary", "profiles:write", {"summary": "x"}, 422),
        ("GET", "/v1/profiles/ann/onboarding", "profiles:write", None, 0),
        ("POST", "/v1/profiles/ann/onboarding", "profiles:write",
         {"question_id": "q", "choice": 0}, 422),
    ]
    without = {"chat": READ_KEY, "profiles:read": CHAT_KEY, "profiles:write": READ_KEY,
               "admin": READ_KEY}
    for method, path, scope, body, wrong in endpoints:
        cases += [(method, path, None, body, 401, "missing_api_key"),
                  (method, path, without[scope], body, 403, "insufficient_scope")]
        if body is not None:
            cases += [(method, path, ADMIN_KEY, b"{,", 400, "invalid_json"),
                      (method, path, ADMIN_KEY, [1, 2], wrong, "invalid_value")]
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path, key, body, status, code in cases:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            if isinstance(body, bytes):
                headers["content-type"] = "application/json"
                reply = http.request(method, path, content=body, headers=headers)
            else:
                reply = http.request(method, path, json=body, headers=headers)
            assert reply.status_code == status, (method, path, reply.text[:300])
            if status >= 400:
                assert reply.headers["x-should-retry"] == "false"  # permanent: no retries
                error = reply.json()["error"]
                assert set(error) == {"message", "type", "code", "param"}
                assert code is None or error["code"] == code, (path, error)
                assert "Traceback" not in reply.text and "xxxxxxxx" not in reply.text
        def chunked() -> Iterator[bytes]:  # no Content-Length: caught while read
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"x" * (1024 * 1024)

        reply = http.post("/v1/profiles/ann/preferences", content=chunked(),
                          headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                   "content-type": "application/json"})
        assert reply.status_code == 413 and reply.json()["error"]["code"] == \
            "request_too_large"
    assert stored(p) == before


def test_keys_are_parsed_with_clear_errors_and_never_shown() -> None:
    keys = ApiKeys.parse(" k1-0123456789abcdef = chat, profiles:read ; k2-0123456789abcdef=admin")
    assert keys.scopes_of("k1-0123456789abcdef") == {"chat", "profiles:read"}
    assert keys.scopes_of("k2-0123456789abcdef") == {"admin"}
    assert keys.scopes_of("k1-0123456789abcdeX") is None
    assert "0123456789" not in repr(keys)
    from personalizer.errors import InvalidInput

    for bad, said in (("", "no server keys"), ("short=chat", "shorter than 16"),
                      ("k1-0123456789abcdef=chat,root", "'root'"),
                      ("k1-0123456789abcdef", "key=scope"),
                      ("k1-0123456789abcdef=chat,k2-0123456789abcdef=admin", "not shown"),
                      ("k1-0123456789abcdef=chat;k1-0123456789abcdef=admin", "twice")):
        with pytest.raises(InvalidInput, match=said) as err:
            ApiKeys.parse(bad)
        assert "0123456789abcdef" not in str(err.value)
