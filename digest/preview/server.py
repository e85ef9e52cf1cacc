"""The preview's HTTP server: standard library ThreadingHTTPServer, a fixed set of
routes, nothing read from disk per request (so no path can reach a file).

    /                       the index of editions
    /<week>/                an edition: inbox line, meters, toggles, the email frame
    /<week>/frame.html      the email HTML, in ?scheme=light|dark
    /<week>/<file>          any file the build makes (digest.eml, events.ics, …)
    /_events?week=<week>    server-sent events: the build version, on every rebuild
    /_assets/<name>         the page's CSS and script
Anything else is 404."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from digest.errors import BuildError
from digest.preview import pages
from digest.preview.state import INDEX, Preview, Snapshot
from digest.preview.watcher import Watcher

WEEK = re.compile(r"\d{4}-W\d{2}")
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0
ASSET_TYPES = {"preview.css": "text/css; charset=utf-8", "preview.js": "text/javascript; charset=utf-8"}
FILE_TYPES = {".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8",
              ".mjml": "text/plain; charset=utf-8", ".json": "application/json",
              ".eml": "message/rfc822", ".ics": "text/calendar; charset=utf-8"}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The email may show remote images (a logo); it never runs scripts, as in an inbox.
EMAIL_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src * data:; font-src * data:; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def request_path(target: str) -> tuple[str, dict[str, list[str]]] | None:
    """The request target as (path, query), or None when it may not name an edition's
    file: absolute-form targets, '//', '.', '..', backslashes, NULs (also %-encoded)."""
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    raw = parts.path
    path = unquote(raw)
    for candidate in (raw, path):
        if "\\" in candidate or "\0" in candidate or "//" in candidate:
            return None
        if any(segment in (".", "..") for segment in candidate.split("/")):
            return None
    return path, parse_qs(parts.query)


class PreviewHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: PreviewApp) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: PreviewHTTPServer
    server_version = "digest-preview"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def _handle(self, head: bool) -> None:
        try:
            self._route(head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - one bad request must not stop the server
            traceback.print_exc(file=sys.stderr)
            try:
                self._send(500, "text/plain; charset=utf-8", b"internal error; see the terminal\n", head)
            except OSError:
                pass

    def _send(self, status: int, content_type: str, data: bytes, head: bool = False,
              policy: str = PAGE_POLICY, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", policy)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _not_found(self, head: bool) -> None:
        self._send(404, "text/plain; charset=utf-8", b"404: not a page of this preview\n", head)

    def _host_allowed(self) -> bool:
        """Refuse other host names when serving on loopback (DNS rebinding)."""
        app = self.server.app
        if not app.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in LOOPBACK_NAMES | {app.host.lower()}

    def _route(self, head: bool) -> None:
        app = self.server.app
        target = request_path(self.path)
        if target is None:
            return self._not_found(head)
        if not self._host_allowed():
            return self._send(421, "text/plain; charset=utf-8", b"421: unexpected Host header\n", head)
        path, query = target
        if path == "/":
            return self._html(app.index(), head)
        if path == "/_events":
            return self._events(query)
        if path.startswith("/_assets/"):
            name = path[len("/_assets/"):]
            if name not in ASSET_TYPES:
                return self._not_found(head)
            return self._send(200, ASSET_TYPES[name], (pages.ASSETS / name).read_bytes(), head)
        segments = path.split("/")[1:]
        if not segments or not WEEK.fullmatch(segments[0]) or len(segments) > 2:
            return self._not_found(head)
        week = segments[0]
        if len(segments) == 1:
            return self._send(301, "text/plain; charset=utf-8", b"", head, extra={"Location": f"/{week}/"})
        name = segments[1]
        snap, rendered = app.preview.edition(week)
        if rendered is None:
            if name == "":
                missing = pages.missing_page(snap, app.boot, week).encode()
                return self._send(404, "text/html; charset=utf-8", missing, head)
            return self._not_found(head)
        if name == "":
            page = pages.edition_page(snap, app.boot, week, rendered, pages.toggles(query))
            return self._html(page, head)
        built = rendered.built
        if name == "frame.html":
            scheme = "dark" if (query.get("scheme") or [""])[0] == "dark" else "light"
            html = pages.frame_html(built.html, scheme) if built else pages.empty_frame(
                "Nothing to show yet: the input has problems (listed above).")
            return self._send(200, "text/html; charset=utf-8", html.encode(), head, policy=EMAIL_POLICY)
        if built is None or name not in built.files:
            return self._not_found(head)
        suffix = Path(name).suffix
        extra = {}
        if suffix in (".eml", ".ics"):
            extra["Content-Disposition"] = f'attachment; filename="{week}-{name}"'
        return self._send(200, FILE_TYPES.get(suffix, "application/octet-stream"), built.files[name], head,
                          policy=EMAIL_POLICY, extra=extra)

    def _html(self, page: str, head: bool) -> None:
        self._send(200, "text/html; charset=utf-8", page.encode("utf-8"), head)

    def _events(self, query: dict[str, list[str]]) -> None:
        app = self.server.app
        week = (query.get("week") or [""])[0]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.wfile.write(b"retry: 500\n\n")
        self.wfile.flush()
        last = -1
        with app.preview.watching(week if WEEK.fullmatch(week) else INDEX):
            while not app.preview.closed:
                snap = app.preview.wait(last, KEEPALIVE)
                if app.preview.closed:
                    break
                if snap.version != last:
                    last = snap.version
                    data = json.dumps({"version": f"{app.boot}.{snap.version}", "ok": snap.failure is None})
                    self.wfile.write(f"event: build\ndata: {data}\n\n".encode())
                else:
                    self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
        self.close_connection = True


class PreviewApp:
    """The preview: state, watcher and HTTP server, started and stopped together."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 8000, today: date | None = None,
                 report: Callable[[str, bool], None] | None = None) -> None:
        self.root = root
        self.host = host
        self.preview = Preview(root, today=today)
        self.boot = secrets.token_hex(4)
        self.report = report or (lambda line, error: print(line, file=sys.stderr if error else sys.stdout,
                                                          flush=True))
        self.loopback = _is_loopback(host)
        try:
            self.httpd = PreviewHTTPServer((host, port), self)
        except OSError as exc:
            raise BuildError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. "
                             f"Try another --port (0 picks a free one).") from None
        self.watcher = Watcher(root, self._changed)

    @property
    def url(self) -> str:
        address = self.httpd.server_address
        host, port = str(address[0]), address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def index(self) -> str:
        snap = self.preview.snapshot
        return pages.index_page(snap, self.boot, {week: self.preview.cached(week) for week in snap.editions})

    def build(self, changed: set[str] | None = None) -> Snapshot:
        snap, rendered = self.preview.rebuild()
        stamp = datetime.now().strftime("%H:%M:%S")
        what = ""
        if changed:
            names = sorted(_relative(p, self.root) for p in changed)
            what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") + ": "
        if snap.failure is not None:
            self.report(f"{stamp} {what}{len(snap.failure.problems) or 1} problem(s), shown in the browser:", True)
            for line in snap.failure.lines():
                self.report(f"  {line}", True)
        else:
            failed = [w for w in rendered if (r := self.preview.cached(w)) is not None and r.failure is not None]
            for week in failed:
                failure = self.preview.cached(week).failure  # type: ignore[union-attr]
                self.report(f"{stamp} {what}{week} could not be rendered, shown in the browser:", True)
                for line in failure.lines():  # type: ignore[union-attr]
                    self.report(f"  {line}", True)
            if not failed:
                self.report(f"{stamp} {what}{len(snap.editions)} edition(s); rendered "
                            f"{', '.join(rendered) or 'none'} in {snap.seconds * 1000:.0f} ms", False)
        return snap

    def _changed(self, paths: set[str]) -> None:
        self.build(paths)

    def start(self) -> None:
        """Build once and start watching (call serve_forever next)."""
        self.build()
        self.watcher.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.25)

    def close(self) -> None:
        self.preview.close()
        self.watcher.stop()
        self.httpd.server_close()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def run(root: Path, *, host: str, port: int, today: date | None, open_browser: bool = False,
        echo: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C (or SIGTERM), then stop cleanly."""
    import signal
    import threading

    app = PreviewApp(root, host=host, port=port, today=today)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, stop)
    try:
        app.start()
        echo(f"Previewing {root.resolve()} at {app.url}  (Ctrl-C to stop)")
        if not app.loopback:
            echo(f"warning: listening on {host}: anyone who can reach this machine can see the drafts")
        if open_browser:
            import webbrowser

            webbrowser.open(app.url)
        app.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        started = time.perf_counter()
        app.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        echo(f"Stopped ({(time.perf_counter() - started) * 1000:.0f} ms).")
