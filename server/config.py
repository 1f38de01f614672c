"""Settings: one TOML file (``dso.toml``) plus ``DSO_<SECTION>__<KEY>`` environment overrides.

The double underscore between section and key keeps the overrides apart from every other ``DSO_`` variable
(the CLI's ``DSO_CONFIG``, ``DSO_ADMIN_URL``, ``DSO_ADMIN_TOKEN``): a name without it is never a setting.

Every setting has a default here; the README documents each one. Paths in the file are resolved
relative to the directory holding the file, so a data directory can be moved as a whole.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w


class ConfigError(Exception):
    """A missing or corrupt configuration; the message names the file and the key."""


@dataclass
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8443
    # the host name/address clients use to reach the server; goes into URLs and the server certificate
    public_host: str = "127.0.0.1"
    # identity from a TLS-terminating proxy: off unless a header name and proxy addresses are both set
    proxy_identity_header: str = ""
    trusted_proxies: list[str] = field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # several `dso serve` processes on one host share the protocol and admin ports (SO_REUSEPORT: the kernel
    # spreads new connections over them); each must set it, and they must share one PostgreSQL
    reuse_port: bool = False


@dataclass
class AdminSettings:
    host: str = "127.0.0.1"
    port: int = 8444
    # the bootstrap credential: creates the first admin account, and serves the conformance plugin and the tests;
    # every use is audited as "bootstrap". Turn it off once staff have accounts.
    token: str = ""
    bootstrap_token_enabled: bool = True
    # a browser login lasts this long (no renewal: log in again)
    session_ttl_s: int = 28_800
    # this many failed logins in a row lock the account for lockout_s
    login_max_failures: int = 5
    lockout_s: int = 900
    # API tokens (`dso login`, scripts) expire after this many days unless a shorter expiry is asked for
    token_max_days: int = 90


@dataclass
class DatabaseSettings:
    # empty = SQLite file ``dso.sqlite3`` beside the config file
    url: str = ""
    echo: bool = False
    # PostgreSQL connections each process keeps open (and may open beyond that for bursts); one request holds one
    # at a time, so the pool should cover the requests in flight; several processes share max_connections (100)
    pool_size: int = 20
    max_overflow: int = 10
    # test each pooled connection before use (one round trip per checkout; survives a database restart)
    pool_pre_ping: bool = True
    # scopes and representations one process keeps (server.core.readcache)
    cache_entries: int = 10_000


@dataclass
class PkiSettings:
    dir: str = "pki"
    # CA bundle clients must trust (and the trust anchors for client certificates unless ``trust`` is set)
    ca: str = "pki/ca.pem"
    server_cert: str = "pki/server-ec.pem"
    server_key: str = "pki/server-ec.key"
    server_rsa_cert: str = "pki/server-rsa.pem"
    server_rsa_key: str = "pki/server-rsa.key"
    # extra trust anchors (PEM bundles) for client certificates, e.g. a manufacturer's MCA
    trust: list[str] = field(default_factory=list)


@dataclass
class Sep2Settings:
    poll_rate_s: int = 300
    post_rate_s: int = 300
    # which registration paths are open: "out-of-band" (staff enroll first), "in-band", or "both"
    registration: str = "both"
    # "csip" serves plain CSIP; "csip-aus" demands the CSIP-AUS extensions of clients
    profile: str = "csip"
    # IANA Private Enterprise Number encoded in the last 8 digits of every server mRID (CSIP-AUS)
    pen: int = 0
    # IANA time zone the Time resource reports local time, tzOffset and DST for
    time_zone: str = "UTC"


@dataclass
class OpenAdrSettings:
    prefix: str = "/OpenADR2/Simple/2.0b"
    vtn_id: str = "OPENDSO-VTN"
    poll_freq_s: int = 10
    self_register: bool = False
    sign_replies: bool = False
    # XML signing identity of the VTN; empty = the server's EC certificate and key ([pki] server_cert/server_key)
    signing_cert: str = ""
    signing_key: str = ""
    # refuse unsigned messages (otherwise a signature is verified whenever a VEN sends one)
    require_signatures: bool = False
    # ReplayProtect: how old a signed message's timestamp may be (and how long its nonce is remembered)
    replay_window_s: int = 300
    # request bodies above this are refused with HTTP 413 before parsing
    max_body_bytes: int = 262_144
    market_context: str = "http://opendso.local/market/default"
    # eventStatus is "near" from this many seconds before the start, "far" before that
    near_window_s: int = 3600
    # the VTN may POST to a VEN's oadrTransportAddress when the VEN asked for push and staff enabled it
    push: bool = True
    # TLS client certificate for push (needs the clientAuth usage, which the dev server certificates carry);
    # empty = the signing certificate, else the server's EC certificate
    push_cert: str = ""
    push_key: str = ""
    # accepted so that configuration files of earlier releases load; push timing is the [delivery] section's
    push_interval_s: int = 1
    push_timeout_s: int = 10
    # which offered reports the VTN asks for in oadrRegisteredReport, and how often
    report_names: list[str] = field(default_factory=lambda: ["TELEMETRY_USAGE", "TELEMETRY_STATUS"])
    report_granularity_s: int = 60
    report_back_duration_s: int = 60
    # an optIn availability schedule (oadrCreateOpt without an event) becomes one flexibility offer of the VEN
    # per window; 2.0b carries no quantity or price there, so these give them (both kW 0: no offers)
    availability_down_kw: float = 10.0
    availability_up_kw: float = 0.0
    availability_price: float = 0.20


@dataclass
class OpenAdr3Settings:
    """The OpenADR 3.1 VTN: REST/JSON with OAuth2 bearer tokens on its own HTTPS listener (server-side TLS with
    the server's certificates; VENs and business-logic clients present tokens, not client certificates)."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8445
    # the base path of the API (its URL is https://{server.public_host}:{port}{prefix})
    prefix: str = "/openadr3"
    # bearer tokens from POST /auth/token live this long
    token_ttl_s: int = 3600
    # request bodies above this are refused with 413 before parsing
    max_body_bytes: int = 1_048_576
    # check every JSON answer against the specification's schema before it leaves (a failure is a 500 and a log
    # line: the server's own bug, never the client's)
    validate_responses: bool = True


@dataclass
class RateLimitSettings:
    """Per-client request budgets on the protocol listener (token bucket per LFDI, server.sep2.ratelimit)."""

    enabled: bool = True
    # sustained requests per second and burst (bucket size) of a device and of an aggregator (all its devices)
    device_rate: int = 20
    device_burst: int = 200
    aggregator_rate: int = 500
    aggregator_burst: int = 5000
    # buckets kept in memory (least recently seen dropped first)
    max_clients: int = 100_000


@dataclass
class DeliverySettings:
    """Outbound POSTs: 2030.5 notifications and OpenADR push, from the durable outbox."""

    # plain http:// targets are refused unless this is on, and then only on loopback (conformance receivers)
    allow_http_loopback: bool = False
    # networks staff trust as notification targets although they are private (e.g. ["10.20.0.0/16"]); loopback,
    # link-local, private and other non-global addresses are refused otherwise (server.delivery.targets)
    allow_networks: list[str] = field(default_factory=list)
    # verify the receiver's TLS certificate against pki.ca + pki.trust
    verify_tls: bool = True
    timeout_s: int = 10
    initial_backoff_s: int = 2
    max_backoff_s: int = 300
    # after this many failed attempts a message becomes a dead letter (status failed) and the next one for its
    # key goes out
    max_attempts: int = 50
    # how often the outbox is looked at when no commit woke it (messages due after a back-off, other processes)
    poll_interval_ms: int = 500
    # messages in flight at once per process (different keys; one key has at most one in flight)
    max_in_flight: int = 256
    # a claim is a lease: renewed by its process's heartbeat while the send is in flight, so it lapses soon
    # after the process dies even if nobody releases it
    lease_s: int = 30
    heartbeat_s: int = 2
    # a process whose heartbeat is older than this is dead: any other process releases its claims at once
    # (one on the same host also when the process id is gone: a restart right after a kill -9)
    stale_after_s: int = 10
    # delivered and dropped messages are forgotten after this many days (0: kept); dead letters are kept
    keep_days: int = 30


@dataclass
class OrchestrationSettings:
    enabled: bool = True
    forecast_interval_s: int = 900
    forecast_horizon_s: int = 86_400
    forecast_step_s: int = 900
    forecast_history_days: int = 28
    # how often a non-leader process retries for the scheduler's leader lock (PostgreSQL)
    leader_retry_s: int = 30
    # the planning loop over every stored network model (docs/planning.md, "The loop")
    planning: bool = True
    # intraday: fresh forecasts, then a re-plan of the rest of the horizon, every this many seconds (300 supported)
    replan_interval_s: int = 900
    # day-ahead: the plan of the next day (UTC), made daily at this UTC time "HH:MM" ("" = none)
    day_ahead_at: str = "14:00"
    plan_horizon_s: int = 86_400
    # automatic: a plan is dispatched when made; operator: it waits for `dso plan approve ID`
    approval: str = "automatic"
    # forecast quantile the plan holds against (0.9: high generation and low load)
    quantile: float = 0.5
    envelope_policy: str = "equal"
    # a forecast older than this is missing for planning
    forecast_max_age_s: int = 3600
    # HiGHS time limit per LP (0: none); a solve that hits it fails the plan
    solver_time_limit_s: float = 0.0
    plan_iterations: int = 4
    # a device that answered "cannot comply" or a VEN that opted out is not counted on for this long
    noncompliance_hold_s: int = 86_400
    # primacy of the plan's own programs: staff controls (primacy 1 by default) win over the plan's
    plan_primacy: int = 50
    # a tariff name: the plan's objective takes the day-ahead price by the clock and each plan publishes it as
    # that tariff's TimeTariffIntervals (and OpenADR ELECTRICITY_PRICE); "" = the planner's internal shape, unpublished
    price_tariff: str = ""


@dataclass
class ModbusSettings:
    """SunSpec Modbus TCP gateway (devices themselves are registered with `dso modbus add`)."""

    enabled: bool = True
    timeout_s: int = 3


@dataclass
class AlarmSettings:
    """The communication watch (server.core.comms) and the last contact it judges by."""

    enabled: bool = True
    # a party is "lost" when not heard from within this many of its poll periods (2030.5 pollRate, the OpenADR
    # oadrPoll frequency, a Modbus asset's poll_s)
    comms_lost_factor: float = 3.0
    # how often the leader looks for lost parties and failing deliveries
    check_interval_s: int = 60
    # how often each process writes the last contact of the 2030.5 clients it heard (one batched UPDATE)
    contact_flush_s: int = 30


REQUEST_LOGS = ("all", "changes", "none")


@dataclass
class LoggingSettings:
    level: str = "INFO"
    # "json", "text", or "auto" (JSON when stderr is not a TTY)
    format: str = "auto"
    # answered requests logged at INFO: "all"; "changes": all but the successful GETs and HEADs (a fleet's polls,
    # thousands a second, are counted in the metrics instead); "none"
    requests: str = "changes"


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    pki: PkiSettings = field(default_factory=PkiSettings)
    sep2: Sep2Settings = field(default_factory=Sep2Settings)
    openadr: OpenAdrSettings = field(default_factory=OpenAdrSettings)
    openadr3: OpenAdr3Settings = field(default_factory=OpenAdr3Settings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    orchestration: OrchestrationSettings = field(default_factory=OrchestrationSettings)
    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # directory the config file lives in; relative paths resolve against it
    base_dir: Path = field(default_factory=Path.cwd)
    source: Path | None = None

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.base_dir / 'dso.sqlite3'}"

    @property
    def server_url(self) -> str:
        return f"https://{_url_host(self.server.public_host)}:{self.server.port}"

    @property
    def openadr3_url(self) -> str:
        """The base URL of the OpenADR 3.1 API."""
        prefix = "/" + self.openadr3.prefix.strip("/") if self.openadr3.prefix.strip("/") else ""
        return f"https://{_url_host(self.server.public_host)}:{self.openadr3.port}{prefix}"

    @property
    def admin_url(self) -> str:
        return f"http://{_url_host(self.admin.host)}:{self.admin.port}"

    def to_toml_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}


