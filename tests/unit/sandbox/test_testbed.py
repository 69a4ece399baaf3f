"""The test bed's free ports: never ephemeral, never the same twice."""

import socket

import pytest

from sandbox.testbed import LOWEST_PORT, _ephemeral_range, free_port

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def test_free_ports_are_below_the_ephemeral_range_unique_and_bindable():
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    assert all(LOWEST_PORT <= p < max(low, LOWEST_PORT + 1000) for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # nobody took it meanwhile


def test_a_port_someone_listens_on_is_skipped(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]  # ephemeral: outside the range, so move the range onto it
        listener.listen()
        monkeypatch.setattr("sandbox.testbed.LOWEST_PORT", port)
        monkeypatch.setattr("sandbox.testbed._ephemeral_range", lambda: (port + 2000, 60_999))
        monkeypatch.setattr("sandbox.testbed.random.randrange", lambda span: 0)  # start at the busy one
        got = free_port()
        assert got != port and port < got < port + 2000
