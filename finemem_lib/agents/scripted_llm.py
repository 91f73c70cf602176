"""A scripted OpenAI-compatible chat server on 127.0.0.1 that stops by itself (the paper-smoke profile's endpoints).

It stands in for every LLM endpoint of the paper profile (the reasoner, a judge, the chunk-QA
generator and verifier), so that path runs offline end to end. Replies are deterministic and are
chosen by the kind of prompt, read from the request:

- chunk-QA generator (:data:`finemem_lib.data.chunk_qa.GENERATOR_PROMPT`): a JSON list of pairs
  ``what comes after "<three words>"?`` -> the next words of a passage sentence;
- chunk-QA verifier (:data:`~finemem_lib.data.chunk_qa.VERIFIER_PROMPT`): finds the quoted words in the
  passage and answers with the words after them, or ``NOT ANSWERABLE``;
- reasoner (:data:`finemem_lib.agents.instructions.SYSTEM_PROMPT`): ``\\boxed{<label>}`` with the first
  label in memory for classification queries, otherwise the first retrieved item;
- anything else (a yes/no judge, ...): ``yes``.

Nothing is ever an empty reply. ``ScriptedLLMServer(max_seconds=...)`` serves on an ephemeral port in a
daemon thread and shuts down after ``max_seconds`` even if nobody stops it;
``python -m finemem_lib.agents.scripted_llm --max-seconds 900`` serves in the foreground and prints the base URL.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from finemem_lib.agents.instructions import SYSTEM_PROMPT
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.chunk_qa import GENERATOR_PROMPT, NOT_ANSWERABLE, VERIFIER_PROMPT

MODEL = "scripted-llm"
_GENERATOR_HEAD = GENERATOR_PROMPT.split("{n}")[1].split("\n")[0]  # " short factoid question-answer pairs ..."
_VERIFIER_HEAD = VERIFIER_PROMPT.split("{not_answerable}")[0]
_REASONER_HEAD = SYSTEM_PROMPT.split("\n")[0]
_PASSAGE = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)
_CUE = re.compile(r'what comes after "([^"]+)"', re.IGNORECASE)
_WORD = re.compile(r"[\w'-]+")
_LABEL = re.compile(r"\blabel:\s*(\d+)", re.IGNORECASE)
_ITEM = re.compile(r"^\d+\. (.+)$", re.MULTILINE)
_MARKUP = re.compile(r"\[[^\]]*\]|<[A-Za-z]+>")


# ---------------------------------------------------------------------------- replies
def _content(messages: list[dict[str, Any]], role: str) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == role)


def generator_reply(prompt: str, max_pairs: int = 8) -> str:
    """Cue-and-continuation QA pairs from the passage's sentences, as a JSON list."""
    match = _PASSAGE.search(prompt)
    passage = _MARKUP.sub(" ", match.group(1)) if match else ""  # template headers and speaker tags
    pairs = []
    for sentence in split_sentences(passage):
        words = _WORD.findall(sentence)
        if len(words) >= 5:
            pairs.append(
                {
                    "question": f'In the passage, what comes after "{" ".join(words[:3])}"?',
                    "answer": " ".join(words[3:6]),
                }
            )
    return json.dumps(pairs[:max_pairs])


def verifier_reply(prompt: str) -> str:
    """The words after the question's quoted cue in the passage, or NOT ANSWERABLE."""
    passage = _PASSAGE.search(prompt)
    cue = _CUE.search(prompt.rsplit("Question:", 1)[-1])
    if passage and cue:
        words = _WORD.findall(_MARKUP.sub(" ", passage.group(1)))
        wanted = cue.group(1).split()
        for i in range(len(words) - len(wanted)):
            if words[i : i + len(wanted)] == wanted:
                return " ".join(words[i + len(wanted) : i + len(wanted) + 3])
    return NOT_ANSWERABLE


def reasoner_reply(system: str, user: str) -> str:
    """A boxed label for classification queries, else the first retrieved item (a few words)."""
    memory = system.split("<memory>", 1)[-1].split("</memory>", 1)[0]
    if "\\boxed{label}" in user:
        label = _LABEL.search(memory)
        return f"\\boxed{{{label.group(1) if label else 0}}}"
    items = _ITEM.findall(memory)
    return " ".join(items[0].split()[:30]) if items else "I do not know."


def scripted_reply(messages: list[dict[str, Any]]) -> str:
    """The reply to one chat request (never empty)."""
    system, user = _content(messages, "system"), _content(messages, "user")
    if _GENERATOR_HEAD in user:
        return generator_reply(user)
    if user.startswith(_VERIFIER_HEAD):
        return verifier_reply(user)
    if system.startswith(_REASONER_HEAD):
        return reasoner_reply(system, user)
    return "yes"


# ---------------------------------------------------------------------------- server
class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedLLMServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            text = scripted_reply(list(body.get("messages", [])))
        except Exception as exc:  # a bad request or a responder bug: an HTTP error, as a real server answers
            self._json(400, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "invalid_request_error"}})
            return
        self.owner.count()
        self._json(
            200,
            {
                "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )


class ScriptedLLMServer:
    """The scripted chat server on ``127.0.0.1:<port>`` (0 = any free port); stops after ``max_seconds``."""

    def __init__(self, max_seconds: float = 900.0, port: int = 0) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.max_seconds, self._port = float(max_seconds), int(port)
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None
        self.stopped = threading.Event()

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def start(self) -> ScriptedLLMServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self.stopped.set()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the scripted server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def environment(self) -> dict[str, str]:
        """Variables that point the paper profile's endpoints (reasoner, chunk-QA generator and verifier) here."""
        env = {}
        for prefix in ("REASONER", "CHUNKQA_GENERATOR", "CHUNKQA_VERIFIER", "JUDGE"):
            env.update({f"{prefix}_BASE_URL": self.base_url, f"{prefix}_MODEL": MODEL, f"{prefix}_API_KEY": "EMPTY"})
        return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the scripted chat endpoint on 127.0.0.1 for a bounded time.")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this many seconds")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = ScriptedLLMServer(args.max_seconds, args.port).start()
    print(server.base_url, flush=True)
    for key, value in server.environment().items():
        print(f"export {key}={value}", flush=True)
    try:
        server.stopped.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
