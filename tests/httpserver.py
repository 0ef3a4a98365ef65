"""A real static HTTP server for tests: Range, ETag/If-None-Match, HEAD and fault injection.

The registries the client downloads from are plain static file trees, so the tests serve
a directory over HTTP on 127.0.0.1 from a separate process (starlette ``StaticFiles``
under uvicorn) and steer faults through a small JSON control API.

Server side (runs in the child process)::

    python tests/httpserver.py --root DIR [--port 0] [--port-file F]
    python -m tests.httpserver --root DIR ...

The bound port is written to F (atomically) once uvicorn is accepting connections.

HTTP behaviour of file requests (GET/HEAD on any path outside ``/_control/``):

* 200 with ``ETag``, ``Last-Modified``, ``Content-Length``, ``Accept-Ranges: bytes``;
* 304 when ``If-None-Match`` matches (weak comparison, ``*`` too) or, without
  ``If-None-Match``, when ``If-Modified-Since`` is not older than the file;
* 206 with ``Content-Range`` for ``Range: bytes=...`` (``If-Range`` honoured, several ranges
  give ``multipart/byteranges``); 416 with ``Content-Range: bytes */SIZE`` when no range is
  satisfiable.  Starlette answers 400 to a Range header it cannot parse or whose unit is
  not ``bytes``; RFC 9110 section 14.2 says to ignore such a header, so ``_FileResponse``
  does that (200 with the whole file) and also just drops the unsatisfiable parts of a
  multi-range request.  HEAD with Range gets the headers a GET would (206);
* 404 for missing files and directories, 405 (with ``Allow``) for other methods.

Control API (JSON; never logged, never faulted):

* ``POST /_control/faults`` with a list of rules (or one rule) replaces the rule set::

      {"path": "<regex, re.search on the URL path>",
       "action": "status" | "drop" | "corrupt" | "delay",
       "status": 500,       # status: the status code sent instead of the file
       "retry_after": "2",  # status: optional Retry-After header sent with it (delta-seconds
                            # or an HTTP-date, sent as given)
       "after_bytes": 0,    # drop: body bytes sent before the TCP connection is cut;
                            # delay: body bytes sent before the pause (absent: pause
                            # before the response headers)
       "seconds": 1.0,      # delay: length of the pause
       "times": -1,         # matching requests affected before the rule expires; -1: forever
       "method": "GET"}     # optional: only requests with this method

  Each file request is affected by at most one rule: the first live rule that matches.
  ``drop`` writes the headers and ``after_bytes`` body bytes, then closes the connection
  without completing the message (httpx raises ``RemoteProtocolError``); if the body is
  shorter than ``after_bytes`` the whole body goes out and the connection is closed.
  ``corrupt`` XORs the first byte of every body chunk (64 KiB) with 0xFF: same length,
  different bytes, so only a hash check catches it.

  Hostile servers (each stops as soon as the client goes away):

  * ``endless``: 200 with a chunked body of ``b"x"`` that never ends (``size``: stop after that many
    bytes instead);
  * ``gzip``: the file itself, sent ``Content-Encoding: gzip`` (a well-behaved compressing host);
  * ``gzip_bomb``: 200, ``Content-Encoding: gzip``, the gzip of ``size`` zero bytes (default 1 GiB:
    about 1 MB on the wire), generated while sending;
  * ``drip``: the file's body ``chunk`` bytes at a time (default 1), ``seconds`` apart: a slow drip
    (chunk 1) or a slow but progressing download (a large chunk);
  * ``hang``: accepts the request and never answers (no headers, no body);
  * ``no_validators``: the file without ``ETag`` and ``Last-Modified`` (a host that sends neither).

  A server that dribbles its *headers* cannot be written in ASGI: ``RawServer`` (below) does that
  (``slow_headers``) and also ``no_answer`` at the TCP level.
* ``GET /_control/faults``: the live rules with their remaining ``times``.
* ``DELETE /_control/faults``: clear all rules.
* ``GET /_control/log``: ``[{"method", "path", "status", "range", "bytes_sent", "fault", "received"}]``
  for every file request answered so far, in completion order (``range`` is the request's
  Range header or null, ``bytes_sent`` the body bytes written, ``fault`` the action applied
  or null, ``received`` the server's ``time.monotonic()`` when the request arrived: compare
  entries with each other, e.g. to check that a client waited out a ``Retry-After``).
  An entry is recorded before the last body byte is written, so a client that
  has read a complete response always finds it in the log.
* ``DELETE /_control/log``: clear the log.
* ``POST /_control/auth`` with ``{"token": T}``: file requests without ``Authorization: Bearer T``
  get 401; ``DELETE /_control/auth`` lifts it. Log entries record each request's
  ``authorization`` header (or null).

Test side: ``StaticServer`` (below) and the pytest fixtures ``static_server_factory`` and
``static_server``; see their docstrings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
import zlib
from pathlib import Path
from typing import Any

CONTROL_PREFIX = "/_control/"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ACTIONS = ("status", "drop", "corrupt", "delay", "endless", "gzip", "gzip_bomb", "drip", "hang", "no_validators")
GENERATED = ("endless", "gzip", "gzip_bomb", "hang")  # answers that are not the file's own response
HOSTILE = (*GENERATED, "drip")  # these watch for the client going away and stop there

# --------------------------------------------------------------------------------------
# Server side.  starlette/uvicorn are imported lazily so that the test process (which
# only talks HTTP to the child) does not pay for them, and the child does not import
# httpx or pytest.
# --------------------------------------------------------------------------------------


class _DropConnection(Exception):
    """Raised mid-body by a ``drop`` fault; uvicorn then closes the transport."""


class _QuietDrops(logging.Filter):
    """Keep uvicorn from logging a traceback for every injected ``drop``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


