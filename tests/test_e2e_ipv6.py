"""End to end, dual stack: the real ``__main__.py`` deploys an IPv4 + IPv6 mesh on a ``--dual-stack`` lab.

Like ``tests/test_e2e.py`` (one "pulumi up" = :meth:`wgmesh.lab.deploy.LabStack.up`: the program through the real Pulumi
engine, its ``remote.Command`` installs run over SSH on the lab hosts), checked from inside the namespaces:

* the lab's own stack file (tunnel networks 10.255.0.0/24 + fd00:255::/64, a v4 and a v6 LAN per host) deploys,
  the program's verification passes, every pair answers ``ping -6`` (and ``ping``) over its tunnel addresses and
  LAN to LAN, and every ``[Peer]`` routes the remote's IPv6 tunnel address and LAN;
* the IPv6 NAT rules (ip6tables mangle MARK + nat MASQUERADE on the mark) do real work: a LAN host with no IPv6
  route back answers the other peers and their LANs; its packets were counted by the MASQUERADE rule; with the
  wgmesh ip6tables NAT rules removed it goes silent, and answers again once they are back;
* IPv6 endpoints (``[2001:db8:100::11]:51820``) carry the mesh: a fresh install with only IPv6 endpoints, while
  every host drops WireGuard over IPv4, verifies, answers every pair in both families, and every peer's endpoint
  as ``wg`` reports it is an IPv6 one;
* a peer behind an IPv4-only NAT router (no endpoint, no IPv6 underlay) joins the dual-stack mesh: IPv6 rides
  inside its IPv4 tunnels, tunnel and LAN to LAN, both ways.

One lab of four dual-stack hosts (the fourth behind NAT) for the module, taken down in a ``finally``; every test first brings the stack to
the lab's base config, so a failed test does not cascade. Traffic stays inside the lab's namespaces (documentation
and unique-local IPv6 prefixes that exist only there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from ipaddress import ip_network
from pathlib import Path

import pytest
import yaml

from tests.conftest import deployed, engine_stack, running_lab
from wgmesh.lab import Lab, topology
from wgmesh.lab.deploy import LabStack, all_pairs, in_lab, lan_pairs, ping, tunnel_pairs, wg_show
from wgmesh.mesh.stackconfig import load_stack

NAMES = ("h1", "h2", "h3")
NAT_HOST = "h4"  # behind an IPv4-only NAT router: IPv6 inside the tunnel, IPv4 underneath
NO_ROUTE_BACK = "h2"  # its LAN client loses its IPv6 default route in the NAT test


# ------------------------------------------------------------------------------------- the stack file (pure)


def test_a_dual_stack_lab_describes_a_dual_stack_mesh() -> None:
    """The stack file of a --dual-stack lab validates into two tunnel networks, a v4 and a v6 address and LAN per
    peer, IPv4 endpoints; the IPv4 lab's file has no IPv6 anywhere (the default lab is unchanged)."""
    hosts = topology.plan(3, nat_peer=True, dual_stack=True)
    config = yaml.safe_load(topology.stack_yaml(hosts, Path("/k/id_ed25519")))["config"]
    mesh = load_stack(config["wgmesh:mesh"]).mesh
    assert [str(network) for network in mesh.networks] == ["10.255.0.0/24", "fd00:255::/64"]
    assert [[str(address) for address in peer.addresses] for peer in mesh.peers] == [
        ["10.255.0.1/24", "fd00:255::1/64"],
        ["10.255.0.2/24", "fd00:255::2/64"],
        ["10.255.0.3/24", "fd00:255::3/64"],
    ]
    assert [[str(subnet) for subnet in peer.subnets] for peer in mesh.peers][2] == ["10.201.3.0/24", "fd00:201:3::/64"]
    assert [str(peer.endpoint) if peer.endpoint else None for peer in mesh.peers] == ["198.51.100.11:51820", "198.51.100.12:51820", None]
    assert [host.endpoint6 for host in hosts] == ["[2001:db8:100::11]:51820", "[2001:db8:100::12]:51820", None]
    v4 = yaml.safe_load(topology.stack_yaml(topology.plan(3, nat_peer=True), Path("/k/id_ed25519")))["config"]["wgmesh:mesh"]
    plain = load_stack(v4).mesh
    versions = {network.version for network in plain.networks} | {
        item.version for peer in plain.peers for item in (*peer.addresses, *peer.subnets)
    }
    assert versions == {4}


