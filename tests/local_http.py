"""A real HTTP server on 127.0.0.1 for download tests: ranges, ETags, drops, stalls.

Plain http on the loopback only; the code under test accepts it because the tests set
PHOTOFIND_ALLOW_HTTP_FOR_TESTS=1. Each file served is a ``Served`` with switches that make
the server misbehave in the ways the downloader must survive.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    data: bytes
    etag: str = '"v1"'
    # How many of the next GETs send half the body and then drop the connection.
    drops: int = 0
    honour_range: bool = True
    # Set -> the server sends headers, then waits on this event before the body (a stall).
    stall: threading.Event | None = None
    # More response headers (a hub listing's Link to its next page).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Log:
    requests: list[dict] = field(default_factory=list)

    def ranges(self, path: str) -> list[str | None]:
        return [r["range"] for r in self.requests if r["path"] == path]


class LocalServer:
    def __init__(self):
        self.files: dict[str, Served] = {}
        self.log = Log()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.log.requests.append(
                    {
                        "path": self.path,
                        "range": self.headers.get("Range"),
                        "if_range": self.headers.get("If-Range"),
                    }
                )
                served = server.files.get(self.path)
                if served is None:
                    self.send_error(404, "Not Found")
                    return
                data, start = served.data, 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                use_range = (
                    wanted and served.honour_range and (if_range is None or if_range == served.etag)
                )
                if use_range:
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", served.etag)
                for key, value in served.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if served.stall is not None:
                    served.stall.wait(10)
                if served.drops > 0:
                    served.drops -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    # Drop the connection mid-body, as a flaky network would.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for served in self.files.values():
            if served.stall is not None:
                served.stall.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
