"""A stand-in for the Hugging Face Hub on loopback, speaking the HTTP API that `huggingface_hub`'s `HfApi` uses to
create a repository and push one commit; it records every commit it receives.

    with HubServer(token="hf_test") as hub:
        ... HfApi(endpoint=hub.endpoint, token="hf_test") ...
        hub.commits[-1]   # {"repo", "revision", "summary", "parent", "files": {path: bytes}, "deleted", "lfs"}

Endpoints, as huggingface_hub 2.x calls them (read from its hf_api.py, _commit_api.py and lfs.py):

    GET  /api/whoami-v2                           whoami: 401 unless the token is the server's
    GET  /api/models/{repo}[/revision/{rev}]      repo_info: id, sha, private, siblings (404 RepoNotFound / RevisionNotFound)
    POST /api/repos/create                        create_repo (409 when it exists); the first commit holds .gitattributes
    POST /api/models/{repo}/branch/{branch}       create_branch from main's head (409 when it exists)
    POST /api/validate-yaml                       README.md's metadata, checked with huggingface_hub's own parser
    POST /api/models/{repo}/preupload/{rev}       upload mode per file: "lfs" for weights and images, else "regular"
    POST /{repo}.git/info/lfs/objects/batch       git-LFS batch API (basic transfer): upload and verify actions
    PUT  /lfs/{oid}   POST /lfs/{oid}/verify      the LFS upload itself (content checked against its sha256)
    POST /api/models/{repo}/commit/{rev}          the ndjson commit: header, file, lfsFile, deletedFile lines;
                                                  412 when parentCommit is not the branch's head

Not faked: Xet storage (huggingface_hub uses it when hf_xet is installed; tests set HF_HUB_DISABLE_XET so the
git-LFS path runs), multipart LFS uploads, and the Hub's own metadata schema beyond what huggingface_hub parses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".png", ".gguf", ".pt")


class HubServer:
    def __init__(self, token: str = "hf_test_token") -> None:
        self.token = token
        self.repos: dict[str, dict[str, Any]] = {}  # repo -> {"private", "branches": {name: (sha, {path: bytes})}}
        self.lfs: dict[str, bytes] = {}
        self.commits: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) in order
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, repo: str, files: dict[str, bytes], private: bool = False) -> str:
        """A repository that already exists, with `files` on main; returns main's head."""
        self.repos[repo] = {"private": private, "branches": {}}
        return self._commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs\n", **files})

    def files(self, repo: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo]["branches"][branch][1])

    def _commit(self, repo: str, branch: str, files: dict[str, bytes]) -> str:
        digest = hashlib.sha1(repo.encode() + branch.encode() + str(len(self.commits)).encode())
        for path in sorted(files):
            digest.update(path.encode() + files[path])
        sha = digest.hexdigest()
        self.repos[repo]["branches"][branch] = (sha, files)
        return sha


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        # --- plumbing -------------------------------------------------------------------------------------------
        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload: Any = None, error_code: str | None = None) -> None:
            data = json.dumps(payload if payload is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._send(401, {"error": "Invalid credentials"})
            return False

        def _repo(self, repo: str) -> dict[str, Any] | None:
            found = hub.repos.get(repo)
            if found is None:
                self._send(404, {"error": "Repository not found"}, "RepoNotFound")
            return found

        # --- routes ---------------------------------------------------------------------------------------------
        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(("GET", path))
            if path == "/api/whoami-v2":
                return self._send(200, {"type": "user", "name": "me"}) if self._authorized() else None
            parts = path.strip("/").split("/")
            if parts[:2] != ["api", "models"] or len(parts) not in (4, 6):
                return self._send(404, {"error": "not faked"})
            repo = "/".join(parts[2:4])
            branch = parts[5] if len(parts) == 6 else "main"
            with hub.lock:
                found = self._repo(repo)
                if found is None:
                    return None
                if branch not in found["branches"]:
                    return self._send(404, {"error": "Invalid rev id"}, "RevisionNotFound")
                sha, files = found["branches"][branch]
                return self._send(200, {"id": repo, "sha": sha, "private": found["private"],
                                        "siblings": [{"rfilename": name} for name in sorted(files)]})

        def do_PUT(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append(("PUT", path))
            body = self._body()
            oid = path.rsplit("/", 1)[-1]
            if not path.startswith("/lfs/") or hashlib.sha256(body).hexdigest() != oid:
                return self._send(400, {"error": "content does not match its oid"})
            with hub.lock:
                hub.lfs[oid] = body
            return self._send(200)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append(("POST", path))
            body = self._body()
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            if path.startswith("/lfs/") and path.endswith("/verify"):
                oid = path.split("/")[2]
                stored = hub.lfs.get(oid)
                ok = stored is not None and len(stored) == json.loads(body)["size"]
                return self._send(200 if ok else 404)
            if not self._authorized():
                return None
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path.endswith(".git/info/lfs/objects/batch"):
                return self._lfs_batch(json.loads(body))
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) == 6:
                repo, action, rev = "/".join(parts[2:4]), parts[4], parts[5]
                if action == "branch":
                    return self._branch(repo, rev)
                if action == "preupload":
                    return self._preupload(repo, json.loads(body))
                if action == "commit":
                    return self._receive_commit(repo, rev, body)
            return self._send(404, {"error": "not faked"})

        def _validate_yaml(self, payload: dict[str, Any]) -> None:
            from huggingface_hub import ModelCard

            try:
                ModelCard(payload["content"], ignore_metadata_errors=False)
            except Exception as error:  # what the real Hub answers for invalid metadata: 400 with errors
                return self._send(400, {"errors": [{"message": str(error)}]})
            return self._send(200, {"errors": [], "warnings": []})

        def _create(self, payload: dict[str, Any]) -> None:
            repo = f"{payload['organization']}/{payload['name']}"
            with hub.lock:
                if repo in hub.repos:
                    return self._send(409, {"error": "You already created this model repo"})
                hub.repos[repo] = {"private": payload.get("visibility") == "private", "branches": {},
                                   "type": payload.get("type")}
                hub._commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            return self._send(200, {"url": f"{hub.endpoint}/{repo}"})

        def _branch(self, repo: str, branch: str) -> None:
            with hub.lock:
                found = self._repo(repo)
                if found is None:
                    return None
                if branch in found["branches"]:
                    return self._send(409, {"error": "Reference already exists"})
                found["branches"][branch] = found["branches"]["main"]
            return self._send(200)

        def _preupload(self, repo: str, payload: dict[str, Any]) -> None:
            if self._repo(repo) is None:
                return None
            files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                      "shouldIgnore": False, "oid": None} for f in payload["files"]]
            return self._send(200, {"files": files})

        def _lfs_batch(self, payload: dict[str, Any]) -> None:
            objects = []
            for item in payload["objects"]:
                entry = {"oid": item["oid"], "size": item["size"]}
                if item["oid"] not in hub.lfs:
                    entry["actions"] = {"upload": {"href": f"{hub.endpoint}/lfs/{item['oid']}"},
                                        "verify": {"href": f"{hub.endpoint}/lfs/{item['oid']}/verify"}}
                objects.append(entry)
            return self._send(200, {"transfer": "basic", "objects": objects})

        def _receive_commit(self, repo: str, branch: str, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = lines[0]["value"]
            with hub.lock:
                found = self._repo(repo)
                if found is None:
                    return None
                if branch not in found["branches"]:
                    return self._send(404, {"error": "Invalid rev id"}, "RevisionNotFound")
                head, current = found["branches"][branch]
                if header.get("parentCommit") not in (None, head):
                    return self._send(412, {"error": "A commit has happened since. Please refresh and try again."})
                files, added, lfs, deleted = dict(current), {}, [], []
                for line in lines[1:]:
                    value = line["value"]
                    if line["key"] == "file":
                        added[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                        added[value["path"]] = hub.lfs[value["oid"]]
                        lfs.append(value["path"])
                    elif line["key"] in ("deletedFile", "deletedFolder"):
                        deleted.append(value["path"])
                        files.pop(value["path"], None)
                files.update(added)
                sha = hub._commit(repo, branch, files)
                hub.commits.append({"repo": repo, "revision": branch, "summary": header["summary"],
                                    "description": header.get("description"), "parent": header.get("parentCommit"),
                                    "files": added, "lfs": lfs, "deleted": deleted, "oid": sha,
                                    "authorization": self.headers.get("Authorization")})
            return self._send(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{sha}", "commitOid": sha,
                                    "pullRequestUrl": None})

    return Handler
