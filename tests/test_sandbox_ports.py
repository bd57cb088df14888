"""The sandbox's fixed loopback ports keep the two properties its port offsets rely on."""

from __future__ import annotations

from dataclasses import asdict, astuple

from sandbox import charts, config

# HAMi chart's fixed NodePorts (scheduler http and metrics, vGPU monitor): the proxy listens on nodePort + offset.
HAMI_NODE_PORTS = (31998, 31993, 31992)


def test_every_fixed_port_is_odd_so_client_connections_do_not_take_it():
    ports = {**asdict(config.BASE_PORTS), "chart repository": charts.BASE_PORT}
    even = {name: port for name, port in ports.items() if port % 2 == 0}
    assert not even, f"expected every sandbox port odd (see config.BASE_PORTS), got even ones: {even}"


def test_offsets_of_1000s_never_make_two_ports_collide():
    ports = [*astuple(config.BASE_PORTS), charts.BASE_PORT, *HAMI_NODE_PORTS]
    last_digits = [port % 1000 for port in ports]
    clashes = sorted(p for p in ports if last_digits.count(p % 1000) > 1)
    assert not clashes, f"expected distinct last three digits, so no offset of 1000s aligns two ports: {clashes}"
