"""``dso init``, ``dso serve``, ``dso status`` and ``dso certs``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import secrets
import socket
from pathlib import Path

from server.cli.common import CliError, add_config_arg, add_json_arg, admin, config_path, emit, settings_from
from server.config import Settings, load_settings, write_settings
from server.pki import DevPki


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a data directory: config, dev PKI, database (idempotent)")
    p.add_argument("dir", help="data directory to create or complete")
    p.add_argument("--port", type=int, help="protocol (mTLS) listener port (default 8443)")
    p.add_argument("--admin-port", type=int, help="admin API port (default 8444)")
    p.add_argument("--openadr3-port", type=int, help="OpenADR 3.1 (HTTPS, bearer tokens) port (default 8445)")
    p.add_argument("--host", help="address clients use to reach the server (default 127.0.0.1)")
    p.add_argument("--database-url", help="database URL (default: SQLite file in DIR)")
    add_json_arg(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run the server until SIGINT/SIGTERM")
    add_config_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("status", help="what is running: version, counts, database backend")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_status)

    certs = sub.add_parser("certs", help="issue client certificates from the dev PKI")
    csub = certs.add_subparsers(dest="certs_command", metavar="KIND", required=True, parser_class=type(certs))
    p = csub.add_parser(
        "device", help="a 2030.5 device (or aggregator) certificate; prints its LFDI and SFDI"
    )
    p.add_argument("name", help="file stem under DIR/pki/clients/")
    p.add_argument("--aggregator", action="store_true", help="mark it as an aggregator (service provider)")
    _replace_arg(p)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_certs_device)
    p = csub.add_parser("ven", help="an OpenADR VEN certificate; prints its fingerprint")
    p.add_argument("name", help="file stem under DIR/pki/clients/")
    p.add_argument("--rsa", action="store_true", help="RSA-2048 instead of ECC P-256")
    _replace_arg(p)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_certs_ven)


def _replace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replace",
        action="store_true",
        help="issue a new key and certificate over an existing NAME (what was enrolled with the old one no "
        "longer matches)",
    )


def _check_port(value: int | None, flag: str) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise CliError(f"{flag} must be 1..65535, got {value}")


def init_data_dir(
    directory: Path,
    port: int | None = None,
    admin_port: int | None = None,
    host: str | None = None,
    database_url: str | None = None,
    openadr3_port: int | None = None,
) -> tuple[Settings, dict]:
    """Create or complete a data directory (config, dev PKI, migrated database); ``dso init`` and ``dso demo``."""
    from server.app import open_runtime

    _check_port(port, "--port")
    _check_port(admin_port, "--admin-port")
    _check_port(openadr3_port, "--openadr3-port")
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise CliError(f"{directory} is a file, not a directory: give a data directory to create or complete")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "dso.toml"
    settings = load_settings(config, env={}) if config.exists() else Settings(base_dir=directory)
    if port is not None:
        settings.server.port = port
    if admin_port is not None:
        settings.admin.port = admin_port
    if openadr3_port is not None:
        settings.openadr3.port = openadr3_port
    if host:
        settings.server.public_host = host
    if database_url:
        settings.database.url = database_url
    if not settings.admin.token:
        settings.admin.token = secrets.token_urlsafe(32)
    write_settings(settings, config)
    settings = load_settings(config)  # now with DSO_* overrides, as `serve` will see it
    hosts = sorted({"127.0.0.1", "localhost", "::1", settings.server.public_host})
    DevPki(settings.path(settings.pki.dir)).ensure(hosts)

    if not settings.database.url:  # the default SQLite file holds what the config's token guards: same mode
        database = settings.base_dir / "dso.sqlite3"
        database.touch(mode=0o600)
        database.chmod(0o600)

    async def migrate() -> None:
        rt = await open_runtime(settings)
        await rt.store.close()

    asyncio.run(migrate())
    info = {
        "config": str(config),
        "ca": str(settings.path(settings.pki.ca)),
        "server_url": settings.server_url,
        "dcap_url": settings.server_url + "/dcap",
        "openadr_url": settings.server_url + settings.openadr.prefix,
        "openadr3_url": settings.openadr3_url,
        "admin_url": settings.admin_url,
        "admin_token": settings.admin.token,
        "database": settings.database_url,
    }
    return settings, info


def cmd_init(args: argparse.Namespace) -> int:
    _, info = init_data_dir(
        Path(args.dir), args.port, args.admin_port, args.host, args.database_url, args.openadr3_port
    )
    human = "\n".join(f"{k:12} {v}" for k, v in info.items() if k != "admin_token")
    emit(args, info, human + f"\n\nstart it with: dso serve -c {info['config']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # forecasts fit small matrices in worker threads: BLAS thread pools there only fight the event loop for the
    # cores (measured ~100x slower on a busy 2-core host); must be set before numpy loads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = settings_from(args)
    for section in ("server", "admin"):  # before any start-up work: a taken port is the usual first mistake
        part = getattr(settings, section)
        _check_free(part.host, part.port, section, settings.server.reuse_port)
    for name in ("ca", "server_cert", "server_key"):
        path = settings.path(getattr(settings.pki, name))
        if not path.exists():
            raise CliError(f"{settings.source}: [pki] {name} = {path} does not exist (run `dso init`)")
    from server.app import serve
    from server.observability import setup_logging

    setup_logging(settings.logging.level, settings.logging.format)
    asyncio.run(serve(settings))
    return 0


def _check_free(host: str, port: int, section: str, reuse_port: bool = False) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as the listener will; TIME_WAIT is no conflict
        if reuse_port:  # as the listener will: another `dso serve` with it set is no conflict either
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            hint = "; is another server running there?" if exc.errno == errno.EADDRINUSE else ""
            reason = (exc.strerror or str(exc)).lower()
            raise CliError(
                f"cannot listen on {where} ({section}.host/{section}.port): {reason}{hint}"
            ) from None


def cmd_status(args: argparse.Namespace) -> int:
    info = admin(args).call("GET", "/api/v1/status")
    human = (
        f"OpenDSO {info['version']} (pid {info['pid']}, up {info['uptime_s']} s)\n"
        f"protocol  {info['server_url']}\nadmin     {info['admin_url']}\n"
        f"database  {info['database']['backend']} (revision {info['database']['revision']})\n"
        f"devices   {info['devices']}\nVENs      {info['vens']}"
    )
    emit(args, info, human)
    return 0


def _pki(args: argparse.Namespace) -> DevPki:
    settings = settings_from(args)
    pki = DevPki(settings.path(settings.pki.dir))
    if not (pki.dir / "mica.key").exists():
        raise CliError(f"no dev PKI at {pki.dir} (run `dso init` first; {config_path(args.config)})")
    return pki


def _issue(args: argparse.Namespace, make, human) -> int:
    pki = _pki(args)
    cert = pki.clients / f"{args.name}.pem"
    if not args.replace and (cert.exists() or cert.with_suffix(".key").exists()):
        raise CliError(
            f"{cert} exists{_existing(cert)}: pick another name, or pass --replace to issue a new key and "
            "certificate (whatever was enrolled with the old one will no longer match)"
        )
    try:
        out = make(pki)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    emit(args, out, human(out))
    return 0


def _existing(cert: Path) -> str:
    from cryptography import x509

    from server import pki

    try:
        return f" (LFDI {pki.lfdi(x509.load_pem_x509_certificate(cert.read_bytes()))})"
    except (OSError, ValueError):
        return ""


def cmd_certs_device(args: argparse.Namespace) -> int:
    return _issue(
        args,
        lambda pki: pki.issue_device(args.name, aggregator=args.aggregator),
        lambda out: (
            f"{'aggregator' if out['aggregator'] else 'device'} {out['name']}\n"
            f"LFDI  {out['lfdi']}\nSFDI  {out['sfdi']}\ncert  {out['cert']}\nkey   {out['key']}"
        ),
    )


def cmd_certs_ven(args: argparse.Namespace) -> int:
    return _issue(
        args,
        lambda pki: pki.issue_ven(args.name, use_rsa=args.rsa),
        lambda out: (
            f"VEN {out['name']} ({'RSA-2048' if out['rsa'] else 'ECC P-256'})\n"
            f"fingerprint  {out['fingerprint']}\ncert         {out['cert']}\nkey          {out['key']}"
        ),
    )
