"""An OpenAI-compatible HTTP server for a tongues (or any Hugging Face causal LM) model.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(``stream: true`` answers with server-sent events in OpenAI's chunk format, ending ``data: [DONE]``).
The official ``openai`` client works against it unchanged.

Requests go to a bounded queue; one worker thread takes what is queued (up to ``max_batch_size``
sequences) and decodes it as one batch, so concurrent clients share the model's forward passes. A
full queue answers 503 with Retry-After; bad input answers 400 with OpenAI's error JSON
``{"error": {"message", "type", "param", "code"}}``; a request that runs past ``timeout_s`` (queue
wait included) answers 504 and its sequence leaves the batch.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongues.errors import TonguesError
from tongues.infer.generate import Generation, LanguageModel, SequenceState

log = logging.getLogger("tongues.serve")


@dataclass
class ServerLimits:
    """What the server accepts. max_prompt_tokens None = the model's context - 1."""

    max_batch_size: int = 8  # sequences decoded together
    max_queue: int = 32  # requests waiting beyond those being decoded; past it, 503
    max_tokens: int = 1024  # the most tokens a request may ask to generate
    max_prompt_tokens: int | None = None
    timeout_s: float = 120.0  # per request, queue wait included
    batch_wait_s: float = 0.005  # how long the worker waits for more requests to share a batch


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# ---- request bodies ---------------------------------------------------------------------------------


class _Sampling(BaseModel):
    # OpenAI clients send fields this server does not use (user, metadata, ...): ignore them.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="extension: keep the k most likely tokens (0 = off)")
    repetition_penalty: float | None = Field(None, gt=0, description="extension, as in transformers")
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError(f"only n=1 is supported (one choice per prompt), got {n}")
        return n

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("not supported; use repetition_penalty (as in transformers) instead")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 16:
            raise ValueError(f"at most 16 stop strings, got {len(stop)}")
        return stop


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None

    @field_validator("logprobs")
    @classmethod
    def _chosen_only(cls, value: int | None) -> int | None:
        if value not in (None, 0):
            raise ValueError("only logprobs=0 (the chosen token's log-probability) is supported")
        return value


class _TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _no_alternatives(cls, value: int | None) -> int | None:
        if value not in (None, 0):
            raise ValueError("only top_logprobs=0 is supported (the chosen token's log-probability)")
        return value


# ---- batching worker --------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """One HTTP request's sequences on their way through the worker."""

    seqs: list[SequenceState]
    deadline: float
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def stopped(self) -> bool:
        return self.cancelled.is_set() or self.expired()

    def send(self, *event: Any) -> None:
        """Thread-safe: hand an event to the request's handler on its event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: the client is gone
            pass


class Overloaded(Exception):
    pass


class BatchWorker:
    """Takes queued jobs and decodes them together, one batch at a time, on a thread of its own."""

    def __init__(self, lm: LanguageModel, limits: ServerLimits) -> None:
        self.lm = lm
        self.limits = limits
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = 0  # jobs taken into the current batch
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        with self._cond:
            return len(self._queue)

    @property
    def pending(self) -> int:
        """Requests accepted and not finished (queued or being decoded)."""
        with self._cond:
            return len(self._queue) + self._running

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="tongues-batch-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        """Queue a job; raises Overloaded when the queue is full."""
        with self._cond:
            if len(self._queue) >= self.limits.max_queue:
                raise Overloaded
            self._queue.append(job)
            self._cond.notify()

    def _take(self) -> list[Job]:
        """Wait for work, then gather jobs for up to max_batch_size sequences."""
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait(timeout=0.5)
            if self._stop:
                return []
            jobs = [self._queue.popleft()]
            size = len(jobs[0].seqs)
            until = time.monotonic() + self.limits.batch_wait_s
            while size < self.limits.max_batch_size:
                if self._queue:
                    if size + len(self._queue[0].seqs) > self.limits.max_batch_size:
                        break
                    job = self._queue.popleft()
                    jobs.append(job)
                    size += len(job.seqs)
                    continue
                left = until - time.monotonic()
                if left <= 0 or self._stop:
                    break
                self._cond.wait(timeout=left)
            self._running = len(jobs)
            return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return
            try:
                self.run_batch(jobs)
            finally:
                with self._cond:
                    self._running = 0

    def run_batch(self, jobs: list[Job]) -> None:
        """Decode the jobs' sequences as one batch and tell each job how it ended."""
        live = []
        for job in jobs:
            if job.stopped():
                job.send("error", _timeout_error(self.limits) if job.expired() else None)
            else:
                live.append(job)
        if not live:
            return
        try:
            self.lm.run([seq for job in live for seq in job.seqs])
        except Exception as err:  # a bug or out of memory: answer 500, keep serving
            log.exception("batch failed")
            for job in live:
                job.send("error", APIError(500, f"generation failed: {err}", "server_error"))
            return
        for job in live:
            if job.expired():
                job.send("error", _timeout_error(self.limits))
            else:
                job.send("done", [seq.result() for seq in job.seqs])


