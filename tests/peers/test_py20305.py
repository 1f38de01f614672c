"""A second, independent peer: py20305's DER client (``py20305 --config client.yaml``) against the live server.

Staff enroll the device out-of-band with a PIN and send it a control; the real client then discovers
DeviceCapability/EndDevice/Registration/FSA/DERProgram/DERControl, PUTs its DERCapability, DERSettings,
DERStatus and DERAvailability, creates its MirrorUsagePoint and answers the control with Responses. Every one of
those requests must be accepted (no 4xx/5xx in the server's access log).

py20305 speaks IEEE 2030.5-2023 by default (``schemaVer="2.2"``, DERStatus ``connectStatus``, MirrorUsagePoint
``subscribable``, DERControlResponse ``modesResponded``); with its ``server_2018_compat`` switch it speaks 2018.
The server accepts both: the test runs each, and with the default it also checks the 2023 fields that carry
meaning reached staff (the connect status, the modes a Response names).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import LiveServer

PY20305 = shutil.which("py20305", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(PY20305 is None, reason="py20305[cli] is not installed (it is in the test extra)")
@pytest.mark.parametrize("compat_2018", [True, False], ids=["2018", "default-2023"])
def test_py20305_client_registers_discovers_reports_and_responds(tmp_path, compat_2018):
    server = LiveServer(tmp_path / "dso", extra_env={"DSO_SEP2__POLL_RATE_S": "10"}).init().start()
    client = None
    try:
        cert = server.issue_device("py20305")
        lfdi = cert["lfdi"]
        status, _ = server.admin("PUT", f"/api/v1/sep2/end-devices/{lfdi}", {"pin": 123455})
        assert status == 201
        status, control = server.admin(
            "POST",
            "/api/v1/controls",
            {"lfdi": lfdi, "start": "now", "duration_s": 600, "base": {"opModExpLimW": 2000}},
        )
        assert status == 201
        config = {
            "server": {"url": server.url, **({"server_2018_compat": True} if compat_2018 else {})},
            "tls": {"client_cert": cert["cert"], "client_key": cert["key"], "ca_cert": server.ca},
            "devices": [{"type": "print_demo", "lfdi": lfdi, "pin": 123455}],
            "history": {"enabled": False},
            "connection": {"retry_forever": False, "max_attempts": 3, "initial_delay_seconds": 1},
        }
        (tmp_path / "client.yaml").write_text(json.dumps(config))  # JSON is YAML
        log = open(tmp_path / "client.log", "wb")  # noqa: SIM115 - closed with the process
        client = subprocess.Popen(
            [PY20305, "--config", str(tmp_path / "client.yaml")], stdout=log, stderr=log
        )

        deadline = time.monotonic() + 60
        view, responses, mups = {}, [], []
        while time.monotonic() < deadline:
            time.sleep(1)
            _, view = server.admin("GET", f"/api/v1/sep2/devices/{lfdi}")
            _, responses = server.admin("GET", f"/api/v1/controls/{control['id']}/responses")
            _, mups = server.admin("GET", f"/api/v1/sep2/mups?owner={lfdi}")
            if (
                set(view["reported"]) >= {"dercap", "derg", "ders", "dera"}
                and {1, 2} <= {r["status"] for r in responses}
                and mups
            ):
                break
        client_log = (tmp_path / "client.log").read_text(errors="replace")
        assert set(view["reported"]) >= {"dercap", "derg", "ders", "dera"}, client_log[-3000:]
        assert {1, 2} <= {r["status"] for r in responses}, client_log[-3000:]  # received, started
        assert all(r["lfdi"] == lfdi for r in responses)
        assert mups and mups[0]["device_lfdi"] == lfdi
        status_view = view["status"]
        assert status_view["edition"] == ("2018" if compat_2018 else "2023")
        if not compat_2018:
            assert status_view["connect_status"]["field"] == "connectStatus", view["reported"]["ders"]
            assert any(r["modes_responded"] is not None for r in responses), responses
        rejected = [
            line
            for line in server.log().splitlines()
            if '"listener": "protocol"' in line and json.loads(line).get("status", 200) >= 400
        ]
        assert rejected == [], rejected
    finally:
        if client is not None:
            client.terminate()
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
        server.stop()
