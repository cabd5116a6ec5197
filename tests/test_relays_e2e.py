"""Relays end to end: two lab hosts behind two different NAT routers, three public hosts, the real program.

The lab is dual stack (IPv4 and IPv6 tunnel networks and LANs; the NAT routers are IPv4 only, so h4 and h5 have
no IPv6 underlay), so the same lab proves the relay for both families.

Each deploy is :meth:`wgmesh.lab.deploy.LabStack.up` (the real program through the real Pulumi engine, its install and
verify commands run over SSH on the lab hosts), then checked from inside the namespaces:

* h4 and h5 sit behind NAT routers of their own (neither can reach the other's): the stack exports the pair and
  its relay, both verifications report the other as reached ``via`` that relay, every pair of hosts answers over
  the tunnel addresses and every LAN reaches every other LAN, and h4 -> h5 traffic shows up in the relay's
  WireGuard counters for both (and nowhere else: h4 has no ``[Peer]`` for h5 at all);
* IPv6 rides the relay inside IPv4 tunnels: every pair (the relayed one included) answers ``ping -6`` over the
  tunnel and LAN to LAN, every verification lists both tunnel addresses of every other peer as answered, and
  h4 -> h5 ``ping -6`` shows up in the relay's WireGuard counters and in its ip6tables ``-i wg0 -o wg0`` rule;
* a pinned relay (``relay:`` on h4) is the one carrying the pair;
* removing the relay in a deploy moves the pair to another public host (the one rendezvous hashing picks), with
  ``ping -i 0.05`` running h4 -> h5 over the tunnel and LAN to LAN; the loss is printed (it is a figure, see
  ``bench/relays.py`` and docs/relays.md), and the pair answers afterwards through the new relay.

One lab of five hosts for the module, taken down in a ``finally``; every test first deploys the config it needs, so
a failed test does not cascade. Traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from tests.conftest import deployed, engine_stack, require_tools, running_lab
from wgmesh.lab import Lab, topology
from wgmesh.lab.deploy import LabStack, Pinger, UpResult, all_pairs, in_lab, lan_pairs, tunnel_pairs, wg_show
from wgmesh.mesh.relays import choose_relay

HOSTS = ("h1", "h2", "h3", "h4", "h5")
PUBLIC = ("h1", "h2", "h3")
NAT = ("h4", "h5")


def test_the_lab_puts_the_last_hosts_behind_nat_routers_of_their_own() -> None:
    """Pure: the plan behind the module's lab (no namespace made here)."""
    hosts = topology.plan(5, nat_peer=2, dual_stack=True)
    assert [host.name for host in hosts if host.behind_nat] == list(NAT)
    assert [host.public_address6 is None for host in hosts] == [False] * 3 + [True] * 2, "no IPv6 underlay behind NAT"
    assert len({host.nat_netns for host in hosts if host.behind_nat}) == 2
    assert {host.public_address for host in hosts if host.behind_nat} == {"198.51.100.14", "198.51.100.15"}
    assert [peer.get("endpoint") is None for peer in topology.mesh_description(hosts)["peers"]] == [False] * 3 + [True] * 2
    with pytest.raises(ValueError, match="needs at least 3 peers"):
        topology.plan(2, nat_peer=2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tools("ip6tables")
    with running_lab(tmp_path_factory.mktemp("relays") / "state", len(HOSTS), nat_peer=len(NAT), dual_stack=True) as shared:
        yield shared


@pytest.fixture(scope="module")
def stack(lab: Lab) -> LabStack:
    return engine_stack(lab)


def relay_of(result: UpResult) -> str:
    [pair] = result.exports["relays"]["pairs"]
    assert pair["peers"] == list(NAT)
    return str(pair["relay"])


def assert_every_pair_answers(lab: Lab, names: Sequence[str], family: int = 4) -> None:
    tunnels = all_pairs(lab, tunnel_pairs(lab, names, family=family), timeout=20)
    assert [pair for pair, ok in tunnels.items() if not ok] == [], f"IPv{family} tunnel pings without answer"
    lans = all_pairs(lab, lan_pairs(lab, names, family=family), timeout=20)
    assert [pair for pair, ok in lans.items() if not ok] == [], f"IPv{family} LAN-to-LAN pings without answer"


def relayed_bytes(lab: Lab, relay: str) -> tuple[int, int]:
    """(bytes the relay received from h4, bytes it sent to h5), from its WireGuard counters."""
    keys = {name: interface.public_key for name in NAT if (interface := wg_show(lab, name)) is not None}
    shown = wg_show(lab, relay)
    assert shown is not None
    return shown.peers[keys["h4"]].received, shown.peers[keys["h5"]].sent


def ping_h5_from_h4(lab: Lab, count: int, size: int, family: int = 4) -> None:
    address = lab.host("h5").tunnel_address if family == 4 else lab.host("h5").tunnel_address6
    argv = ["ping", f"-{family}", "-n", "-q", "-c", str(count), "-i", "0.05", "-s", str(size), "-W", "1", address]
    result = in_lab(lab, "h4", argv, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def forwarded_ipv6_packets(lab: Lab, relay: str) -> int:
    """Packets the relay's ip6tables ``-i wg0 -o wg0 -j ACCEPT`` rule (in wgmesh's forward chain) has let through:
    IPv6 it relayed from one peer to another."""
    listed = in_lab(lab, relay, ["ip6tables", "-w", "5", "-L", "wgmesh-wg0-fwd", "-v", "-x", "-n"])
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if "ACCEPT" in line and line.split()[5:7] == ["wg0", "wg0"]]
    assert len(rows) == 1, listed.stdout
    return int(rows[0][0])


@pytest.mark.lab
def test_two_peers_behind_two_nat_routers_talk_through_the_relay(lab: Lab, stack: LabStack) -> None:
    result = deployed(stack, stack.config())
    relay = relay_of(result)
    assert relay == choose_relay("h4", "h5", PUBLIC), "the automatic choice is the rendezvous one"
    assert "in the clear" in result.exports["relays"]["note"]
    for local, other in (("h4", "h5"), ("h5", "h4")):
        report = result.verification[local]["peers"]
        assert report[other]["via"] == relay and report[other]["ping"] is True, report
        assert all("via" not in report[name] for name in PUBLIC), report
    assert all("via" not in result.verification[name]["peers"]["h4"] for name in PUBLIC)
    assert_every_pair_answers(lab, HOSTS)

    h4, h5, shown_relay = wg_show(lab, "h4"), wg_show(lab, "h5"), wg_show(lab, relay)
    assert h4 is not None and h5 is not None and shown_relay is not None
    assert h5.public_key not in h4.peers and h4.public_key not in h5.peers, "no direct [Peer] between the NAT hosts"
    assert f"{lab.host('h5').tunnel_address}/32" in h4.peers[shown_relay.public_key].allowed_ips
    assert lab.host("h5").lan_subnet in h4.peers[shown_relay.public_key].allowed_ips
    # The relay learned each NAT host at its own router's public address.
    for name in NAT:
        endpoint = shown_relay.peers[wg_show(lab, name).public_key].endpoint  # type: ignore[union-attr]
        assert endpoint is not None and endpoint.rsplit(":", 1)[0] == lab.host(name).public_address

    before = relayed_bytes(lab, relay)
    ping_h5_from_h4(lab, count=20, size=1000)
    after = relayed_bytes(lab, relay)
    assert after[0] - before[0] >= 20 * 1000 and after[1] - before[1] >= 20 * 1000, (before, after)


@pytest.mark.lab
def test_ipv6_rides_the_relay_inside_ipv4_tunnels(lab: Lab, stack: LabStack) -> None:
    """h4 and h5 have no IPv6 outside (their NAT routers are IPv4 only): their IPv6 goes through the relay anyway."""
    result = deployed(stack, stack.config())
    relay = relay_of(result)
    hosts = lab.hosts()
    for name in NAT:
        underlay = in_lab(lab, name, ["ip", "-6", "route", "show", "dev", hosts[name].uplink]).stdout
        assert "default" not in underlay and "2001:db8" not in underlay, (name, underlay)
    assert_every_pair_answers(lab, HOSTS, family=6)

    # The program's own verification reached both tunnel addresses of every other peer, the relayed one included.
    for name in HOSTS:
        report = result.verification[name]["peers"]
        for other in HOSTS:
            if other != name:
                expected = [hosts[other].tunnel_address, hosts[other].tunnel_address6]
                assert list(report[other]["addresses"]) == expected, (name, other, report[other])
                assert all(entry["ping"] is True for entry in report[other]["addresses"].values()), (name, other, report[other])
    assert result.verification["h4"]["peers"]["h5"]["via"] == relay

    # h4 routes h5's IPv6 tunnel address and LAN to the relay, which forwards them: WireGuard and ip6tables counters.
    shown_relay, h4 = wg_show(lab, relay), wg_show(lab, "h4")
    assert shown_relay is not None and h4 is not None
    routed = h4.peers[shown_relay.public_key].allowed_ips
    assert f"{hosts['h5'].tunnel_address6}/128" in routed and hosts["h5"].lan_subnet6 in routed, routed
    before, forwarded = relayed_bytes(lab, relay), forwarded_ipv6_packets(lab, relay)
    ping_h5_from_h4(lab, count=20, size=1000, family=6)
    after = relayed_bytes(lab, relay)
    assert after[0] - before[0] >= 20 * 1000 and after[1] - before[1] >= 20 * 1000, (before, after)
    assert forwarded_ipv6_packets(lab, relay) - forwarded >= 40, "20 requests and 20 replies forwarded as IPv6"


@pytest.mark.lab
def test_a_pinned_relay_carries_the_pair(lab: Lab, stack: LabStack) -> None:
    automatic = choose_relay("h4", "h5", PUBLIC)
    pinned = next(name for name in PUBLIC if name != automatic)
    result = deployed(stack, stack.config(peer_settings={"h4": {"relay": pinned}}))
    assert result.exports["relays"]["pairs"] == [{"peers": list(NAT), "relay": pinned, "pinned_by": "h4"}]
    before = relayed_bytes(lab, pinned)
    ping_h5_from_h4(lab, count=20, size=1000)
    after = relayed_bytes(lab, pinned)
    assert after[0] - before[0] >= 20 * 1000 and after[1] - before[1] >= 20 * 1000, (before, after)
    assert_every_pair_answers(lab, HOSTS)


@pytest.mark.lab
def test_removing_the_relay_moves_the_pair_to_another_relay(lab: Lab, stack: LabStack) -> None:
    relay = relay_of(deployed(stack, stack.config()))
    remaining = [name for name in HOSTS if name != relay]
    h5 = lab.host("h5")
    with Pinger(lab, "h4", h5.tunnel_address) as tunnel, Pinger(lab, "h4-lan", h5.lan_client) as lan:
        moved = deployed(stack, stack.config(remaining))
    successor = relay_of(moved)
    assert successor != relay and successor == choose_relay("h4", "h5", [name for name in PUBLIC if name != relay])
    assert f"{relay}-install" in moved.actions.get("delete", []), moved.actions
    assert wg_show(lab, relay) is None
    assert tunnel.stats and lan.stats and tunnel.stats.transmitted >= 20
    print(
        f"\nrelay {relay} removed, pair moved to {successor}: lost {tunnel.stats.lost}/{tunnel.stats.transmitted} tunnel "
        f"and {lan.stats.lost}/{lan.stats.transmitted} LAN probes (50 ms apart) during the deploy of {moved.seconds:.1f} s"
    )
    assert_every_pair_answers(lab, remaining)
    before = relayed_bytes(lab, successor)
    ping_h5_from_h4(lab, count=20, size=1000)
    after = relayed_bytes(lab, successor)
    assert after[0] - before[0] >= 20 * 1000 and after[1] - before[1] >= 20 * 1000, (before, after)
