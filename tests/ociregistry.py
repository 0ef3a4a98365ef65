"""A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

Each fixture writes a config of its own (listening on loopback only, storage in a tmp dir), starts
`/usr/bin/docker-registry serve CONFIG`, waits until `GET /v2/` answers and stops it at teardown.
Variants: no auth (`oci_registry`), htpasswd basic auth (`oci_basic_registry`: the bcrypt file is made
by `htpasswd -nbB` from apache2-utils, or the `bcrypt` module when that is importable), and token auth
(`oci_token_registry`: the registry's `auth: token` with a tiny token server of our own on loopback that
issues ES256 JWTs signed with a key it generates, checked by the registry against the certificate in
its `rootcertbundle`). A missing binary fails the fixture with the install command (CI installs it).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

REGISTRY_BIN = os.environ.get("ADAPTERS_TEST_DOCKER_REGISTRY", "/usr/bin/docker-registry")
STARTUP_SECONDS = 30.0
SERVICE = "adapterhub-test-registry"
ISSUER = "adapterhub-test-issuer"
USERNAME = "alice"
PASSWORD = "s3cret-pass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_binary() -> str:
    if not (os.path.isfile(REGISTRY_BIN) and os.access(REGISTRY_BIN, os.X_OK)):
        pytest.fail(
            f"the OCI tests need Debian's docker-registry at {REGISTRY_BIN}: "
            "run `apt-get install -y docker-registry apache2-utils`",
            pytrace=False,
        )
    return REGISTRY_BIN


def bcrypt_line(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (the only kind docker-registry accepts)."""
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run([tool, "-nbB", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    try:
        import bcrypt
    except ImportError:
        pytest.fail("basic-auth tests need `htpasswd` (apt-get install apache2-utils) or `bcrypt`", pytrace=False)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}"


@dataclass
class OciRegistry:
    """A running registry: `host` is `127.0.0.1:PORT`, blobs live under `storage`."""

    host: str
    storage: Path
    process: subprocess.Popen[bytes]
    log: Path
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_data(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (distribution's filesystem layout)."""
        algo, hexdigest = digest.split(":", 1)
        return self.storage / "docker/registry/v2/blobs" / algo / hexdigest[:2] / hexdigest / "data"

    def tags_on_disk(self, repository: str) -> list[str]:
        tags = self.storage / "docker/registry/v2/repositories" / repository / "_manifests/tags"
        return sorted(p.name for p in tags.iterdir()) if tags.is_dir() else []


def start_registry(root: Path, auth: dict[str, Any] | None = None, **extra: Any) -> OciRegistry:
    """Start docker-registry with a config of our own; returns once `GET /v2/` answers."""
    binary = _require_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "adapterhub-tests"},
    }
    if auth:
        config["auth"] = auth
    config_path = root / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = root / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=out, stderr=subprocess.STDOUT)
    registry = OciRegistry(f"127.0.0.1:{port}", root / "storage", process, log, **extra)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited with {process.returncode}: {log.read_text()[-2000:]}", pytrace=False)
        try:
            if httpx.get(f"{registry.url}/v2/", timeout=1.0).status_code in (200, 401):
                return registry
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_registry(registry)
            pytest.fail(f"docker-registry did not answer on {registry.url} in {STARTUP_SECONDS:g}s", pytrace=False)
        time.sleep(0.05)


def stop_registry(registry: OciRegistry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait()
    if registry.token_server is not None:
        registry.token_server.stop()


# --- the token server ------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: Any) -> str:
    """The `kid` docker-registry derives from a trusted certificate's key (libtrust's format)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer:
    """Issues registry bearer tokens to `user`/`password` (basic auth on the realm request)."""

    cert_pem: Path
    user: str
    password: str
    expires_in: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"scopes", "authorized"} per token request
    _server: ThreadingHTTPServer | None = None
    _key: Any = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> TokenServer:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def issue(self, scopes: list[str], subject: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": repo, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(self._key.public_key())}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                expected = "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
                authorized = self.headers.get("Authorization") == expected
                server.requests.append({"scopes": scopes, "authorized": authorized, "service": query.get("service")})
                if not authorized:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
                token = server.issue(scopes, server.user)
                self._answer(200, {"token": token, "access_token": token, "expires_in": server.expires_in})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A registry without auth (shared by a module: use a repository per test)."""
    registry = start_registry(tmp_path_factory.mktemp("oci-registry"))
    yield registry
    stop_registry(registry)


@pytest.fixture(scope="module")
def oci_basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A registry behind htpasswd basic auth for USERNAME / PASSWORD."""
    root = tmp_path_factory.mktemp("oci-basic-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(bcrypt_line(USERNAME, PASSWORD) + "\n")
    auth = {"htpasswd": {"realm": "adapterhub-test", "path": str(htpasswd)}}
    registry = start_registry(root, auth, username=USERNAME, password=PASSWORD)
    yield registry
    stop_registry(registry)


@pytest.fixture(scope="module")
def oci_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A registry with `auth: token`, its tokens issued by a TokenServer of ours (`.token_server`)."""
    root = tmp_path_factory.mktemp("oci-token-registry")
    tokens = TokenServer(root / "token-cert.pem", USERNAME, PASSWORD).start()
    auth = {
        "token": {
            "realm": tokens.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(tokens.cert_pem),
        }
    }
    try:
        registry = start_registry(root, auth, username=USERNAME, password=PASSWORD, token_server=tokens)
    except BaseException:
        tokens.stop()
        raise
    yield registry
    stop_registry(registry)


# --- a proxy that cuts one upload ------------------------------------------------------------------
class CuttingProxy:
    """TCP proxy on loopback in front of a registry that, once armed, cuts the first connection carrying
    a PATCH after `after_bytes` bytes of it reached the registry (a dropped chunk upload)."""

    def __init__(self, target_port: int, after_bytes: int) -> None:
        self.target_port = target_port
        self.after_bytes = after_bytes
        self.armed = True
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump_up(self, src: socket.socket, dst: socket.socket) -> None:
        seen = b""
        sent_after = -1  # bytes forwarded since a PATCH began on this connection
        try:
            while data := src.recv(65536):
                if self.armed and sent_after < 0 and b"PATCH /" in seen[-16:] + data:
                    joined = seen[-16:] + data
                    sent_after = len(joined) - joined.index(b"PATCH /") - len(data)
                if self.armed and sent_after >= 0:
                    room = self.after_bytes - sent_after
                    if len(data) >= room:
                        dst.sendall(data[: max(room, 0)])
                        self.armed = False
                        self.cuts += 1
                        break
                    sent_after += len(data)
                dst.sendall(data)
                seen = (seen + data)[-16:]
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


class InterceptingProxy(CuttingProxy):
    """A loopback proxy in front of a registry that hands each request's first bytes to `intercept`:
    None forwards them; bytes are answered to the client instead (b"": the connection is closed
    unanswered, as when the registry went away). For fault tests: a rejected upload, a registry down."""

    def __init__(self, target_port: int, intercept: Callable[[bytes], bytes | None]) -> None:
        super().__init__(target_port, after_bytes=0)
        self.armed = False
        self.intercept = intercept

    def _pump_up(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                answer = self.intercept(data)
                if answer is not None:
                    if answer:
                        src.sendall(answer)
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
