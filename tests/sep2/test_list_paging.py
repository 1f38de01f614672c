"""Lists page in the database: ``s``/``l`` select the page, ``all`` counts the whole list, ``a`` filters by change
time; past the end is an empty page that still says ``all``. Admin lists page with ``offset``/``limit`` and say
the whole length in ``X-Total-Count``. Through a real server over mutual TLS (bodies schema-checked)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from support.sep2 import edev_xml
from support.sep2_live import subscription_xml

from server.sep2 import xml

NOW = int(time.time())


def log_event(code: int, when: int) -> str:
    return (
        f'<LogEvent xmlns="{xml.NS}"><createdDateTime>{when}</createdDateTime>'
        f"<functionSet>14</functionSet><logEventCode>{code}</logEventCode><logEventID>7</logEventID>"
        f"<logEventPEN>12345</logEventPEN><profileID>2</profileID></LogEvent>"
    )


def mup_xml(lfdi: str, mrid: str, mmr: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{mrid}</mRID><roleFlags>49</roleFlags>'
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{mmr}</mRID><ReadingType><dataQualifier>2</dataQualifier>"
        "<flowDirection>1</flowDirection><kind>37</kind><powerOfTenMultiplier>0</powerOfTenMultiplier>"
        "<uom>38</uom></ReadingType></MirrorMeterReading></MirrorUsagePoint>"
    )


def counts(reply) -> tuple[str, str]:
    return reply.root.get("all"), reply.root.get("results")


def test_device_lists_page_count_and_filter(new_client):
    client = new_client()
    edev = client.register()
    lel = edev + "/lel"
    for code in range(1, 6):  # LogEvent `code` created at NOW + code minutes
        assert client.post(lel, log_event(code, NOW + 60 * code)).status == 201

    page = client.get(lel + "?s=1&l=2")
    assert counts(page) == ("5", "2")
    assert [xml.text(e, "logEventCode") for e in page.all("LogEvent")] == ["4", "3"]  # newest first
    assert [xml.text(e, "logEventCode") for e in client.get(lel + "?s=4&l=2").all("LogEvent")] == ["1"]
    assert counts(client.get(lel + "?s=5&l=2")) == ("5", "0")
    assert counts(client.get(lel + "?s=0&l=0")) == ("5", "0")
    after = client.get(f"{lel}?a={NOW + 240}&l=10")  # created at or after minute 4
    assert counts(after) == ("2", "2")
    assert [xml.text(e, "logEventCode") for e in after.all("LogEvent")] == ["5", "4"]

    mmrs = [f"CC{i:02d}" + "0" * 27 + f"{i}" for i in range(3)]
    for i, mmr in enumerate(mmrs):
        assert client.post("/mup", mup_xml(client.lfdi, f"CC{i:02d}", mmr)).status == 201
    whole = client.get("/mup?l=10")
    assert counts(whole) == ("3", "3")
    hrefs = [m.get("href") for m in whole.all("MirrorUsagePoint")]
    second = client.get("/mup?s=1&l=1")
    assert (
        counts(second) == ("3", "1") and [m.get("href") for m in second.all("MirrorUsagePoint")] == hrefs[1:2]
    )
    assert counts(client.get("/upt?s=2&l=5")) == ("3", "1")
    assert counts(client.get(f"/mup?a={NOW + 86400}&l=10")) == ("0", "0")  # nothing changed since tomorrow
    dcap = client.get("/dcap")
    assert dcap.root.find(xml.q("MirrorUsagePointListLink")).get("all") == "3"
    assert dcap.root.find(xml.q("EndDeviceListLink")).get("all") == "1"

    for i in range(3):
        sub = subscription_xml(edev, f"https://127.0.0.1:9/n{i}")
        assert client.post(edev + "/sub", sub).status == 201
    subs = client.get(edev + "/sub?s=2&l=5")
    assert counts(subs) == ("3", "1")
    assert [xml.text(s, "notificationURI") for s in subs.all("Subscription")] == ["https://127.0.0.1:9/n2"]


def test_fsa_and_response_lists_count_in_sql(new_client, admin):
    agg = new_client(aggregator=True)
    admin("PUT", f"/api/v1/sep2/aggregators/{agg.lfdi}")
    devices = [new_client() for _ in range(3)]
    for d in devices:
        assert agg.post("/edev", edev_xml(d.lfdi, d.sfdi)).status == 201
    # its three devices and its own EndDevice (CSIP-AUS), where it subscribes: only that one links a SubscriptionList
    assert counts(agg.get("/edev?s=1&l=1")) == ("4", "1")
    assert counts(agg.get("/edev?s=4&l=1")) == ("4", "0")
    listed = agg.get("/edev?l=10").all("EndDevice")
    linked = [xml.text(e, "lFDI") for e in listed if e.find(xml.q("SubscriptionListLink")) is not None]
    assert linked == [agg.lfdi]
    # a device still sees its own SubscriptionList
    own = devices[0].get("/edev?l=10").all("EndDevice")
    assert [e.find(xml.q("SubscriptionListLink")) is not None for e in own] == [True]
    # nobody has responded yet: the aggregator's ResponseList is empty, and so is a stranger's
    assert counts(agg.get("/rsps/1/rsp?l=10")) == ("0", "0")
    edev = agg.get("/edev?l=1").all("EndDevice")[0].get("href")
    n = agg.get(edev).root.find(xml.q("FunctionSetAssignmentsListLink")).get("all")
    assert counts(agg.get(edev + "/fsa?l=10")) == (n, n)
    assert counts(agg.get(f"{edev}/fsa?s={n}&l=10")) == (n, "0")


def admin_get(server, path: str) -> tuple[int, dict[str, str], object]:
    request = urllib.request.Request(
        server.info["admin_url"] + path, headers={"Authorization": f"Bearer {server.info['admin_token']}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def test_admin_lists_page_with_offset_and_limit(sep2_server, admin, new_client):
    for _ in range(2):
        new_client().register()
    status, headers, everything = admin_get(sep2_server, "/api/v1/devices?limit=10000")
    assert status == 200 and int(headers["X-Total-Count"]) == len(everything) >= 2
    status, headers, page = admin_get(sep2_server, "/api/v1/devices?offset=1&limit=1")
    assert status == 200 and page == everything[1:2] and int(headers["X-Total-Count"]) == len(everything)
    status, _, past = admin_get(sep2_server, f"/api/v1/devices?offset={len(everything)}")
    assert status == 200 and past == []
    for bad in ("limit=0", "offset=-1", "limit=x"):
        status, _, body = admin_get(sep2_server, f"/api/v1/devices?{bad}")
        assert status == 400, (bad, body)
    status, headers, mups = admin_get(sep2_server, "/api/v1/sep2/mups?limit=1")
    assert status == 200 and len(mups) <= 1 and "X-Total-Count" in headers
    status, headers, subs = admin_get(sep2_server, "/api/v1/sep2/subscriptions?limit=1")
    assert status == 200 and len(subs) <= 1 and "X-Total-Count" in headers
    for path in ("/api/v1/vens", "/api/v1/deliveries", "/api/v1/sep2/responses"):
        status, headers, rows = admin_get(sep2_server, path + "?offset=0&limit=5")
        assert status == 200 and isinstance(rows, list) and int(headers["X-Total-Count"]) >= len(rows), path


async def test_aggregator_pages_equal_slices_of_the_whole_list(store):
    """The aggregator's EndDeviceList is paged in two indexed parts (its devices, and its own EndDevice merged
    in at its place); every page must equal the same slice of the whole list as one query orders it."""
    import datetime as dt

    from server import pki
    from server.core.parties import visible_devices
    from server.core.scope import Party, Scope
    from server.sep2.common import Page, count_visible_devices, visible_devices_page
    from server.store.models import Aggregator, EndDevice

    agg_lfdi = "AB" * 20
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with store.sessions.begin() as session:
        agg = Aggregator(lfdi=agg_lfdi)
        other = Aggregator(lfdi="CD" * 20)
        session.add_all([agg, other])
        await session.flush()
        sfdis = [50, 10, 30, 30, 70, 20, 90, 30]  # ties on 30: ordered by id
        for i, sfdi in enumerate(sfdis):
            session.add(
                EndDevice(
                    lfdi=f"{i:040X}",
                    sfdi=sfdi,
                    aggregator_id=agg.id,
                    enabled=i != 4,  # one disabled device is never listed
                    changed_at=t0 + dt.timedelta(hours=i),
                )
            )
        session.add(EndDevice(lfdi="EE" * 20, sfdi=40, aggregator_id=other.id))  # someone else's
        own = EndDevice(lfdi=agg_lfdi, sfdi=pki.sfdi_from_lfdi(agg_lfdi) % 100, changed_at=t0)
        session.add(own)
        await session.flush()
        for own_sfdi in (5, 30, 60, 95):  # the own EndDevice first, among the ties, in the middle, last
            own.sfdi = own_sfdi
            await session.flush()
            scope = Scope(Party.AGGREGATOR, agg_lfdi, own_sfdi, device_id=own.id, aggregator_id=agg.id)
            whole = await visible_devices(session, scope)
            assert len(whole) == 8 and await count_visible_devices(session, scope) == 8
            for after in (None, t0 + dt.timedelta(hours=3)):
                listed = [d for d in whole if after is None or d.changed_at >= after]
                for start in range(len(whole) + 2):
                    for limit in (0, 1, 2, 3, 7):
                        rows, total = await visible_devices_page(session, scope, Page(start, limit, after))
                        assert total == len(listed)
                        assert [d.lfdi for d in rows] == [d.lfdi for d in listed[start : start + limit]], (
                            own_sfdi,
                            after,
                            start,
                            limit,
                        )
