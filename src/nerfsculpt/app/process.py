"""Run ``nerfsculpt label serve`` in a subprocess on a free loopback port (tests, benchmarks, scripts).

Example::

    server = ServerProcess("prefs.sqlite")      # returns once the server answers
    urllib.request.urlopen(server.url + "api/state?annotator=me")
    server.stop()
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m nerfsculpt label serve --db DB --port PORT [extra]``, ready when constructed."""

    def __init__(self, db: str | Path, *extra: str, timeout: float = 60.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen([sys.executable, "-m", "nerfsculpt", "label", "serve", "--db", str(db),
                                         "--port", str(self.port), *extra],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stdout.read()}")
            try:
                with urllib.request.urlopen(self.url + "static/app.css", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout} s")

    def stop(self) -> None:
        """Terminate (SIGKILL after 10 s) and reap the server."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
