"""``free_port`` picks listening ports outside the kernel's ephemeral range, so an outgoing
connection cannot take a port between its pick and the server's bind (a chaos run lost a
worker's start that way), and never the same one twice in a process."""

from __future__ import annotations

import socket

import pytest

from service.devtools import ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    allowed = ports._listen_ports()
    assert all(port in allowed for port in picked)
    for port in picked[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((ports.HOST, port))


def test_a_port_in_use_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((ports.HOST, 0))
        taken = held.getsockname()[1]
        monkeypatch.setattr(ports, "_listen_ports", lambda: range(taken, taken + 1))
        assert ports.free_port() != taken  # the only candidate is held: the kernel picks
