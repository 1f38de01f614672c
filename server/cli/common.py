"""What every CLI command shares: the parser class, config lookup, the admin API client, output."""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.config import CONFIG_FILE_VAR, Settings, load_settings

# the CLI's own environment: where the admin API is, its token, and where `dso login` keeps the tokens it got
# (one underscore after DSO_ADMIN, so never a ``DSO_<SECTION>__<KEY>`` setting override)
ADMIN_URL_VAR = "DSO_ADMIN_URL"
ADMIN_TOKEN_VAR = "DSO_ADMIN_TOKEN"
CREDENTIALS_VAR = "DSO_CREDENTIALS"
CLI_VARIABLES = (CONFIG_FILE_VAR, ADMIN_URL_VAR, ADMIN_TOKEN_VAR, CREDENTIALS_VAR)


class CliError(Exception):
    """A one-line message for the user; exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, not argparse's usage block: scripts and people both read it better
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="dso.toml or the directory holding it (default: $DSO_CONFIG, then ./dso.toml)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def config_path(value: str | None) -> Path:
    raw = value or os.environ.get(CONFIG_FILE_VAR) or ("dso.toml" if Path("dso.toml").exists() else None)
    if raw is None:
        raise CliError(
            f"no configuration: pass -c DIR/dso.toml (or DIR), set {CONFIG_FILE_VAR} (or {ADMIN_URL_VAR} and "
            f"{ADMIN_TOKEN_VAR} to reach a running server), or run `dso init DIR`"
        )
    path = Path(raw).expanduser()
    return path / "dso.toml" if path.is_dir() else path


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(getattr(args, "config", None)))


def emit(args: argparse.Namespace, data: Any, human: str | None = None) -> None:
    if getattr(args, "json", False) or human is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human)


def credentials_path() -> Path:
    """Where `dso login` keeps its tokens: $DSO_CREDENTIALS, else $XDG_CONFIG_HOME/opendso/credentials.json."""
    given = os.environ.get(CREDENTIALS_VAR)
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "opendso" / "credentials.json"


def load_credentials() -> dict[str, dict[str, Any]]:
    """Admin URL -> the token `dso login` stored for it (and its id, account and expiry)."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(
            f"{path}: unreadable credentials file ({exc}); remove it and run `dso login`"
        ) from None
    return data if isinstance(data, dict) else {}


def save_credentials(data: dict[str, dict[str, Any]]) -> Path:
    """Written with mode 0600 from the first byte (the directory 0700): the file holds bearer tokens."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


class AdminClient:
    """Small synchronous client for the admin API (the CLI runs one call at a time). Its credential:
    $DSO_ADMIN_TOKEN, else the token `dso login` stored for this server, else the configuration's bootstrap
    token."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.base = (os.environ.get(ADMIN_URL_VAR) or settings.admin_url).rstrip("/")
        stored = load_credentials().get(self.base, {}).get("token")
        self.token = os.environ.get(ADMIN_TOKEN_VAR) or stored or settings.admin.token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.exchange(method, path, body, timeout=timeout)[0]

    def exchange(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        bearer: bool = True,
        timeout: float | None = None,
    ) -> tuple[Any, http.client.HTTPMessage]:
        """One call: the decoded answer and the response headers; ``bearer=False`` sends no token (the login,
        and requests made with a session cookie in ``headers``)."""
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if bearer:
            sent["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw, answer_headers = response.read(), response.headers
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            raise CliError(f"{method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            raise CliError(
                f"cannot reach the admin API at {self.base} ({reason}); is `dso serve` running?"
            ) from None
        try:
            return (json.loads(raw) if raw else None), answer_headers
        except ValueError:
            raise CliError(f"{self.base} did not answer as an OpenDSO admin API (not JSON)") from None


def admin(args: argparse.Namespace) -> AdminClient:
    """The admin API client: from the config file, or from $DSO_ADMIN_URL alone when there is no config."""
    if os.environ.get(ADMIN_URL_VAR) and not _config_given(args):
        return AdminClient(load_settings(None))
    return AdminClient(settings_from(args))


def _config_given(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "config", None) or os.environ.get(CONFIG_FILE_VAR) or Path("dso.toml").exists())


def local_time(iso: str | None, zone: str, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """An ISO 8601 instant from the API shown in a grid node's zone, with the zone's abbreviation."""
    if not iso:
        return "-"
    try:
        tz = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        tz = ZoneInfo("UTC")
    return dt.datetime.fromisoformat(iso).astimezone(tz).strftime(fmt)


def os_error_message(exc: OSError) -> str:
    """``PATH: No such file or directory`` rather than ``[Errno 2] ...``."""
    if exc.filename is not None:
        return f"{exc.filename}: {(exc.strerror or str(exc)).lower()}"
    return exc.strerror or str(exc)


def stderr(message: str) -> None:
    print(message, file=sys.stderr)
