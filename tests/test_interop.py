"""Interop with the real WireGuard tools (Debian wireguard-tools and wireguard-go).

* our public keys equal what ``wg pubkey`` prints, for keys we make and keys ``wg genkey`` makes;
* ``wg-quick strip`` accepts every rendered file and keeps exactly the WireGuard entries;
* ``wg setconf`` loads the stripped file into a real interface (wireguard-go in a throwaway network namespace),
  and ``wg show dump`` / ``wg showconf`` report the keys, allowed IPs and endpoints we rendered;
* the PostUp/PostDown hooks are idempotent: two ups leave each iptables rule once, a down removes them all.

Network rule: nothing here sends a packet. The namespaces have only ``lo`` (no route to any endpoint) and the
WireGuard interface is never brought up.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh import load_mesh
from mesh.keys import generate_private_key, private_key_from_seed, public_key
from mesh.render import render_all, render_peer_config
from mesh.wgconf import parse_config
from tests.conftest import require_root_netns, require_tools, seeded_keys

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
        from mesh.keys import decode_key

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


@pytest.fixture
def wireguard_go(netns: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A wireguard-go interface inside the test's namespace: (namespace, interface).

    Run in the foreground (``-f``) under our own Popen, so we hold its pid and stop exactly that process. The UAPI
    socket directory /var/run/wireguard is global, so the interface name is unique per test run.
    """
    require_tools("wireguard-go", "wg")
    interface = f"wgt{os.getpid() % 1000000}"
    socket = Path("/var/run/wireguard") / f"{interface}.sock"
    env = {key: value for key, value in os.environ.items() if key != "WG_PROCESS_FOREGROUND"}
    env["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1"
    log = (tmp_path / "wireguard-go.log").open("w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, "wireguard-go", "-f", interface], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"wireguard-go did not start: {(tmp_path / 'wireguard-go.log').read_text()[-300:]}")
            time.sleep(0.05)
        yield netns, interface
    finally:
        subprocess.run(["ip", "-n", netns, "link", "delete", interface], capture_output=True, timeout=10)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        socket.unlink(missing_ok=True)


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


def _hooks(text: str, key: str, interface: str) -> list[str]:
    return [command.replace("%i", interface) for command in parse_config(text).get_all(key)]


def _wgmesh_rules(namespace: str, binary: str) -> list[str]:
    saved = run("ip", "netns", "exec", namespace, f"{binary}-save")
    return [line for line in saved.splitlines() if "wgmesh" in line]


@pytest.mark.parametrize("variant", ["example", "dual-stack-nat"])
def test_postup_is_idempotent_and_postdown_removes_every_rule(netns: str, three_peers: dict[str, Any], variant: str) -> None:
    require_tools("iptables", "iptables-save", "bash", "sysctl")
    require_root_netns()
    mesh = load_mesh(variants(three_peers)[variant])
    keys = seeded_keys(mesh.names)
    interface = "wg0"
    text = render_peer_config(mesh, "zhy", keys)
    binaries = ["iptables"] + (["ip6tables"] if any(n.version == 6 for n in mesh.networks) else [])
    if "ip6tables" in binaries:
        require_tools("ip6tables", "ip6tables-save")

    def apply(key: str) -> None:
        for command in _hooks(text, key, interface):
            run("ip", "netns", "exec", netns, "bash", "-c", command)

    apply("PostUp")
    first = {binary: _wgmesh_rules(netns, binary) for binary in binaries}
    apply("PostUp")  # a restart, or wg-quick up after a crash without down
    second = {binary: _wgmesh_rules(netns, binary) for binary in binaries}
    assert first == second
    expected_rules = sum(1 for command in _hooks(text, "PostUp", interface) if " -A " in command)
    assert sum(len(rules) for rules in second.values()) == expected_rules
    for rules in second.values():
        assert len(rules) == len(set(rules)), "no rule twice"
    assert run("ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    apply("PostDown")
    assert all(_wgmesh_rules(netns, binary) == [] for binary in binaries)
    apply("PostDown")  # down twice must not fail either