SECTIONS = (
    "server",
    "admin",
    "database",
    "pki",
    "sep2",
    "openadr",
    "openadr3",
    "delivery",
    "ratelimit",
    "orchestration",
    "modbus",
    "alarms",
    "logging",
)


ENV_PREFIX = "DSO_"
ENV_SEPARATOR = "__"
# names the config file when none is given (the CLI's other variables are in server.cli.common)
CONFIG_FILE_VAR = "DSO_CONFIG"


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``: ``DSO_<SECTION>__<KEY>``."""
    return f"{ENV_PREFIX}{section.upper()}{ENV_SEPARATOR}{key.upper()}"


def setting_env_names() -> list[str]:
    """Every override variable there is, one per setting."""
    return [env_name(s, f.name) for s in SECTIONS for f in dataclasses.fields(getattr(Settings(), s))]


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type of the default, or fail naming ``where``."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(current, int):
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if isinstance(current, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read ``path`` (if given) and apply ``DSO_<SECTION>__<KEY>`` overrides from ``env``."""
    env = dict(os.environ if env is None else env)
    settings = Settings()
    if path is None and env.get(CONFIG_FILE_VAR):
        path = env[CONFIG_FILE_VAR]
    if path is not None:
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise ConfigError(f"{file}: config file not found (run `dso init DIR` first)")
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        settings.base_dir = file.parent
        settings.source = file
        for section, values in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"{file}: unknown section [{section}]")
            if not isinstance(values, dict):
                raise ConfigError(f"{file}: [{section}] must be a table")
            _apply(settings, section, values, lambda key, s=section, f=file: f"{f}: [{s}] {key}")
    overrides: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition(ENV_SEPARATOR)
        if section.lower() not in SECTIONS:
            raise ConfigError(f"environment {name}: unknown section [{section.lower()}]")
        overrides.setdefault(section.lower(), {})[key.lower()] = value
    for section, values in overrides.items():
        _apply(settings, section, values, lambda key, s=section: f"environment {env_name(s, key)}")
    _validate(settings)
    return settings


