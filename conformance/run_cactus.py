#!/usr/bin/env python3
"""Run cactus-client (the CSIP-AUS server test harness) against a fresh OpenDSO, unattended.

    python conformance/run_cactus.py S-ALL-01 S-ALL-02        # chosen procedures
    python conformance/run_cactus.py --all                     # every procedure cactus knows
    python conformance/run_cactus.py --target                  # the CSIP-AUS procedures this server targets
    python conformance/run_cactus.py --line newest --all --strict --jobs 2

Two lines of cactus can be chosen (``--line``), each in its own Python 3.12 venv:

* ``pinned`` (default): cactus-client 1.1.0 with cactus-test-definitions 1.18.2, ``conformance/.venv-cactus``;
* ``newest``: cactus-client 1.3.3 with the cactus-test-definitions it brings (1.15.0),
  ``conformance/.venv-cactus-newest``.

``--strict`` is cactus-client's own: a warning fails the procedure. ``--venv PATH`` runs a cactus venv made by
hand instead (e.g. cactus-client with test definitions not yet released).

What it does:
1. creates (once) the line's venv, and (every run) ``pip install ./conformance`` into it (our admin plugin);
2. per lane (``--jobs``, default 1; lanes run procedures side by side): ``dso init`` a fresh data directory
   (fresh dev PKI, its own ports), issues client certificates dev1, dev2 (devices) and agg1 (aggregator), and
   writes its ``.cactus.yaml`` (dcap URI, SERCA pem, client cert/key/LFDI/SFDI/PIN);
3. for each procedure, on the next free lane: empties the database, starts ``dso serve`` from this checkout
   (``PYTHONPATH`` and the working directory are the repository, and the runner prints which ``server`` package
   that imports), runs ``cactus run PROC CLIENTS --headless`` with ``DSO_ADMIN_URL``/``DSO_ADMIN_TOKEN`` set for
   the plugin (exit 0 pass, 2 fail), stops the server;
4. prints a PASS/FAIL table and totals; logs are kept under the work directory.

Run it with the project's interpreter (the one with ``dso`` installed), e.g. ``.venv/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from server.pki import sfdi_from_lfdi  # noqa: E402 - needs the repository on the path first

# line -> (venv, pins)
LINES = {
    "pinned": (HERE / ".venv-cactus", ["cactus-client==1.1.0", "cactus-test-definitions==1.18.2"]),
    "newest": (HERE / ".venv-cactus-newest", ["cactus-client==1.3.3", "cactus-test-definitions==1.15.0"]),
}
PYTHON_VERSION = os.environ.get("CACTUS_PYTHON_VERSION", "3.12.1")
TARGET = (
    ["S-ALL-01", "S-ALL-02", "S-ALL-03", "S-ALL-04", "S-ALL-05"]
    + [f"S-ALL-{n:02d}" for n in range(8, 25)]
    + [f"S-ALL-{n}" for n in (41, 42, 43, 44, 45, 47, 48, 49, 51, 52, 53, 55, 56, 57)]
    + [f"S-OPT-0{n}" for n in (1, 2, 3, 4)]
)
MAX_WATTS = 10_000
# seconds a fresh server has to answer /healthz: start-up (migrations, listeners) takes ~5 s on an idle machine and
# several times that on a loaded one, which must not count against the procedure
START_S = float(os.environ.get("CACTUS_SERVER_START_S", "120"))
PEN = 12345


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_venv(line: str = "pinned", reinstall_plugin: bool = True, venv: Path | None = None) -> Path:
    """The line's venv (created when missing), or ``venv``, a cactus venv made by hand; our plugin installed."""
    own, pins = LINES[line]
    if venv is not None and not (venv / "bin" / "cactus").exists():
        raise SystemExit(f"{venv} has no cactus-client")
    venv = venv or own
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv} (Python {PYTHON_VERSION})")
        env = {**os.environ, "PYENV_VERSION": PYTHON_VERSION}
        subprocess.run(["pyenv", "exec", "python", "-m", "venv", str(venv)], check=True, env=env)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
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


