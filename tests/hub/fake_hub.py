"""A local stand-in for the Hugging Face Hub: a real HTTP server on loopback speaking the part of the Hub API that
``huggingface_hub`` uses to create repositories and branches, upload (preupload, git-LFS batch + basic transfer,
NDJSON commit, pull requests) and download (repo info, ``resolve``).

Repositories live in memory: ``server.repos[repo_id].refs[ref]`` is the file map (path -> bytes) at that ref
(``main``, branches, ``refs/pr/N``), and ``server.requests`` logs every call. Writes need ``Authorization: Bearer
<token>``. Xet storage is not spoken: clients must run with ``HF_HUB_DISABLE_XET=1`` (then ``huggingface_hub`` uses
the git-LFS protocol, which the real Hub accepts as well).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub stores files of 10 MB and more in LFS whatever their name


@dataclass
class Commit:
    oid: str
    title: str
    description: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    refs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: dict[str, list[Commit]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit oid -> files
    lfs_paths: set[str] = field(default_factory=set)
    pulls: int = 0

    def files_at(self, revision: str) -> dict[str, bytes] | None:
        """The files at a ref or a commit oid."""
        return self.refs.get(revision, self.snapshots.get(revision))

    def head(self, ref: str) -> str:
        return self.commits[ref][-1].oid


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def _model_index_errors(index) -> list[str]:
    if index is None:
        return []
    errors = []
    for entry in index if isinstance(index, list) else [None]:
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("results"), list):
            errors.append("model-index entries need a name and a list of results")
            continue
        for result in entry["results"]:
            task, dataset, metrics = result.get("task", {}), result.get("dataset", {}), result.get("metrics")
            if "type" not in task or not {"name", "type"} <= set(dataset) or not isinstance(metrics, list):
                errors.append("a model-index result needs task.type, dataset.name/type and metrics")
            elif any(not {"type", "value"} <= set(m) for m in metrics):
                errors.append("a model-index metric needs a type and a value")
    return errors


def _commit_oid(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ---- plumbing ------------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and self.command != "HEAD":  # a HEAD answer has headers only, errors included
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), {"X-Error-Message": message})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._error(401, "Invalid credentials in Authorization header")
            return False
        return True

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.server.requests.append((method, self.path))
        with self.server.lock:
            try:
                self._dispatch(method, path, query)
            except KeyError as exc:
                self._error(404, f"not found: {exc}")

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    # ---- endpoints -----------------------------------------------------------------------------------------------
    def _dispatch(self, method: str, path: str, query: dict) -> None:
        segments = path.strip("/").split("/")
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch()
        if method == "PUT" and segments[0] == "lfs-upload":
            return self._lfs_upload(segments[1])
        if method == "POST" and path == "/lfs-verify":
            return self._lfs_verify()
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            repo = self.server.repos[f"{segments[2]}/{segments[3]}"]
            rest = segments[4:]
            if method == "GET" and not rest:
                return self._info(repo, "main")
            if method == "GET" and rest[0] == "revision":
                return self._info(repo, "/".join(rest[1:]))
            if method == "GET" and rest[0] == "tree":
                return self._tree(repo, "/".join(rest[1:]))
            if method == "POST" and rest[0] == "branch":
                return self._create_branch(repo, "/".join(rest[1:]))
            if method == "POST" and rest[0] == "preupload":
                return self._preupload(repo)
            if method == "POST" and rest[0] == "commit":
                return self._commit(repo, "/".join(rest[1:]), query.get("create_pr") == ["1"])
        if method in ("GET", "HEAD") and len(segments) >= 5 and segments[2] == "resolve":
            return self._resolve(f"{segments[0]}/{segments[1]}", segments[3:], head=method == "HEAD")
        self._error(404, f"no route for {method} {path}")

    def _create_repo(self) -> None:
        if not self._authorized():
            return
        payload = json.loads(self._body())
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.server.url}/{repo_id}"
        if repo_id in self.server.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(repo_id, private=payload.get("visibility") == "private")
        attributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        repo.refs["main"] = {".gitattributes": attributes}
        repo.commits["main"] = [Commit(_commit_oid(repo_id, "initial"), "initial commit", "")]
        repo.snapshots[repo.head("main")] = dict(repo.refs["main"])
        self.server.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        """The card's front matter must be a YAML mapping; a model-index must have the Hub's shape."""
        content = json.loads(self._body())["content"]
        errors = []
        if not content.startswith("---\n") or "\n---" not in content[4:]:
            errors.append("no YAML front matter")
        else:
            try:
                meta = yaml.safe_load(content[4 : content.index("\n---", 4)])
            except yaml.YAMLError as exc:
                meta, errors = None, [f"invalid YAML: {exc}"]
            if not errors and not isinstance(meta, dict):
                errors.append("metadata must be a mapping")
            elif not errors:
                errors.extend(_model_index_errors(meta.get("model-index")))
        if errors:
            return self._json(400, {"errors": [{"message": e} for e in errors]})
        self._json(200, {"warnings": []})

    def _create_branch(self, repo: Repo, branch: str) -> None:
        if not self._authorized():
            return
        if branch in repo.refs:
            return self._error(409, f"branch {branch} already exists")
        self._body()
        repo.refs[branch] = dict(repo.refs["main"])
        repo.commits[branch] = list(repo.commits["main"])
        self._json(200, {})

    def _preupload(self, repo: Repo) -> None:
        if not self._authorized():
            return
        files = json.loads(self._body())["files"]
        out = []
        for item in files:
            lfs = item["path"].endswith(LFS_SUFFIXES) or int(item["size"]) >= LFS_MIN_SIZE
            out.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._json(200, {"files": out})

    def _lfs_batch(self) -> None:
        if not self._authorized():
            return
        payload = json.loads(self._body())
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.server.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs-upload/{item['oid']}"},
                    "verify": {"href": f"{self.server.url}/lfs-verify"},
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "sha256 of the uploaded content does not match the oid")
        self.server.lfs[oid] = data
        self._json(200, {})

    def _lfs_verify(self) -> None:
        payload = json.loads(self._body())
        stored = self.server.lfs.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            return self._error(404, "object not stored")
        self._json(200, {})

    def _commit(self, repo: Repo, revision: str, create_pr: bool) -> None:
        if not self._authorized():
            return
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = lines[0]
        if header["key"] != "header":
            return self._error(400, "the first line must be the header")
        if revision not in repo.refs:
            return self._error(404, f"revision {revision} not found")
        files = dict(repo.refs[revision])
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                repo.lfs_paths.discard(value["path"])
            elif line["key"] == "lfsFile":
                content = self.server.lfs.get(value["oid"])
                if content is None or len(content) != value["size"]:
                    return self._error(400, f"LFS object of {value['path']} was not uploaded")
                files[value["path"]] = content
                repo.lfs_paths.add(value["path"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._error(400, f"unsupported commit operation {line['key']}")
        title = header["value"]["summary"]
        ref = revision
        pr_url = None
        if create_pr:
            repo.pulls += 1
            ref = f"refs/pr/{repo.pulls}"
            repo.commits[ref] = list(repo.commits[revision])
            pr_url = f"{self.server.url}/{repo.repo_id}/discussions/{repo.pulls}"
        oid = _commit_oid(repo.repo_id, ref, title, str(len(repo.commits[ref])))
        repo.refs[ref] = files
        repo.snapshots[oid] = dict(files)
        repo.commits[ref].append(Commit(oid, title, header["value"].get("description") or ""))
        self._json(
            200,
            {"commitUrl": f"{self.server.url}/{repo.repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url},
        )

    def _info(self, repo: Repo, revision: str) -> None:
        if revision not in repo.refs:
            return self._error(404, f"revision {revision} not found")
        files = repo.refs[revision]
        self._json(
            200,
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.head(revision),
                "private": repo.private,
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())],
            },
        )

    def _tree(self, repo: Repo, revision: str) -> None:
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"revision {revision} not found")
        entries = []
        for name, data in sorted(files.items()):
            entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if name in repo.lfs_paths:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._json(200, entries)

    def _resolve(self, repo_id: str, rest: list[str], head: bool) -> None:
        repo = self.server.repos[repo_id]
        # the revision may itself contain slashes (refs/pr/1)
        for cut in range(1, len(rest)):
            revision, name = "/".join(rest[:cut]), "/".join(rest[cut:])
            files = repo.files_at(revision)
            if files is not None and name in files:
                break
        else:
            return self._error(404, "Entry not found")
        data = files[name]
        commit = revision if revision in repo.snapshots else repo.head(revision)
        digest = hashlib.sha256(data).hexdigest() if name in repo.lfs_paths else hashlib.sha1(data).hexdigest()
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{digest}"',
            "X-Repo-Commit": commit,
            "Content-Length": str(len(data)),
        }
        if name in repo.lfs_paths:
            headers["X-Linked-Etag"] = f'"{digest}"'
            headers["X-Linked-Size"] = str(len(data))
        self._send(200, data, headers, head=head)


__all__ = ["FakeHub"]