def _apply(settings: Settings, section: str, values: dict[str, Any], where) -> None:
    target = getattr(settings, section)
    known = {f.name for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where(key)}: unknown setting")
        setattr(target, key, _coerce(value, getattr(target, key), where(key)))


def _validate(s: Settings) -> None:
    where = s.source or "configuration"
    ports = (("server.port", s.server.port), ("admin.port", s.admin.port), ("openadr3.port", s.openadr3.port))
    for name, port in ports:
        if not 0 <= port <= 65535:
            raise ConfigError(f"{where}: {name} must be 0..65535, got {port}")
    if s.sep2.registration not in ("out-of-band", "in-band", "both"):
        raise ConfigError(f"{where}: sep2.registration must be out-of-band, in-band or both")
    if s.sep2.profile not in ("csip", "csip-aus"):
        raise ConfigError(f"{where}: sep2.profile must be csip or csip-aus")
    d = s.delivery
    if (
        d.initial_backoff_s < 1
        or d.max_backoff_s < d.initial_backoff_s
        or d.max_attempts < 1
        or d.timeout_s < 1
    ):
        raise ConfigError(
            f"{where}: delivery needs initial_backoff_s >= 1, max_backoff_s >= initial_backoff_s, "
            "max_attempts >= 1 and timeout_s >= 1"
        )
    if d.heartbeat_s < 1 or d.lease_s < 2 * d.heartbeat_s or d.stale_after_s < 2 * d.heartbeat_s:
        raise ConfigError(
            f"{where}: delivery needs heartbeat_s >= 1 and lease_s, stale_after_s >= 2 * heartbeat_s"
        )
    if d.max_in_flight < 1 or d.poll_interval_ms < 1 or d.keep_days < 0:
        raise ConfigError(
            f"{where}: delivery.max_in_flight and poll_interval_ms must be positive, keep_days not negative"
        )
    for network in d.allow_networks:
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"{where}: delivery.allow_networks entries must be networks like 10.20.0.0/16, got {network!r}"
            ) from None
    if s.openadr.vtn_id.islower() or not s.openadr.vtn_id.strip():
        # OpenADR VENs (openleadr among them) reject an all-lowercase vtnID
        raise ConfigError(f"{where}: openadr.vtn_id must not be empty or all lower case")
    oa = s.openadr
    if not (oa.availability_down_kw >= 0 and oa.availability_up_kw >= 0 and oa.availability_price >= 0):
        raise ConfigError(f"{where}: openadr.availability_down_kw, _up_kw and _price must not be negative")
    if s.openadr.max_body_bytes <= 0 or s.openadr.poll_freq_s <= 0:
        raise ConfigError(f"{where}: openadr.max_body_bytes and openadr.poll_freq_s must be positive")
    if s.openadr3.token_ttl_s < 1 or s.openadr3.max_body_bytes <= 0:
        raise ConfigError(f"{where}: openadr3.token_ttl_s must be >= 1 and openadr3.max_body_bytes positive")
    o = s.orchestration
    if o.forecast_interval_s < 1 or o.leader_retry_s < 1:
        raise ConfigError(f"{where}: orchestration.forecast_interval_s and leader_retry_s >= 1")
    if o.replan_interval_s < 1 or o.plan_horizon_s < 900 or o.plan_horizon_s > 48 * 3600:
        raise ConfigError(f"{where}: orchestration.replan_interval_s >= 1, plan_horizon_s 900..172800")
    if o.approval not in ("automatic", "operator"):
        raise ConfigError(f"{where}: orchestration.approval must be automatic or operator")
    if not 0 < o.quantile < 1 or o.envelope_policy not in ("equal", "proportional", "max"):
        raise ConfigError(f"{where}: orchestration.quantile 0..1, envelope_policy equal|proportional|max")
    if o.day_ahead_at:
        try:
            hh, mm = (int(x) for x in o.day_ahead_at.split(":"))
            if not (0 <= hh < 24 and 0 <= mm < 60):
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}: orchestration.day_ahead_at must be HH:MM (UTC) or empty") from None
    a = s.alarms
    if a.comms_lost_factor < 1 or a.check_interval_s < 1 or a.contact_flush_s < 1:
        raise ConfigError(
            f"{where}: alarms.comms_lost_factor, check_interval_s and contact_flush_s must be >= 1"
        )
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.sep2.time_zone)
    except (ValueError, KeyError, OSError):
        raise ConfigError(
            f"{where}: sep2.time_zone must be an IANA time zone, got {s.sep2.time_zone!r}"
        ) from None
    if not 0 <= s.sep2.pen <= 99_999_999:
        raise ConfigError(f"{where}: sep2.pen must be 0..99999999")
    if s.logging.format not in ("json", "text", "auto"):
        raise ConfigError(f"{where}: logging.format must be json, text or auto")
    if s.logging.requests not in REQUEST_LOGS:
        raise ConfigError(f"{where}: logging.requests must be all, changes or none")


def write_settings(settings: Settings, path: Path) -> None:
    path.write_bytes(tomli_w.dumps(settings.to_toml_dict()).encode())
    path.chmod(0o600)  # holds the admin token
