"""The CSIP-AUS 1.3 pricing extension over real mutual TLS: a tariff with two rate components and three price
intervals; a CSIP-AUS 1.3 device (its DERCapability says so) finds the tariff's combined TimeTariffIntervalList
through its TariffProfile and reads every interval of every rate component there, each carrying its consumption
blocks and its rate component; the list pages, is the device's own, and notifies its subscribers. A CSIP-AUS 1.2
and a 1.3 beta storage device of the same tariff never receive an element of the extension: every body each
client receives is checked against that client's own schema (``Sep2Client``), and the 1.3 bodies are also read
with envoy-schema's pydantic-xml models of CSIP-AUS 1.3 as a third-party cross-check."""

from __future__ import annotations

import datetime as dt

from envoy_schema.server.schema.sep2.pricing import TariffProfileResponse, TimeTariffIntervalListResponse
from lxml import etree
from support import free_port
from support.sep2 import check_v13
from support.sep2_live import (
    Admin,
    Receiver,
    Sep2Client,
    module_server,
    subscription_xml,
    wait_until,
)

from server.sep2 import xml

server = module_server("csip-pricing")

V13 = xml.CSIPAUS_V13_NS
TTI_CHILDREN = [
    (xml.NS, "mRID"),
    (xml.NS, "description"),
    (xml.NS, "creationTime"),
    (xml.NS, "EventStatus"),
    (xml.NS, "interval"),
    (xml.NS, "ConsumptionTariffIntervalListLink"),
    (xml.NS, "touTier"),
    (V13, "ConsumptionTariffIntervalListSummary"),
    (xml.NS, "RateComponentLink"),
]


def names(el: etree._Element) -> list[tuple[str | None, str]]:
    return [(etree.QName(c).namespace, etree.QName(c).localname) for c in el if isinstance(c.tag, str)]


def capability(namespace: str) -> str:
    """A DERCapability whose CSIP-AUS element is in ``namespace`` (how a client says which CSIP-AUS it speaks)."""
    return (
        f'<DERCapability xmlns="{xml.NS}" xmlns:aus="{namespace}"><modesSupported>00000001</modesSupported>'
        "<rtgMaxW><multiplier>0</multiplier><value>5000</value></rtgMaxW><type>4</type>"
        "<aus:doeModesSupported>01</aus:doeModesSupported></DERCapability>"
    )


def device(server, admin: Admin, name: str, namespace: str, **kind: bool) -> tuple[Sep2Client, str]:
    """A device enrolled by staff that told the server its CSIP-AUS namespace; returns (client, edev href)."""
    client = Sep2Client(server, server.issue_device(name), **kind)
    edev = admin("PUT", f"/api/v1/sep2/end-devices/{client.lfdi}", {"pin": 111115})["href"]
    assert client.put(edev + "/der/1/dercap", capability(namespace)).status == 204
    return client, edev


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def tariff_profile(client: Sep2Client, edev: str) -> etree._Element:
    fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0]
    tps = client.get(xml.find(fsa, "TariffProfileListLink").get("href") + "?l=10")
    assert tps.root is not None and tps.root.get("all") == "1"
    return tps.all("TariffProfile")[0]


