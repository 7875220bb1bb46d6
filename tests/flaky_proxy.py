"""An HTTP proxy on loopback that answers the next N requests with an S3 error (503 SlowDown,
500 InternalError) before passing requests on to the real server: how the tests make a real
S3 endpoint throttle or fail on purpose. It can also let a request through and then answer
500 instead of the real response (`fail_after_landing`): the write happened, but the client
cannot know, as when a server or load balancer fails after committing."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator

_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>injected by the test proxy</Message></Error>"
)


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.failures: list[tuple[int, str]] = []
        self.seen: list[tuple[str, int]] = []
        #: (method, path) of every request whose real answer was replaced by a 500
        self.landed: list[tuple[str, str]] = []
        self._after: list[tuple[str, str]] = []
        self._after_left = 0
        self._after_paths: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self.failures.extend([(status, code)] * count)

    def fail_after_landing(self, count: int, method: str = "PUT", path_contains: str = "") -> None:
        """Forward the next `count` requests for distinct paths matching `method` and
        `path_contains`, let them land, and answer each with 500 InternalError instead.

        Each path fails once per call, so the client's retry of the request reaches the server.
        """
        with self._lock:
            self._after = [(method, path_contains)]
            self._after_left = count
            self._after_paths = set()

    def _fails_after_landing(self, method: str, path: str) -> bool:
        with self._lock:
            if self._after_left <= 0 or (method, path) in self._after_paths:
                return False
            if not any(method == m and part in path for m, part in self._after):
                return False
            self._after_left -= 1
            self._after_paths.add((method, path))
            self.landed.append((method, path))
            return True

    def _next_failure(self) -> tuple[int, str] | None:
        with self._lock:
            return self.failures.pop(0) if self.failures else None

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                failure = proxy._next_failure()
                if failure is not None:
                    status, code = failure
                    payload = _ERROR.format(code=code).encode()
                    proxy.seen.append((self.command, status))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                path = self.path.split("?", 1)[0]
                if answer.status < 300 and proxy._fails_after_landing(self.command, path):
                    conn.close()
                    payload = _ERROR.format(code="InternalError").encode()
                    proxy.seen.append((self.command, 500))
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                proxy.seen.append((self.command, answer.status))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler


@contextlib.contextmanager
def flaky_proxy(upstream: str) -> Iterator[tuple[str, FlakyProxy]]:
    proxy = FlakyProxy(upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
