"""`tongues serve`: the OpenAI-compatible API, through the official openai client and raw HTTP.

Servers listen on 127.0.0.1 on a free port, in a thread of the test process.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from model_fixtures import make_tiny_model

openai = pytest.importorskip("openai")

KEY = "test-key"
MESSAGES = [{"role": "user", "content": "Xin chào! Bạn khỏe không?"}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory):
    import tongues

    return tongues.load(make_tiny_model(tmp_path_factory.mktemp("tiny-serve"), seed=2), device="cpu")


@contextmanager
def running(lm, api_key: str | None = KEY, **limits) -> Iterator:
    from tongues.infer.serve import RunningServer, ServerLimits, create_app

    app = create_app(lm, model_name="tiny", api_key=api_key, limits=ServerLimits(**{"max_tokens": 64, **limits}))
    with RunningServer(app) as server:
        server.app = app
        yield server


@pytest.fixture(scope="module")
def server(lm):
    with running(lm, max_batch_size=4) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def raw(server, path: str, body: bytes | None = None, key: str | None = KEY) -> tuple[int, dict, str]:
    """A plain HTTP request: (status, headers, body text)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.url + path, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


@contextmanager
def paused(server) -> Iterator[threading.Event]:
    """Hold the batch worker before its next batch; yields an event set once it holds one."""
    worker = server.app.state.worker
    gate, holding, real = threading.Event(), threading.Event(), worker.run_batch

    def run_batch(jobs):
        holding.set()
        gate.wait(30)
        real(jobs)

    worker.run_batch = run_batch
    try:
        yield holding
    finally:
        gate.set()
        worker.run_batch = real


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# ---- round trips through the openai client ----------------------------------------------------------


def test_models_and_health(server, client) -> None:
    assert [m.id for m in client.models.list()] == ["tiny"]
    status, _, body = raw(server, "/health", key=None)
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_completion_round_trip_equals_generate(lm, client) -> None:
    prompt = "नमस्ते, आप कैसे हैं?"
    response = client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0)
    expected = lm.generate(prompt, max_new_tokens=16, temperature=0, return_details=True)
    choice = response.choices[0]
    assert choice.text == expected.text and choice.finish_reason == expected.finish_reason
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.token_ids)
    streamed = client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0, stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_round_trip_streaming_and_not(lm, client) -> None:
    expected = lm.chat(MESSAGES, max_new_tokens=20, temperature=0, return_details=True)
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=20, temperature=0)
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == expected.text
    assert response.choices[0].finish_reason == expected.finish_reason
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == len(expected.token_ids)


def test_sse_wire_format_ends_with_done(server) -> None:
    body = json.dumps({"model": "tiny", "messages": MESSAGES, "max_tokens": 5, "stream": True}).encode()
    status, headers, text = raw(server, "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_concurrent_requests_share_a_batch(lm, server, client) -> None:
    prompts = ["안녕하세요", "Tiếng Việt", "हिन्दी भाषा", "The cat", "서울은"]
    worker = server.app.state.worker
    sizes: list[int] = []
    real = worker.lm.run
    worker.lm.run = lambda seqs: (sizes.append(len(seqs)), real(seqs))[1]
    try:
        with ThreadPoolExecutor(len(prompts)) as pool, paused(server):
            futures = [pool.submit(client.completions.create, model="tiny", prompt=p, max_tokens=12, temperature=0)
                       for p in prompts]
            wait_for(lambda: worker.pending == len(prompts))  # all in: one held by the worker, the rest queued
        results = [f.result().choices[0].text for f in futures]
    finally:
        del worker.lm.run
    assert max(sizes) > 1 and max(sizes) <= 4 and sum(sizes) == len(prompts)  # batched, within max_batch_size
    assert results == [lm.generate(p, max_new_tokens=12, temperature=0) for p in prompts]


# ---- errors ------------------------------------------------------------------------------------------


def test_malformed_json_is_a_400_in_openai_shape(server) -> None:
    status, _, body = raw(server, "/v1/chat/completions", b'{"model": "tiny", "messages": [')
    error = json.loads(body)["error"]
    assert status == 400 and error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]
    status, _, body = raw(server, "/v1/chat/completions", json.dumps({"model": "tiny", "messages": MESSAGES,
                                                                      "temperature": 7}).encode())
    assert status == 400 and "temperature" in json.loads(body)["error"]["message"]


def test_prompt_too_long_and_max_tokens_too_large_say_what_was_wrong(lm, client) -> None:
    prompt = "안녕하세요 " * 100
    n = len(lm.encode(prompt))
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny", prompt=prompt, max_tokens=4)
    assert err.value.status_code == 400 and f"prompt is {n} tokens" in err.value.message
    assert "at most 127" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=500)
    assert "max_tokens is 500" in err.value.message and "at most 64" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4)


def test_api_key_is_required(server) -> None:
    status, _, body = raw(server, "/v1/models", key=None)
    assert status == 401 and "no API key" in json.loads(body)["error"]["message"]
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4)
    assert err.value.status_code == 401


def test_overload_answers_503_with_retry_after(lm) -> None:
    with running(lm, max_batch_size=1, max_queue=1) as srv:
        body = json.dumps({"model": "tiny", "prompt": "Xin chào", "max_tokens": 4}).encode()
        worker = srv.app.state.worker
        with ThreadPoolExecutor(2) as pool, paused(srv) as holding:
            first = pool.submit(raw, srv, "/v1/completions", body)
            holding.wait(10)  # the worker holds the first request
            second = pool.submit(raw, srv, "/v1/completions", body)
            wait_for(lambda: worker.queued == 1)  # the second fills the queue
            status, headers, text = raw(srv, "/v1/completions", body)
            assert status == 503 and headers["retry-after"] == "1"
            assert "busy" in json.loads(text)["error"]["message"]
        assert first.result()[0] == 200 and second.result()[0] == 200  # accepted requests still finish


def test_a_request_past_its_timeout_gets_504(lm) -> None:
    with running(lm, timeout_s=0.3) as srv, paused(srv):
        body = json.dumps({"model": "tiny", "messages": MESSAGES, "max_tokens": 4}).encode()
        status, _, text = raw(srv, "/v1/chat/completions", body)
        assert status == 504 and "did not finish within 0.3 s" in json.loads(text)["error"]["message"]
