"""A lean OpenAI-compatible streaming server for capacity benchmarks (its own process).

``POST /v1/chat/completions`` with ``"stream": true`` waits ``--ttft-ms``, then streams
``--tokens`` chunks ``--gap-ms`` apart (then the finish chunk, the usage chunk when
``stream_options.include_usage`` is set, and ``[DONE]``). Every other path answers 404,
except:

- ``GET /stats``: JSON counters (requests, in flight now and at peak, tokens sent,
  streams completed, client disconnects, provider requests repeated for the same prompt);
- ``POST /reset``: zero the counters (the peak included) before the next measurement.

It must not be the bottleneck of what it measures, so one ticker task sends the next
token of *every* open stream per gap (one timer for all streams, not one ``sleep`` per
stream and token) and a token is one prebuilt ``bytes`` write. Run:
``python tests/perf/stream_server.py --port 0``; it prints ``ready <port>`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    """One open streamed answer: its writer, the chunks still to send, and who waits."""

    writer: asyncio.StreamWriter
    chunks: collections.deque[bytes]
    done: asyncio.Future[bool]  # True: sent to the end; False: the client went away


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    tokens_sent: int = 0
    completed: int = 0
    disconnects: int = 0
    prompts: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "tokens_sent": self.tokens_sent,
            "completed": self.completed,
            "disconnects": self.disconnects,
            "repeated_prompts": sum(n - 1 for n in self.prompts.values() if n > 1),
        }


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    body = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(body), body)


class Server:
    def __init__(self, ttft_s: float, tokens: int, gap_s: float) -> None:
        self.ttft_s = ttft_s
        self.tokens = tokens
        self.gap_s = gap_s
        self.stats = Stats()
        self.streams: list[Stream] = []
        self.pieces = [f" t{i}" for i in range(tokens)]

    async def tick(self) -> None:
        """Send each open stream its next chunk, every ``gap_s``, on one timer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline = max(deadline + self.gap_s, loop.time())
            await asyncio.sleep(deadline - loop.time())
            if not self.streams:
                continue
            still: list[Stream] = []
            for stream in self.streams:
                if stream.writer.is_closing():
                    stream.done.set_result(False)
                    continue
                stream.writer.write(stream.chunks.popleft())
                self.stats.tokens_sent += 1
                if len(stream.chunks) > 1:
                    still.append(stream)
                    continue
                # The last token went out: the tail (finish, usage, [DONE], end) now.
                stream.writer.write(stream.chunks.popleft())
                stream.done.set_result(True)
            self.streams = still

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ends = (ConnectionError, asyncio.IncompleteReadError, ValueError)
        try:
            with contextlib.suppress(*ends):
                while await self.serve_one(reader, writer):
                    continue
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET" and path == "/stats":
            return await self.send_json(writer, self.stats.as_dict())
        if method == "POST" and path == "/reset":
            self.stats = Stats()
            return await self.send_json(writer, {"ok": True})
        if method == "POST" and path == "/v1/chat/completions":
            return await self.answer(writer, json.loads(body))
        return await self.send_json(writer, {"error": {"message": f"no route {path}"}}, 404)

    async def send_json(
        self, writer: asyncio.StreamWriter, payload: dict[str, Any], status: int = 200
    ) -> bool:
        data = json.dumps(payload).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, len(data), data)
        )
        await writer.drain()
        return True

    async def answer(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> bool:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        stats.prompts[_last_user_text(body)] += 1
        try:
            await asyncio.sleep(self.ttft_s)
            stream = Stream(writer, self.chunks(body), asyncio.get_running_loop().create_future())
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                + stream.chunks.popleft()
            )
            self.streams.append(stream)
            ok = await stream.done
            if ok:
                stats.completed += 1
                await writer.drain()
            else:
                stats.disconnects += 1
            return ok
        finally:
            stats.in_flight -= 1

    def chunks(self, body: dict[str, Any]) -> collections.deque[bytes]:
        """The role chunk, one chunk per token, then the tail as one write."""
        model = json.dumps(body.get("model", "gpt-fake"))
        base = (
            '{"id":"chatcmpl-bench","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":{model},"choices":'
        )

        def event(choices: str, extra: str = "") -> bytes:
            return _chunk((base + choices + extra + "}").encode())

        def delta(content: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": content, "finish_reason": finish}
            return event("[" + json.dumps(choice) + "]")

        chunks = collections.deque([delta({"role": "assistant", "content": ""})])
        chunks.extend(delta({"content": piece}) for piece in self.pieces)
        tail = delta({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 10,
                "completion_tokens": self.tokens,
                "total_tokens": 10 + self.tokens,
            }
            tail += event("[]", ',"usage":' + json.dumps(usage))
        chunks.append(tail + _chunk(b"[DONE]") + b"0\r\n\r\n")
        return chunks


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


async def serve(host: str, port: int, ttft_ms: float, tokens: int, gap_ms: float) -> None:
    server = Server(ttft_ms / 1000, tokens, gap_ms / 1000)
    listener = await asyncio.start_server(server.on_connect, host, port, backlog=4096)
    print(f"ready {listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await server.tick()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=300)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=20)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.ttft_ms, args.tokens, args.gap_ms))


if __name__ == "__main__":
    main()