def test_combined_price_list_of_a_13_client(server):
    admin = Admin(server)
    v13, v13_edev = device(server, admin, "v13-dev", V13, v13=True)
    plain, plain_edev = device(server, admin, "v12-dev", xml.CSIPAUS_NS)
    battery, battery_edev = device(server, admin, "sto-dev", xml.CSIPAUS_STORAGE_NS, storage=True)
    stranger, stranger_edev = device(server, admin, "other-dev", V13, v13=True)
    receiver = Receiver(free_port()).up()
    try:
        # the device's own DER resources come back in the namespace it speaks
        cap = v13.get(v13_edev + "/der/1/dercap")
        assert cap.text("csipaus-v13:doeModesSupported") == "01"

        tariff = admin(
            "POST", "/api/v1/tariffs", {"name": "aus-tou", "currency": 36, "price_power_of_ten": -4}
        )
        admin("POST", "/api/v1/tariffs/aus-tou/rates", {"name": "import"}, expect=201)
        admin("POST", "/api/v1/tariffs/aus-tou/rates", {"name": "export", "flow_direction": 19}, expect=201)
        admin("POST", "/api/v1/tariffs", {"name": "other-tou"})
        admin("POST", "/api/v1/tariffs/other-tou/rates", {"name": "flat"}, expect=201)
        for client in (v13, plain, battery, stranger):
            admin("POST", "/api/v1/tariffs/aus-tou/assign", {"lfdi": client.lfdi})
        admin("POST", "/api/v1/tariffs/other-tou/assign", {"lfdi": stranger.lfdi})
        base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=60)
        published = [  # (rate, start offset, blocks), in the order the combined list shows them
            ("import", 0, [{"price": 3500}, {"price": 4200, "start_value": 10000}]),
            ("export", 600, [{"price": -800}]),
            ("import", 3600, [{"price": 2100}]),
        ]
        for n, (rate, offset, blocks) in enumerate(reversed(published)):
            admin(
                "POST",
                "/api/v1/tariffs/aus-tou/prices",
                {
                    "rate": rate,
                    "start": iso(base + dt.timedelta(seconds=offset)),
                    "duration_s": 1800,
                    "description": f"p{n}",
                    "prices": blocks,
                },
                expect=201,
            )

        # the TariffProfile links its combined list (last, in the 1.3 namespace), counting every interval
        tp = tariff_profile(v13, v13_edev)
        tp_href = tp.get("href")
        assert tp_href == f"{v13_edev}/tp/{tariff['id']}"
        combined = tp[-1]
        assert etree.QName(combined).namespace == V13
        assert etree.QName(combined).localname == "CombinedTimeTariffIntervalListLink"
        assert (combined.get("href"), combined.get("all")) == (tp_href + "/ctti", "3")
        third_party_tp = TariffProfileResponse.from_xml(v13.get(tp_href).body)
        assert third_party_tp.CombinedTimeTariffIntervalListLink.href == tp_href + "/ctti"
        assert third_party_tp.CombinedTimeTariffIntervalListLink.all_ == 3

        rates = {
            xml.text(rc, "description"): rc.get("href")
            for rc in v13.get(xml.find(tp, "RateComponentListLink").get("href") + "?l=10").all(
                "RateComponent"
            )
        }
        got = v13.get(tp_href + "/ctti?l=10")
        assert got.root is not None
        assert etree.QName(got.root).localname == "TimeTariffIntervalList"
        assert dict(got.root.attrib) == {
            "href": tp_href + "/ctti",
            "subscribable": "1",
            "all": "3",
            "results": "3",
        }
        ttis = got.all("TimeTariffInterval")
        assert len(ttis) == 3
        for tti, (rate, offset, blocks) in zip(ttis, published, strict=True):
            assert names(tti) == TTI_CHILDREN
            assert xml.integer(tti, "interval/start") == int(
                (base + dt.timedelta(seconds=offset)).timestamp()
            )
            assert xml.text(tti, "EventStatus/currentStatus") == ("1" if offset == 0 else "0")
            assert xml.find(tti, "RateComponentLink").get("href") == rates[rate]
            assert tti.get("href").startswith(rates[rate] + "/tti/")
            cti_href = tti.get("href") + "/cti"
            link = xml.find(tti, "ConsumptionTariffIntervalListLink")
            assert (link.get("href"), link.get("all")) == (cti_href, str(len(blocks)))
            summary = tti.find(f"{{{V13}}}ConsumptionTariffIntervalListSummary")
            assert summary is not None
            assert dict(summary.attrib) == {"all": str(len(blocks)), "results": str(len(blocks))}
            inline = [
                (
                    c.get("href"),
                    xml.text(c, "consumptionBlock"),
                    xml.text(c, "price"),
                    xml.text(c, "startValue"),
                )
                for c in summary
            ]
            expected = [
                (f"{cti_href}/{k}", str(k), str(b["price"]), str(b.get("start_value", 0)))
                for k, b in enumerate(blocks, start=1)
            ]
            assert inline == expected
            assert all(etree.QName(c).namespace == xml.NS for c in summary)
            # the same interval as its rate component's own list shows it, blocks as its CTI list has them
            own = {t.get("href"): t for t in v13.get(rates[rate] + "/tti?l=10").all("TimeTariffInterval")}
            assert etree.tostring(own[tti.get("href")], method="c14n", exclusive=True) == etree.tostring(
                tti, method="c14n", exclusive=True
            )
            ctis = v13.get(cti_href + "?l=10").all("ConsumptionTariffInterval")
            assert [etree.tostring(c, method="c14n", exclusive=True) for c in ctis] == [
                etree.tostring(c, method="c14n", exclusive=True) for c in summary
            ]

        # third-party reading of the same body
        parsed = TimeTariffIntervalListResponse.from_xml(got.body)
        assert (parsed.all_, parsed.results, parsed.href) == (3, 3, tp_href + "/ctti")
        assert parsed.TimeTariffInterval is not None
        assert [t.RateComponentLink.href for t in parsed.TimeTariffInterval] == [
            rates[r] for r, _, _ in published
        ]
        assert [
            [
                (c.consumptionBlock, c.price, c.startValue)
                for c in t.ConsumptionTariffIntervalListSummary.ConsumptionTariffInterval or []
            ]
            for t in parsed.TimeTariffInterval
        ] == [
            [(k, b["price"], b.get("start_value", 0)) for k, b in enumerate(bl, start=1)]
            for _, _, bl in published
        ]

        # paging: s and l in the list's order, all of the whole list
        hrefs = [t.get("href") for t in ttis]
        first = v13.get(tp_href + "/ctti")  # l defaults to 1
        assert (first.root.get("all"), first.root.get("results")) == ("3", "1")
        assert [t.get("href") for t in first.all("TimeTariffInterval")] == hrefs[:1]
        page = v13.get(tp_href + "/ctti?s=1&l=2")
        assert (page.root.get("all"), page.root.get("results")) == ("3", "2")
        assert [t.get("href") for t in page.all("TimeTariffInterval")] == hrefs[1:]
        beyond = v13.get(tp_href + "/ctti?s=3&l=5")
        assert (beyond.root.get("all"), beyond.root.get("results")) == ("3", "0")

        # only the device's own list: another device, though of the same tariff, is refused this device's (403, as
        # for every resource below another EndDevice), and a tariff not assigned to a device has no list (404)
        refused = stranger.get(tp_href + "/ctti?l=10")
        assert refused.status == 403 and b"TimeTariffInterval" not in refused.body
        other = next(t for t in admin("GET", "/api/v1/tariffs") if t["name"] == "other-tou")
        assert v13.get(f"{v13_edev}/tp/{other['id']}/ctti").status == 404
        assert stranger.get(f"{stranger_edev}/tp/{other['id']}/ctti?l=10").root.get("all") == "0"

        # a 1.2 and a storage device: the same tariff and intervals, nothing of the extension (each body was
        # validated against the client's own schema by Sep2Client)
        for client, edev in ((plain, plain_edev), (battery, battery_edev)):
            their_tp = tariff_profile(client, edev)
            assert [n for n in names(their_tp) if n[0] != xml.NS] == []
            their_list = client.get(their_tp.get("href") + "/ctti?l=10")
            assert their_list.root.get("all") == "3"
            for tti in their_list.all("TimeTariffInterval"):
                assert names(tti)[-2:] == [(xml.NS, "ConsumptionTariffIntervalListLink"), (xml.NS, "touTier")]
            rc = client.get(xml.find(their_tp, "RateComponentListLink").get("href") + "?l=10").all(
                "RateComponent"
            )
            for tti in client.get(rc[0].get("href") + "/tti?l=10").all("TimeTariffInterval"):
                assert xml.find(tti, "RateComponentLink") is None

        # the combined list notifies its subscribers, in the namespace each reads
        assert (
            v13.post(v13_edev + "/sub", subscription_xml(tp_href + "/ctti", receiver.url("/v13"))).status
            == 201
        )
        plain_tp = tariff_profile(plain, plain_edev).get("href")
        assert (
            plain.post(plain_edev + "/sub", subscription_xml(plain_tp + "/ctti", receiver.url("/v12"))).status
            == 201
        )
        admin(
            "POST",
            "/api/v1/tariffs/aus-tou/prices",
            {
                "rate": "export",
                "start": iso(base + dt.timedelta(seconds=7200)),
                "duration_s": 600,
                "prices": [{"price": -100}],
            },
            expect=201,
        )
        wait_until(
            lambda: receiver.bodies("/v13") and receiver.bodies("/v12"), what="combined list notifications"
        )
        (to_v13,) = receiver.bodies("/v13")
        check_v13(to_v13)
        resource = xml.find(to_v13, "Resource")
        assert resource is not None and resource.get("all") == "4"
        assert [
            xml.text(t, "csipaus-v13:ConsumptionTariffIntervalListSummary/ConsumptionTariffInterval/price")
            for t in resource.findall(xml.q("TimeTariffInterval"))
        ][-1] == "-100"
        (to_v12,) = receiver.bodies("/v12")
        schema = xml.schema(strict=True)
        assert schema.validate(to_v12), schema.error_log.last_error
        assert b"csipaus.org/ns/v1.3" not in etree.tostring(to_v12)
    finally:
        receiver.down()
