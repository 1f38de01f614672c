"""The 2030.5 flow on both database backends, the registration setting, and the ``dso program``/``dso control``
CLI against a real server."""

from __future__ import annotations

import json

import pytest
from support import LiveServer, dso
from support.sep2 import Sep2Client, edev_xml

from server.sep2 import xml


def test_register_control_respond_on_each_backend(tmp_path, database_url):
    server = (
        LiveServer(tmp_path / "dso", database_url=database_url, extra_env={"DSO_SEP2__PEN": "777"})
        .init()
        .start()
    )
    try:
        c = Sep2Client(server, server.issue_device("d1"))
        href = c.register()
        status, made = server.admin(
            "POST",
            "/api/v1/controls",
            {"lfdi": c.lfdi, "start": "now", "duration_s": 120, "base": {"opModGenLimW": 3000}},
        )
        assert status == 201, made
        fsa = c.get(href + "/fsa?l=5").all("FunctionSetAssignments")[0].get("href")
        derp = c.get(fsa + "/derp?l=5").all("DERProgram")[0].get("href")
        derc = c.get(derp + "/derc?l=5").all("DERControl")[0]
        mrid = xml.text(derc, "mRID")
        assert mrid.endswith("00000777")
        body = (
            f'<DERControlResponse xmlns="{xml.NS}"><endDeviceLFDI>{c.lfdi}</endDeviceLFDI><status>2</status>'
            f"<subject>{mrid}</subject></DERControlResponse>"
        )
        assert c.post("/rsps/1/rsp", body).status == 201
        status, found = server.admin("GET", f"/api/v1/controls/{made['id']}/responses")
        assert [r["status"] for r in found] == [2]
        # state survives a restart (it lives in the database only)
        server.restart()
        assert c.get(href).status == 200
    finally:
        server.stop()


def test_out_of_band_only_refuses_in_band_registration(tmp_path):
    server = LiveServer(tmp_path / "dso", extra_env={"DSO_SEP2__REGISTRATION": "out-of-band"}).init().start()
    try:
        c = Sep2Client(server, server.issue_device("d1"))
        r = c.post("/edev", edev_xml(c.lfdi, c.sfdi))
        assert r.status == 403 and r.root is not None
        assert c.get("/edev?l=5").root.get("all") == "0"
        # staff enroll it with a PIN; the device then finds itself and its Registration
        status, _ = server.admin("PUT", f"/api/v1/sep2/end-devices/{c.lfdi}", {"pin": 123455})
        assert status == 201
        edev = c.get("/edev?l=5").all("EndDevice")[0]
        rg = c.get(xml.find(edev, "RegistrationLink").get("href"))
        assert rg.text("pIN") == "123455"
    finally:
        server.stop()


def _cli(server: LiveServer, *args: str) -> dict | list:
    return json.loads(dso(*args, "-c", server.config, "--json").stdout)


@pytest.mark.usefixtures("sep2_server")
def test_cli_program_and_control_commands(sep2_server: LiveServer, new_client):
    c = new_client()
    c.register()
    p = _cli(sep2_server, "program", "create", "--name", "cli-prog", "--primacy", "4")
    assert p["id"] and p["href"] == f"/api/v1/programs/{p['id']}"
    a = _cli(sep2_server, "program", "assign", "--program", "cli-prog", "--lfdi", c.lfdi)
    assert a["href"].startswith("/edev/")
    made = _cli(
        sep2_server,
        "control",
        "create",
        "--program",
        "cli-prog",
        "--start",
        "now",
        "--duration",
        "600",
        "--exp-lim-w",
        "4000",
        "--connect",
        "1",
        "--fixed-w",
        "50",
    )
    assert made["id"] and made["href"] == f"/api/v1/controls/{made['id']}"
    assert made["base"] == {"opModExpLimW": 4000.0, "opModConnect": True, "opModFixedW": 5000}
    mine = _cli(
        sep2_server,
        "control",
        "create",
        "--lfdi",
        c.lfdi,
        "--start",
        "2030-01-01T00:00:00Z",
        "--duration",
        "60",
        "--imp-lim-w",
        "1500",
    )
    listed = _cli(sep2_server, "control", "list", "--lfdi", c.lfdi)
    assert {x["id"] for x in listed} == {made["id"], mine["id"]}
    cancelled = _cli(sep2_server, "control", "cancel", str(mine["id"]))
    assert cancelled["cancelled_at"]
    assert _cli(sep2_server, "control", "responses", str(made["id"])) == []
    bad = dso(
        "control",
        "create",
        "--lfdi",
        c.lfdi,
        "--start",
        "yesterday",
        "--duration",
        "60",
        "--exp-lim-w",
        "1",
        "-c",
        sep2_server.config,
        check=False,
    )
    assert bad.returncode == 1 and "start" in bad.stderr