def _parse_rule(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise ValueError(f"a rule must be an object, got {raw!r}")
    known = {"path", "action", "status", "after_bytes", "times", "seconds", "method", "retry_after", "size", "chunk"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown rule keys: {sorted(unknown)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    rule = {
        "path": str(raw.get("path", "")),
        "action": action,
        "status": int(raw.get("status", 500)),
        "after_bytes": raw.get("after_bytes"),
        "times": int(raw.get("times", -1)),
        "seconds": float(raw.get("seconds", 0.0)),
        "method": raw["method"].upper() if raw.get("method") else None,
        "retry_after": str(raw["retry_after"]) if raw.get("retry_after") is not None else None,
        "size": int(raw["size"]) if raw.get("size") is not None else None,
        "chunk": int(raw.get("chunk", 1)),
    }
    if rule["chunk"] < 1 or (rule["size"] is not None and rule["size"] < 0):
        raise ValueError("chunk must be >= 1 and size >= 0")
    re.compile(rule["path"])
    if not 100 <= rule["status"] <= 599:
        raise ValueError(f"bad status {rule['status']}")
    if rule["after_bytes"] is not None:
        rule["after_bytes"] = int(rule["after_bytes"])
        if rule["after_bytes"] < 0:
            raise ValueError("after_bytes must be >= 0")
    if action == "drop" and rule["after_bytes"] is None:
        rule["after_bytes"] = 0
    if rule["times"] == 0 or rule["times"] < -1:
        raise ValueError("times must be a positive count or -1")
    if rule["seconds"] < 0:
        raise ValueError("seconds must be >= 0")
    if rule["retry_after"] is not None and (action != "status" or "\n" in rule["retry_after"]):
        raise ValueError("retry_after goes with action 'status', as one header line")
    return rule


def build_app(root: str | os.PathLike[str]):
    """The ASGI app serving ``root`` read-only, plus the ``/_control/`` API."""
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RangeNotSatisfiable
    from starlette.staticfiles import NotModifiedResponse, StaticFiles

    class _FileResponse(FileResponse):
        @classmethod
        def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
            """RFC 9110 section 14: [] means "ignore the header, send 200"."""
            unit, sep, spec = http_range.partition("=")
            if not sep or unit.strip().lower() != "bytes":
                return []  # unknown unit or not a ranges-specifier at all: MUST ignore
            parts = [p.strip() for p in spec.split(",") if p.strip()]  # empty elements are allowed
            if not parts or len(parts) > cls.max_ranges:
                return []
            ranges: list[tuple[int, int]] = []
            for part in parts:
                m = re.fullmatch(r"(\d+)-(\d*)|-(\d+)", part)
                if m is None:
                    return []  # invalid syntax: ignore the whole header
                first, last, suffix = m.groups()
                if suffix is not None:  # "-N": the last N bytes; "-0" is unsatisfiable
                    start, end = (max(file_size - int(suffix), 0) if int(suffix) else file_size), file_size
                else:
                    start = int(first)
                    if last and int(last) < start:
                        return []  # last-pos < first-pos makes the specifier invalid
                    end = min(int(last) + 1, file_size) if last else file_size
                if start < file_size:  # satisfiable
                    ranges.append((start, end))
            if not ranges:
                raise RangeNotSatisfiable(file_size)
            ranges.sort()
            merged = [ranges[0]]
            for start, end in ranges[1:]:
                if start <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            return merged

    class _StaticFiles(StaticFiles):
        def file_response(self, full_path, stat_result, scope, status_code=200):  # as upstream, + _FileResponse
            response = _FileResponse(full_path, status_code=status_code, stat_result=stat_result)
            if self.is_not_modified(response.headers, Headers(scope=scope)):
                return NotModifiedResponse(response.headers)
            return response

    static = _StaticFiles(directory=os.fspath(root))
    faults: list[dict] = []
    log: list[dict] = []
    auth: dict[str, str | None] = {"token": None}  # when set, file requests need "Bearer <token>"

    def pick_rule(method: str, path: str) -> dict | None:
        for rule in faults:
            if rule["method"] not in (None, method) or not re.search(rule["path"], path):
                continue
            if rule["times"] > 0:
                rule["times"] -= 1
                if rule["times"] == 0:
                    faults.remove(rule)
            return rule
        return None

    async def control(scope, receive, send) -> None:
        request = Request(scope, receive)
        what, method = scope["path"][len(CONTROL_PREFIX) :], scope["method"]
        if what == "auth" and method in ("POST", "DELETE"):
            auth["token"] = (await request.json()).get("token") if method == "POST" else None
            await JSONResponse(auth)(scope, receive, send)
            return
        if what not in ("faults", "log"):
            response = JSONResponse({"error": "no such control endpoint"}, status_code=404)
        elif method == "GET":
            response = JSONResponse(faults if what == "faults" else log)
        elif method == "DELETE":
            (faults if what == "faults" else log).clear()
            response = JSONResponse([])
        elif method == "POST" and what == "faults":
            try:
                body = await request.json()
                new = [_parse_rule(r) for r in (body if isinstance(body, list) else [body])]
            except (ValueError, TypeError, re.error) as exc:
                response = JSONResponse({"error": str(exc)}, status_code=400)
            else:
                faults[:] = new
                response = JSONResponse(faults)
        else:
            allow = "GET, POST, DELETE" if what == "faults" else "GET, DELETE"
            response = JSONResponse({"error": "method not allowed"}, status_code=405, headers={"Allow": allow})
        await response(scope, receive, send)

    async def serve_file(scope, receive, send) -> None:
        received = time.monotonic()
        method, path = scope["method"], scope["path"]
        range_header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"range"), None)
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        rule = pick_rule(method, path)
        action = rule["action"] if rule else None
        entry = {
            "method": method,
            "path": path,
            "status": None,
            "range": range_header,
            "bytes_sent": 0,
            "fault": action,
            "authorization": authorization,
            "received": received,
        }
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                log.append(entry)

        # Body bytes after which the fault fires mid-body (drop, or delay with after_bytes).
        cut_at = rule["after_bytes"] if action in ("drop", "delay") else None
        fired = False
        gone = asyncio.Event()  # the client closed the connection: hostile answers stop there

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def pause(seconds: float) -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gone.wait(), seconds)

        pending = bytearray()  # drip: body bytes not sent yet (pieces span the app's messages)

        async def drip(body: bytes, more: bool) -> None:
            pending.extend(body)
            while len(pending) >= rule["chunk"] or (not more and pending):
                if gone.is_set():
                    raise _DropConnection(path)
                piece = bytes(pending[: rule["chunk"]])
                del pending[: rule["chunk"]]
                last = not more and not pending
                entry["bytes_sent"] += len(piece)
                if last:
                    record()
                await send({"type": "http.response.body", "body": piece, "more_body": not last})
                if not last:
                    await pause(rule["seconds"])

        async def faulty_send(message) -> None:
            nonlocal fired
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                if action == "no_validators":
                    dropped = (b"etag", b"last-modified")
                    message = {
                        **message,
                        "headers": [(k, v) for k, v in message["headers"] if k.lower() not in dropped],
                    }
                await send(message)
                return
            body = bytes(message.get("body", b""))
            more = message.get("more_body", False)
            if action == "drip" and (body or pending):
                await drip(body, more)
                return
            if action == "corrupt" and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            sent = entry["bytes_sent"]
            if cut_at is not None and not fired and (sent + len(body) >= cut_at or not more):
                fired = True
                head, body = body[: max(cut_at - sent, 0)], body[max(cut_at - sent, 0) :]
                entry["bytes_sent"] += len(head)
                if action == "drop":
                    record()
                    if head:
                        await send({"type": "http.response.body", "body": head, "more_body": True})
                    raise _DropConnection(path)
                if head:
                    await send({"type": "http.response.body", "body": head, "more_body": True})
                await asyncio.sleep(rule["seconds"])
            entry["bytes_sent"] += len(body)
            if not more:
                record()
            await send({"type": "http.response.body", "body": body, "more_body": more})

        watcher = asyncio.ensure_future(watch_disconnect()) if action in HOSTILE else None
        try:
            if action == "delay" and cut_at is None:
                await asyncio.sleep(rule["seconds"])
            if action in GENERATED:
                await generated(scope, faulty_send, rule, gone)
                return
            if auth["token"] is not None and authorization != f"Bearer {auth['token']}":
                response = PlainTextResponse("unauthorized\n", 401, headers={"WWW-Authenticate": "Bearer"})
            elif action == "status":
                headers = {"Retry-After": rule["retry_after"]} if rule["retry_after"] is not None else None
                text = f"injected fault: status {rule['status']}\n"
                response = PlainTextResponse(text, rule["status"], headers=headers)
            elif method not in ("GET", "HEAD"):
                response = PlainTextResponse("Method Not Allowed\n", 405, headers={"Allow": "GET, HEAD"})
            else:
                try:
                    response = await static.get_response(static.get_path(scope), scope)
                except HTTPException as exc:
                    response = PlainTextResponse(f"{exc.detail}\n", exc.status_code, headers=exc.headers)
            await response(scope, receive, faulty_send)
        finally:
            if watcher is not None:
                watcher.cancel()
            record()  # also when the client went away or the drop fired

    async def generated(scope, send, rule: dict, gone: asyncio.Event) -> None:
        """The hostile answers that are not the file: hang, endless, gzip (the file), gzip_bomb."""
        action, path = rule["action"], scope["path"]
        if action == "hang":
            await gone.wait()
            raise _DropConnection(path)
        headers = [(b"content-type", b"application/octet-stream")]
        if action == "gzip":
            full, stat_result = static.lookup_path(static.get_path(scope))
            if stat_result is None or not os.path.isfile(full):
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            body = gzip.compress(Path(full).read_bytes())
            headers += [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if action == "gzip_bomb":
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        total = rule["size"] if rule["size"] is not None else (1 << 30 if action == "gzip_bomb" else -1)
        block = bytes(1 << 20) if action == "gzip_bomb" else b"x" * 65536
        packer = zlib.compressobj(6, zlib.DEFLATED, 31) if action == "gzip_bomb" else None
        produced = 0
        while (total < 0 or produced < total) and not gone.is_set():
            piece = block if total < 0 else block[: total - produced]
            produced += len(piece)
            out = packer.compress(piece) if packer else piece
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            await asyncio.sleep(0)  # let the disconnect watcher run
        if gone.is_set():
            raise _DropConnection(path)
        await send({"type": "http.response.body", "body": packer.flush() if packer else b"", "more_body": False})

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith(CONTROL_PREFIX):
            await control(scope, receive, send)
        else:
            await serve_file(scope, receive, send)

    return app


def _watch_parent(parent_pid: int) -> None:
    """Exit when the process that started us is gone (no orphaned servers)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="directory to serve read-only")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--parent-pid", type=int, help="exit when this parent process dies")
    args = ap.parse_args(argv)

    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()

    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets (else 40 ms stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind the port right after a restart
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and args.port_file:
                tmp = f"{args.port_file}.tmp"
                Path(tmp).write_text(str(port))
                os.replace(tmp, args.port_file)

    config = uvicorn.Config(
        build_app(args.root),
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",  # the drop fault relies on uvicorn closing the transport mid-body
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    config.load()  # configures logging; add the filter afterwards
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    _Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------------------
# Test side.
# --------------------------------------------------------------------------------------


def _reap(state: dict, kill: bool = True) -> None:
    proc = state.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    state["proc"] = None


def _cleanup(state: dict, tmpdir: str) -> None:
    _reap(state)
    shutil.rmtree(tmpdir, ignore_errors=True)


class StaticServer:
    """``root`` served read-only at ``.url`` by a child process; see the module docstring::

        with StaticServer(tmp_path) as srv:          # start() on enter, close() on exit
            srv.set_faults([{"path": r"\\.json$", "action": "status", "status": 503, "times": 1}])
            httpx.get(srv.url + "/index.json")       # 503, then the file
            srv.requests_for(r"index\\.json$")       # the log entries for that path

    ``stop()`` then ``start()`` (or ``restart()``) brings it back on the same port, so
    ``.url`` stays valid; ``kill()`` is SIGKILL ("server down").  A restart starts with no
    fault rules and an empty log.  Control calls bypass proxy settings (loopback only).
    """

    def __init__(self, root: str | os.PathLike[str], *, port: int = 0, start_timeout: float = 10.0):
        self.root = Path(root)
        self.port = port or None
        self.start_timeout = start_timeout
        self._tmpdir = tempfile.mkdtemp(prefix="httpserver-")
        self._state: dict = {"proc": None}
        self._finalizer = weakref.finalize(self, _cleanup, self._state, self._tmpdir)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("StaticServer was never started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        proc = self._state["proc"]
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._state["proc"].pid if self.running else None

    def start(self) -> StaticServer:
        if self.running:
            return self
        if not self.root.is_dir():
            raise FileNotFoundError(f"not a directory: {self.root}")
        port_file = Path(self._tmpdir, "port")
        port_file.unlink(missing_ok=True)
        # -P (3.11+): keep tests/ off the child's sys.path so no test module shadows a library.
        cmd = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), os.path.abspath(__file__),
               "--root", str(self.root), "--port", str(self.port or 0), "--port-file", str(port_file),
               "--parent-pid", str(os.getpid())]  # fmt: skip
        with open(self.stderr_path, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self._state["proc"] = proc
        deadline = time.monotonic() + self.start_timeout
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                _reap(self._state)
                raise RuntimeError(f"test HTTP server did not start (exit {proc.returncode}):\n{self.stderr_text()}")
            time.sleep(0.01)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 5 s); a no-op when not running."""
        _reap(self._state, kill=False)

    def kill(self) -> None:
        """Abrupt death (SIGKILL): open connections are reset, nothing is flushed."""
        _reap(self._state, kill=True)

    def restart(self) -> StaticServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """``stop()`` and remove the private temp dir (the object cannot be started again)."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stderr_path(self) -> str:
        return os.path.join(self._tmpdir, "stderr.log")

    def stderr_text(self) -> str:
        try:
            return Path(self.stderr_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- control API --------------------------------------------------------------------

    def _control(self, method: str, what: str, body: Any = None) -> Any:
        # urllib, not httpx: no proxies, and no SSL context to build on every call.
        request = urllib.request.Request(
            f"{self.url}{CONTROL_PREFIX}{what}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method=method,
        )
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {CONTROL_PREFIX}{what}: {exc.code} {exc.read().decode()}") from None

    def set_faults(self, rules: list[dict] | dict) -> list[dict]:
        """Replace the fault rules; returns them as the server parsed them."""
        return self._control("POST", "faults", rules)

    def faults(self) -> list[dict]:
        """The live rules, with their remaining ``times``."""
        return self._control("GET", "faults")

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def log(self) -> list[dict]:
        return self._control("GET", "log")

    def require_token(self, token: str | None) -> None:
        """File requests then need `Authorization: Bearer <token>` (401 otherwise); None lifts it."""
        self._control("POST" if token else "DELETE", "auth", {"token": token} if token else None)

    def clear_log(self) -> None:
        self._control("DELETE", "log")

    def requests_for(self, path_regex: str, method: str | None = None) -> list[dict]:
        """Log entries whose path matches ``path_regex`` (re.search), optionally one method."""
        return [e for e in self.log() if re.search(path_regex, e["path"]) and method in (None, e["method"])]


class RawServer:
    """A TCP listener on 127.0.0.1 misbehaving below HTTP, served from threads of the test process::

        with RawServer("slow_headers", interval=0.1) as raw:   # raw.url, raw.connections
            ...

    ``no_answer``: accepts, reads the request, never writes a byte. ``slow_headers``: dribbles a status
    line and a header that never ends, one byte every ``interval`` seconds, so no single read waits
    long (only a total deadline stops it). ``connections`` counts accepted connections."""

    MODES = ("no_answer", "slow_headers")

    def __init__(self, mode: str, interval: float = 0.1) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}")
        self.mode, self.interval = mode, interval
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nX-Slow: "
        sent = 0
        conn.settimeout(self.interval)
        with conn:
            while not self._stop.is_set():
                try:
                    if self.mode == "no_answer":
                        if conn.recv(65536) == b"":
                            return  # the client gave up
                        continue
                    conn.sendall(head[sent : sent + 1] if sent < len(head) else b"a")
                    sent += 1
                    self._stop.wait(self.interval)
                except TimeoutError:
                    continue
                except OSError:
                    return


if __name__ != "__main__":  # the child process does not need pytest
    import pytest

    @pytest.fixture
    def static_server_factory():
        """``make(root) -> StaticServer`` (started); every server is stopped at teardown."""
        servers: list[StaticServer] = []

        def make(root: str | os.PathLike[str], **kwargs: Any) -> StaticServer:
            server = StaticServer(root, **kwargs)
            servers.append(server)
            return server.start()

        yield make
        for server in servers:
            server.close()

    @pytest.fixture
    def static_server(tmp_path, static_server_factory) -> StaticServer:
        """A started server over the empty directory ``tmp_path / "registry"`` (= ``.root``)."""
        root = tmp_path / "registry"
        root.mkdir()
        return static_server_factory(root)


if __name__ == "__main__":
    main()
