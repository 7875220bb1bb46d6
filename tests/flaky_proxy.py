"""An HTTP proxy on loopback that answers the next N requests with an S3 error (503 SlowDown,
500 InternalError) before passing requests on to the real server: how the tests make a real
S3 endpoint throttle or fail on purpose."""

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
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self.failures.extend([(status, code)] * count)

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
