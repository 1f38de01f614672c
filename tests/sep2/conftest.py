"""Fixtures of the 2030.5 tests: a live server per module, the staff client, new device clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import LiveServer
from support.sep2 import Admin, Sep2Client  # noqa: F401 - fixtures below use them


@pytest.fixture(scope="module")
def sep2_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = (
        LiveServer(
            tmp_path_factory.mktemp("sep2") / "dso",
            extra_env={
                "DSO_SEP2__PEN": "12345",
                "DSO_SEP2__POLL_RATE_S": "60",
                # subscriptions here name a loopback placeholder receiver (https://127.0.0.1:9/...)
                "DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true",
            },
        )
        .init()
        .start()
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(sep2_server) -> Admin:
    return Admin(sep2_server)


@pytest.fixture(scope="module")
def new_client(sep2_server):
    counter = iter(range(10_000))

    def make(aggregator: bool = False, cert: bool = True) -> Sep2Client:
        if not cert:
            return Sep2Client(sep2_server, None)
        info = sep2_server.issue_device(f"c{next(counter)}", aggregator=aggregator)
        return Sep2Client(sep2_server, info)

    return make
