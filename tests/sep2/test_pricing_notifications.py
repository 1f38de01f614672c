"""A device's price lists notify their subscribers when the number of price intervals changes: staff publish a
price interval through the admin API, and the subscribers of the device's TariffProfileList, of the rate
component's TimeTariffIntervalList and of the tariff's CSIP-AUS 1.3 combined list each receive the list as a GET
now returns it, with the new count (a TariffProfile counts its intervals in its combined-list link, which only a
CSIP-AUS 1.3 client reads). A CSIP-AUS 1.2 client's TariffProfileList does not show that count, so an interval
tells it nothing; a new rate component (its RateComponentListLink count) and a second tariff assigned to it (the
list's own count) do."""

from __future__ import annotations

from lxml import etree
from support import free_port
from support.sep2 import check_v13
from support.sep2_live import (
    Admin,
    Receiver,
    module_server,
    subscription_xml,
    valid_notification,
    wait_until,
)
from test_change_notifications import XSI_TYPE, as_get, canonical
from test_csipaus_pricing import device

from server.sep2 import xml

server = module_server("pricing-notes")

V13 = xml.CSIPAUS_V13_NS


def combined_count(tariff_profile: etree._Element) -> str | None:
    link = tariff_profile.find(f"{{{V13}}}CombinedTimeTariffIntervalListLink")
    return None if link is None else link.get("all")


def test_price_lists_notify_when_a_tariffs_interval_count_changes(server):
    admin = Admin(server)
    v13, v13_edev = device(server, admin, "notes-v13", V13, v13=True)
    plain, plain_edev = device(server, admin, "notes-v12", xml.CSIPAUS_NS)
    receiver = Receiver(free_port()).up()
    try:
        tariff = admin("POST", "/api/v1/tariffs", {"name": "notes-tou"})
        admin("POST", "/api/v1/tariffs/notes-tou/rates", {"name": "import"}, expect=201)
        for client in (v13, plain):
            admin("POST", "/api/v1/tariffs/notes-tou/assign", {"lfdi": client.lfdi})
        one = {"start": "now", "duration_s": 3600, "prices": [{"price": 10}]}
        admin("POST", "/api/v1/tariffs/notes-tou/prices", one, expect=201)

        tp_list = f"{v13_edev}/tp"
        tp = v13.get(tp_list + "?l=10").all("TariffProfile")[0]
        assert tp.get("href") == f"{tp_list}/{tariff['id']}" and combined_count(tp) == "1"
        rate = v13.get(xml.find(tp, "RateComponentListLink").get("href") + "?l=10").all("RateComponent")[0]
        tti_list = xml.find(rate, "TimeTariffIntervalListLink").get("href")
        ctti_list = tp.get("href") + "/ctti"
        watched = {"/tp": (v13, tp_list), "/tti": (v13, tti_list), "/ctti": (v13, ctti_list)}
        watched["/tp-v12"] = (plain, f"{plain_edev}/tp")
        for path, (client, href) in watched.items():
            holder = v13_edev if client is v13 else plain_edev
            made = client.post(holder + "/sub", subscription_xml(href, receiver.url(path), limit=10))
            assert made.status == 201, (href, made.status, made.body)

        def notified(path: str, n: int) -> etree._Element:
            """The ``n``-th notification (from 1) of ``path``'s subscription: its Resource, which must be what
            the subscriber's GET returns now."""
            wait_until(lambda: len(receiver.bodies(path)) >= n, what=f"notification {n} of {path}")
            body = receiver.bodies(path)[n - 1]
            client, href = watched[path]
            if client is v13:
                check_v13(body)
            else:
                valid_notification(body)
            assert xml.text(body, "subscribedResource") == href and xml.text(body, "status") == "0"
            resource = xml.find(body, "Resource")
            assert resource is not None, path
            assert as_get(resource) == canonical(client.get(href + "?s=0&l=10").root), path
            return resource

        # staff publish a second price interval of the tariff: every list that counts intervals says 2
        two = {"start": "now", "duration_s": 1800, "prices": [{"price": 20}]}
        admin("POST", "/api/v1/tariffs/notes-tou/prices", two, expect=201)
        listed = notified("/tp", 1)
        assert (listed.get(XSI_TYPE), listed.get("all")) == ("TariffProfileList", "1")
        assert [combined_count(t) for t in listed.findall(xml.q("TariffProfile"))] == ["2"]
        for path in ("/tti", "/ctti"):
            shown = notified(path, 1)
            assert (shown.get(XSI_TYPE), shown.get("all")) == ("TimeTariffIntervalList", "2"), path
            assert len(shown.findall(xml.q("TimeTariffInterval"))) == 2, path

        # a new rate component: each TariffProfileList shows it in its RateComponentListLink. Notifications of
        # one subscription go out in order, so the 1.2 client's first being this one means the interval sent it
        # none (its TariffProfile shows no interval count)
        admin("POST", "/api/v1/tariffs/notes-tou/rates", {"name": "export", "flow_direction": 19}, expect=201)
        for path, n in (("/tp", 2), ("/tp-v12", 1)):
            (profile,) = notified(path, n).findall(xml.q("TariffProfile"))
            assert xml.find(profile, "RateComponentListLink").get("all") == "2", path
        assert combined_count(profile) is None  # the 1.2 client's

        # a second tariff assigned to the 1.2 client: its list counts two; the 1.3 client's list is as it was
        admin("POST", "/api/v1/tariffs", {"name": "notes-flat"})
        admin("POST", "/api/v1/tariffs/notes-flat/assign", {"lfdi": plain.lfdi})
        assert notified("/tp-v12", 2).get("all") == "2"
        # the interval lists did not change with the rate or the tariff: still their one notification each,
        # and the 1.3 client's TariffProfileList still its two (a third interval would be the next)
        three = {"start": "now", "duration_s": 900, "prices": [{"price": 30}]}
        admin("POST", "/api/v1/tariffs/notes-tou/prices", three, expect=201)
        listed = notified("/tp", 3)
        assert [combined_count(t) for t in listed.findall(xml.q("TariffProfile"))] == ["3"]
        assert notified("/tti", 2).get("all") == "3" and notified("/ctti", 2).get("all") == "3"
    finally:
        receiver.down()
