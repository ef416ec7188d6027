"""Real servers for the tests: noida-db (Kafka and Elasticsearch protocols) and a local HTTP server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import noida_db

NOIDA_BINARY = Path(noida_db.__file__).parent / "noida-db"
_ADDRESS = re.compile(r"^\s+(kafka|elasticsearch)\s+(?:http://)?([\d.]+):(\d+)", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NoidaServer:
    """One noida-db process in the foreground, on its own data dir; stop() and start() keep the ports,
    so a test can take the server away and bring it back."""

    data_dir: Path
    services: tuple[str, ...] = ("kafka",)
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> NoidaServer:
        args = [str(NOIDA_BINARY), "start", "--only", ",".join(self.services), "--data-dir", str(self.data_dir)]
        for service in self.services:
            args += [f"--{service}-port", str(self.ports.get(service, 0))]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        output = ""
        assert self.process.stdout is not None
        while time.monotonic() < deadline and len(_ADDRESS.findall(output)) < len(self.services):
            line = self.process.stdout.readline()
            if not line:
                break
            output += line
        found = {name: int(port) for name, _, port in _ADDRESS.findall(output)}
        if len(found) < len(self.services):
            self.stop()
            raise RuntimeError(f"noida-db did not start: {output}")
        self.ports.update(found)
        threading.Thread(target=self._drain, daemon=True).start()
        for port in found.values():
            _wait_for_port(port, deadline)
        return self

    def _drain(self) -> None:
        if self.process and self.process.stdout:
            for _ in self.process.stdout:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def es_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['elasticsearch']}"


def _wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


# --- HTTP ---

Handler = Callable[[BaseHTTPRequestHandler], None]


class FeedServer:
    """A local HTTP server whose routes are plain functions; records every request it gets."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve_bytes(self, path: str, body: bytes, content_type: str = "application/rss+xml",
                    etag: str | None = None, headers: dict[str, str] | None = None, status: int = 200) -> None:
        def handle(request: BaseHTTPRequestHandler) -> None:
            if etag and request.headers.get("If-None-Match") == etag:
                request.send_response(304)
                request.send_header("ETag", etag)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(body)))
            if etag:
                request.send_header("ETag", etag)
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(body)

        self.routes[path] = handle

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def env_with(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_") or k.startswith("NEWSWATCH_TEST_")}
    env.update(values)
    return env
