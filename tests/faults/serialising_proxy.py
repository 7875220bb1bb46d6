"""An HTTP proxy on loopback that lets one conditional write reach moto at a time.

moto's server checks `If-None-Match` / `If-Match` and then writes, without a lock between the
two, so two truly concurrent conditional PUTs to one key can both succeed; real S3 decides them
atomically. Holding one lock around every PUT or DELETE that carries a condition gives the lock
races the semantics S3 promises; every other request passes straight through.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator


class SerialisingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self._write = threading.Lock()
        self._count = threading.Lock()
        #: conditional writes forwarded, and how many of them found another one in flight
        self.conditional = 0
        self.contended = 0

    def _forward(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def relay(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        names = {name.lower() for name in headers}
        conditional = method in ("PUT", "DELETE") and bool(names & {"if-none-match", "if-match"})
        if not conditional:
            return self._forward(method, path, body, headers)
        waited = not self._write.acquire(blocking=False)
        if waited:
            self._write.acquire()
        try:
            with self._count:
                self.conditional += 1
                self.contended += waited
            return self._forward(method, path, body, headers)
        finally:
            self._write.release()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

            def log_message(self, *args: object) -> None:  # quiet
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                status, answer_headers, data = proxy.relay(self.command, self.path, body, headers)
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler


@contextlib.contextmanager
def serialising_proxy(upstream: str) -> Iterator[tuple[str, SerialisingProxy]]:
    """Yields the proxy's endpoint URL (127.0.0.1, a free port) and the proxy."""
    proxy = SerialisingProxy(upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
