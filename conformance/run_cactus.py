#!/usr/bin/env python3
"""Run cactus-client (the CSIP-AUS server test harness) against a fresh OpenDSO, unattended.

    python conformance/run_cactus.py S-ALL-01 S-ALL-02        # chosen procedures
    python conformance/run_cactus.py --all                     # every procedure cactus knows
    python conformance/run_cactus.py --target                  # the CSIP-AUS procedures this server targets

What it does:
1. creates (once) a Python 3.12 venv ``conformance/.venv-cactus`` with pinned cactus-client 1.1.0 and
   cactus-test-definitions 1.18.2, and (every run) ``pip install ./conformance`` (our admin plugin);
2. ``dso init`` a fresh data directory (fresh dev PKI), issues client certificates dev1, dev2 (devices) and
   agg1 (aggregator), and writes ``.cactus.yaml`` (dcap URI, SERCA pem, client cert/key/LFDI/SFDI/PIN);
3. for each procedure: empties the database, starts ``dso serve``, runs
   ``cactus run PROC CLIENTS --headless`` with ``DSO_ADMIN_URL``/``DSO_ADMIN_TOKEN`` set for the plugin
   (exit 0 pass, 2 fail), stops the server;
4. prints a PASS/FAIL table and totals; logs are kept under the work directory.

Run it with the project's interpreter (the one with ``dso`` installed), e.g. ``.venv/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv-cactus"
sys.path.insert(0, str(REPO))
from server.pki import sfdi_from_lfdi  # noqa: E402 - needs the repository on the path first

PINS = ["cactus-client==1.1.0", "cactus-test-definitions==1.18.2"]
PYTHON_VERSION = os.environ.get("CACTUS_PYTHON_VERSION", "3.12.1")
TARGET = (
    ["S-ALL-01", "S-ALL-02", "S-ALL-03", "S-ALL-04", "S-ALL-05"]
    + [f"S-ALL-{n:02d}" for n in range(8, 25)]
    + [f"S-ALL-{n}" for n in (41, 42, 43, 44, 45, 47, 48, 49, 51, 52, 53, 55, 56, 57)]
    + [f"S-OPT-0{n}" for n in (1, 2, 3, 4)]
)
MAX_WATTS = 10_000
PEN = 12345


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_venv(reinstall_plugin: bool = True) -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {VENV} (Python {PYTHON_VERSION})")
        env = {**os.environ, "PYENV_VERSION": PYTHON_VERSION}
        subprocess.run(["pyenv", "exec", "python", "-m", "venv", str(VENV)], check=True, env=env)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    if reinstall_plugin:
        # a copy keeps pip's build artefacts out of the source tree
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "conformance"
            shutil.copytree(
                HERE,
                src,
                ignore=shutil.ignore_patterns(".venv*", "__pycache__", "*.egg-info", "build", "work*"),
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(src)],
                check=True,
            )
    return python


def dso(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"dso {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def pin_with_check(raw: int) -> int:
    """A 2030.5 registration PIN: five digits then the check digit that makes the six digits sum to a multiple
    of 10 (as the SFDI's; the server refuses a PIN whose check digit is wrong)."""
    return raw * 10 + (10 - sum(int(d) for d in f"{raw:05d}") % 10) % 10


def required_clients(python: Path, procedures: list[str]) -> dict[str, list[str | None]]:
    code = (
        "import json,sys\n"
        "from cactus_test_definitions.server.test_procedures import get_test_procedure, TestProcedureId\n"
        "out={}\n"
        "for p in sys.argv[1:]:\n"
        "    tp=get_test_procedure(TestProcedureId(p))\n"
        "    out[p]=[None if c.client_type is None else str(c.client_type) "
        "for c in tp.preconditions.required_clients]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(python), "-c", code, *procedures], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def all_procedures(python: Path) -> list[str]:
    code = (
        "from cactus_test_definitions.server.test_procedures import TestProcedureId\n"
        "print(' '.join(str(t) for t in TestProcedureId))"
    )
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def client_ids(types: list[str | None]) -> list[str]:
    devices, aggregators, chosen = ["dev1", "dev2"], ["agg1"], []
    for t in types:
        pool = aggregators if t == "aggregator" else devices
        chosen.append(pool.pop(0))
    return chosen


class Server:
    def __init__(self, info: dict, home: Path) -> None:
        self.info, self.home, self.proc = info, home, None

    def start(self) -> None:
        for f in self.home.glob("dso.sqlite3*"):
            f.unlink()  # every procedure starts from an empty database (same PKI)
        out = open(self.home / "serve.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "-c", self.info["config"]],
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.info["admin_url"] + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"server did not start; see {self.home / 'serve.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("procedures", nargs="*", metavar="PROC")
    parser.add_argument("--all", action="store_true", help="every procedure cactus-test-definitions has")
    parser.add_argument("--target", action="store_true", help="the CSIP-AUS procedures this server targets")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per procedure (default 900)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a new temp dir)")
    parser.add_argument("--profile", choices=("csip", "csip-aus"), default="csip-aus")
    args = parser.parse_args(argv)

    python = ensure_venv()
    procedures = all_procedures(python) if args.all else (TARGET if args.target else args.procedures)
    if not procedures:
        parser.error("name procedures, or pass --all / --target")
    clients_needed = required_clients(python, procedures)

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="cactus-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home = work / "dso"
    os.environ["DSO_SEP2__PEN"] = str(PEN)
    # CSIP-AUS deployments poll and post every minute; cactus times its waits (polling windows, readings) on them
    os.environ.setdefault("DSO_SEP2__POLL_RATE_S", "60")
    os.environ.setdefault("DSO_SEP2__POST_RATE_S", "60")
    os.environ["DSO_SEP2__PROFILE"] = args.profile
    os.environ["DSO_LOGGING__FORMAT"] = "text"
    info = json.loads(
        dso("init", str(home), "--port", str(free_port()), "--admin-port", str(free_port()), "--json").stdout
    )
    certs = {
        name: json.loads(
            dso(
                "certs",
                "device",
                name,
                "--json",
                "-c",
                info["config"],
                *(["--aggregator"] if name.startswith("agg") else []),
            ).stdout
        )
        for name in ("dev1", "dev2", "agg1")
    }
    output = work / "output"
    output.mkdir(exist_ok=True)
    clients = []
    for n, (name, cert) in enumerate(certs.items()):
        aggregator = name.startswith("agg")
        # an aggregator registers devices that are not itself: give it a device LFDI of its own making
        lfdi = cert["lfdi"] if not aggregator else f"{n:02X}" * 4 + cert["lfdi"][8:]
        clients.append(
            {
                "id": name,
                "type": "aggregator" if aggregator else "device",
                "certificate_file": cert["cert"],
                "key_file": cert["key"],
                "lfdi": lfdi,
                "sfdi": sfdi_from_lfdi(lfdi),
                "pen": PEN,
                "pin": pin_with_check(12340 + n),
                "max_watts": MAX_WATTS,
            }
        )
    # notifications (S-ALL-25..40): our own receiver speaks cactus-client-notifications' API on loopback
    from notification_receiver import start as start_receiver

    receiver = start_receiver()
    os.environ["DSO_DELIVERY__ALLOW_HTTP_LOOPBACK"] = "true"
    os.environ.setdefault("DSO_DELIVERY__INITIAL_BACKOFF_S", "1")
    os.environ.setdefault("DSO_DELIVERY__MAX_BACKOFF_S", "5")
    # S-ALL-46 keeps the webhook failing for 5 minutes: keep retrying (every 5 s) rather than give up
    os.environ.setdefault("DSO_DELIVERY__MAX_ATTEMPTS", "1000")
    os.environ.setdefault("DSO_DELIVERY__POLL_INTERVAL_MS", "200")
    config = {
        "output_dir": str(output),
        "server": {
            "device_capability_uri": info["dcap_url"],
            "verify_ssl": True,
            "verify_host_name": True,
            "serca_pem_file": info["ca"],
            "pen": PEN,
            "notification_uri": receiver.base_url,
        },
        "clients": clients,
    }
    cactus_yaml = work / ".cactus.yaml"
    cactus_yaml.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log(f"work directory {work}")

    env = {**os.environ, "DSO_ADMIN_URL": info["admin_url"], "DSO_ADMIN_TOKEN": info["admin_token"]}
    server = Server(info, home)
    results: list[tuple[str, str, float]] = []
    try:
        for proc_id in procedures:
            ids = client_ids(clients_needed[proc_id])
            server.start()
            began = time.monotonic()
            logfile = work / f"{proc_id}.log"
            with open(logfile, "wb") as out:
                try:
                    code = subprocess.run(
                        [
                            str(VENV / "bin" / "cactus"),
                            "run",
                            "-c",
                            str(cactus_yaml),
                            "--timeout",
                            str(args.timeout),
                            proc_id,
                            *ids,
                            "--headless",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=work,
                        env=env,
                        timeout=args.timeout + 60,
                    ).returncode
                except subprocess.TimeoutExpired:
                    code = -1
            server.stop()
            verdict = {0: "PASS", 2: "FAIL"}.get(code, f"ERROR({code})")
            results.append((proc_id, verdict, time.monotonic() - began))
            log(f"{proc_id:10} {verdict:10} {time.monotonic() - began:7.1f}s  {logfile}")
    finally:
        server.stop()
        receiver.stop()

    print(f"\n{'procedure':10}  {'result':10}  {'seconds':>8}")
    for proc_id, verdict, secs in results:
        print(f"{proc_id:10}  {verdict:10}  {secs:8.1f}")
    passed = sum(1 for _, v, _ in results if v == "PASS")
    print(f"\n{passed} passed, {len(results) - passed} failed, {len(results)} total  (logs: {work})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