# ---------------------------------------------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_ip6tables()
    with running_lab(tmp_path_factory.mktemp("e2e6") / "state", len(NAMES) + 1, nat_peer=True, dual_stack=True) as shared:
        yield shared


def require_ip6tables() -> None:
    from wgmesh.lab.core import which

    if which("ip6tables") is None:
        pytest.skip("needs ip6tables (Debian: apt-get install iptables)")


@pytest.fixture(scope="module")
def stack(lab: Lab) -> LabStack:
    return engine_stack(lab)


def assert_whole(lab: Lab, names: Sequence[str], *, timeout: float = 20) -> None:
    """Every pair answers over its tunnel addresses and LAN to LAN, IPv6 (``ping -6``) and IPv4."""
    for family in (6, 4):
        tunnels = all_pairs(lab, tunnel_pairs(lab, names, family=family), timeout=timeout)
        assert [pair for pair, ok in tunnels.items() if not ok] == [], f"IPv{family} tunnel pings without answer"
        lans = all_pairs(lab, lan_pairs(lab, names, family=family), timeout=timeout)
        assert [pair for pair, ok in lans.items() if not ok] == [], f"IPv{family} LAN-to-LAN pings without answer"


@pytest.mark.lab
def test_dual_stack_mesh_answers_ping6_over_the_tunnel_and_lan_to_lan(lab: Lab, stack: LabStack) -> None:
    deployed(stack, stack.config(NAMES))
    assert_whole(lab, NAMES)
    hosts = lab.hosts()
    shown = {name: wg_show(lab, name) for name in NAMES}
    keys = {name: interface.public_key for name, interface in shown.items() if interface}
    for name, interface in shown.items():
        assert interface is not None
        for other in NAMES:
            if other != name:
                routed = interface.peers[keys[other]].allowed_ips
                assert f"{hosts[other].tunnel_address6}/128" in routed and hosts[other].lan_subnet6 in routed, (name, other, routed)
    addresses = in_lab(lab, "h1", ["ip", "-6", "-o", "addr", "show", "dev", "wg0", "scope", "global"]).stdout
    assert f"{hosts['h1'].tunnel_address6}/64" in addresses


def ip6_nat_rules(lab: Lab, host: str) -> list[str]:
    """The rules of wgmesh's ip6tables nat chain on the host, as ``ip6tables -S`` prints them."""
    listed = in_lab(lab, host, ["ip6tables", "-w", "5", "-t", "nat", "-S", "wgmesh-wg0-nat"])
    assert listed.returncode == 0, listed.stderr
    return [line for line in listed.stdout.splitlines() if line.startswith("-A ")]


def mark_masquerade_packets(lab: Lab, host: str) -> int:
    """Packets the mark-matching MASQUERADE rule (traffic forwarded from the tunnel) has NATed on ``host``."""
    listed = in_lab(lab, host, ["ip6tables", "-w", "5", "-t", "nat", "-L", "wgmesh-wg0-nat", "-v", "-x", "-n"])
    rows = [line.split() for line in listed.stdout.splitlines() if "MASQUERADE" in line and "mark match" in line]
    assert len(rows) == 1, listed.stdout
    return int(rows[0][0])


@pytest.mark.lab
def test_ipv6_masquerade_answers_for_a_lan_host_without_a_route_back(lab: Lab, stack: LabStack) -> None:
    deployed(stack, stack.config(NAMES))
    hosts = lab.hosts()
    target = hosts[NO_ROUTE_BACK].lan_client6
    sources = [name for name in NAMES if name != NO_ROUTE_BACK]
    probes = [*sources, *(f"{name}-lan" for name in sources)]  # from the other peers' tunnel addresses and LANs
    lan = f"{NO_ROUTE_BACK}-lan"
    gateway = hosts[NO_ROUTE_BACK].lan_gateway6
    removed = in_lab(lab, lan, ["ip", "-6", "route", "del", "default", "via", gateway])
    assert removed.returncode == 0, removed.stderr
    rules = ip6_nat_rules(lab, NO_ROUTE_BACK)
    try:
        routes = in_lab(lab, lan, ["ip", "-6", "route", "show"]).stdout
        assert "default" not in routes and not any(hosts[name].lan_subnet6 in routes for name in sources), routes
        before = mark_masquerade_packets(lab, NO_ROUTE_BACK)
        answered = {probe: ping(lab, probe, target, count=2) for probe in probes}
        assert answered == dict.fromkeys(probes, True), "no answer from a LAN host that relies on masquerading"
        assert mark_masquerade_packets(lab, NO_ROUTE_BACK) > before, "the answers did not come through ip6tables MASQUERADE"

        assert len(rules) == 2, rules  # mark-matching MASQUERADE and the tunnel network's own
        for rule in rules:
            deleted = in_lab(lab, NO_ROUTE_BACK, ["ip6tables", "-w", "5", "-t", "nat", *rule.replace("-A ", "-D ", 1).split()])
            assert deleted.returncode == 0, deleted.stderr
        silent = {probe: ping(lab, probe, target, count=2) for probe in probes}
        assert silent == dict.fromkeys(probes, False), "the LAN host answered without masquerading: the test proves nothing"
    finally:
        for rule in rules:
            if rule not in ip6_nat_rules(lab, NO_ROUTE_BACK):
                in_lab(lab, NO_ROUTE_BACK, ["ip6tables", "-w", "5", "-t", "nat", *rule.split()])
        in_lab(lab, lan, ["ip", "-6", "route", "replace", "default", "via", gateway])
    assert ip6_nat_rules(lab, NO_ROUTE_BACK) == rules
    again = {probe: ping(lab, probe, target, count=2) for probe in probes}
    assert again == dict.fromkeys(probes, True)


