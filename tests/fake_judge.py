"""A fake OpenAI-compatible chat server on 127.0.0.1 for the judge's tests (an in-process thread)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """Answers POST /v1/chat/completions from a script of replies: a content string, ("status", code),
    ("sleep", seconds, content), ("body", bytes) as a 200 reply's body or ("raw", bytes) in place of any HTTP reply;
    `default` (the same kinds, or a function of the request's body returning one) once the script is spent. Records every request (thread-safe: requests may come in
    parallel). Stops itself after `lifetime` seconds at the latest."""

    def __init__(self, script=(), lifetime: float = 60.0, default="[]") -> None:
        self.script, self.requests, self.default = list(script), [], default
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "type": self.headers["Content-Type"],
                            "auth": self.headers["Authorization"],
                        }
                    )
                    step = server.script.pop(0) if server.script else server.default
                if callable(step):
                    step = step(body)
                if isinstance(step, tuple) and step[0] == "raw":
                    self.wfile.write(step[1])
                    self.close_connection = True
                    return
                if isinstance(step, tuple) and step[0] == "status":
                    self.send_response(step[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = step[2]
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": step}}]}).encode()
                if isinstance(step, tuple) and step[0] == "body":
                    reply = step[1]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.timer = threading.Timer(lifetime, self.httpd.shutdown)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