def _timeout_error(limits: ServerLimits) -> APIError:
    return APIError(504, f"the request did not finish within {limits.timeout_s:g} s (server timeout); "
                         "ask for fewer max_tokens or retry later", "timeout_error", code="timeout")


# ---- the app ----------------------------------------------------------------------------------------


def create_app(
    lm: LanguageModel,
    model_name: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """The FastAPI app serving `lm`. api_key: when set, every /v1 request needs
    ``Authorization: Bearer <api_key>`` (401 otherwise); /health stays open for probes."""
    limits = limits or ServerLimits()
    name = model_name or (lm.path.name if lm.path else "model")
    worker = BatchWorker(lm, limits)
    created = int(time.time())
    context = lm.context_length
    max_prompt = limits.max_prompt_tokens or ((context - 1) if context else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="tongues", description=f"OpenAI-compatible API for {name}", lifespan=lifespan)
    app.state.worker = worker
    app.state.limits = limits

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return _validation_error(err).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}", kind).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return APIError(500, f"internal error: {type(err).__name__}: {err}", "server_error").response()

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable) -> Any:
        if api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                what = "no API key was given" if not given else "the API key is not valid"
                return APIError(401, f"{what}; send the server's key as 'Authorization: Bearer KEY'",
                                "invalid_request_error", code="invalid_api_key").response()
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": name, "pending": worker.pending}

    def model_card() -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "tongues", "max_model_len": context}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        _check_model(model_id, name)
        return model_card()

    def sequence(prompt_ids: list[int], body: _Sampling, max_tokens: int | None, stop_ids: frozenset[int],
                 job_ref: list[Job], index: int, stream: bool, logprobs: bool) -> SequenceState:
        if max_prompt is not None and len(prompt_ids) > max_prompt:
            raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; this server accepts at most {max_prompt} "
                                f"prompt tokens (model context {context})", param="prompt",
                           code="context_length_exceeded")
        if max_tokens is not None and max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {limits.max_tokens}",
                           param="max_tokens")
        room = context - len(prompt_ids) if context else limits.max_tokens
        if max_tokens is not None and max_tokens > room:
            raise APIError(400, f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                                f"model's context of {context} tokens; ask for at most {room}",
                           param="max_tokens", code="context_length_exceeded")
        try:
            params = lm.params(max_new_tokens=max_tokens or min(limits.max_tokens, room), temperature=body.temperature,
                               top_p=body.top_p, top_k=body.top_k, repetition_penalty=body.repetition_penalty,
                               stop=body.stop, seed=body.seed)
            on_text = (lambda text: job_ref[0].send("text", index, text)) if stream else None
            return lm.new_sequence(prompt_ids, params, stop_token_ids=stop_ids, seed_offset=index, stream=stream,
                                   on_text=on_text, is_cancelled=lambda: job_ref[0].stopped(), logprobs=logprobs)
        except TonguesError as err:
            raise APIError(400, str(err)) from err

    def submit(seqs: list[SequenceState], job_ref: list[Job]) -> Job:
        job = Job(seqs, time.monotonic() + limits.timeout_s, asyncio.get_running_loop())
        job_ref.append(job)
        try:
            worker.submit(job)
        except Overloaded:
            raise APIError(503, f"the server is busy ({limits.max_queue} requests queued); retry shortly",
                           "server_busy", code="overloaded", headers={"Retry-After": "1"}) from None
        return job

    async def outcome(job: Job) -> list[Generation]:
        """Wait for a non-streaming job's result (or its error)."""
        try:
            while True:
                event = await asyncio.wait_for(job.events.get(), max(0.0, job.deadline - time.monotonic()) + 0.5)
                if event[0] == "done":
                    return event[1]
                if event[0] == "error":
                    raise event[1] or _timeout_error(limits)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            raise _timeout_error(limits) from None
        finally:
            job.cancelled.set()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        _check_model(body.model, name)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts or len(prompts) > limits.max_batch_size:
            raise APIError(400, f"prompt must be a string or a list of 1 to {limits.max_batch_size} strings",
                           param="prompt")
        if body.stream and body.logprobs is not None:
            raise APIError(400, "logprobs is not supported with stream", param="logprobs")
        job_ref: list[Job] = []
        seqs = [sequence(_encode(lm, p, True), body, body.max_tokens, lm.eos_token_ids, job_ref, i, body.stream,
                         body.logprobs is not None) for i, p in enumerate(prompts)]
        job = submit(seqs, job_ref)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": name}
        if body.stream:
            def chunk(index: int, text: str, finish: str | None) -> dict[str, Any]:
                return {**head, "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}

            first = [chunk(i, p, None) for i, p in enumerate(prompts)] if body.echo else []
            return _sse(job, chunk, first, body.stream_options, limits)
        results = await outcome(job)
        choices = []
        for i, (prompt, result) in enumerate(zip(prompts, results, strict=True)):
            text = prompt + result.text if body.echo else result.text
            logprobs = _completion_logprobs(lm, result) if body.logprobs is not None else None
            choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": result.finish_reason})
        return {**head, "choices": choices, "usage": _usage(results)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        _check_model(body.model, name)
        if body.stream and body.logprobs:
            raise APIError(400, "logprobs is not supported with stream", param="logprobs")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        try:
            prompt_ids = _encode(lm, lm.render_chat(messages), False)
        except TonguesError as err:
            raise APIError(400, str(err), param="messages") from err
        job_ref: list[Job] = []
        seq = sequence(prompt_ids, body, body.max_completion_tokens or body.max_tokens, lm.end_of_turn_ids, job_ref,
                       0, body.stream, body.logprobs)
        job = submit([seq], job_ref)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": now, "model": name}
        if body.stream:
            head["object"] = "chat.completion.chunk"

            def chunk(index: int, text: str, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if finish is None else {}
                return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}]}

            role = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]}
            return _sse(job, chunk, [role], body.stream_options, limits)
        (result,) = await outcome(job)
        logprobs = _chat_logprobs(lm, result) if body.logprobs else None
        return {**head, "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                                     "logprobs": logprobs, "finish_reason": result.finish_reason}],
                "usage": _usage([result])}

    return app