@contextlib.contextmanager
def ipv4_wireguard_dropped(lab: Lab, names: Sequence[str]) -> Iterator[None]:
    """Every host drops WireGuard over IPv4 (UDP to its listen port) while the block runs: only IPv6 can carry it."""
    rule = ["INPUT", "-p", "udp", "--dport", str(topology.WG_PORT), "-j", "DROP", "-m", "comment", "--comment", "wgmesh-test"]
    added = []
    try:
        for name in names:
            result = in_lab(lab, name, ["iptables", "-w", "5", "-I", *rule])
            assert result.returncode == 0, result.stderr
            added.append(name)
        yield
    finally:
        for name in added:
            in_lab(lab, name, ["iptables", "-w", "5", "-D", *rule])


def dropped_ipv4_wireguard(lab: Lab, name: str) -> int:
    listed = in_lab(lab, name, ["iptables", "-w", "5", "-L", "INPUT", "-v", "-x", "-n"]).stdout
    return sum(int(line.split()[0]) for line in listed.splitlines() if "wgmesh-test" in line)


@pytest.mark.lab
def test_ipv6_endpoints_carry_the_mesh(lab: Lab, stack: LabStack) -> None:
    hosts = lab.hosts()
    v6 = {name: {"endpoint": hosts[name].endpoint6} for name in NAMES}
    config = stack.config(NAMES, peer_settings=v6)
    described = load_stack(config["wgmesh:mesh"]).mesh
    assert {name: str(described.peer(name).endpoint) for name in NAMES} == {name: hosts[name].endpoint6 for name in NAMES}
    # From a clean slate: WireGuard learns a peer's address from its packets (roaming), so an interface that
    # already talked over IPv4 could keep using it; a fresh install only ever knew the IPv6 endpoints.
    stack.destroy()
    try:
        with ipv4_wireguard_dropped(lab, NAMES):
            deployed(stack, config)
            assert_whole(lab, NAMES)
            for name in NAMES:
                interface = wg_show(lab, name)
                assert interface is not None
                endpoints = sorted(peer.endpoint or "" for peer in interface.peers.values())
                assert endpoints == sorted(hosts[other].endpoint6 for other in NAMES if other != name), (name, endpoints)
                host, _, port = endpoints[0].rpartition(":")
                assert ip_network(host.strip("[]")).version == 6 and port == str(topology.WG_PORT)
            # Nothing tried IPv4 after all (otherwise the drop rule would have counted it, and the pings failed).
            assert {name: dropped_ipv4_wireguard(lab, name) for name in NAMES} == dict.fromkeys(NAMES, 0)
    finally:
        stack.destroy()  # the next test starts from the lab's IPv4-endpoint config, not roamed v6 endpoints


@pytest.mark.lab
def test_a_peer_behind_ipv4_nat_carries_ipv6_inside_its_tunnels(lab: Lab, stack: LabStack) -> None:
    nat = lab.host(NAT_HOST)
    assert nat.public_address6 is None and nat.endpoint is None
    no_v6_underlay = in_lab(lab, NAT_HOST, ["ip", "-6", "route", "show", "dev", nat.uplink]).stdout
    assert "default" not in no_v6_underlay and "2001:db8" not in no_v6_underlay
    deployed(stack, stack.config((*NAMES, NAT_HOST)))
    assert_whole(lab, (*NAMES, NAT_HOST))
