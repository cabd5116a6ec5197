"""Interop with the real WireGuard tools (Debian wireguard-tools and wireguard-go).

* our public keys equal what ``wg pubkey`` prints, for keys we make and keys ``wg genkey`` makes;
* ``wg-quick strip`` accepts every rendered file and keeps exactly the WireGuard entries;
* ``wg setconf`` loads the stripped file into a real interface (wireguard-go in a throwaway network namespace),
  and ``wg show dump`` / ``wg showconf`` report the keys, allowed IPs and endpoints we rendered;
* the PostUp/PostDown hooks are idempotent: two ups leave each iptables rule once, a down removes them all;
* PostUp of an IPv6 mesh keeps a default route learned from router advertisements (accept_ra=2 on the uplink).

Network rule: the packets sent here (the masquerade and router-advertisement tests) stay between namespaces the
test creates, joined by veth pairs; elsewhere the namespaces have only ``lo`` and WireGuard is never brought up.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root_netns, require_tools, seeded_keys
from wgmesh.mesh import load_mesh
from wgmesh.mesh.keys import generate_private_key, private_key_from_seed, public_key
from wgmesh.mesh.render import render_all, render_peer_config
from wgmesh.mesh.wgconf import parse_config

pytestmark = pytest.mark.interop

WG_ENTRIES = {"PrivateKey", "ListenPort", "FwMark", "PublicKey", "PresharedKey", "AllowedIPs", "Endpoint", "PersistentKeepalive"}


def run(*command: str, stdin: str | None = None, timeout: float = 20) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
    return result.stdout


def variants(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The example mesh, and a dual-stack one with a peer behind NAT, extra hooks, MTU, DNS and Table."""
    dual = {
        "network": ["10.255.0.0/24", "fd00:255::/64"],
        "mtu": 1380,
        "peers": [
            {**raw["peers"][0], "subnets": ["192.168.10.0/24", "fd00:10::/64"]},
            {**raw["peers"][1], "endpoint": "[2001:db8::20]:51821"},
            {**{k: v for k, v in raw["peers"][2].items() if k not in ("endpoint", "address")}, "post_up": ["true %i"], "table": "off"},
        ],
    }
    return {"example": raw, "dual-stack-nat": dual}


def test_public_keys_equal_wg_pubkey() -> None:
    require_tools("wg")
    ours = [generate_private_key() for _ in range(6)] + [private_key_from_seed(bytes([n]) * 32) for n in (0, 1, 255)]
    theirs = [run("wg", "genkey").strip() for _ in range(4)]
    for private in ours + theirs:
        assert public_key(private) == run("wg", "pubkey", stdin=private + "\n").strip()


def test_wg_genkey_keys_are_already_clamped_like_ours() -> None:
    require_tools("wg")
    for _ in range(3):
        private = run("wg", "genkey").strip()
        from wgmesh.mesh.keys import decode_key

        assert private_key_from_seed(decode_key(private)) == private


@pytest.mark.parametrize("variant", ["example", "dual-stack-nat"])
def test_wg_quick_strip_accepts_every_rendered_file(three_peers: dict[str, Any], tmp_path: Path, variant: str) -> None:
    require_tools("wg-quick", "wg")
    if os.geteuid() != 0:
        pytest.skip("wg-quick re-executes itself through sudo unless run as root")
    mesh = load_mesh(variants(three_peers)[variant])
    for name, text in render_all(mesh, seeded_keys(mesh.names)).items():
        path = tmp_path / f"{name}.conf"
        path.write_text(text)
        path.chmod(0o600)
        stripped = run("wg-quick", "strip", str(path))
        ours = parse_config(text)
        theirs = parse_config(stripped)
        assert theirs.interface == tuple(entry for entry in ours.interface if entry[0] in WG_ENTRIES)
        assert [section.entries for section in theirs.peers] == [section.entries for section in ours.peers]


