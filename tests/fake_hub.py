"""A loopback server that answers the few Hugging Face Hub requests a download starts with; huggingface_hub reaches it
through `HF_ENDPOINT`.

    with FakeHub({"org/model": HubRepo({"config.json": b"{}"})}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

What it answers is what the Hub answers (read from huggingface_hub's `hf_raise_for_status` and the Hub's replies):
`GET /api/{models,datasets}/<repo>[/revision/<rev>]` -> the repo's info with `siblings` and `gated`, or 404 with
`X-Error-Code: RepoNotFound`; `HEAD`/`GET /[datasets/]<repo>/resolve/<rev>/<file>` -> the file (ranges honoured),
or for a gated repo 401 (no token) / 403 (a token whose account has not accepted the licence) with
`X-Error-Code: GatedRepo` and the Hub's `X-Error-Message`, or 404 `EntryNotFound`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubRepo:
    files: dict[str, bytes]
    gated: str | bool = False  # False, "auto" or "manual", as the Hub reports it
    accepted_tokens: set[str] = field(default_factory=set)  # accounts that accepted the licence


class FakeHub:
    def __init__(self, models: dict[str, HubRepo] | None = None, datasets: dict[str, HubRepo] | None = None) -> None:
        self.repos = {("model", k): v for k, v in (models or {}).items()}
        self.repos.update({("dataset", k): v for k, v in (datasets or {}).items()})
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_found(self, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self._answer(404, body, {"X-Error-Code": code, "X-Error-Message": message,
                                         "Content-Type": "application/json"})

            def _route(self) -> None:
                path = self.path.split("?", 1)[0]
                owner.requests.append((self.command, path, self.headers.get("Authorization")))
                info = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
                if info:
                    return self._info("model" if info.group(1) == "models" else "dataset", info.group(2))
                resolve = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if resolve:
                    kind = "dataset" if resolve.group(1) else "model"
                    return self._file(kind, resolve.group(2), resolve.group(4))
                return self._not_found("RepoNotFound", "Repository not found")

            def _info(self, kind: str, repo_id: str) -> None:
                repo = owner.repos.get((kind, repo_id))
                if repo is None:
                    return self._not_found("RepoNotFound", "Repository not found")
                body = json.dumps({"id": repo_id, "sha": SHA, "private": False, "gated": repo.gated,
                                   "siblings": [{"rfilename": name} for name in sorted(repo.files)]}).encode()
                self._answer(200, body, {"Content-Type": "application/json"})

            def _file(self, kind: str, repo_id: str, name: str) -> None:
                repo = owner.repos.get((kind, repo_id))
                if repo is None:
                    return self._not_found("RepoNotFound", "Repository not found")
                if repo.gated:
                    auth = self.headers.get("Authorization") or ""
                    token = auth.removeprefix("Bearer ").strip()
                    if not token:
                        message = (f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                                   "authenticated to access it. Please log in.")
                        return self._answer(401, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
                    if token not in repo.accepted_tokens:
                        message = (f"Access to {kind} {repo_id} is restricted and you are not in the authorized "
                                   f"list. Visit https://huggingface.co/{repo_id} to ask for access.")
                        return self._answer(403, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
                if name not in repo.files:
                    return self._not_found("EntryNotFound", f"{name} does not exist on \"main\"")
                data = repo.files[name]
                headers = {"X-Repo-Commit": SHA, "ETag": f'"{abs(hash(data)):x}"'}
                status, body = 200, data
                ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if ranged:
                    first = int(ranged.group(1))
                    last = min(int(ranged.group(2) or len(data) - 1), len(data) - 1)
                    status, body = 206, data[first:last + 1]
                    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                if self.command == "HEAD":
                    self.send_response(200)
                    for header, value in headers.items():
                        self.send_header(header, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return None
                return self._answer(status, body, headers)

            do_GET = _route
            do_HEAD = _route

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
