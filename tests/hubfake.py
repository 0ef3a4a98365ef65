"""A FAKE of the Hugging Face Hub's documented HTTP API, served on 127.0.0.1, for tests of our Hub source.

THIS IS A FAKE, and the only fake this project allows: everything else in the tests is real. The real
Hub cannot be reached from CI, so the tests of our Hub source talk to this server instead, through the
real ``huggingface_hub`` (2.4.0) with ``endpoint=fake.url``. It is kept faithful to what that library
really sends and reads: tests/unit/test_hubfake.py drives the real library against it, records the
requests the library sends and asserts on them (paths, methods, key headers, bodies), so a release of
huggingface_hub that changes its requests, or the answers it expects, fails there first. Where the
Hub's behaviour is not written down in huggingface_hub's source or docs, the comment says where it
comes from.

Served (model repos only, ids ``namespace/name``; revisions are branch names, tag names, full commit
shas and ``refs/heads/*``, ``refs/tags/*``, ``refs/pr/N``, URL-encoded as the library sends them)::

    GET  /api/whoami-v2
    POST /api/repos/create                          DELETE /api/repos/delete
    POST /api/validate-yaml
    GET  /api/models/{repo}[/revision/{rev}]        model info (?blobs=true: sizes, blob ids, lfs)
    GET  /api/models/{repo}/refs                    (?include_prs=1)
    GET  /api/models/{repo}/tree/{rev}[/{path}]     (?recursive, ?expand; Link-header pagination)
    POST /api/models/{repo}/paths-info/{rev}        (form: paths, expand)
    POST /api/models/{repo}/preupload/{rev}         uploadMode lfs | regular, shouldIgnore, oid
    POST /api/models/{repo}/commit/{rev}            application/x-ndjson; parentCommit; ?create_pr=1
    POST /api/models/{repo}/tag/{rev}               DELETE /api/models/{repo}/tag/{tag}
    POST /api/models/{repo}/branch/{branch}         DELETE /api/models/{repo}/branch/{branch}
    HEAD|GET /{repo}/resolve/{rev}/{path}           Range -> 206; LFS files: 302 to the CDN
    POST /{repo}.git/info/lfs/objects/batch         LFS "basic" transfer only
    POST /{repo}.git/info/lfs/objects/verify

Two listening sockets on 127.0.0.1 in one uvicorn thread: the Hub (``FakeHub.url``) and a "CDN"
(``FakeHub.cdn_url``: another origin) to which the Hub sends LFS downloads and uploads with signed
URLs, as huggingface.co sends them to its CDN and S3. Being another origin matters: huggingface_hub
stops following a HEAD redirect that leaves the Hub and reads the file's metadata from the 302 itself
(``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size``), and httpx drops ``Authorization`` on the way.
The CDN refuses a request that carries ``Authorization`` (S3 answers 400 to a signed URL with a
second credential), so a client that leaks the Hub token to the CDN fails here as it would there.

Which files are LFS is a rule (the real Hub follows ``.gitattributes`` and a 10 MB limit): a file is
stored as a regular git blob only if it is empty, or a small (<= 10 MB) text file named ``*.json``,
``*.md``, ``*.txt``, ``.gitattributes`` or ``.gitignore`` with no NUL byte in its first 512 bytes;
every other file is LFS. Git object ids are computed as git does: blob sha1 of the content (regular
files) or of the LFS pointer file (LFS files), tree and commit shas from git's object formats, so
``blob_id`` and ``ETag`` values can be checked independently with hashlib.

Errors are the Hub's: ``X-Error-Code`` RepoNotFound / RevisionNotFound / EntryNotFound and
``X-Error-Message`` headers, which ``huggingface_hub.utils.hf_raise_for_status`` maps to its
exceptions. A repo that is missing or private is answered 401 without a token (the Hub's way of not
telling which) and 404 with a valid token of a user who may not read it; an unknown token is 401
"Invalid credentials in Authorization header" on every endpoint, public repos included, which the
library leaves a plain ``HfHubHTTPError`` (401) rather than ``RepositoryNotFoundError``. A commit whose
``parentCommit`` is no longer the branch head is refused with 412 Precondition Failed, as the Hub's
compare-and-swap check does (huggingface/funes PR #69: "the hub returns 412 when the parent commit
has changed"); the library surfaces it as ``HfHubHTTPError``.

Xet: hf_xet is installed, and with it huggingface_hub uploads through Xet whatever the server says
(``_commit_api._upload_files`` and ``upload_folder`` choose on the client side). The fake offers no
Xet (its xet token endpoints answer 501), so the ``fake_hub`` fixture sets ``HF_HUB_DISABLE_XET``
(environment and ``huggingface_hub.constants``) and the library uses the LFS batch API with the
"basic" transfer. Downloads use Xet only when a HEAD answer carries ``X-Xet-Hash``; the fake never
sends it. The fixture also turns ``HF_HUB_OFFLINE`` off (environment and constants: huggingface_hub
reads both variables once, at import) and sets ``HF_ENDPOINT`` to the fake's URL.

Users and tokens (``FakeHub.tokens``, token -> user): ``hf_test_write`` and ``hf_test_read`` (read
only) are alice's, ``hf_test_mallory`` is mallory's; alice may write to ``alice/*`` and ``acme/*``
(``FakeHub.orgs``). Private repos are readable by those who may write to their namespace.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import pytest
import uvicorn
import yaml

DEFAULT_TOKENS: dict[str, str] = {"hf_test_write": "alice", "hf_test_read": "alice", "hf_test_mallory": "mallory"}
DEFAULT_READ_ONLY_TOKENS: frozenset[str] = frozenset({"hf_test_read"})
DEFAULT_ORGS: dict[str, frozenset[str]] = {"alice": frozenset({"acme"})}

REGULAR_SUFFIXES = (".json", ".md", ".txt")
REGULAR_NAMES = (".gitattributes", ".gitignore")
REGULAR_MAX_SIZE = 10 * 1000 * 1000  # the Hub sends files over 10 MB to LFS
MAX_API_BODY = 64 * 1024 * 1024  # an ndjson commit carries regular files base64-encoded
MAX_UPLOAD_BODY = 256 * 1024 * 1024
TREE_PAGE_SIZE = 1000  # the Hub's page sizes for tree listings (huggingface_hub's _iter_repo_tree_pages)
TREE_PAGE_SIZE_EXPANDED = 50
NAME_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")
GIT_AUTHOR = "Fake Hub <fake-hub@example.invalid>"
# A short form of the .gitattributes every new Hub repo gets in its "initial commit".
GITATTRIBUTES = b"".join(
    b"*.%s filter=lfs diff=lfs merge=lfs -text\n" % ext
    for ext in (b"bin", b"ckpt", b"h5", b"npy", b"onnx", b"pt", b"pth", b"safetensors", b"zip")
)
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # what hf_raise_for_status compares against


# --- git objects -----------------------------------------------------------------------------------------


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of `data` (what the Hub reports as a regular file's oid and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def is_lfs_file(path: str, size: int, sample: bytes) -> bool:
    """The fake's LFS rule (module docstring): everything but empty files and small text files."""
    if size == 0:
        return False
    name = path.rsplit("/", 1)[-1]
    text_name = name in REGULAR_NAMES or name.endswith(REGULAR_SUFFIXES)
    return not (text_name and size <= REGULAR_MAX_SIZE and b"\0" not in sample[:512])


