"""The per-request metrics: labelled children are looked up once per label set and count like before."""

from __future__ import annotations

from server.observability import Metrics


def test_metric_children_are_cached_and_count():
    m = Metrics()
    first = m.children("protocol", "/x", "POST", 200)
    assert m.children("protocol", "/x", "POST", 200) is first
    first[0].inc()
    first[1].observe(0.01)
    m.children("protocol", "/x", "POST", 463)[0].inc()
    sample = m.registry.get_sample_value
    assert (
        sample(
            "dso_http_requests_total",
            {"listener": "protocol", "route": "/x", "method": "POST", "status": "200"},
        )
        == 1
    )
    assert (
        sample(
            "dso_http_requests_total",
            {"listener": "protocol", "route": "/x", "method": "POST", "status": "463"},
        )
        == 1
    )
    assert (
        sample("dso_http_request_seconds_count", {"listener": "protocol", "route": "/x", "method": "POST"})
        == 1
    )
    # unusual method names are still counted, but not remembered
    assert m.children("protocol", "/x", "BREW", 405) is not m.children("protocol", "/x", "BREW", 405)
