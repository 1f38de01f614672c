"""OpenADR 3 test support: OAuth2 clients made with the real ``dso oadr3 client create``, a small JSON client
over real TLS with bearer tokens, a webhook receiver, and ElaadNL's openadr3-client run from a Python 3.12
environment of its own (the client needs Python >= 3.12; this project runs on 3.11).

``peer_python`` builds that environment once (``.venv-openadr3-client`` in the repository; pyenv's 3.12, or a
``python3.12`` on PATH) with the client version pinned here.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from support import REPO, LiveServer, dso_json

CLIENT_VERSION = "2.4.2"
VENV = REPO / ".venv-openadr3-client"
PEER = REPO / "tests" / "peers" / "openadr3_peer.py"
_lock = threading.Lock()


def _python312() -> list[str]:
    found = shutil.which("python3.12")
    if found and "pyenv" not in found:
        return [found]
    if shutil.which("pyenv"):
        return ["pyenv", "exec", "python"]
    if found:
        return [found]
    raise AssertionError("openadr3-client needs Python >= 3.12: install one (pyenv or python3.12 on PATH)")


def peer_python() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / f"openadr3-client-{CLIENT_VERSION}"
    if marker.exists():
        return python
    # test worker processes (pytest-xdist) may all get here at once: one builds, the others wait for it
    with _lock, open(REPO / ".venv-openadr3-client.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if marker.exists():
            return python
        env = {**os.environ, "PYENV_VERSION": os.environ.get("OPENADR3_PYTHON_VERSION", "3.12.1")}
        subprocess.run([*_python312(), "-m", "venv", "--clear", str(VENV)], check=True, env=env, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"openadr3-client=={CLIENT_VERSION}"],
            check=True,
            timeout=600,
        )
        marker.touch()
        return python


def run_peer(server: LiveServer, action: str, config: dict[str, Any]) -> Any:
    """One action of the real client (tests/peers/openadr3_peer.py) against ``server``."""
    cfg_file = server.home / f"peer-{action}-{threading.get_ident()}.json"
    cfg_file.write_text(json.dumps({"url": server.info["openadr3_url"], "ca": server.ca, **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "COVERAGE"))}
    proc = subprocess.run(
        [str(peer_python()), str(PEER), action, str(cfg_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "REQUESTS_CA_BUNDLE": server.ca},
    )
    if proc.returncode != 0:
        raise AssertionError(f"openadr3-client {action} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_client(server: LiveServer, name: str, role: str) -> dict[str, Any]:
    return dso_json("oadr3", "client", "create", name, "--role", role, "--json", "-c", server.config)


class Api:
    """A plain JSON client of the 3.x API over real TLS (the server's CA trusted, no client certificate)."""

    def __init__(self, server: LiveServer, token: str | None = None) -> None:
        self.base = server.info["openadr3_url"]
        self.ctx = ssl.create_default_context(cafile=server.ca)
        self.token = token

    @classmethod
    def login(cls, server: LiveServer, client: dict[str, Any], scope: str | None = None) -> Api:
        api = cls(server)
        status, answer = api.token_request(client["client_id"], client["client_secret"], scope)
        assert status == 200, answer
        api.token = answer["access_token"]
        return api

    def raw(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        head = dict(headers or {})
        if self.token and "Authorization" not in head:
            head["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=head)
        try:
            with urllib.request.urlopen(request, context=self.ctx, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.raw(method, path, data, {"Content-Type": "application/json"} if data else {})
        return status, json.loads(raw) if raw else None

    def token_request(self, client_id: str, secret: str, scope: str | None = None) -> tuple[int, Any]:
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        if scope:
            form["scope"] = scope
        status, _, raw = self.raw(
            "POST",
            "/auth/token",
            urllib.parse.urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""},
        )
        return status, json.loads(raw)


class WebhookReceiver:
    """A webhook endpoint on loopback (plain HTTP, which the test server allows on loopback): records each
    notification with the bearer token it came with; ``fail_next`` answers the next POSTs 503."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []  # (path, Authorization, body)
        self.fail_next = 0
        self.failed = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if outer.fail_next > 0:
                        outer.fail_next -= 1
                        outer.failed += 1
                        code = 503
                    else:
                        outer.received.append(
                            (self.path, self.headers.get("Authorization", ""), json.loads(raw))
                        )
                        code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def notes(self, path: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [(auth, body) for p, auth, body in self.received if path is None or p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def spec_errors(schema: str, value: Any, many: bool = False) -> list[str]:
    """What the specification says is wrong with a value the server sent (the tests check every answer)."""
    from server.openadr3 import spec

    return spec.errors(schema, value, many)
