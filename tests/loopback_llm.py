"""A real OpenAI-compatible chat server on 127.0.0.1 for tests (stdlib ``http.server`` in a thread).

API
---
``LoopbackLLM(responder=None, model="loopback-model")``
    A server on an ephemeral loopback port. Use it as a context manager or call ``start()``/``stop()``.
    ``base_url`` is ``http://127.0.0.1:<port>/v1`` (pass it to ``ChatClient`` or ``openai.OpenAI``).
``responder(messages) -> str``
    Turns the request's ``messages`` (list of ``{"role", "content"}`` dicts) into the reply text.
    Default: echoes the last user message. Replace it any time (``server.responder = fn``). If it raises,
    the server answers HTTP 500 with the error message.
Endpoints
    ``POST /v1/chat/completions`` (a non-streaming chat completion) and ``GET /v1/models``.
Fault injection (queued; each request takes the next queued fault, in arrival order)
    ``fail_next(n=1, status=500, retry_after=None)``: answer HTTP ``status`` with an OpenAI-style error body
    (and a ``Retry-After: <retry_after>`` header when given).
    ``slow_next(n=1, seconds=5.0)``: sleep before answering normally (exceed the client's timeout).
    ``trickle_next(n=1, interval=0.2)``: send the headers at once, then the body one byte per ``interval``
    seconds (every read is quick, the whole reply is not).
    ``finish_next(n=1, reason="length")``: answer normally but with this ``finish_reason``.
    ``malformed_next(n=1, kind="not_json")``: kinds ``not_json`` (a body that is not JSON), ``no_choices``
    (valid JSON without ``choices``), ``null_content`` (``message.content`` is null), ``truncated``
    (JSON cut off halfway).
    ``clear_faults()`` drops queued faults.
Inspection
    ``requests``: the JSON bodies received (thread-safe list, in arrival order; includes faulted ones).
    ``request_count``: their number. ``reset()`` clears requests and faults.
Pytest
    ``loopback_llm`` below is a fixture (a started server, stopped after the test). Share it by importing
    it in ``tests/conftest.py`` (``from tests.loopback_llm import loopback_llm  # noqa: F401``), or write a
    local one: ``@pytest.fixture`` / ``def server(): with LoopbackLLM() as s: yield s``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Responder = Callable[[list[dict[str, Any]]], str]
MALFORMED_KINDS = ("not_json", "no_choices", "null_content", "truncated")


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` is ``status``, ``slow``, ``trickle``, ``finish`` or a malformed kind."""

    kind: str
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None
    finish_reason: str = "stop"


def echo_responder(messages: list[dict[str, Any]]) -> str:
    """Reply with the content of the last user message."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


class LoopbackLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 with fault injection."""

    def __init__(self, responder: Responder | None = None, model: str = "loopback-model") -> None:
        self.responder: Responder = responder or echo_responder
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LoopbackLLM:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="loopback-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ faults and inspection
    def fail_next(self, n: int = 1, status: int = 500, retry_after: float | str | None = None) -> None:
        header = None if retry_after is None else str(retry_after)
        self._queue(n, Fault("status", status=status, retry_after=header))

    def trickle_next(self, n: int = 1, interval: float = 0.2) -> None:
        self._queue(n, Fault("trickle", seconds=interval))

    def finish_next(self, n: int = 1, reason: str = "length") -> None:
        self._queue(n, Fault("finish", finish_reason=reason))

    def slow_next(self, n: int = 1, seconds: float = 5.0) -> None:
        self._queue(n, Fault("slow", seconds=seconds))

    def malformed_next(self, n: int = 1, kind: str = "not_json") -> None:
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; kinds: {MALFORMED_KINDS}")
        self._queue(n, Fault(kind))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _queue(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def _record(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            self.requests.append(body)
            return self._faults.popleft() if self._faults else None

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackLLM

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        trickle_s: float = 0.0,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if trickle_s <= 0:
                self.wfile.write(body)
                return
            self.wfile.flush()
            for i in range(len(body)):
                if self.owner._stopping.is_set():
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                self.owner._sleep(trickle_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode())

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        fault = self.owner._record(body)
        if fault is not None and fault.kind == "status":
            error = {"error": {"message": f"injected HTTP {fault.status}", "type": "server_error"}}
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            self._send(fault.status, json.dumps(error).encode(), headers=headers)
            return
        if fault is not None and fault.kind == "slow":
            self.owner._sleep(fault.seconds)
        try:
            text = self.owner.responder(list(body.get("messages", [])))
        except Exception as exc:  # a responder bug becomes a 500, as a real server would answer
            self._json(500, {"error": {"message": f"responder failed: {exc}", "type": "server_error"}})
            return
        self._reply(body, text, fault)

    def _reply(self, body: dict[str, Any], text: str, fault: Fault | None) -> None:
        malformed = fault.kind if fault is not None else None
        completion = {
            "id": f"chatcmpl-loopback-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.owner.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": fault.finish_reason if fault is not None else "stop",
                },
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        if malformed == "not_json":
            self._send(200, b"<html>upstream error</html>", "application/json")
        elif malformed == "truncated":
            self._send(200, json.dumps(completion).encode()[:40])
        elif malformed == "no_choices":
            self._json(200, {k: v for k, v in completion.items() if k != "choices"})
        elif malformed == "null_content":
            completion["choices"][0]["message"]["content"] = None
            self._json(200, completion)
        elif malformed == "trickle":
            self._send(200, json.dumps(completion).encode(), trickle_s=fault.seconds)
        else:
            self._json(200, completion)


@pytest.fixture
def loopback_llm() -> Iterator[LoopbackLLM]:
    """A started :class:`LoopbackLLM` (echo responder), stopped after the test."""
    with LoopbackLLM() as server:
        yield server
