"""The NDIF stack itself: loopback only, and mechscope opens no listening socket.

The stack (tests/ndif/stack.py) departs from production: CPU model actor, one logical GPU,
Python 3.11 (--ignore-requires-python), moto instead of object storage, no auth. That every
process is gone and every port free after the session is checked by the ``ndif_stack``
fixture's finalizer (a leftover fails the session at teardown).
"""

from __future__ import annotations

import ipaddress

import psutil

import mechscope
from tests.ndif.stack import NdifStack, listeners


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr) == "127.0.0.1"


def test_every_service_listens_on_127_0_0_1_only(ndif_stack: NdifStack, remote_model):
    mechscope.activations(remote_model, "hello")  # a request has run: every worker is up
    found = listeners(ndif_stack.pids())
    names = {ndif_stack.ports[k] for k in ("redis", "s3", "ray_gcs", "ray_client", "api")}
    assert names <= {port for _, _, port in found}, (names, found)
    wide = [(pid, psutil.Process(pid).name(), ip, port) for pid, ip, port in found
            if not _loopback(ip)]
    assert wide == [], f"listening beyond 127.0.0.1: {wide}"


def test_mechscope_opens_no_listening_socket(remote_model):
    mechscope.logit_lens(remote_model, "hello")
    mine = [c for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]
    assert mine == []