@dataclass(frozen=True)
class HubFile:
    """One file of one commit, with the ids the Hub reports for it."""

    path: str
    content: bytes
    lfs: bool
    size: int = field(init=False)
    sha256: str = field(init=False)
    git_oid: str = field(init=False)  # blob sha1 of the content, or of the LFS pointer
    pointer_size: int = field(init=False)

    def __post_init__(self) -> None:
        sha256 = hashlib.sha256(self.content).hexdigest()
        pointer = lfs_pointer(sha256, len(self.content))
        object.__setattr__(self, "size", len(self.content))
        object.__setattr__(self, "sha256", sha256)
        object.__setattr__(self, "git_oid", git_blob_oid(pointer if self.lfs else self.content))
        object.__setattr__(self, "pointer_size", len(pointer))


def _depth(directory: str) -> int:
    return 0 if directory == "" else directory.count("/") + 1


def tree_oids(files: Mapping[str, HubFile]) -> dict[str, str]:
    """Git tree sha1 of every directory ("" is the root), as `git write-tree` would give."""
    entries: dict[str, dict[str, tuple[bytes, str]]] = {"": {}}
    for path, entry in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), {})
        entries["/".join(parts[:-1])][parts[-1]] = (b"100644", entry.git_oid)
    oids: dict[str, str] = {}
    for directory in sorted(entries, key=_depth, reverse=True):  # children before parents
        children = entries[directory]
        # git orders tree entries by name, a directory's name compared as if it ended with "/"
        ordered = sorted(children, key=lambda n: n + "/" if children[n][0] == b"40000" else n)
        body = b"".join(b"%s %s\0" % (children[n][0], n.encode()) + bytes.fromhex(children[n][1]) for n in ordered)
        oid = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        oids[directory] = oid
        if directory:
            parent, _, name = directory.rpartition("/")
            entries[parent][name] = (b"40000", oid)
    return oids


def commit_oid(tree: str, parent: str | None, title: str, description: str, seq: int) -> str:
    """A git commit sha1 over the tree, the parent and the message (`seq` stands in for the time)."""
    lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
    lines += [f"author {GIT_AUTHOR} {seq} +0000", f"committer {GIT_AUTHOR} {seq} +0000", "", title]
    body = ("\n".join(lines) + ("\n\n" + description if description else "") + "\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def _iso(moment: datetime) -> str:
    """The Hub's timestamps: 2024-01-31T12:00:00.000Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class _Commit:
    oid: str
    parent: str | None
    files: dict[str, HubFile]
    title: str
    description: str
    date: datetime
    dirs: dict[str, str]  # directory -> tree oid ("" is the root)


@dataclass
class _Repo:
    repo_id: str
    private: bool
    uid: str
    created_at: datetime
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tag_messages: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # the repo's LFS store: sha256 -> content
    served_instead: dict[str, bytes] = field(default_factory=dict)  # FakeHub.corrupt: sha256 / git oid -> bytes

    def resolve(self, revision: str) -> str | None:
        """A revision to a commit sha, in git's order: full sha, full ref name, tag, branch."""
        if HEX40.fullmatch(revision):
            return revision if revision in self.commits else None
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix):
                return refs.get(revision[len(prefix) :])
        if revision.startswith("refs/pr/"):
            number = revision[len("refs/pr/") :]
            return self.pull_requests.get(int(number)) if number.isdigit() else None
        return self.tags.get(revision) or self.branches.get(revision)


# --- requests, answers, errors ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the fake received it (the Authorization header reduced to a prefix of the token)."""

    origin: str  # "hub" or "cdn"
    method: str
    path: str  # as sent: percent-encoding kept (refs%2Fpr%2F1)
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # the ones that matter (RECORDED_HEADERS), lower-case names
    auth: str | None  # None, or "Bearer hf_test_w…" (scheme, first 9 characters of the token)
    user: str | None  # the user the token belongs to, None without a known token
    body: Any  # JSON / form (dict of lists) / ndjson (list of lines) / CDN upload ({"size", "sha256"})
    endpoint: str | None = None  # the handler that answered (None: no route)
    status: int = 0