@contextlib.contextmanager
def running_wireguard_go(namespace: str, interface: str, log_path: Path) -> Iterator[str]:
    """A wireguard-go interface ``interface`` inside ``namespace``, stopped (by its pid) and removed on exit.

    Run in the foreground (``-f``) under our own Popen, so we hold its pid and stop exactly that process. The UAPI
    socket directory /var/run/wireguard is global, so the interface name must be unique per test run.
    """
    require_tools("wireguard-go", "wg")
    socket = Path("/var/run/wireguard") / f"{interface}.sock"
    env = {key: value for key, value in os.environ.items() if key != "WG_PROCESS_FOREGROUND"}
    env["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1"
    log = log_path.open("w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "wireguard-go", "-f", interface], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"wireguard-go did not start: {log_path.read_text()[-300:]}")
            time.sleep(0.05)
        yield interface
    finally:
        subprocess.run(["ip", "-n", namespace, "link", "delete", interface], capture_output=True, timeout=10)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        socket.unlink(missing_ok=True)


@pytest.fixture
def wireguard_go(netns: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A wireguard-go interface inside the test's namespace: (namespace, interface)."""
    with running_wireguard_go(netns, f"wgt{os.getpid() % 1000000}", tmp_path / "wireguard-go.log") as interface:
        yield netns, interface


@pytest.mark.parametrize("variant", ["example", "dual-stack-nat"])
def test_wg_setconf_loads_the_rendered_mesh(
    wireguard_go: tuple[str, str], three_peers: dict[str, Any], tmp_path: Path, variant: str
) -> None:
    require_tools("wg-quick")
    namespace, interface = wireguard_go
    mesh = load_mesh(variants(three_peers)[variant])
    keys = seeded_keys(mesh.names)
    for peer in mesh.peers:
        source = tmp_path / f"{peer.name}.conf"
        source.write_text(render_peer_config(mesh, peer.name, keys))
        source.chmod(0o600)
        stripped = tmp_path / f"{peer.name}.stripped.conf"
        stripped.write_text(run("wg-quick", "strip", str(source)))
        stripped.chmod(0o600)
        run("ip", "netns", "exec", namespace, "wg", "setconf", interface, str(stripped))

        dump = [line.split("\t") for line in run("ip", "netns", "exec", namespace, "wg", "show", interface, "dump").splitlines()]
        private, public, port, _fwmark = dump[0]
        assert private == keys.private_key(peer.name) and public == keys.public_key(peer.name) and port == str(peer.listen_port)
        expected = {}
        for remote in mesh.others(peer.name):
            endpoint = str(remote.endpoint) if remote.endpoint is not None else "(none)"
            keepalive = str(mesh.keepalive_between(peer, remote) or "off")
            allowed = ",".join(str(network) for network in remote.allowed_ips)
            expected[keys.public_key(remote.name)] = (keys.preshared_key(peer.name, remote.name), endpoint, allowed, keepalive)
        actual = {row[0]: (row[1], row[2], row[3], row[7]) for row in dump[1:]}
        assert actual == expected

        showconf = parse_config(run("ip", "netns", "exec", namespace, "wg", "showconf", interface))
        assert {section.get("PublicKey") for section in showconf.peers} == set(expected)


# iptables as installed (nf_tables on Debian 12 and Ubuntu 22.04+) and iptables-legacy (Ubuntu 20.04, older AMIs).
BACKENDS = {"default": "", "legacy": "-legacy"}


def _hooks(text: str, key: str, interface: str, backend: str = "") -> list[str]:
    """The PostUp or PostDown commands as wg-quick runs them (``%i`` replaced), optionally with iptables-legacy."""
    commands = [command.replace("%i", interface) for command in parse_config(text).get_all(key)]
    return [re.sub(r"\b(ip6?tables)(-restore)? ", rf"\1{backend}\2 ", command) for command in commands]


def _wgmesh_rules(namespace: str, binary: str, backend: str = "", counters: bool = False) -> list[str]:
    saved = run("ip", "netns", "exec", namespace, f"{binary}{backend}-save", *(["-c"] if counters else []))
    return [line for line in saved.splitlines() if "wgmesh" in line]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("variant", ["example", "dual-stack-nat"])
def test_postup_is_idempotent_and_postdown_removes_every_rule(netns: str, three_peers: dict[str, Any], variant: str, backend: str) -> None:
    suffix = BACKENDS[backend]
    require_tools(f"iptables{suffix}", f"iptables{suffix}-save", "bash", "sysctl")
    require_root_netns()
    mesh = load_mesh(variants(three_peers)[variant])
    keys = seeded_keys(mesh.names)
    interface = "wg0"
    text = render_peer_config(mesh, "zhy", keys)
    binaries = ["iptables"] + (["ip6tables"] if any(n.version == 6 for n in mesh.networks) else [])
    if "ip6tables" in binaries:
        require_tools(f"ip6tables{suffix}", f"ip6tables{suffix}-save")

    def apply(key: str) -> None:
        for command in _hooks(text, key, interface, suffix):
            run("ip", "netns", "exec", netns, "bash", "-c", command)

    # zhy's egress_interface (ens5) exists here, and its uplink is found by the default route.
    run("ip", "-n", netns, "link", "add", "ens5", "type", "veth", "peer", "name", "up0")
    run("ip", "-n", netns, "addr", "add", "192.168.10.1/24", "dev", "ens5")
    run("ip", "-n", netns, "link", "set", "up0", "up")
    run("ip", "-n", netns, "addr", "add", "198.51.100.99/24", "dev", "up0")
    run("ip", "-n", netns, "route", "add", "default", "via", "198.51.100.1", "dev", "up0")
    before = {binary: run("ip", "netns", "exec", netns, f"{binary}{suffix}-save") for binary in binaries}
    apply("PostUp")
    first = {binary: _wgmesh_rules(netns, binary, suffix) for binary in binaries}
    apply("PostUp")  # a restart, or wg-quick up after a crash without down
    second = {binary: _wgmesh_rules(netns, binary, suffix) for binary in binaries}
    assert first == second
    for rules in second.values():
        assert len(rules) == len(set(rules)), "no rule twice"
        jumps = [rule for rule in rules if rule.startswith("-A ") and "-m comment --comment wgmesh -j wgmesh-wg0-" in rule]
        assert len(jumps) == 4, rules
        assert sum("-j MARK --set-xmark 0x1000000/0x1000000" in rule and "-i wg0 -o ens5" in rule for rule in rules) == 1
        assert sum("-m mark --mark 0x1000000/0x1000000" in rule and "-j MASQUERADE" in rule for rule in rules) == 1
        assert sum("-i up0 -p udp -m udp --dport 51820 -j ACCEPT" in rule for rule in rules) == 1, "the uplink, found"
    assert run("ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    apply("PostDown")
    assert all(_wgmesh_rules(netns, binary, suffix) == [] for binary in binaries)
    apply("PostDown")  # down twice must not fail either
    after = {binary: run("ip", "netns", "exec", netns, f"{binary}{suffix}-save") for binary in binaries}

    def tables(saved: str) -> dict[str, list[str]]:
        """Each table's lines without comments and without the empty tables nf_tables leaves once used."""
        found: dict[str, list[str]] = {}
        for line in saved.splitlines():
            if line.startswith("*"):
                table = found.setdefault(line, [])
            elif not line.startswith(("#", "COMMIT")):
                table.append(re.sub(r" \[\d+:\d+\]$", "", line))  # without the packet counters
        return {name: lines for name, lines in found.items() if any(not re.match(r"^:[A-Z]+ ACCEPT$", line) for line in lines)}

    assert {binary: tables(text) for binary, text in after.items()} == {binary: tables(text) for binary, text in before.items()}


# A gateway peer with a VPC behind its egress interface, and a client peer with a subnet of its own.
TRAFFIC_MESH: dict[str, Any] = {
    "network": ["10.255.0.0/24", "fd00:255::/64"],
    "peers": [
        {
            "name": "gw",
            "address": ["10.255.0.1", "fd00:255::1"],
            "endpoint": "203.0.113.1:51820",
            "subnets": ["192.168.77.0/24", "fd00:77::/64"],
            "egress_interface": "ens5",
            "uplink_interface": "ul0",
        },
        {
            "name": "cl",
            "address": ["10.255.0.2", "fd00:255::2"],
            "endpoint": "203.0.113.2:51820",
            "subnets": ["172.31.77.0/24", "fd00:31::/64"],
        },
    ],
}


@contextlib.contextmanager
def namespaces(*roles: str) -> Iterator[dict[str, str]]:
    """Throwaway network namespaces, one per role (``wgmesh-<role>-<pid>``), deleted afterwards even on failure."""
    require_root_netns()
    names = {role: f"wgmesh-{role}-{os.getpid()}" for role in roles}
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)
            created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
            if created.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
            run("ip", "-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def _ping_all(probes: dict[str, tuple[str, list[str]]], wait: int) -> dict[str, bool]:
    """Run one ``ping -c 1`` per probe, concurrently (failures each cost ``wait`` seconds): label -> answered."""
    processes = {
        label: subprocess.Popen(
            ["ip", "netns", "exec", namespace, "ping", "-n", "-c", "1", "-W", str(wait), *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for label, (namespace, arguments) in probes.items()
    }
    return {label: process.wait(timeout=wait + 10) == 0 for label, process in processes.items()}


def test_masquerade_lets_a_vpc_host_without_a_route_back_answer_the_tunnel(tmp_path: Path) -> None:
    """Real packets: client ns -> WireGuard (wireguard-go) -> gateway ns -> egress veth -> "VPC host" ns.

    The VPC host has only its connected network: no route to the tunnel network or to the client's subnet. So a
    ping from the client, from its tunnel address or from an address in its subnet, is answered only if the
    gateway masquerades it out of its egress interface; and the gateway's own pings sourced from its tunnel
    address only if the tunnel-network rule does. Checked three times: with every PostUp rule but the
    MASQUERADEs (nothing answers), after PostUp twice (everything answers, and the mark rule counted packets),
    and after PostDown (no wgmesh rule left, nothing answers).

    Network rule: every address lives in the three namespaces made here (203.0.113.0/24 is a veth between them).
    """
    require_root_netns()
    require_tools("wireguard-go", "wg", "wg-quick", "iptables", "iptables-save", "ip6tables", "ip6tables-save", "ping", "bash")
    mesh = load_mesh(TRAFFIC_MESH)
    keys = seeded_keys(mesh.names)
    suffix = os.getpid() % 1000000  # wgt* like the fixture above: wireguard-go sockets are global, names must not collide
    with (
        namespaces("cl", "gw", "vpc") as ns,
        running_wireguard_go(ns["cl"], f"wgtc{suffix}", tmp_path / "cl.log") as wg_cl,
        running_wireguard_go(ns["gw"], f"wgtg{suffix}", tmp_path / "gw.log") as wg_gw,
    ):

        def ip(role: str, *arguments: str) -> str:
            return run("ip", "-n", ns[role], *arguments)

        # Underlay between the two peers (their endpoints), and the gateway's egress link into the VPC.
        ip("cl", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", ns["gw"])
        ip("gw", "link", "add", "ens5", "type", "veth", "peer", "name", "eth0", "netns", ns["vpc"])
        for role, device, addresses in [
            ("cl", "ul0", ["203.0.113.2/24"]),
            ("gw", "ul0", ["203.0.113.1/24"]),
            ("gw", "ens5", ["192.168.77.1/24", "fd00:77::1/64"]),
            ("vpc", "eth0", ["192.168.77.2/24", "fd00:77::2/64"]),
        ]:
            for address in addresses:
                ip(role, "addr", "add", address, "dev", device, *(["nodad"] if ":" in address else []))
            ip(role, "link", "set", device, "up")
        ip("cl", "addr", "add", "172.31.77.1/32", "dev", "lo")  # a host of the client's subnet
        ip("cl", "addr", "add", "fd00:31::1/128", "dev", "lo")

        # Each peer's rendered file, loaded the way wg-quick does it: strip, setconf, addresses, routes.
        texts = {}
        for role, interface in (("cl", wg_cl), ("gw", wg_gw)):
            texts[role] = render_peer_config(mesh, role, keys)
            source = tmp_path / f"{role}.conf"
            source.write_text(texts[role])
            source.chmod(0o600)
            stripped = tmp_path / f"{role}.stripped.conf"
            stripped.write_text(run("wg-quick", "strip", str(source)))
            stripped.chmod(0o600)
            run("ip", "netns", "exec", ns[role], "wg", "setconf", interface, str(stripped))
            for address in mesh.peer(role).addresses:
                ip(role, "addr", "add", str(address), "dev", interface, *(["nodad"] if address.version == 6 else []))
            ip(role, "link", "set", interface, "up")
            for remote in mesh.others(role):
                for subnet in remote.subnets:
                    ip(role, "route", "add", str(subnet), "dev", interface)

        for unreachable in ("10.255.0.2", "172.31.77.1", "fd00:255::2", "fd00:31::1"):
            probe = subprocess.run(["ip", "-n", ns["vpc"], "route", "get", unreachable], capture_output=True, timeout=10)
            assert probe.returncode != 0, f"the VPC host must have no route back to {unreachable}"
        deadline = time.monotonic() + 15
        while not _ping_all({"handshake": (ns["cl"], ["10.255.0.1"])}, wait=1)["handshake"]:
            assert time.monotonic() < deadline, f"no tunnel: {(tmp_path / 'cl.log').read_text()[-300:]}"

        def apply(commands: list[str]) -> None:
            for command in commands:
                run("ip", "netns", "exec", ns["gw"], "bash", "-c", command)

        probes = {
            "client tunnel address, IPv4": (ns["cl"], ["-I", "10.255.0.2", "192.168.77.2"]),
            "client subnet, IPv4": (ns["cl"], ["-I", "172.31.77.1", "192.168.77.2"]),
            "client tunnel address, IPv6": (ns["cl"], ["-6", "-I", "fd00:255::2", "fd00:77::2"]),
            "client subnet, IPv6": (ns["cl"], ["-6", "-I", "fd00:31::1", "fd00:77::2"]),
            "gateway tunnel address, IPv4": (ns["gw"], ["-I", "10.255.0.1", "192.168.77.2"]),
            "gateway tunnel address, IPv6": (ns["gw"], ["-6", "-I", "fd00:255::1", "fd00:77::2"]),
        }
        post_up = _hooks(texts["gw"], "PostUp", wg_gw)
        apply([command for command in post_up if "-restore " not in command])
        assert _ping_all(probes, wait=1) == dict.fromkeys(probes, False), "forwarding alone: the VPC host cannot answer"

        apply(post_up)
        apply(post_up)
        assert _ping_all(probes, wait=3) == dict.fromkeys(probes, True), "masqueraded: every probe answered"
        for binary in ("iptables", "ip6tables"):
            rules = _wgmesh_rules(ns["gw"], binary, counters=True)
            assert len(rules) == len(set(rules)), rules
            marked = [rule for rule in rules if "-m mark --mark 0x1000000/0x1000000" in rule]
            tunnel = [rule for rule in rules if "-s 10.255.0.0/24" in rule or "-s fd00:255::/64" in rule]
            assert len(marked) == len(tunnel) == 1
            packets = [int(re.match(r"\[(\d+):", rule).group(1)) for rule in (marked[0], tunnel[0])]  # type: ignore[union-attr]
            assert packets[0] >= 2 and packets[1] >= 1, f"the client's two flows were marked, the gateway's own was not: {rules}"

        apply(_hooks(texts["gw"], "PostDown", wg_gw))
        assert _wgmesh_rules(ns["gw"], "iptables") == [] and _wgmesh_rules(ns["gw"], "ip6tables") == []
        client_probes = {label: probe for label, probe in probes.items() if probe[0] == ns["cl"]}
        assert _ping_all(client_probes, wait=1) == dict.fromkeys(client_probes, False), "PostDown removed the NAT"


# Sends one IPv6 router advertisement (no prefix: only a default router with a lifetime) out of an interface, from
# its link-local address with hop limit 255 as neighbour discovery requires; the kernel fills in the checksum.
_SEND_RA = """
import socket, struct, sys
interface, lifetime = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
sock.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0), ("ff02::1", 0, 0, socket.if_nametoindex(interface)))
"""


def test_postup_keeps_the_ipv6_default_route_learned_from_router_advertisements(three_peers: dict[str, Any]) -> None:
    """A host whose IPv6 default route comes from router advertisements keeps it when PostUp turns on forwarding.

    Two throwaway namespaces on a veth pair: a "router" sends advertisements, the "host" (zhy of a dual-stack mesh,
    uplink ens5 with the kernel's default ``accept_ra=1``) learns its default route from them. Control first: the
    PostUp commands without the accept_ra line drop that route the moment IPv6 forwarding turns on. Then the real
    PostUp (twice: idempotent): the route stays, ``accept_ra`` is 2, and a later advertisement is still accepted
    (so the route is renewed before its lifetime ends). An uplink set to ``accept_ra=0`` stays 0.
    """
    require_tools("ip6tables", "sysctl", "bash")
    raw = variants(three_peers)["dual-stack-nat"]
    raw["peers"][0] = raw["peers"][0] | {"uplink_interface": "ens5"}  # the RA default route comes and goes here
    mesh = load_mesh(raw)
    assert mesh.peer("zhy").egress_interface == "ens5"
    post_up = _hooks(render_peer_config(mesh, "zhy", seeded_keys(mesh.names)), "PostUp", "wg0")
    without_fix = [command for command in post_up if "accept_ra" not in command]
    assert len(without_fix) == len(post_up) - 1

    with namespaces("ra-rtr", "ra-host") as ns:
        router, host = ns["ra-rtr"], ns["ra-host"]
        run("ip", "link", "add", "rtr0", "netns", router, "type", "veth", "peer", "name", "ens5", "netns", host)
        run("ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv6.conf.rtr0.accept_dad=0")
        run("ip", "netns", "exec", host, "sysctl", "-q", "-w", "net.ipv6.conf.ens5.accept_dad=0", "net.ipv6.conf.ens5.accept_ra=1")
        run("ip", "-n", router, "link", "set", "rtr0", "up")
        run("ip", "-n", host, "link", "set", "ens5", "up")

        def in_host(*command: str) -> str:
            return run("ip", "netns", "exec", host, *command)

        def default_route() -> str:
            return in_host("ip", "-6", "route", "show", "default").strip()

        def advertise(expect_route: bool) -> str:
            """Send advertisements until the host has (or, when not expected, still lacks) an RA default route."""
            deadline = time.monotonic() + 5
            while True:
                run("ip", "netns", "exec", router, sys.executable, "-c", _SEND_RA, "rtr0", "1800")
                time.sleep(0.2)
                route = default_route()
                if bool(route) == expect_route or time.monotonic() > deadline:
                    return route

        def run_hooks(commands: list[str]) -> None:
            for command in commands:
                in_host("bash", "-c", command)

        assert "proto ra" in advertise(expect_route=True), "the host learns its default route from the router"
        run_hooks(without_fix)
        assert default_route() == "", "control: forwarding on with accept_ra=1 drops the RA default route at once"
        assert advertise(expect_route=False) == "", "control: and the next advertisements are ignored"

        in_host("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=0")
        assert "proto ra" in advertise(expect_route=True)
        run_hooks(post_up)
        run_hooks(post_up)  # a restart, or the install script's hitless re-run of PostUp
        assert in_host("sysctl", "-n", "net.ipv6.conf.all.forwarding").strip() == "1"
        assert in_host("sysctl", "-n", "net.ipv6.conf.ens5.accept_ra").strip() == "2"
        assert "proto ra" in default_route(), "the default route survived forwarding being turned on"
        in_host("ip", "-6", "route", "del", "default")  # as if its lifetime ran out
        assert "proto ra" in advertise(expect_route=True), "advertisements are still accepted while forwarding"

        in_host("sysctl", "-q", "-w", "net.ipv6.conf.ens5.accept_ra=0")
        run_hooks(post_up)
        assert in_host("sysctl", "-n", "net.ipv6.conf.ens5.accept_ra").strip() == "0", "a statically configured uplink stays so"
