"""A loopback proxy in front of moto's S3 server that behaves like a store without conditional writes.

moto honours `If-None-Match: *` and `If-Match` on PutObject and has no switch to turn them off, so a store that lacks
them is this proxy: `mode="ignore"` drops the two headers before moto sees them (a store that silently ignores
them), `mode="refuse"` answers 501 NotImplemented, as AWS S3 itself answered before it supported them.
`mode="no-checksums"` answers 501 to an upload (PUT) that carries the CRC32 checksum headers boto3 >= 1.36 sends by
default, as R2 did. (DeleteObjects is let through: S3 requires a checksum there, and boto3 sends a CRC32 one even
with cft's `when_required`.) Everything else passes through unchanged.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CONDITIONS = ("if-none-match", "if-match")
CHECKSUMS = ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-crc32", "x-amz-trailer")
NOT_IMPLEMENTED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code><Message>A header you '
                   b'provided implies functionality that is not implemented</Message><Header>If-None-Match</Header>'
                   b'</Error>')


class S3Proxy:
    def __init__(self, upstream: str, mode: str) -> None:
        assert mode in ("ignore", "refuse", "no-checksums")
        target = urlsplit(upstream)
        self.mode = mode
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conditional = self.command == "PUT" and any(h in (k.lower() for k in self.headers) for h in CONDITIONS)
                if conditional and owner.mode == "refuse":
                    return self._reply(501, {"Content-Type": "application/xml"}, NOT_IMPLEMENTED)
                sent = {k.lower() for k in self.headers}
                if owner.mode == "no-checksums" and self.command == "PUT" and any(h in sent for h in CHECKSUMS):
                    return self._reply(501, {"Content-Type": "application/xml"},
                                       NOT_IMPLEMENTED.replace(b"If-None-Match", b"x-amz-checksum-crc32"))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "host")
                           and not (owner.mode == "ignore" and k.lower() in CONDITIONS)}
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    kept = {k: v for k, v in answer.getheaders()
                            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date")}
                    self._reply(answer.status, kept, data)
                finally:
                    connection.close()

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> S3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
