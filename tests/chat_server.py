"""A real chat-completions server on 127.0.0.1 for the API adapter's tests.

It speaks enough of OpenAI's protocol for the official client (POST
/v1/chat/completions, JSON in and out), and can be told to misbehave: each entry of
`faults` is used by one incoming request, in arrival order:

    "ok"              a normal answer
    "429" / "429:S"   rate limited, Retry-After: S seconds (default 0)
    "500", "503"      server error
    "400", "404"      the request's fault (permanent)
    "401_echo"        authentication error whose message echoes the bearer token
    "200_echo"        a normal answer whose text, model name and request id echo the bearer token
    "hang"            answer only after `hang_s` seconds (past the client's timeout)
    "malformed"       200 with a body that is not JSON
    "no_choices"      200 with JSON that is not a chat completion

It records every request (time, body, Authorization header) and the most requests it
ever had in flight at once.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_BASE = 50  # prompt_tokens = PROMPT_BASE + IMAGE_TOKENS * images + words of text
IMAGE_TOKENS = 85
COMPLETION_TOKENS = 4


def default_reply(body: dict[str, Any]) -> str:
    return "Answer: A."


class ChatServer:
    def __init__(self, delay: float = 0.0, hang_s: float = 2.0, reply=default_reply) -> None:
        self.delay = delay
        self.hang_s = hang_s
        self.reply = reply
        self.faults: collections.deque[str] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a hanging handler must not block shutdown
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def n_requests(self) -> int:
        return len(self.requests)

    # -- protocol -----------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    @staticmethod
    def _error(message: str, kind: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind, "code": None}}

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            fault = self.faults.popleft() if self.faults else None
            body = json.loads(raw)
            self.requests.append({"t": time.monotonic(), "body": body, "auth": h.headers.get("Authorization", ""),
                                  "fault": fault})
        try:
            self._answer(h, body, fault)
        finally:
            with self.lock:
                self.inflight -= 1

    def _answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any], fault: str | None) -> None:
        if h.path.rstrip("/") != "/v1/chat/completions":
            return self._send(h, 404, self._error(f"no route {h.path}", "not_found"))
        if fault and fault.startswith("429"):
            wait = fault.partition(":")[2] or "0"
            return self._send(h, 429, self._error("Rate limit reached", "rate_limit"), {"Retry-After": wait})
        if fault in ("500", "503"):
            return self._send(h, int(fault), self._error("The server had an error", "server_error"))
        if fault in ("400", "404"):
            return self._send(h, int(fault), self._error(f"bad request ({fault})", "invalid_request_error"))
        if fault == "401_echo":
            token = h.headers.get("Authorization", "").removeprefix("Bearer ")
            return self._send(h, 401, self._error(f"Incorrect API key provided: {token}", "invalid_api_key"))
        if fault == "malformed":
            return self._send(h, 200, b'{"id": "x", "choices": [')
        if fault == "no_choices":
            return self._send(h, 200, {"id": "x", "object": "chat.completion"})
        time.sleep(self.hang_s if fault == "hang" else self.delay)
        echo = h.headers.get("Authorization", "").removeprefix("Bearer ") if fault == "200_echo" else ""
        content = body["messages"][-1]["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        n_images = sum(p.get("type") == "image_url" for p in parts)
        words = sum(len(p.get("text", "").split()) for p in parts if p.get("type") == "text")
        usage = {"prompt_tokens": PROMPT_BASE + IMAGE_TOKENS * n_images + words,
                 "completion_tokens": COMPLETION_TOKENS}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return self._send(h, 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body.get('model')}{echo}",
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": self.reply(body) + (f" (sent with key {echo})" if echo else "")}}],
            "usage": usage,
        }, {"x-request-id": f"req-{len(self.requests)}{echo}"})
