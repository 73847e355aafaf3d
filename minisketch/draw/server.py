"""The draw server: the standard library's ThreadingHTTPServer serving the page and the API.

Only the files in :data:`STATIC` are ever served, looked up by the exact request path (no
decoding, no file system paths), so ``/../`` and ``%2e%2e`` can only miss. Every other answer is
JSON; every error is ``{"error": "..."}`` with a 4xx status (5xx only for the server's own
faults), and the connection closes after each answer (HTTP/1.0), so a bad request never
leaves state behind. Request bodies are read only up to :data:`api.MAX_BODY`, with a socket
timeout, and must be declared ``application/json`` (so a page from another site cannot post to
the API without the browser asking first, and this server never allows it). When bound to a
loopback address it answers only requests addressed to a loopback name (a DNS-rebinding page
cannot use it).
"""
from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs

from . import api

STATIC = {   # request path -> (file in minisketch/draw/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
GET_API = ("/api/models", "/api/examples")
POST_API = {f"/api/{mode}": mode for mode in api.FIELDS}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DRAIN_LIMIT = 16 * api.MAX_BODY     # bytes of a refused body read (and dropped) before closing
SOCKET_TIMEOUT = 15.0               # seconds a client may stall while sending its request


def load_static() -> dict[str, bytes]:
    """The shipped page files, read once from the package."""
    folder = resources.files("minisketch.draw") / "static"
    return {name: (folder / name).read_bytes() for name, _ in set(STATIC.values())}


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class DrawHandler(BaseHTTPRequestHandler):
    """One request. The server holds the models, the static files and the options."""

    server_version = "minisketch-draw"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    # ------------------------------------------------------------------ answering

    def _headers(self, status: int, content_type: str, length: int, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()

    def _send(self, status: int, content_type: str, body: bytes, extra=()):
        try:
            self._headers(status, content_type, len(body), extra)
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _json(self, status: int, obj, extra=()):
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, "application/json", body, (("Cache-Control", "no-store"),) + extra)

    def _error(self, status: int, message: str, extra=()):
        self.close_connection = True
        self._json(status, {"error": message}, extra)

    def send_error(self, code, message=None, explain=None):
        """The base class's errors (bad request line, long headers, unknown method) as JSON."""
        if self.request_version == "HTTP/0.9":     # unparsable request line: answer in 1.0
            self.request_version = "HTTP/1.0"
        self._error(int(code), message or HTTPStatus(code).phrase)

    def log_message(self, format, *args):
        if not self.server.quiet:
            sys.stderr.write(_printable(format % args) + "\n")

    def log_request(self, code="-", size="-"):
        took = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        self.log_message('"%s" %s %.3f s', self.requestline, code, took)

    def log_error(self, format, *args):
        pass   # every error is answered and logged by log_request

    # ------------------------------------------------------------------ checks

    def _path(self) -> tuple[str, str]:
        path, _, query = self.path.partition("?")
        return path, query

    def _host_ok(self) -> bool:
        """Loopback-bound servers answer only requests addressed to a loopback name (browsers
        always send Host; a client without one is not a page from another site)."""
        host = (self.headers.get("Host") or "").strip().lower()
        if not self.server.loopback or not host:
            return True
        if host.startswith("["):
            name = host[1:].partition("]")[0]
        else:
            name = host.rpartition(":")[0] if ":" in host else host
        return name in LOOPBACK_NAMES

    def _refuse_method(self, path: str) -> bool:
        """Answer 404/405 for a path this method does not serve; True when answered."""
        allowed = ("GET, HEAD" if path in STATIC else "GET" if path in GET_API else
                   "POST" if path in POST_API else None)
        if allowed is None:
            self._error(404, f"not found: {_printable(path)[:100]} (this server serves / and "
                             f"its /api/ endpoints)")
        else:
            self._error(405, f"{self.command} is not allowed on {path}; use {allowed}",
                        (("Allow", allowed),))
        return True

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it cannot be read."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._error(415, "send the request as Content-Type: application/json")
            return None
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the body with a Content-Length (no chunked encoding)")
            return None
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._error(411, "a Content-Length is required")
            return None
        if not length_text.strip().isdigit():
            self._error(400, f"bad Content-Length {_printable(length_text)[:40]!r}")
            return None
        length = int(length_text)
        if length > api.MAX_BODY:
            self._error(413, f"the body has {length} bytes; at most {api.MAX_BODY} are "
                             f"accepted")
            self._drain(length)
            return None
        try:
            body = self.rfile.read(length)
        except (socket.timeout, ConnectionError):
            body = b""
        if len(body) != length:
            self._error(400, f"the body ended after {len(body)} of {length} bytes")
            return None
        return body

    def _drain(self, length: int):
        """After refusing a body, read (and drop) up to DRAIN_LIMIT bytes of it, so that a
        client still sending sees the answer rather than a reset connection."""
        left = min(length, DRAIN_LIMIT)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (socket.timeout, ConnectionError):
            pass

    # ------------------------------------------------------------------ methods

    def _start(self) -> bool:
        self._t0 = time.perf_counter()
        if not self._host_ok():
            self._error(403, "this server answers requests for localhost or 127.0.0.1 only")
            return False
        return True

    def do_GET(self):
        if not self._start():
            return
        path, query = self._path()
        if path in STATIC:
            name, ctype = STATIC[path]
            extra = (("Cache-Control", "no-cache"),)
            if name.endswith(".html"):
                extra += (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"))
            self._send(200, ctype, self.server.static[name], extra)
            return
        if path not in GET_API or self.command == "HEAD":
            self._refuse_method(path)
            return
        try:
            if path == "/api/models":
                if query:
                    raise api.ApiError(400, "/api/models takes no query parameters")
                self._json(200, api.model_list(self.server.models))
                return
            try:
                fields = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                                  max_num_fields=8)
            except ValueError as e:
                raise api.ApiError(400, f"bad query string ({e})") from None
            self._json(200, api.examples(self.server.models, fields))
        except api.ApiError as e:
            self._error(e.status, e.message)

    do_HEAD = do_GET

    def do_POST(self):
        if not self._start():
            return
        path, _ = self._path()
        if path not in POST_API:
            self._refuse_method(path)
            return
        body = self._read_body()
        if body is None:
            return
        try:
            answer = api.post(self.server.models, POST_API[path], body)
        except api.ApiError as e:
            self._error(e.status, e.message)
            return
        except Exception as e:   # noqa: BLE001 - a fault of this server: answer, keep serving
            sys.stderr.write(f"error: internal error in {path}: {type(e).__name__}: {e}\n")
            self._error(500, f"internal error ({type(e).__name__}); the server keeps running")
            return
        self._json(200, answer)

    def _not_allowed(self):
        if self._start():
            self._refuse_method(self._path()[0])

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed


class DrawServer(ThreadingHTTPServer):
    """The HTTP server with what every request needs: models, static files, options."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, models: dict, quiet: bool = False):
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.host = host
        self.models = models
        self.static = load_static()
        self.quiet = quiet
        try:
            self.loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback = False
        super().__init__(address, DrawHandler)

    @property
    def url(self) -> str:
        port = self.server_address[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/"


def make_server(models: dict, host: str = "127.0.0.1", port: int = 8000,
                quiet: bool = False) -> DrawServer:
    """A bound (not yet serving) server; ``server.url`` is the address to print."""
    return DrawServer((host, port), models, quiet=quiet)
