"""A scriptable fake LLM provider speaking the OpenAI and Anthropic HTTP protocols.

Dependency-free (stdlib asyncio only) so it can run in any test process. The server runs its own
event loop in a background thread, which lets both sync (Django, Celery) and async tests drive it.

Endpoints (all under ``/v1``):

* ``POST /v1/chat/completions`` - OpenAI chat completions, streaming (SSE) and non-streaming.
* ``POST /v1/moderations`` - OpenAI moderation.
* ``GET /v1/models`` - OpenAI model list, or the Anthropic one when ``anthropic-version`` is sent;
  a queued ``Scenario(kind="status", endpoint="models")`` answers it with that error instead.
* ``POST /v1/messages`` - Anthropic messages, streaming (SSE) and non-streaming.

Each POST takes the next queued :class:`Scenario` whose ``endpoint`` matches (``None`` matches
any endpoint); when none matches, ``Scenario()`` (a fixed text reply) is used.

A "chunk" (for ``stall_after_chunks``, ``drop_after_chunks`` and ``malformed_after_chunks``) is
one SSE event: one ``data:`` line for OpenAI, one ``event:``/``data:`` pair for Anthropic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, Self

__all__ = ["DEFAULT_TEXT", "FakeProviderServer", "Scenario"]

DEFAULT_TEXT = "Hello from the fake provider."

ScenarioKind = Literal["text", "tool_call", "status", "stall", "malformed", "drop"]
Endpoint = Literal["chat", "messages", "moderations", "models"]
_KINDS = frozenset({"text", "tool_call", "status", "stall", "malformed", "drop"})

# Moderation categories as the real endpoint reports them, so clients see a complete object.
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}

_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Scenario:
    """How the server answers one request.

    ``kind`` picks the failure mode; the content is a tool call when ``tool_name`` is set
    (always for ``tool_call``), otherwise ``text``. So ``Scenario(kind="stall",
    stall_after_chunks=2)`` streams two text chunks, then hangs.
    """

    kind: ScenarioKind = "text"
    text: str = DEFAULT_TEXT
    chunk_words: int = 1  # words per streamed text chunk
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
    args_chunk_chars: int = 8  # tool-call argument JSON is streamed in pieces of this size
    status: int = 200  # for kind="status": 401, 429, 500, ...
    retry_after: float | None = None  # seconds; sent as Retry-After and retry-after-ms
    error_body: dict[str, Any] | None = None  # overrides the protocol's default error body
    usage: tuple[int, int] | None = (11, 7)  # (prompt/input, completion/output) tokens
    chunk_delay_s: float = 0.0
    stall_after_chunks: int = 0  # kind="stall": send N chunks, then hang until disconnect
    drop_after_chunks: int = 0  # kind="drop": send N chunks, then reset the TCP connection
    malformed_after_chunks: int = 1  # kind="malformed": N good chunks, then invalid JSON
    flagged_categories: tuple[str, ...] = ()  # moderation: non-empty means flagged
    endpoint: Endpoint | None = None  # only consumed by this endpoint; None = any
    response_delay_s: float = 0.0  # delay before the response headers (time to first byte)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}")
        if self.kind == "status" and self.status < 400:
            raise ValueError("kind='status' needs an error status (>= 400)")
        if self.kind == "tool_call" and not self.tool_name:
            raise ValueError("kind='tool_call' needs tool_name")

    @property
    def is_tool_call(self) -> bool:
        return self.tool_name is not None


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _ClientGone(Exception):
    """The client closed the connection while we were answering."""


_LAST_CHUNK = b"0\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Connection:
    """One accepted TCP connection: HTTP/1.1 framing plus disconnect detection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> _Request | None:
        """Read one request; ``None`` when the client closed an idle keep-alive connection."""
        line = await self.reader.readline()
        if not line.strip():
            return None
        method, target, _version = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await self.reader.readexactly(length) if length else b""
        path, _, query = target.partition("?")
        return _Request(method.upper(), path, query, headers, body)

    @property
    def client_gone(self) -> bool:
        # The client sends nothing while it reads a response (httpx does not pipeline), so EOF on
        # the read side means it closed the socket. The protocol records EOF even when nobody is
        # reading, which is what makes this check cheap.
        return self.reader.at_eof() or self.writer.is_closing()

    async def write(self, data: bytes) -> None:
        if self.client_gone:
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise _ClientGone from exc

    async def send_head(self, status: int, headers: dict[str, str]) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:  # e.g. Anthropic's 529
            reason = "Error"
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
        await self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send_json(
        self, status: int, payload: object, extra_headers: dict[str, str] | None = None
    ) -> None:
        await self.send_raw(status, json.dumps(payload).encode(), extra_headers)

    async def send_raw(
        self, status: int, body: bytes, extra_headers: dict[str, str] | None = None
    ) -> None:
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        await self.send_head(status, {**headers, **(extra_headers or {})})
        await self.write(body)

    async def send_chunk(self, data: bytes) -> None:
        # Chunked transfer encoding keeps the connection reusable after a complete stream.
        await self.write(_chunk(data))

    async def end_chunks(self) -> None:
        await self.write(_LAST_CHUNK)

    async def sleep_unless_gone(self, seconds: float) -> None:
        """Sleep, waking early (with ``_ClientGone``) if the client disconnects meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.client_gone:
                raise _ClientGone
            await asyncio.sleep(min(left, 0.01))

    async def wait_until_gone(self) -> None:
        """Hang until the client closes the connection (the stalled-provider case)."""
        await self.reader.read()  # until EOF; a stalled client sends nothing more

    def abort(self) -> None:
        """Close with a TCP RST, so the client sees a reset rather than a clean end of stream."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        self.writer.transport.abort()