def test_curves_are_published_and_referenced_by_controls(sep2_server: LiveServer, new_client):
    c = new_client()
    href = c.register()
    _cli(sep2_server, "program", "create", "--name", "vv-prog", "--primacy", "20")
    _cli(sep2_server, "program", "assign", "--program", "vv-prog", "--lfdi", c.lfdi)
    curve = _cli(
        sep2_server,
        "program",
        "curve",
        "--program",
        "vv-prog",
        "--type",
        "11",
        "--y-ref",
        "2",
        "--points",
        "9200:3000,9670:0,10300:0,10700:-3000",
        "--x-mult",
        "-2",
    )
    assert curve["href"] == f"/api/v1/curves/{curve['id']}"
    made = _cli(
        sep2_server,
        "control",
        "create",
        "--program",
        "vv-prog",
        "--start",
        "now",
        "--duration",
        "60",
        "--curve",
        f"opModVoltVar={curve['id']}",
    )
    assert made["base"] == {"opModVoltVar": curve["id"]}
    bad = dso(
        "control",
        "create",
        "--program",
        "vv-prog",
        "--start",
        "now",
        "--duration",
        "60",
        "--curve",
        "opModVoltVar=999",
        "-c",
        sep2_server.config,
        check=False,
    )
    assert bad.returncode == 1 and "no curve 999" in bad.stderr
    fsa = c.get(href + "/fsa?l=5").all("FunctionSetAssignments")[0].get("href")
    derp = c.get(fsa + "/derp?l=5").all("DERProgram")[0].get("href")
    curves = c.get(derp + "/dc?l=10")
    assert curves.root.get("all") == "1"
    dc = curves.all("DERCurve")[0]
    assert [xml.text(p, "xvalue") for p in dc.findall(xml.q("CurveData"))] == [
        "9200",
        "9670",
        "10300",
        "10700",
    ]
    derc = c.get(derp + "/derc?l=5").all("DERControl")[0]
    link = xml.find(derc, "DERControlBase/opModVoltVar").get("href")
    assert link == dc.get("href")
    assert c.get(link).text("curveType") == "11"


def test_cli_sep2_settings_commands(sep2_server: LiveServer, new_client):
    c = new_client()
    c.register()
    assert _cli(sep2_server, "sep2", "poll-rate", "EndDeviceList", "120") == {
        "resource": "EndDeviceList",
        "rate_s": 120,
    }
    assert c.get("/edev?l=1").root.get("pollRate") == "120"
    _cli(sep2_server, "sep2", "poll-rate", "EndDeviceList")  # back to the configured default
    assert c.get("/edev?l=1").root.get("pollRate") == "60"
    view = _cli(sep2_server, "sep2", "show", c.lfdi)
    assert view["device"]["lfdi"] == c.lfdi and view["href"].startswith("/edev/")
    assert _cli(sep2_server, "sep2", "access", c.lfdi, "revoke")["granted"] is False
    assert c.get("/dcap").status == 403
    _cli(sep2_server, "sep2", "access", c.lfdi, "grant")
    assert c.get("/dcap").status == 200