def _check_model(requested: str | None, served: str) -> None:
    if requested and requested != served:
        raise APIError(404, f"model {requested!r} is not served here; this server serves {served!r}",
                       "not_found_error", param="model", code="model_not_found")


def _encode(lm: LanguageModel, text: str, add_special_tokens: bool) -> list[int]:
    try:
        return lm.encode(text, add_special_tokens)
    except TonguesError as err:
        raise APIError(400, str(err), param="prompt") from err


def _usage(results: list[Generation]) -> dict[str, int]:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(len(r.token_ids) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_logprobs(lm: LanguageModel, result: Generation) -> dict[str, Any]:
    tokens = [lm.decode([t]) for t in result.token_ids]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {"tokens": tokens, "token_logprobs": result.logprobs, "top_logprobs": None, "text_offset": offsets}


def _chat_logprobs(lm: LanguageModel, result: Generation) -> dict[str, Any]:
    content = []
    for token_id, logprob in zip(result.token_ids, result.logprobs, strict=True):
        token = lm.decode([token_id])
        content.append({"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []})
    return {"content": content}


def _validation_error(err: RequestValidationError) -> APIError:
    problems, param = [], None
    for problem in err.errors():
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error") or problem.get("msg")
            at = f" at character {location[0]}" if location else ""
            return APIError(400, f"the request body is not valid JSON: {reason}{at}", code="invalid_json")
        where = ".".join(location) or "body"
        param = param or where
        detail = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        if problem.get("type") == "missing":
            detail = "this field is required"
        problems.append(f"{where}: {detail}")
    return APIError(400, "; ".join(problems) or "invalid request", param=param)


def _sse(job: Job, chunk: Callable[[int, str, str | None], dict[str, Any]], first: list[dict[str, Any]],
         stream_options: dict[str, Any] | None, limits: ServerLimits) -> StreamingResponse:
    """Stream a job's text as OpenAI chunks (server-sent events), then ``data: [DONE]``."""
    include_usage = bool((stream_options or {}).get("include_usage"))

    async def events() -> AsyncIterator[str]:
        try:
            for item in first:
                yield _event(item)
            while True:
                try:
                    event = await asyncio.wait_for(job.events.get(), max(0.0, job.deadline - time.monotonic()) + 0.5)
                except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                    yield _event(_timeout_error(limits).body())
                    break
                if event[0] == "text":
                    yield _event(chunk(event[1], event[2], None))
                elif event[0] == "done":
                    results: list[Generation] = event[1]
                    for i, result in enumerate(results):
                        yield _event(chunk(i, "", result.finish_reason))
                    if include_usage:
                        last = chunk(0, "", None)
                        yield _event({**last, "choices": [], "usage": _usage(results)})
                    break
                else:
                    yield _event((event[1] or _timeout_error(limits)).body())
                    break
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled.set()  # the client left early, or it is over: either way the row can go

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# ---- running it -------------------------------------------------------------------------------------


class RunningServer:
    """A uvicorn server on a thread of this process (for notebooks, tests and benchmarks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    model_name: str | None = None,
    limits: ServerLimits | None = None,
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> None:
    """Load `model` and serve it until interrupted (blocks)."""
    import uvicorn

    from tongues.infer.generate import load

    lm = load(model, device=device, dtype=dtype, threads=threads)
    app = create_app(lm, model_name=model_name, api_key=api_key, limits=limits)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        log.warning("serving on %s without --api-key: anyone who can reach it can use it", host)
    print(f"serving {lm} as {model_name or lm.path.name} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