# ---------------------------------------------------------------------------------------------
# Payload builders (pure functions: scenario + request body -> protocol JSON / SSE events)
# ---------------------------------------------------------------------------------------------

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def split_text(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split into word chunks that keep their trailing whitespace, so ``"".join`` restores text."""
    words = re.findall(r"\s*\S+\s*|\s+", text)
    step = max(1, words_per_chunk)
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def split_args(args: dict[str, Any] | None, chunk_chars: int) -> list[str]:
    encoded = json.dumps(args or {})
    step = max(1, chunk_chars)
    return [encoded[i : i + step] for i in range(0, len(encoded), step)]


def _openai_sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _anthropic_sse(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def _openai_usage(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def openai_stream_events(scenario: Scenario, body: dict[str, Any]) -> list[bytes]:
    base = {
        "id": _new_id("chatcmpl-fake"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "gpt-fake"),
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _openai_sse({**base, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": "" if not scenario.is_tool_call else None})]
    if scenario.is_tool_call:
        call_id = _new_id("call_fake")
        head = {"index": 0, "id": call_id, "type": "function"}
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {**head, "function": {"name": scenario.tool_name, "arguments": ""}}
                    ]
                }
            )
        )
        for piece in split_args(scenario.tool_args, scenario.args_chunk_chars):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events += [
            chunk({"content": piece}) for piece in split_text(scenario.text, scenario.chunk_words)
        ]
        events.append(chunk({}, "stop"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if include_usage and scenario.usage is not None:
        events.append(_openai_sse({**base, "choices": [], "usage": _openai_usage(scenario.usage)}))
    events.append(b"data: [DONE]\n\n")
    return events


def openai_completion(scenario: Scenario, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if scenario.is_tool_call:
        message["tool_calls"] = [
            {
                "id": _new_id("call_fake"),
                "type": "function",
                "function": {
                    "name": scenario.tool_name,
                    "arguments": json.dumps(scenario.tool_args or {}),
                },
            }
        ]
    else:
        message["content"] = scenario.text
    finish = "tool_calls" if scenario.is_tool_call else "stop"
    payload: dict[str, Any] = {
        "id": _new_id("chatcmpl-fake"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-fake"),
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if scenario.usage is not None:
        payload["usage"] = _openai_usage(scenario.usage)
    return payload


def openai_error(scenario: Scenario) -> dict[str, Any]:
    err_type, code = _OPENAI_ERRORS.get(scenario.status, ("server_error", None))
    message = f"Fake provider error {scenario.status}"
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


def anthropic_error(scenario: Scenario) -> dict[str, Any]:
    err_type = _ANTHROPIC_ERRORS.get(scenario.status, "api_error")
    message = f"Fake provider error {scenario.status}"
    return {"type": "error", "error": {"type": err_type, "message": message}}


def _anthropic_usage(scenario: Scenario) -> tuple[int, int]:
    # Anthropic always reports usage (the SDK's stream accumulator requires it), so "no usage"
    # is approximated with zeros.
    return scenario.usage if scenario.usage is not None else (0, 0)


def _anthropic_block(scenario: Scenario) -> dict[str, Any]:
    if scenario.is_tool_call:
        return {
            "type": "tool_use",
            "id": _new_id("toolu_fake"),
            "name": scenario.tool_name,
            "input": scenario.tool_args or {},
        }
    return {"type": "text", "text": scenario.text}


def anthropic_stream_events(scenario: Scenario, body: dict[str, Any]) -> list[bytes]:
    input_tokens, output_tokens = _anthropic_usage(scenario)
    message = anthropic_message(scenario, body)
    message.update(content=[], stop_reason=None, stop_sequence=None)
    message["usage"] = {"input_tokens": input_tokens, "output_tokens": 1}
    block = _anthropic_block(scenario)
    if scenario.is_tool_call:
        start_block = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in split_args(scenario.tool_args, scenario.args_chunk_chars)
        ]
    else:
        start_block = {"type": "text", "text": ""}
        deltas = [
            {"type": "text_delta", "text": piece}
            for piece in split_text(scenario.text, scenario.chunk_words)
        ]
    stop_reason = "tool_use" if scenario.is_tool_call else "end_turn"
    events = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": start_block},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]
    return [_anthropic_sse(event) for event in events]


def anthropic_message(scenario: Scenario, body: dict[str, Any]) -> dict[str, Any]:
    input_tokens, output_tokens = _anthropic_usage(scenario)
    return {
        "id": _new_id("msg_fake"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": [_anthropic_block(scenario)],
        "stop_reason": "tool_use" if scenario.is_tool_call else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def moderation_result(scenario: Scenario, body: dict[str, Any]) -> dict[str, Any]:
    raw_input = body.get("input", "")
    count = len(raw_input) if isinstance(raw_input, list) else 1
    flagged = set(scenario.flagged_categories)
    result = {
        "flagged": bool(flagged),
        "categories": {c: c in flagged for c in _MODERATION_CATEGORIES},
        "category_scores": {c: 0.99 if c in flagged else 0.0001 for c in _MODERATION_CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
    }
    return {
        "id": _new_id("modr-fake"),
        "model": body.get("model") or "omni-moderation-latest",
        "results": [result for _ in range(count)],
    }


@dataclass(frozen=True)
class _Protocol:
    """What differs between the OpenAI and Anthropic endpoints."""

    endpoint: Endpoint
    stream_events: Callable[[Scenario, dict[str, Any]], list[bytes]]
    complete: Callable[[Scenario, dict[str, Any]], dict[str, Any]]
    error: Callable[[Scenario], dict[str, Any]]
    malformed_event: bytes
    request_id_header: str


_OPENAI = _Protocol(
    endpoint="chat",
    stream_events=openai_stream_events,
    complete=openai_completion,
    error=openai_error,
    malformed_event=b'data: {"id": "chatcmpl-broken", "choices": [\n\n',
    request_id_header="x-request-id",
)
_ANTHROPIC = _Protocol(
    endpoint="messages",
    stream_events=anthropic_stream_events,
    complete=anthropic_message,
    error=anthropic_error,
    malformed_event=b'event: content_block_delta\ndata: {"type": "content_block_delta", "in\n\n',
    request_id_header="request-id",
)
_MODERATION = _Protocol(
    endpoint="moderations",
    stream_events=lambda scenario, body: [],
    complete=moderation_result,
    error=openai_error,
    malformed_event=b"",
    request_id_header="x-request-id",
)
_ROUTES: dict[str, _Protocol] = {
    "/v1/chat/completions": _OPENAI,
    "/v1/messages": _ANTHROPIC,
    "/v1/moderations": _MODERATION,
}


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


@dataclass
class _State:
    """Everything shared between the test thread and the server thread, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[Scenario] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    disconnected: threading.Condition = field(init=False)
    active_streams: int = 0

    def __post_init__(self) -> None:
        self.disconnected = threading.Condition(self.lock)


class FakeProviderServer:
    """A local OpenAI + Anthropic compatible server whose answers are scripted per test."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake provider server did not start")
        if self._startup_error is not None:
            self._thread.join(timeout=5)
            self._thread = None  # so stop() is a no-op and start() may be retried
            raise RuntimeError("fake provider server failed to start") from self._startup_error

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        with self._state.lock:
            # Wake anyone still in wait_for_disconnect(); stopping ends every stream.
            self._state.disconnected.notify_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """Server root, for SDKs that append ``/v1/...`` themselves (Anthropic)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ending in ``/v1``."""
        return f"{self.root_url}/v1"

    # -- scripting and inspection (called from the test thread) ---------------------------------

    def script(self, *scenarios: Scenario) -> None:
        """Queue scenarios; each POST to a model endpoint consumes the next matching one."""
        with self._state.lock:
            self._state.queue.extend(scenarios)

    @property
    def pending(self) -> list[Scenario]:
        with self._state.lock:
            return list(self._state.queue)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received: method, path, query, headers (lower-cased), json, time,
        and ended once answered."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def disconnects(self) -> list[float]:
        """``time.monotonic()`` of each client disconnect seen while a response was in flight."""
        with self._state.lock:
            return list(self._state.disconnects)

    @property
    def active_streams(self) -> int:
        with self._state.lock:
            return self._state.active_streams

    def wait_for_disconnect(self, timeout: float, count: int = 1) -> bool:
        """Block until at least ``count`` mid-response disconnects were seen."""
        with self._state.lock:
            return self._state.disconnected.wait_for(
                lambda: len(self._state.disconnects) >= count, timeout=timeout
            )

    def reset(self) -> None:
        """Forget queued scenarios, recorded requests and disconnects."""
        with self._state.lock:
            self._state.queue.clear()
            self._state.requests.clear()
            self._state.disconnects.clear()

    # -- server thread --------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._on_connect, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:  # e.g. port in use; reported to start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(reader, writer)
        # A client that went away or sent garbage leaves nothing to answer. stop() cancels
        # handlers; ending normally avoids Python 3.11's streams callback logging
        # "Exception in callback" for a cancelled connection task.
        ends = (_ClientGone, ConnectionError, asyncio.IncompleteReadError, ValueError)
        try:
            with contextlib.suppress(*ends, asyncio.CancelledError):
                await self._serve_connection(conn)
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve_connection(self, conn: _Connection) -> None:
        # HTTP/1.1 keep-alive: SDK clients reuse connections from their pool.
        while (request := await conn.read_request()) is not None:
            keep_open = await self._dispatch(conn, request)
            if not keep_open:
                return

    def _record(self, request: _Request) -> dict[str, Any]:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "json": request.json(),
            "time": time.monotonic(),
        }
        with self._state.lock:
            self._state.requests.append(entry)
        return entry

    def _next_scenario(self, endpoint: Endpoint) -> Scenario:
        with self._state.lock:
            for i, scenario in enumerate(self._state.queue):
                if scenario.endpoint in (None, endpoint):
                    return self._state.queue.pop(i)
        return Scenario()

    def _record_disconnect(self) -> None:
        with self._state.lock:
            self._state.disconnects.append(time.monotonic())
            self._state.disconnected.notify_all()

    async def _dispatch(self, conn: _Connection, request: _Request) -> bool:
        """Answer one request; return whether the connection may be reused. Its entry in
        ``requests`` gets ``ended`` (monotonic, like ``time``) once it is answered or the
        client is gone, so tests can tell whether two requests overlapped."""
        entry = self._record(request)
        try:
            return await self._dispatch_recorded(conn, request)
        finally:
            with self._state.lock:
                entry["ended"] = time.monotonic()

    async def _dispatch_recorded(self, conn: _Connection, request: _Request) -> bool:
        if request.method == "GET" and request.path == "/v1/models":
            return await self._answer_models(conn, request)
        protocol = _ROUTES.get(request.path)
        if protocol is None or request.method != "POST":
            await conn.send_json(404, {"error": {"message": f"no route {request.path}"}})
            return True
        body = request.json()
        if not isinstance(body, dict):
            await conn.send_json(400, {"error": {"message": "body must be a JSON object"}})
            return True
        scenario = self._next_scenario(protocol.endpoint)
        try:
            return await self._answer(conn, protocol, scenario, body)
        except _ClientGone:
            self._record_disconnect()
            return False

    async def _answer_models(self, conn: _Connection, request: _Request) -> bool:
        # Only a scenario queued for "models" applies: the others script model calls.
        with self._state.lock:
            queue = self._state.queue
            index = next((i for i, s in enumerate(queue) if s.endpoint == "models"), None)
            scenario = queue.pop(index) if index is not None else None
        if scenario is None or scenario.kind != "status":
            await conn.send_json(200, _models_payload(request))
            return True
        protocol = _ANTHROPIC if "anthropic-version" in request.headers else _OPENAI
        return await self._answer_error(conn, protocol, scenario, {})

    async def _answer(
        self, conn: _Connection, protocol: _Protocol, scenario: Scenario, body: dict[str, Any]
    ) -> bool:
        if scenario.response_delay_s:
            await conn.sleep_unless_gone(scenario.response_delay_s)
        headers = {protocol.request_id_header: _new_id("req_fake")}
        if scenario.kind == "status":
            return await self._answer_error(conn, protocol, scenario, headers)
        if body.get("stream") and protocol.endpoint != "moderations":
            return await self._answer_stream(conn, protocol, scenario, body, headers)
        return await self._answer_once(conn, protocol, scenario, body, headers)

    async def _answer_error(
        self, conn: _Connection, protocol: _Protocol, scenario: Scenario, headers: dict[str, str]
    ) -> bool:
        if scenario.retry_after is not None:
            # Like the real APIs: whole seconds in Retry-After (clients parse it as an integer)
            # plus the precise value in retry-after-ms, which the SDKs and pydantic-ai prefer.
            headers["retry-after"] = str(math.ceil(scenario.retry_after))
            headers["retry-after-ms"] = str(round(scenario.retry_after * 1000))
        payload = (
            scenario.error_body if scenario.error_body is not None else protocol.error(scenario)
        )
        await conn.send_json(scenario.status, payload, headers)
        return True

    async def _answer_once(
        self,
        conn: _Connection,
        protocol: _Protocol,
        scenario: Scenario,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> bool:
        # Without a stream there is no "after N chunks": failures happen before the response.
        if scenario.kind == "stall":
            await conn.wait_until_gone()
            raise _ClientGone
        if scenario.kind == "drop":
            conn.abort()
            return False
        if scenario.kind == "malformed":
            await conn.send_raw(200, b'{"id": "broken", "choices": [', headers)
            return True
        await conn.send_json(200, protocol.complete(scenario, body), headers)
        return True

    async def _answer_stream(
        self,
        conn: _Connection,
        protocol: _Protocol,
        scenario: Scenario,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> bool:
        events = protocol.stream_events(scenario, body)
        await conn.send_head(
            200,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "transfer-encoding": "chunked",
                **headers,
            },
        )
        with self._state.lock:
            self._state.active_streams += 1
        try:
            return await self._send_events(conn, protocol, scenario, events)
        finally:
            with self._state.lock:
                self._state.active_streams -= 1

    async def _send_events(
        self, conn: _Connection, protocol: _Protocol, scenario: Scenario, events: list[bytes]
    ) -> bool:
        # Failure points past the end are clamped, so "after N chunks" with N too big means
        # "after everything but the end of the body".
        fail_at = min(_failure_point(scenario), len(events))
        for index, event in enumerate(events):
            if index == fail_at:
                break
            if index and scenario.chunk_delay_s:
                await conn.sleep_unless_gone(scenario.chunk_delay_s)
            await conn.send_chunk(event)
        if scenario.kind == "stall":
            await conn.wait_until_gone()
            raise _ClientGone
        if scenario.kind == "drop":
            conn.abort()
            return False
        if scenario.kind == "malformed":
            # One write with the terminator: the client bails out on the bad event, and a
            # separate terminator write could race its close and log a bogus disconnect.
            await conn.write(_chunk(protocol.malformed_event) + _LAST_CHUNK)
            return True
        await conn.end_chunks()
        return True


def _failure_point(scenario: Scenario) -> int:
    """Index of the first chunk that is not sent normally (``len(events)`` or more: none)."""
    points = {
        "stall": scenario.stall_after_chunks,
        "drop": scenario.drop_after_chunks,
        "malformed": scenario.malformed_after_chunks,
    }
    return points.get(scenario.kind, 1 << 30)


def _models_payload(request: _Request) -> dict[str, Any]:
    if "anthropic-version" in request.headers:
        model = {
            "type": "model",
            "id": "claude-fake",
            "display_name": "Claude Fake",
            "created_at": "2025-01-01T00:00:00Z",
        }
        return {
            "data": [model],
            "has_more": False,
            "first_id": "claude-fake",
            "last_id": "claude-fake",
        }
    model = {"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "fake-provider"}
    return {"object": "list", "data": [model]}


def main(argv: list[str] | None = None) -> None:
    """Serve the fake provider from a shell, to reproduce a provider's behaviour against a
    real stack (docs/debugging.md): ``python -m tests.fakes.provider_server --port 8765
    --kind status --status 429 --times 3`` answers the next three requests with 429, then
    the default text."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--kind", choices=sorted(_KINDS), default="text")
    parser.add_argument("--status", type=int, default=200, help="with --kind status")
    parser.add_argument("--retry-after", type=float, default=None, help="seconds, with 429")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds per chunk")
    parser.add_argument("--after-chunks", type=int, default=2, help="stall/drop/malformed")
    parser.add_argument("--times", type=int, default=1, help="how many requests get it")
    args = parser.parse_args(argv)
    scenario = Scenario(
        kind=args.kind,
        text=args.text,
        status=args.status,
        retry_after=args.retry_after,
        chunk_delay_s=args.chunk_delay,
        stall_after_chunks=args.after_chunks if args.kind == "stall" else 0,
        drop_after_chunks=args.after_chunks if args.kind == "drop" else 0,
        malformed_after_chunks=args.after_chunks if args.kind == "malformed" else 1,
        endpoint=None if args.kind == "text" else "chat",
    )
    server = FakeProviderServer(args.host, args.port)
    server.script(*[scenario] * args.times)
    server.start()
    print(f"fake provider on {server.base_url}: {args.times} x {args.kind}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
