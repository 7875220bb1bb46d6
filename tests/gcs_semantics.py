"""GCS generation preconditions in front of gcp-storage-emulator, which ignores them.

google-cloud-storage sends its HTTP requests through this session. Every request is recorded
(so tests can check what the store sends) and passed to the real emulator; a request carrying
`ifGenerationMatch` is first checked against the object's current generation, as GCS does, and
answered with GCS's 412 when it does not hold. Check and write happen under one lock, so the
create-only and compare-and-swap contract can be tested against it.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from typing import Any

import requests

_NAME = re.compile(rb'"name": ("(?:[^"\\]|\\.)*")')


class GCSPreconditions(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._after_landing: list[tuple[str, str]] = []
        #: (method, path) of every request whose real answer was replaced by a 500
        self.landed: list[tuple[str, str]] = []

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status`, as an overloaded GCS would."""
        self._failures.extend([status] * count)

    def fail_after_landing(self, count: int, method: str = "POST", path_contains: str = "") -> None:
        """Send the next `count` requests matching `method` and `path_contains` to the emulator,
        let them land, and answer 500 instead: the write happened, the client cannot know."""
        self._after_landing.extend([(method, path_contains)] * count)

    def request(  # type: ignore[override]
        self, method: str, url: str, params: Any = None, data: Any = None, **kwargs: Any
    ) -> requests.Response:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update(params or {})
        self.sent.append((method, parts.path, query))
        if self._failures:
            return _error(method, url, self._failures.pop(0))
        response = self._send(method, url, parts, query, params, data, **kwargs)
        if self._after_landing:
            wanted, part = self._after_landing[0]
            if method == wanted and part in parts.path and response.status_code < 300:
                self._after_landing.pop(0)
                self.landed.append((method, parts.path))
                return _error(method, url, 500)
        return response

    def _send(
        self,
        method: str,
        url: str,
        parts: urllib.parse.SplitResult,
        query: dict[str, str],
        params: Any,
        data: Any,
        **kwargs: Any,
    ) -> requests.Response:
        expected = query.get("ifGenerationMatch")
        if expected is None:
            return super().request(method, url, params=params, data=data, **kwargs)
        bucket = parts.path.split("/b/", 1)[1].split("/", 1)[0]
        if "/upload/" in parts.path:
            found = _NAME.search(data if isinstance(data, bytes) else b"")
            name = json.loads(found.group(1)) if found else ""
        else:
            name = urllib.parse.unquote(parts.path.split("/o/", 1)[1])
        with self._lock:
            current = self._generation(f"{parts.scheme}://{parts.netloc}", bucket, name)
            if int(expected) != current:
                return _error(method, url, 412)
            return super().request(method, url, params=params, data=data, **kwargs)

    def _generation(self, endpoint: str, bucket: str, name: str) -> int:
        quoted = urllib.parse.quote(name, safe="")
        response = super().request("GET", f"{endpoint}/storage/v1/b/{bucket}/o/{quoted}")
        if response.status_code == 404:
            return 0
        response.raise_for_status()
        return int(response.json()["generation"])

    def requests_with(self, parameter: str) -> list[tuple[str, str, dict[str, str]]]:
        return [sent for sent in self.sent if parameter in sent[2]]


def _error(method: str, url: str, status: int) -> requests.Response:
    reason = "conditionNotMet" if status == 412 else "backendError"
    response = requests.Response()
    response.status_code = status
    response.reason = {412: "Precondition Failed", 500: "Internal Server Error"}.get(
        status, "Service Unavailable"
    )
    response.url = url
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(
        {"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}}
    ).encode()
    response.request = requests.Request(method, url).prepare()
    return response
