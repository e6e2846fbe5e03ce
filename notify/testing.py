"""A loopback server that speaks ntfy's publish API, for tests here and in other packages (no network).

It records every publish (``POST``/``PUT /<topic>`` with the Title, Priority, Tags, Click, Markdown and
Authorization headers) and can misbehave on purpose: answer an error status, or accept and never answer.
"""

from __future__ import annotations

import email.header
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Published:
    """One request as ntfy would understand it."""

    method: str
    topic: str
    title: str | None
    priority: str | None
    tags: list[str]
    click: str | None
    markdown: str | None
    authorization: str | None
    body: str


def _decode(value: str | None) -> str | None:
    """RFC 2047 (``=?UTF-8?B?...?=``) headers, as ntfy accepts them, back to text."""
    if value is None:
        return None
    return str(email.header.make_header(email.header.decode_header(value)))


class FakeNtfyServer:
    """``with FakeNtfyServer() as server: ... server.url ... server.published``.

    ``status``: HTTP status to answer (200 like ntfy, or e.g. 500). ``hang``: read the request, never answer.
    """

    def __init__(self, status: int = 200, hang: bool = False) -> None:
        self.status = status
        self.hang = hang
        self.published: list[Published] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _publish(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                h = self.headers
                record = Published(
                    method=self.command,
                    topic=self.path.lstrip("/").split("?", 1)[0],
                    title=_decode(h.get("Title")),
                    priority=h.get("Priority"),
                    tags=[t for t in (_decode(h.get("Tags")) or "").split(",") if t],
                    click=_decode(h.get("Click")),
                    markdown=h.get("Markdown"),
                    authorization=h.get("Authorization"),
                    body=body,
                )
                with owner._lock:
                    owner.published.append(record)
                if owner.hang:
                    owner._release.wait(60)
                    self.close_connection = True
                    return
                answer = json.dumps({"id": str(len(owner.published)), "event": "message", "topic": record.topic})
                payload = (answer if owner.status < 300 else json.dumps({"error": "fake failure"})).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _publish
            do_PUT = _publish

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeNtfyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeNtfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
