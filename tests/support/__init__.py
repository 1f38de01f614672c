"""Test support: a real OpenDSO server process on loopback with real TLS, and small clients for it.

Every integration test goes through ``LiveServer``: ``dso init`` into a temporary directory, ``dso serve`` as a
subprocess, ``/healthz`` polled until it answers. Nothing here mocks the server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


# Ports for test listeners come from below the kernel's ephemeral range (32768+ here), one slice per test
# worker: a port the kernel handed out with bind(0) can be taken by any outgoing connection's source port, or by
# another worker's bind(0), between the moment a test picks it and the moment its server listens on it.
_PORT_FLOOR, _PORT_SLICE = 20000, 3000
_next_port: list[int] = []


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    start = _PORT_FLOOR + (index % 4) * _PORT_SLICE
    return range(start, start + _PORT_SLICE)


def free_port() -> int:
    """A loopback port nobody listens on, not handed out before by this process."""
    ports = _port_slice()
    if not _next_port:  # a second run beside this one starts elsewhere in the slice
        _next_port.append(ports.start + os.getpid() % len(ports))
    for _ in range(len(ports)):
        port = ports.start + (_next_port[0] - ports.start) % len(ports)
        _next_port[0] = port + 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


def dso(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 60,
    clear_env: bool = False,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``dso`` command (as ``python -m server``) and return its completed process. ``env`` adds to
    this process's environment (or, with ``clear_env``, is the whole environment); ``cwd`` defaults to the
    repository."""
    full_env = dict(env or {}) if clear_env else {**os.environ, **(env or {})}
    if clear_env:  # the child still has to import this checkout
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or REPO,
        input=stdin,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dso {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def dso_json(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return json.loads(dso(*args, env=env, **kwargs).stdout)


@dataclass
class LiveServer:
    home: Path
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    # ------------------------------------------------------------------ lifecycle
    def init(self) -> LiveServer:
        args = [
            "init",
            str(self.home),
            "--port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
            "--openadr3-port",
            str(free_port()),
            "--json",
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        self.info = dso_json(*args, env=self.extra_env)
        return self

    @property
    def config(self) -> str:
        return self.info["config"]

    def serve_env(self) -> dict[str, str]:
        """The environment of a ``dso serve`` of this server (a second process on its ports takes the same)."""
        # tests listen on loopback only
        loopback = {"DSO_SERVER__HOST": "127.0.0.1", "DSO_OPENADR3__HOST": "127.0.0.1"}
        return {**os.environ, **loopback, **self.extra_env, "DSO_LOGGING__FORMAT": "json"}

    def start(self, timeout: float = 30) -> LiveServer:
        self.log_path = self.home / "serve.log"
        # the process writes to its own copy of the descriptor: this one is closed once it has started
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "-c", self.config],
                stdout=log,
                stderr=log,
                env=self.serve_env(),
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.info["admin_url"] + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()  # never leave a server behind that the test's teardown does not know of
        raise AssertionError(f"server did not become healthy in {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    # ------------------------------------------------------------------ clients
    @property
    def url(self) -> str:
        return self.info["server_url"]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ca(self) -> str:
        return self.info["ca"]

    def admin(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """Call the admin API; returns (status, decoded JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.info['admin_token'] if token is None else token}",
        }
        request = urllib.request.Request(
            self.info["admin_url"] + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def issue_device(self, name: str, aggregator: bool = False) -> dict[str, Any]:
        args = ["certs", "device", name, "--json", "-c", self.config] + (
            ["--aggregator"] if aggregator else []
        )
        return dso_json(*args)

    def issue_ven(self, name: str, rsa: bool = False) -> dict[str, Any]:
        return dso_json("certs", "ven", name, "--json", "-c", self.config, *(["--rsa"] if rsa else []))

    def client_context(
        self, cert: str | None = None, key: str | None = None, ciphers: str | None = None, tls12: bool = False
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if ciphers:
            ctx.set_ciphers(ciphers)
        return ctx

    def request(
        self,
        ctx: ssl.SSLContext,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request over a real TLS connection with the given client context."""
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
