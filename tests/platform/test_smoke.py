"""The real server starts, answers /healthz and stops cleanly on SIGTERM."""

import json
import urllib.request


def test_server_starts_and_stops_cleanly(live_server):
    with urllib.request.urlopen(live_server.info["admin_url"] + "/healthz", timeout=5) as r:
        assert json.loads(r.read()) == {"status": "ok"}
    assert live_server.stop() == 0
    assert '"stopped"' in live_server.log()