def server_env() -> dict[str, str]:
    """The environment of every ``dso`` the runner starts: this checkout's ``server`` package first."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def dso(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, cwd=REPO, env=server_env()
    )
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


def waits(python: Path, procedures: list[str]) -> dict[str, float]:
    """Seconds each procedure spends in its ``wait`` steps (what makes a procedure long)."""
    code = (
        "import json,sys\n"
        "from cactus_test_definitions.server.test_procedures import get_test_procedure, TestProcedureId\n"
        "out={}\n"
        "for p in sys.argv[1:]:\n"
        "    steps=get_test_procedure(TestProcedureId(p)).steps\n"
        "    out[p]=sum(float((s.action.parameters or {}).get('duration_seconds',0)) "
        "for s in steps if str(s.action.type)=='wait')\n"
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
            env=server_env(),
        )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break  # it exited: no point waiting
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


def make_lane(work: Path, receiver_url: str, n: int) -> tuple[Path, dict, Path]:
    """A data directory with its own PKI, ports and client certificates, and its ``.cactus.yaml``."""
    lane = work / f"lane{n}"
    lane.mkdir(parents=True, exist_ok=True)
    home = lane / "dso"
    ports = (
        "--port",
        str(free_port()),
        "--admin-port",
        str(free_port()),
        "--openadr3-port",
        str(free_port()),
    )
    info = json.loads(dso("init", str(home), *ports, "--json").stdout)
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
    output = lane / "output"
    output.mkdir(exist_ok=True)
    clients = []
    for k, (name, cert) in enumerate(certs.items()):
        aggregator = name.startswith("agg")
        # an aggregator registers devices that are not itself: give it a device LFDI of its own making
        lfdi = cert["lfdi"] if not aggregator else f"{k:02X}" * 4 + cert["lfdi"][8:]
        clients.append(
            {
                "id": name,
                "type": "aggregator" if aggregator else "device",
                "certificate_file": cert["cert"],
                "key_file": cert["key"],
                "lfdi": lfdi,
                "sfdi": sfdi_from_lfdi(lfdi),
                "pen": PEN,
                "pin": pin_with_check(12340 + k),
                "max_watts": MAX_WATTS,
            }
        )
    config = {
        "output_dir": str(output),
        "server": {
            "device_capability_uri": info["dcap_url"],
            "verify_ssl": True,
            "verify_host_name": True,
            "serca_pem_file": info["ca"],
            "pen": PEN,
            "notification_uri": receiver_url,
        },
        "clients": clients,
    }
    cactus_yaml = lane / ".cactus.yaml"
    cactus_yaml.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return home, info, cactus_yaml


def run_one(
    venv: Path,
    lane: tuple[Path, dict, Path],
    proc_id: str,
    ids: list[str],
    args: argparse.Namespace,
    work: Path,
) -> tuple[str, str, float]:
    home, info, cactus_yaml = lane
    env = {**os.environ, "DSO_ADMIN_URL": info["admin_url"], "DSO_ADMIN_TOKEN": info["admin_token"]}
    server = Server(info, home)
    began = time.monotonic()
    logfile = work / f"{proc_id}.log"
    try:
        server.start()
        with open(logfile, "wb") as out:
            try:
                code = subprocess.run(
                    [
                        str(venv / "bin" / "cactus"),
                        "run",
                        "-c",
                        str(cactus_yaml),
                        "--timeout",
                        str(args.timeout),
                        *(["--strict"] if args.strict else []),
                        proc_id,
                        *ids,
                        "--headless",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cactus_yaml.parent,
                    env=env,
                    timeout=args.timeout + 60,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
    finally:
        server.stop()
    verdict = {0: "PASS", 2: "FAIL"}.get(code, f"ERROR({code})")
    secs = time.monotonic() - began
    log(f"{proc_id:10} {verdict:10} {secs:7.1f}s  {logfile}")
    return proc_id, verdict, secs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("procedures", nargs="*", metavar="PROC")
    parser.add_argument("--all", action="store_true", help="every procedure cactus-test-definitions has")
    parser.add_argument("--target", action="store_true", help="the CSIP-AUS procedures this server targets")
    parser.add_argument(
        "--line", choices=sorted(LINES), default="pinned", help="which cactus (default pinned)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="cactus --strict: a warning fails the procedure"
    )
    parser.add_argument("--jobs", type=int, default=1, help="procedures run side by side (default 1)")
    parser.add_argument(
        "--venv", type=Path, help="a cactus venv made by hand (e.g. with unreleased test definitions) instead"
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds per procedure (default 900)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a new temp dir)")
    parser.add_argument("--profile", choices=("csip", "csip-aus"), default="csip-aus")
    args = parser.parse_args(argv)

    venv = args.venv.resolve() if args.venv else LINES[args.line][0]
    python = ensure_venv(args.line, venv=args.venv and venv)
    procedures = all_procedures(python) if args.all else (TARGET if args.target else args.procedures)
    if not procedures:
        parser.error("name procedures, or pass --all / --target")
    clients_needed = required_clients(python, procedures)
    versions = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    pinned = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(versions)}
    imported = subprocess.run(
        [sys.executable, "-c", "import server; print(server.__file__)"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=server_env(),
        check=True,
    ).stdout.strip()
    log(
        f"cactus-client {pinned.get('cactus-client')} + cactus-test-definitions "
        f"{pinned.get('cactus-test-definitions')}{' --strict' if args.strict else ''}; "
        f"server under test imports {imported}"
    )

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="cactus-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DSO_SEP2__PEN"] = str(PEN)
    # CSIP-AUS deployments poll and post every minute; cactus times its waits (polling windows, readings) on them
    os.environ.setdefault("DSO_SEP2__POLL_RATE_S", "60")
    os.environ.setdefault("DSO_SEP2__POST_RATE_S", "60")
    os.environ["DSO_SEP2__PROFILE"] = args.profile
    os.environ["DSO_LOGGING__FORMAT"] = "text"
    # lanes side by side, each on its own loopback ports
    os.environ["DSO_SERVER__HOST"] = os.environ["DSO_OPENADR3__HOST"] = "127.0.0.1"
    # notifications (S-ALL-25..40): our own receiver speaks cactus-client-notifications' API on loopback
    from notification_receiver import start as start_receiver

    receiver = start_receiver()
    os.environ["DSO_DELIVERY__ALLOW_HTTP_LOOPBACK"] = "true"
    os.environ.setdefault("DSO_DELIVERY__INITIAL_BACKOFF_S", "1")
    os.environ.setdefault("DSO_DELIVERY__MAX_BACKOFF_S", "5")
    # S-ALL-46 keeps the webhook failing for 5 minutes: keep retrying (every 5 s) rather than give up
    os.environ.setdefault("DSO_DELIVERY__MAX_ATTEMPTS", "1000")
    os.environ.setdefault("DSO_DELIVERY__POLL_INTERVAL_MS", "200")
    lanes = [make_lane(work, receiver.base_url, n) for n in range(max(1, args.jobs))]
    log(f"work directory {work}")

    # the longest first, so the lanes finish together; the table keeps the order asked for
    wait = waits(python, procedures)
    order = sorted(procedures, key=lambda p: -wait.get(p, 0.0)) if len(lanes) > 1 else procedures
    free: queue.Queue[tuple[Path, dict, Path]] = queue.Queue()
    for lane in lanes:
        free.put(lane)

    def on_a_lane(proc_id: str) -> tuple[str, str, float]:
        lane = free.get()
        try:
            return run_one(venv, lane, proc_id, client_ids(clients_needed[proc_id]), args, work)
        except (Exception, SystemExit) as exc:  # a server that would not start fails this procedure only
            log(f"{proc_id:10} ERROR      {exc}")
            return proc_id, "ERROR(start)", 0.0
        finally:
            free.put(lane)

    try:
        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            done = dict(zip(order, pool.map(on_a_lane, order), strict=True))
        results = [done[p] for p in procedures]
    finally:
        receiver.stop()

    print(
        f"\ncactus-client {pinned.get('cactus-client')}, cactus-test-definitions "
        f"{pinned.get('cactus-test-definitions')}{', --strict' if args.strict else ''}"
    )
    print(f"\n{'procedure':10}  {'result':10}  {'seconds':>8}")
    for proc_id, verdict, secs in results:
        print(f"{proc_id:10}  {verdict:10}  {secs:8.1f}")
    passed = sum(1 for _, v, _ in results if v == "PASS")
    print(f"\n{passed} passed, {len(results) - passed} failed, {len(results)} total  (logs: {work})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
