"""Helpers of the fault tests: a job's cycle summaries, waiting on a condition, publishing to a job's topic,
reading feed state, and a receiver that resets every connection. The job itself (`Job`, `LogWatcher`) is the
one tests/test_kafka_job.py drives."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.feed_state import FeedStateStore
from connectors.kafka import KafkaPublisher, OutgoingMessage, TopicTarget
from tests.test_kafka_job import Job, LogWatcher


def summaries(watcher: LogWatcher) -> list[dict[str, str]]:
    """Every cycle summary line the job logged, as key=value pairs."""
    return [dict(re.findall(r"(\S+)=(\S+)", line)) for line in watcher.text().splitlines() if " cycle=" in line]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a server may still be coming back
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def stop_job(process: subprocess.Popen[str], timeout: float = 90) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


def publish(job: Job, values: list[str] | list[bytes]) -> None:
    """Messages onto the job's topic, in-process (what `newswatch produce` does, without a subprocess)."""
    publisher = KafkaPublisher(TopicTarget(job.clients, job.topic), fallback_bytes=None)
    for value in values:
        publisher.send(OutgoingMessage(None, value.encode() if isinstance(value, str) else value))
    assert publisher.flush() == len(values)
    publisher.close()


def feed_states(path: Path) -> dict[str, object]:
    states = FeedStateStore(path)
    try:
        return dict(states.get_all())
    finally:
        states.close()


class ResettingServer:
    """Accepts a connection, reads the start of the request, then resets it (RST, not a clean close): what a
    crashing receiver, a restarting load balancer or a firewall dropping the flow looks like to the sender."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(1024)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