RECORDED_HEADERS = (
    "accept",
    "accept-encoding",
    "content-type",
    "range",
    "if-none-match",
    "if-range",
    "user-agent",
    "x-hf-download-counter",
)


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_answer(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> _Answer:
    return _Answer(
        status, json.dumps(data).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


class _HubError(Exception):
    """An error answer, as the Hub sends it: status, X-Error-Code / X-Error-Message, {"error": ...}."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def answer(self) -> _Answer:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return _json_answer({"error": self.message}, self.status, headers)


def _repo_not_found(authenticated: bool) -> _HubError:
    # Without a token the Hub answers 401 for a missing or private repo, with a token 404; both RepoNotFound.
    if authenticated:
        return _HubError(404, "Repository not found", "RepoNotFound")
    return _HubError(401, "Invalid username or password.", "RepoNotFound")


def _revision_not_found(revision: str) -> _HubError:
    return _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _entry_not_found(commit: str, message: str = "Entry not found") -> _HubError:
    # X-Repo-Commit lets hf_hub_download cache the miss under .no_exist/<commit>/
    return _HubError(404, message, "EntryNotFound", {"X-Repo-Commit": commit})


@dataclass
class _Call:
    """An incoming request, parsed: what every handler receives."""

    origin: str
    method: str
    path: str
    query: dict[str, str]
    query_pairs: list[tuple[str, str]]  # every parameter, repeated ones too
    headers: dict[str, str]
    body: bytes
    token: str | None
    user: str | None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _HubError(400, f"invalid JSON body: {exc}") from exc

    def json_object(self) -> dict[str, Any]:
        payload = self.json()
        if not isinstance(payload, dict):
            raise _HubError(400, "expected a JSON object")
        return payload

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


@dataclass(frozen=True)
class _Route:
    origin: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str


_REPO = r"(?P<repo>[^/]+/[^/]+?)"


def _route(origin: str, methods: str, pattern: str, handler: str) -> _Route:
    return _Route(origin, frozenset(methods.split()), re.compile(pattern.replace("{repo}", _REPO)), handler)


ROUTES = (
    _route("hub", "GET", r"/api/whoami-v2", "whoami"),
    _route("hub", "POST", r"/api/repos/create", "create_repo"),
    _route("hub", "DELETE", r"/api/repos/delete", "delete_repo"),
    _route("hub", "POST", r"/api/validate-yaml", "validate_yaml"),
    _route("hub", "GET", r"/api/models", "list_models"),
    _route("hub", "GET", r"/api/models/{repo}", "model_info"),
    _route("hub", "GET", r"/api/models/{repo}/revision/(?P<rev>[^/]+)", "model_info"),
    _route("hub", "GET", r"/api/models/{repo}/refs", "refs"),
    _route("hub", "GET", r"/api/models/{repo}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    _route("hub", "POST", r"/api/models/{repo}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    _route("hub", "POST", r"/api/models/{repo}/preupload/(?P<rev>[^/]+)", "preupload"),
    _route("hub", "POST", r"/api/models/{repo}/commit/(?P<rev>[^/]+)", "commit"),
    _route("hub", "POST", r"/api/models/{repo}/tag/(?P<rev>[^/]+)", "create_tag"),
    _route("hub", "DELETE", r"/api/models/{repo}/tag/(?P<tag>[^/]+)", "delete_tag"),
    _route("hub", "POST", r"/api/models/{repo}/branch/(?P<branch>[^/]+)", "create_branch"),
    _route("hub", "DELETE", r"/api/models/{repo}/branch/(?P<branch>[^/]+)", "delete_branch"),
    _route("hub", "GET", r"/api/models/{repo}/xet-(?:read|write)-token(?:/(?P<rev>[^/]*))?", "xet_token"),
    _route("hub", "GET HEAD", r"/{repo}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    _route("hub", "POST", r"/{repo}\.git/info/lfs/objects/batch", "lfs_batch"),
    _route("hub", "POST", r"/{repo}\.git/info/lfs/objects/verify", "lfs_verify"),
    _route("cdn", "GET HEAD", r"/lfs/{repo}/(?P<sha256>[0-9a-f]{64})", "cdn_download"),
    _route("cdn", "PUT", r"/upload/{repo}/(?P<sha256>[0-9a-f]{64})", "cdn_upload"),
)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one satisfiable range of a `Range: bytes=...` header, inclusive; None to send the whole body.
    Raises 416 when the range starts past the end; a header it cannot parse, or several ranges, is ignored
    (RFC 9110 allows that)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise _HubError(416, "Requested Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _serve_bytes(call: _Call, data: bytes, headers: dict[str, str]) -> _Answer:
    """200 with the bytes, or 206 with the requested range (GET and HEAD alike)."""
    headers = {"Accept-Ranges": "bytes", **headers}
    span = _byte_range(call.headers.get("range"), len(data))
    if span is None:
        return _Answer(200, data, headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return _Answer(206, data[start : end + 1], headers)


def _front_matter(readme: bytes) -> dict[str, Any] | None:
    """The YAML metadata block at the top of a README.md (the model card data)."""
    text = readme.decode("utf-8", errors="replace")
    match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not match:
        return None
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else None


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or len(path.encode()) > 1000:
        raise _HubError(400, f"invalid path in repo: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise _HubError(400, f"invalid path in repo: {path!r}")
    return path


def _check_ref_name(name: Any, what: str) -> str:
    if (
        not isinstance(name, str)
        or not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", name)
        or name.startswith(("refs/", "/", "-", "."))
        or ".." in name
        or name.endswith(("/", ".lock"))
        or HEX40.fullmatch(name)
    ):
        raise _HubError(400, f"Invalid reference for a {what}: {name!r}")
    return name


# --- the fake --------------------------------------------------------------------------------------------


class FakeHub:
    """The fake Hub: its state, the Python API tests use to prepare and inspect it, and its HTTP handlers."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._repos: dict[str, _Repo] = {}
        self._requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # tracebacks of the fake's own failures (answered 501)
        self.tokens: dict[str, str] = dict(DEFAULT_TOKENS)
        self.read_only_tokens: set[str] = set(DEFAULT_READ_ONLY_TOKENS)
        self.orgs: dict[str, set[str]] = {user: set(orgs) for user, orgs in DEFAULT_ORGS.items()}
        self.tree_page_size: int | None = None  # None: the Hub's (1000, or 50 with expand)
        self._seq = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._hub_port = 0
        self._cdn_port = 0

    # --- server lifecycle ---

    def start(self) -> FakeHub:
        """Listen on two ports of 127.0.0.1 (the Hub and its CDN) in a background thread."""
        sockets = []
        for _ in range(2):
            # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else 40 ms delayed-ACK stalls)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        self._hub_port, self._cdn_port = (s.getsockname()[1] for s in sockets)
        config = uvicorn.Config(
            self._asgi, interface="asgi3", lifespan="off", http="h11", ws="none", log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": sockets}, name="fake-hub", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Hub did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the server (state is kept)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """The Hub's endpoint: pass it as `endpoint=` to every huggingface_hub call."""
        return f"http://127.0.0.1:{self._hub_port}"

    @property
    def cdn_url(self) -> str:
        """The CDN's origin (LFS downloads and uploads are redirected there)."""
        return f"http://127.0.0.1:{self._cdn_port}"

    def reset(self) -> None:
        """Forget every repo, request and error; tokens, orgs and page size back to the defaults."""
        with self._lock:
            self._repos.clear()
            self._requests.clear()
            self.errors.clear()
            self.tokens = dict(DEFAULT_TOKENS)
            self.read_only_tokens = set(DEFAULT_READ_ONLY_TOKENS)
            self.orgs = {user: set(orgs) for user, orgs in DEFAULT_ORGS.items()}
            self.tree_page_size = None

    # --- the Python API for tests ---

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        private: bool = False,
        branch: str = "main",
        message: str = "Upload files",
    ) -> str:
        """Create a repo (its "initial commit" holds .gitattributes, as on the Hub), then commit `files` to
        `branch` (created from the initial commit when it is not main); returns the last commit's sha."""
        with self._lock:
            if repo_id in self._repos:
                raise ValueError(f"{repo_id} exists already")
            repo = self._create_repo(repo_id, private)
            if branch != "main":
                repo.branches[_check_ref_name(branch, "branch")] = repo.branches["main"]
            return self.commit(repo_id, files, branch=branch, message=message) if files else repo.branches[branch]

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        branch: str = "main",
        delete: Iterable[str] = (),
        message: str = "Update files",
    ) -> str:
        """A new commit on top of `branch`: `files` added or replaced, `delete` removed; returns its sha."""
        with self._lock:
            repo = self._repo(repo_id)
            head = repo.branches[branch]
            tree = dict(repo.commits[head].files)
            for path in delete:
                del tree[path]
            for path, content in files.items():
                tree[_check_path(path)] = self._store(repo, path, content)
            oid = self._new_commit(repo, head, tree, message, "")
            repo.branches[branch] = oid
            return oid

    def tag(self, repo_id: str, tag: str, revision: str = "main", message: str | None = None) -> str:
        """Tag a revision; returns the tagged commit."""
        with self._lock:
            repo = self._repo(repo_id)
            oid = self._resolve(repo, revision)
            repo.tags[_check_ref_name(tag, "tag")] = oid
            if message:
                repo.tag_messages[tag] = message
            return oid

    def branch(self, repo_id: str, name: str, revision: str = "main") -> str:
        """Create (or move) a branch to a revision; returns its commit."""
        with self._lock:
            repo = self._repo(repo_id)
            oid = self._resolve(repo, revision)
            repo.branches[_check_ref_name(name, "branch")] = oid
            return oid

    def file(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        """A file's recorded content at a revision."""
        return self.entry(repo_id, path, revision).content

    def entry(self, repo_id: str, path: str, revision: str = "main") -> HubFile:
        """A file at a revision, with its sha256, git oid and LFS-ness."""
        with self._lock:
            repo = self._repo(repo_id)
            return repo.commits[self._resolve(repo, revision)].files[path]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file at a revision, path -> content."""
        with self._lock:
            repo = self._repo(repo_id)
            return {p: f.content for p, f in repo.commits[self._resolve(repo, revision)].files.items()}

    def head(self, repo_id: str, branch: str = "main") -> str:
        with self._lock:
            return self._repo(repo_id).branches[branch]

    def tags(self, repo_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._repo(repo_id).tags)

    def branches(self, repo_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._repo(repo_id).branches)

    def repo_exists(self, repo_id: str) -> bool:
        with self._lock:
            return repo_id in self._repos

    def is_private(self, repo_id: str) -> bool:
        with self._lock:
            return self._repo(repo_id).private

    def lfs_objects(self, repo_id: str) -> dict[str, int]:
        """The repo's LFS store: sha256 -> size (what uploads have put there)."""
        with self._lock:
            return {sha: len(data) for sha, data in self._repo(repo_id).lfs.items()}

    def corrupt(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> None:
        """Serve `data` for this file from now on while every listing, HEAD and sha256 keeps the recorded one
        (LFS files: what the CDN sends; regular files: what resolve sends)."""
        with self._lock:
            repo = self._repo(repo_id)
            entry = repo.commits[self._resolve(repo, revision)].files[path]
            repo.served_instead[entry.sha256 if entry.lfs else entry.git_oid] = data

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- state helpers ---

    def _repo(self, repo_id: str) -> _Repo:
        try:
            return self._repos[repo_id]
        except KeyError:
            raise KeyError(f"no repo {repo_id} on the fake Hub") from None

    def _resolve(self, repo: _Repo, revision: str) -> str:
        oid = repo.resolve(revision)
        if oid is None:
            raise _revision_not_found(revision)
        return oid

    def _create_repo(self, repo_id: str, private: bool) -> _Repo:
        namespace, _, name = repo_id.partition("/")
        if not (NAME_PART.fullmatch(namespace) and NAME_PART.fullmatch(name)) or "--" in repo_id or ".." in repo_id:
            raise _HubError(400, f"Invalid repo name: {repo_id!r}")
        repo = _Repo(repo_id, private, secrets.token_hex(12), datetime.now(timezone.utc))
        gitattributes = HubFile(".gitattributes", GITATTRIBUTES, lfs=False)
        repo.branches["main"] = self._new_commit(repo, None, {".gitattributes": gitattributes}, "initial commit", "")
        self._repos[repo_id] = repo
        return repo

    def _store(self, repo: _Repo, path: str, content: bytes) -> HubFile:
        entry = HubFile(path, content, lfs=is_lfs_file(path, len(content), content))
        if entry.lfs:
            repo.lfs[entry.sha256] = content
        return entry

    def _new_commit(self, repo: _Repo, parent: str | None, files: dict[str, HubFile], title: str, text: str) -> str:
        names = set(files)
        for path in files:  # a path cannot be both a file and a directory
            if any(path[: i.start()] in names for i in re.finditer("/", path)):
                raise _HubError(400, f"a file is in the way of {path!r}")
        self._seq += 1
        dirs = tree_oids(files)
        oid = commit_oid(dirs[""], parent, title, text, self._seq)
        repo.commits[oid] = _Commit(oid, parent, files, title, text, datetime.now(timezone.utc), dirs)
        return oid

    def _may_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs.get(user, ()))

    def _readable(self, call: _Call, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None or (repo.private and not self._may_write(call.user, repo_id.split("/")[0])):
            raise _repo_not_found(call.user is not None)
        return repo

    def _writable(self, call: _Call, repo_id: str) -> _Repo:
        if call.user is None:
            raise _repo_not_found(False)
        repo = self._readable(call, repo_id)
        if call.token in self.read_only_tokens or not self._may_write(call.user, repo_id.split("/")[0]):
            raise _HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _cdn_signature(self, method: str, repo_id: str, sha256: str, size: int) -> str:
        message = f"{method}:{repo_id}:{sha256}:{size}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _cdn_link(self, method: str, repo_id: str, sha256: str, size: int, extra: Mapping[str, str]) -> str:
        """A signed CDN URL, as the Hub hands out (S3-style query)."""
        kind = "lfs" if method == "GET" else "upload"
        query = {
            **extra,
            "X-Amz-Expires": "3600",
            "X-Amz-Signature": self._cdn_signature(method, repo_id, sha256, size),
        }
        return f"{self.cdn_url}/{kind}/{repo_id}/{sha256}?{urlencode(query)}"

    def _entry_json(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict[str, Any]:
        """One tree / paths-info entry, as the Hub lists it."""
        entry = commit.files.get(path)
        if entry is None:
            data: dict[str, Any] = {"type": "directory", "oid": commit.dirs[path], "size": 0, "path": path}
        else:
            data = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        if expand:
            last = self._last_commit(repo, commit, path)
            data["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
            if entry is not None:
                data["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return data

    def _last_commit(self, repo: _Repo, commit: _Commit, path: str) -> _Commit:
        """The oldest ancestor since which `path` has had its current content."""

        def oid_at(c: _Commit) -> str | None:
            return c.files[path].git_oid if path in c.files else c.dirs.get(path)

        current = oid_at(commit)
        while commit.parent is not None and oid_at(repo.commits[commit.parent]) == current:
            commit = repo.commits[commit.parent]
        return commit

    # --- ASGI ---

    async def _asgi(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        limit = MAX_UPLOAD_BODY if scope["method"] == "PUT" else MAX_API_BODY
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size <= limit:
                chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        answer = self._handle(scope, b"".join(chunks), too_large=size > limit)
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in answer.headers.items()]
        headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})  # uvicorn drops it for HEAD

    def _handle(self, scope: dict[str, Any], body: bytes, too_large: bool) -> _Answer:
        origin = "cdn" if scope["server"][1] == self._cdn_port else "hub"
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        query_pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        query = dict(query_pairs)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        authorization = headers.get("authorization")
        token = authorization[len("Bearer ") :] if authorization and authorization.startswith("Bearer ") else None
        record = RecordedRequest(
            origin=origin,
            method=scope["method"],
            path=raw_path,
            query=query,
            headers={k: v for k, v in headers.items() if k in RECORDED_HEADERS},
            auth=None if authorization is None else authorization.split(" ", 1)[0] + " " + (token or "")[:9] + "…",
            user=self.tokens.get(token) if token else None,
            body=_body_for_record(origin, scope["method"], headers.get("content-type", ""), body),
        )
        with self._lock:
            self._requests.append(record)
            try:
                answer = self._dispatch(record, query_pairs, headers, body, token, too_large)
            except _HubError as exc:
                answer = exc.answer()
            except Exception:
                self.errors.append(traceback.format_exc())
                answer = _HubError(501, "fake Hub internal error (see FakeHub.errors)").answer()
            record.status = answer.status
        return answer

    def _dispatch(
        self,
        record: RecordedRequest,
        query_pairs: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
        token: str | None,
        too_large: bool,
    ) -> _Answer:
        for route in ROUTES:
            match = route.pattern.fullmatch(record.path) if route.origin == record.origin else None
            if match and record.method in route.methods:
                break
        else:
            return _json_answer({"error": "Sorry, we can't find the page you are looking for."}, 404)
        record.endpoint = route.handler
        if too_large:
            raise _HubError(413, "Payload Too Large")
        if record.origin == "cdn":
            if record.auth is not None:  # S3 refuses a second credential next to the signed query
                raise _HubError(400, "Only one auth mechanism allowed")
        elif record.auth is not None and (token is None or token not in self.tokens):
            raise _HubError(401, INVALID_CREDENTIALS)
        call = _Call(
            record.origin, record.method, record.path, record.query, query_pairs, headers, body, token, record.user
        )
        params = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
        handler: Callable[..., _Answer] = getattr(self, "_on_" + route.handler)
        return handler(call, **params)

    # --- handlers: one per endpoint ---

    def _on_whoami(self, call: _Call) -> _Answer:
        if call.user is None:
            raise _HubError(401, "Invalid username or password.")
        role = "read" if call.token in self.read_only_tokens else "write"
        orgs = sorted(self.orgs.get(call.user, ()))
        return _json_answer(
            {
                "type": "user",
                "id": hashlib.sha1(call.user.encode()).hexdigest()[:24],
                "name": call.user,
                "fullname": call.user.title(),
                "email": f"{call.user}@example.invalid",
                "emailVerified": True,
                "isPro": False,
                "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": role} for org in orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake-hub", "role": role}},
            }
        )

    def _on_create_repo(self, call: _Call) -> _Answer:
        if call.user is None:
            raise _HubError(401, "Invalid username or password.")
        payload = call.json_object()
        if payload.get("type") not in (None, "model"):
            raise _HubError(400, "this fake Hub serves model repos only")
        namespace = payload.get("organization") or call.user
        repo_id = f"{namespace}/{payload.get('name')}"
        if call.token in self.read_only_tokens or not self._may_write(call.user, namespace):
            raise _HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        if repo_id in self._repos:
            return _json_answer({"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}, 409)
        private = payload.get("visibility") == "private" or payload.get("private") is True
        repo = self._create_repo(repo_id, private)
        return _json_answer({"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo.uid})

    def _on_delete_repo(self, call: _Call) -> _Answer:
        payload = call.json_object()
        repo_id = f"{payload.get('organization') or call.user}/{payload.get('name')}"
        self._writable(call, repo_id)
        del self._repos[repo_id]
        return _Answer(200, b"", {"Content-Type": "text/plain; charset=utf-8"})

    def _on_validate_yaml(self, call: _Call) -> _Answer:
        content = call.json_object().get("content", "")
        try:
            _front_matter(str(content).encode())
        except yaml.YAMLError as exc:
            return _json_answer({"errors": [{"message": f"Invalid YAML: {exc}"}], "warnings": []}, 400)
        return _json_answer({"errors": [], "warnings": []})

    def _on_model_info(self, call: _Call, repo: str, rev: str | None = None) -> _Answer:
        r = self._readable(call, repo)
        commit = r.commits[self._resolve(r, rev or "main")]
        card = _front_matter(commit.files["README.md"].content) if "README.md" in commit.files else None
        if call.flag("blobs"):
            siblings = [
                {
                    "rfilename": f.path,
                    "size": f.size,
                    "blobId": f.git_oid,
                    **({"lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}} if f.lfs else {}),
                }
                for f in sorted(commit.files.values(), key=lambda f: f.path)
            ]
        else:
            siblings = [{"rfilename": path} for path in sorted(commit.files)]
        tags = [str(t) for t in (card or {}).get("tags") or []]
        if any(p.endswith(".safetensors") for p in commit.files):
            tags.append("safetensors")
        info: dict[str, Any] = {
            "_id": r.uid,
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(r.created_at),
            "private": r.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [*tags, "region:us"],
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if card is not None:
            info["cardData"] = card
            if card.get("library_name"):
                info["library_name"] = card["library_name"]
            if card.get("pipeline_tag"):
                info["pipeline_tag"] = card["pipeline_tag"]
        expand = [v for k, v in call.query_pairs if k in ("expand", "expand[]")]
        if expand:  # only the properties asked for
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        return _json_answer(info)

    def _on_list_models(self, call: _Call) -> _Answer:
        """Search (huggingface_hub's list_models): `search` a case-insensitive substring of the id, every
        `filter` a tag the model has (the Hub counts a card's library_name among them, and its
        `base_model:adapter:<id>` tags), `author` the namespace; private repos only for their readers."""
        search = call.query.get("search", "").lower()
        filters = [v for k, v in call.query_pairs if k == "filter"]
        author = call.query.get("author")
        limit = int(call.query.get("limit", "1000"))
        found = []
        for repo_id in sorted(self._repos):
            if search and search not in repo_id.lower():
                continue
            if author and repo_id.split("/")[0] != author:
                continue
            try:
                answer = self._on_model_info(call, repo_id)
            except _HubError:
                continue  # private, and not this caller's
            info = json.loads(answer.body)
            tags = set(info["tags"]) | ({info["library_name"]} if info.get("library_name") else set())
            if all(f in tags for f in filters):
                info.pop("siblings", None)
                found.append(info)
        return _json_answer(found[:limit])

    def _on_refs(self, call: _Call, repo: str) -> _Answer:
        r = self._readable(call, repo)

        def refs(kind: str, named: Mapping[Any, str]) -> list[dict[str, str]]:
            return [
                {"name": str(n), "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(named.items())
            ]

        data: dict[str, Any] = {"branches": refs("heads", r.branches), "converts": [], "tags": refs("tags", r.tags)}
        if call.flag("include_prs"):
            data["pullRequests"] = refs("pr", r.pull_requests)
        return _json_answer(data)

    def _on_tree(self, call: _Call, repo: str, rev: str, path: str | None = None) -> _Answer:
        r = self._readable(call, repo)
        commit = r.commits[self._resolve(r, rev)]
        directory = (path or "").strip("/")
        if directory not in commit.dirs:
            raise _entry_not_found(commit.oid, f"Entry not found: {directory} is not a directory")
        prefix = directory + "/" if directory else ""
        recursive, expand = call.flag("recursive"), call.flag("expand")
        paths = sorted(
            p
            for p in (*commit.dirs, *commit.files)
            if p.startswith(prefix) and p != directory and (recursive or "/" not in p[len(prefix) :])
        )
        page_size = self.tree_page_size or (TREE_PAGE_SIZE_EXPANDED if expand else TREE_PAGE_SIZE)
        cursor = call.query.get("cursor")
        try:
            start = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
        except (ValueError, binascii.Error) as exc:
            raise _HubError(400, "invalid cursor") from exc
        page = paths[start : start + page_size]
        headers = {}
        if start + page_size < len(paths):
            next_cursor = base64.urlsafe_b64encode(str(start + page_size).encode()).decode()
            query = urlencode({**call.query, "cursor": next_cursor})
            headers["Link"] = f'<{self.url}{call.path}?{query}>; rel="next"'
        return _json_answer([self._entry_json(r, commit, p, expand) for p in page], headers=headers)

    def _on_paths_info(self, call: _Call, repo: str, rev: str) -> _Answer:
        r = self._readable(call, repo)
        commit = r.commits[self._resolve(r, rev)]
        try:
            form = parse_qsl(call.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise _HubError(400, "invalid form body") from exc
        expand = any(k == "expand" and v.lower() in ("1", "true") for k, v in form)
        wanted = dict.fromkeys(v.strip("/") for k, v in form if k == "paths")
        found = [p for p in wanted if p in commit.files or (p and p in commit.dirs)]
        return _json_answer([self._entry_json(r, commit, p, expand) for p in found])

    def _on_preupload(self, call: _Call, repo: str, rev: str) -> _Answer:
        r = self._writable(call, repo)
        commit = r.commits[self._resolve(r, rev)]
        payload = call.json_object()
        files = payload.get("files")
        if not isinstance(files, list):
            raise _HubError(400, "expected {files: [...]}")
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in commit.files:
            gitignore = commit.files[".gitignore"].content.decode("utf-8", errors="replace")
        patterns = [p.strip() for p in (gitignore or "").splitlines() if p.strip() and not p.startswith("#")]
        answers = []
        for item in files:
            path = _check_path(item.get("path") if isinstance(item, dict) else None)
            try:
                sample = base64.b64decode(item.get("sample", ""), validate=True)
                size = int(item["size"])
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise _HubError(400, f"invalid preupload entry for {path}") from exc
            lfs = is_lfs_file(path, size, sample)
            existing = commit.files.get(path)
            answer: dict[str, Any] = {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": any(
                    fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], p) for p in patterns
                ),
            }
            if existing is not None:  # the library skips files whose oid did not change
                answer["oid"] = existing.sha256 if existing.lfs else existing.git_oid
            answers.append(answer)
        return _json_answer({"files": answers, "commitOid": commit.oid})

    def _on_commit(self, call: _Call, repo: str, rev: str) -> _Answer:
        r = self._writable(call, repo)
        try:
            lines = [json.loads(line) for line in call.body.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _HubError(400, f"invalid ndjson body: {exc}") from exc
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise _HubError(400, "the first ndjson line must be the header")
        header = lines[0].get("value") or {}
        summary, description = header.get("summary"), header.get("description") or ""
        if not isinstance(summary, str) or not summary.strip():
            raise _HubError(400, "a commit needs a summary")
        parent_commit = header.get("parentCommit")
        head, ref = self._commit_target(r, rev)
        pr_url: str | None = None
        if call.flag("create_pr"):  # a new PR ref from the parent commit (or the head)
            base = self._resolve(r, parent_commit) if parent_commit else head
            number = max(r.pull_requests, default=0) + 1
            ref, pr_url = ("pr", str(number)), f"{self.url}/{repo}/discussions/{number}"
        elif parent_commit is not None and not (
            isinstance(parent_commit, str) and len(parent_commit) >= 5 and head.startswith(parent_commit.lower())
        ):
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        else:
            base = head
        files = dict(r.commits[base].files)
        for line in lines[1:]:
            self._apply_operation(r, files, line, base)
        oid = self._new_commit(r, base, files, summary, description)
        if ref[0] == "pr":
            r.pull_requests[int(ref[1])] = oid
        else:
            r.branches[ref[1]] = oid
        return _json_answer(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.url}/{repo}/commit/{oid}",
                "pullRequestUrl": pr_url,
                "hookOutput": "",
            }
        )

    def _commit_target(self, repo: _Repo, rev: str) -> tuple[str, tuple[str, str]]:
        """The head a commit to `rev` goes on top of, and its ref ("branch", name) or ("pr", number):
        only branches and PRs take commits."""
        name = rev[len("refs/heads/") :] if rev.startswith("refs/heads/") else rev
        if name in repo.branches:
            return repo.branches[name], ("branch", name)
        number = rev[len("refs/pr/") :] if rev.startswith("refs/pr/") else ""
        if number.isdigit() and int(number) in repo.pull_requests:
            return repo.pull_requests[int(number)], ("pr", number)
        if repo.resolve(rev) is not None:
            raise _HubError(400, f"Invalid rev id: {rev} is not a branch")
        raise _revision_not_found(rev)

    def _apply_operation(self, repo: _Repo, files: dict[str, HubFile], line: Any, base: str) -> None:
        """One ndjson operation line (file, lfsFile, deletedFile, deletedFolder) applied to `files`."""
        key = line.get("key") if isinstance(line, dict) else None
        value = line.get("value") if isinstance(line, dict) else None
        if not isinstance(value, dict):
            raise _HubError(400, f"invalid commit operation: {line!r:.200}")
        path = _check_path(value.get("path", "").rstrip("/") if key == "deletedFolder" else value.get("path"))
        if key == "file":
            if value.get("encoding") != "base64":
                raise _HubError(400, "file content must be base64-encoded")
            try:
                content = base64.b64decode(value.get("content", ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _HubError(400, f"invalid base64 content for {path}") from exc
            if is_lfs_file(path, len(content), content):
                raise _HubError(400, f"Your push was rejected because {path} must be stored with LFS")
            files[path] = HubFile(path, content, lfs=False)
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo") != "sha256" or not isinstance(oid, str) or oid not in repo.lfs:
                raise _HubError(400, f"Your push was rejected because the LFS object of {path} was not uploaded")
            if size is not None and size != len(repo.lfs[oid]):
                raise _HubError(400, f"LFS object of {path}: size {size} is not the uploaded size")
            files[path] = HubFile(path, repo.lfs[oid], lfs=True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise _entry_not_found(base, f"A file with this name doesn't exist: {path}")
        elif key == "deletedFolder":
            inside = [p for p in files if p.startswith(path + "/")]
            if not inside:
                raise _entry_not_found(base, f"A file with this name doesn't exist: {path}/")
            for p in inside:
                del files[p]
        else:
            raise _HubError(400, f"unknown commit operation {key!r}")

    def _on_create_tag(self, call: _Call, repo: str, rev: str) -> _Answer:
        r = self._writable(call, repo)
        payload = call.json_object()
        tag = _check_ref_name(payload.get("tag"), "tag")
        oid = self._resolve(r, rev)
        if tag in r.tags:
            raise _HubError(409, f"Tag {tag} already exists")
        r.tags[tag] = oid
        if payload.get("message"):
            r.tag_messages[tag] = str(payload["message"])
        return _json_answer({})

    def _on_delete_tag(self, call: _Call, repo: str, tag: str) -> _Answer:
        r = self._writable(call, repo)
        if r.tags.pop(tag, None) is None:
            raise _revision_not_found(tag)
        r.tag_messages.pop(tag, None)
        return _json_answer({})

    def _on_create_branch(self, call: _Call, repo: str, branch: str) -> _Answer:
        r = self._writable(call, repo)
        name = _check_ref_name(branch, "branch")
        payload = call.json_object() if call.body else {}
        oid = self._resolve(r, str(payload.get("startingPoint") or "main"))
        if name in r.branches:
            raise _HubError(409, "Reference already exists")
        r.branches[name] = oid
        return _json_answer({})

    def _on_delete_branch(self, call: _Call, repo: str, branch: str) -> _Answer:
        r = self._writable(call, repo)
        if branch == "main":
            raise _HubError(403, "Cannot delete the default branch")
        if r.branches.pop(branch, None) is None:
            raise _revision_not_found(branch)
        return _json_answer({})

    def _on_xet_token(self, call: _Call, repo: str, rev: str | None = None) -> _Answer:
        raise _HubError(501, "this fake Hub offers no Xet: set HF_HUB_DISABLE_XET=1 (the fake_hub fixture does)")

    def _on_resolve(self, call: _Call, repo: str, rev: str, path: str) -> _Answer:
        r = self._readable(call, repo)
        commit = r.commits[self._resolve(r, rev)]
        entry = commit.files.get(path)
        if entry is None:
            raise _entry_not_found(commit.oid)
        name = path.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        if entry.lfs:  # the Hub redirects LFS files to its CDN; the file's metadata rides on the 302
            location = self._cdn_link(
                "GET", repo, entry.sha256, entry.size, {"response-content-disposition": disposition}
            )
            headers = {
                "Location": location,
                "X-Repo-Commit": commit.oid,
                "ETag": f'"{entry.sha256}"',
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
                "Content-Type": "text/plain; charset=utf-8",
            }
            return _Answer(302, f"Found. Redirecting to {location}".encode(), headers)
        data = r.served_instead.get(entry.git_oid, entry.content)
        content_type = "application/json; charset=utf-8" if name.endswith(".json") else "text/plain; charset=utf-8"
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.git_oid}"',
            "Content-Type": content_type,
            "Content-Disposition": disposition,
        }
        return _serve_bytes(call, data, headers)

    def _on_lfs_batch(self, call: _Call, repo: str) -> _Answer:
        r = self._writable(call, repo)
        payload = call.json_object()
        if payload.get("operation") != "upload":
            raise _HubError(422, "this fake Hub's LFS batch API takes uploads only")
        if "basic" not in (payload.get("transfers") or ["basic"]):
            raise _HubError(422, 'this fake Hub offers the "basic" LFS transfer only')
        objects = []
        for item in payload.get("objects") or []:
            oid, size = item.get("oid"), item.get("size")
            if not (isinstance(oid, str) and HEX64.fullmatch(oid) and isinstance(size, int) and size >= 0):
                error = {"code": 422, "message": "invalid object"}
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": error})
            elif oid in r.lfs and len(r.lfs[oid]) == size:
                objects.append({"oid": oid, "size": size})  # stored already: no action
            else:
                upload = self._cdn_link("PUT", repo, oid, size, {"size": str(size)})
                verify = f"{self.url}/{repo}.git/info/lfs/objects/verify"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {"upload": {"href": upload, "expires_in": 3600}, "verify": {"href": verify}},
                    }
                )
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        return _Answer(200, body, {"Content-Type": "application/vnd.git-lfs+json"})

    def _on_lfs_verify(self, call: _Call, repo: str) -> _Answer:
        r = self._writable(call, repo)
        payload = call.json_object()
        oid = payload.get("oid")
        if not isinstance(oid, str) or oid not in r.lfs or len(r.lfs[oid]) != payload.get("size"):
            raise _HubError(422, f"LFS object {oid} was not uploaded")
        return _json_answer({"success": True})

    def _on_cdn_download(self, call: _Call, repo: str, sha256: str) -> _Answer:
        r = self._repos.get(repo)
        data = r.lfs.get(sha256) if r is not None else None
        if r is None or data is None:
            raise _HubError(404, "NoSuchKey")
        if not hmac.compare_digest(
            call.query.get("X-Amz-Signature", ""), self._cdn_signature("GET", repo, sha256, len(data))
        ):
            raise _HubError(403, "SignatureDoesNotMatch")
        headers = {
            "ETag": f'"{sha256}"',
            "Content-Type": "binary/octet-stream",
            "Content-Disposition": call.query.get("response-content-disposition", "attachment"),
        }
        return _serve_bytes(call, r.served_instead.get(sha256, data), headers)

    def _on_cdn_upload(self, call: _Call, repo: str, sha256: str) -> _Answer:
        r = self._repos.get(repo)
        size = int(call.query["size"]) if call.query.get("size", "").isdigit() else -1
        signature = self._cdn_signature("PUT", repo, sha256, size)
        if r is None or not hmac.compare_digest(call.query.get("X-Amz-Signature", ""), signature):
            raise _HubError(403, "SignatureDoesNotMatch")
        if len(call.body) != size:
            raise _HubError(400, f"IncompleteBody: {len(call.body)} bytes received, {size} signed")
        if hashlib.sha256(call.body).hexdigest() != sha256:
            raise _HubError(400, "BadDigest: the content does not match its sha256")
        r.lfs[sha256] = call.body
        return _Answer(200, b"", {"ETag": f'"{hashlib.md5(call.body).hexdigest()}"'})


def _body_for_record(origin: str, method: str, content_type: str, body: bytes) -> Any:
    """What a recorded request keeps of its body: parsed JSON, form or ndjson; an upload's size and sha256."""
    if origin == "cdn":
        return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()} if method == "PUT" else None
    if not body:
        return None
    try:
        text = body.decode()
        if "ndjson" in content_type:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if "json" in content_type:
            return json.loads(text)
        if "x-www-form-urlencoded" in content_type:
            form: dict[str, list[str]] = {}
            for key, value in parse_qsl(text, keep_blank_values=True):
                form.setdefault(key, []).append(value)
            return form
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return {"size": len(body)}


# --- the pytest fixture ----------------------------------------------------------------------------------

_SHARED: FakeHub | None = None


def _shared_hub(config: pytest.Config) -> FakeHub:
    """One server per test session (started on first use, stopped when the session ends)."""
    global _SHARED
    if _SHARED is None or not _SHARED.running:
        _SHARED = FakeHub().start()
        config.add_cleanup(_SHARED.stop)
    return _SHARED


@pytest.fixture
def fake_hub(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fresh fake Hub for one test (the server is shared, its state is not), with huggingface_hub set to
    reach it: online, Xet off (module docstring), HF_ENDPOINT pointing at it. Fails the test if the fake
    itself failed while answering."""
    from huggingface_hub import constants

    hub = _shared_hub(request.config)
    hub.reset()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    if hub.errors:
        pytest.fail("the fake Hub failed while answering:\n" + "\n".join(hub.errors))
