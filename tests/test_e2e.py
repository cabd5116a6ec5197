"""End to end: the real program deployed by the real Pulumi engine onto the lab's hosts over SSH.

Each "pulumi up" is :meth:`wgmesh.lab.deploy.LabStack.up`: the lab's ``Pulumi.lab.yaml`` config, edited the way a user
edits a stack config, goes to the Pulumi engine through the Automation API (:mod:`wgmesh.lab.engine`), which runs the
program and its providers: every ``command:remote:Command`` the program declares (the program's own install and
verify scripts, its stdin, its connection details) runs over SSH against the lab hosts, with the engine's own
diffs, ordering, replacements and deletes. Everything is then checked from inside the lab's namespaces (``ping``,
``wg show``), not from the program's own verification alone:

* the seed's three-peer topology: every pair pings over the tunnel addresses, every LAN reaches every other LAN
  across the mesh ("a host in one VPC reaches a host in another"), and every pair has a WireGuard handshake;
* adding a fourth peer while ``ping -i 0.05`` runs between two existing peers (and LAN to LAN) loses nothing and
  restarts nothing; removing it again (its uninstall runs as the dropped resource's delete) loses nothing either;
* rotating one peer's keys (``key_version`` bump): new public key everywhere, old one nowhere, mesh whole again;
* a peer whose wireguard-go is killed and whose host then "reboots" comes back with the installed config (same
  key, same peers), and the next ``pulumi up`` has nothing to do;
* a broken config (a hook that is not valid bash, an unknown routing table: both pass the program's validation)
  is rejected by the install step: the run fails naming the peer and the reason (redacted), the old config file
  and interface stay as they were and the tunnels keep carrying traffic; the next run with the good config has
  nothing to redo on that peer (a transfer cut off mid-key is rejected the same way: ``tests/test_install.py``);
* a peer behind NAT with no endpoint joins the mesh through its keepalive alone (with the program's verification
  off, so nothing else sends traffic first): the others learn its NAT router's address from its handshake;
* a public peer's host wiped and reinstalled (new SSH host key, no WireGuard), its new key accepted: only its install
  runs again, and every peer verifies again, so the peer behind NAT restarts its session with it in the same update.

One lab of five hosts (h5 behind NAT) for the module, taken down in a ``finally``; every test first brings the
stack to the three-peer base, so a failed test does not cascade. Traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import deployed, engine_stack, running_lab
from tests.state_audit import secrets_in_text
from wgmesh.lab import Lab
from wgmesh.lab.deploy import (
    LabStack,
    Pinger,
    UpResult,
    WgInterface,
    all_pairs,
    in_lab,
    lan_pairs,
    ping,
    tunnel_pairs,
    wg_show,
    wireguard_pids,
)

pytestmark = pytest.mark.lab

BASE = ("h1", "h2", "h3")
HOSTS = 5  # h4: the peer added and removed; h5: behind NAT
NAT_HOST = "h5"
# WireGuard starts a handshake when data it sent got no answer for 15 s (Keepalive-Timeout + Rekey-Timeout), unless
# any packet arrived meanwhile: waiting longer leaves no such timer running from earlier traffic.
QUIET_SECONDS = 20
# A private or preshared key as wg prints it: 43 base64 characters and one '='.
KEY_TEXT = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("e2e") / "state", HOSTS, nat_peer=True) as shared:
        yield shared


@pytest.fixture(scope="module")
def stack(lab: Lab) -> LabStack:
    return engine_stack(lab)


def base(stack: LabStack) -> None:
    """Bring the stack to the three-peer base (a no-op when it is there already)."""
    deployed(stack, stack.config(BASE), verified=False)


def assert_whole(lab: Lab, names: Sequence[str], *, timeout: float = 20) -> None:
    """From inside the namespaces: every pair pings over the tunnel, every LAN reaches every other LAN, and every
    host has exactly the others as WireGuard peers, each with a handshake."""
    tunnels = all_pairs(lab, tunnel_pairs(lab, names), timeout=timeout)
    assert [pair for pair, ok in tunnels.items() if not ok] == [], "tunnel pings without answer"
    lans = all_pairs(lab, lan_pairs(lab, names), timeout=timeout)
    assert [pair for pair, ok in lans.items() if not ok] == [], "LAN-to-LAN pings without answer"
    shown = {name: wg_show(lab, name) for name in names}
    assert all(interface is not None for interface in shown.values()), shown
    keys = {name: interface.public_key for name, interface in shown.items() if interface}
    for name, interface in shown.items():
        assert interface is not None
        expected = {keys[other] for other in names if other != name}
        assert set(interface.peers) == expected, f"{name}'s peers"
        silent = [other for other in names if other != name and interface.peers[keys[other]].latest_handshake == 0]
        assert silent == [], f"{name} has no handshake with {silent}"


def static(interface: WgInterface | None) -> Any:
    """What a config sets on an interface (keys, port, peers' endpoints, AllowedIPs, keepalive): not the counters."""
    if interface is None:
        return None
    peers = {key: (peer.endpoint, peer.allowed_ips, peer.keepalive) for key, peer in interface.peers.items()}
    return interface.public_key, interface.listen_port, peers


def install_actions(result: UpResult) -> dict[str, list[str]]:
    installs = {action: [name for name in names if name.endswith("-install")] for action, names in result.actions.items()}
    return {action: names for action, names in installs.items() if names}


# ------------------------------------------------------------------------------------------------ the topology


def test_three_peer_mesh_all_pairs_lan_to_lan_and_handshakes(lab: Lab, stack: LabStack) -> None:
    result = deployed(stack, stack.config(BASE), verified=False)
    assert install_actions(result).get("create") == [f"{name}-install" for name in BASE], result.actions
    assert {name: check["ok"] for name, check in result.verification.items()} == dict.fromkeys(BASE, True), result.verification
    assert_whole(lab, BASE)
    for name in BASE:
        conf = lab.host_dir(lab.host(name)) / "etc-wireguard" / "wg0.conf"
        assert conf.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------------------------------- add and remove


def test_adding_and_removing_a_fourth_peer_loses_no_packet(lab: Lab, stack: LabStack) -> None:
    base(stack)
    pids = {name: wireguard_pids(lab, name) for name in BASE}
    h2, h3 = lab.host("h2"), lab.host("h3")
    with Pinger(lab, "h1", h2.tunnel_address) as tunnel, Pinger(lab, "h2-lan", h3.lan_client) as lan:
        added = deployed(stack, stack.config((*BASE, "h4")), verified=False)
    assert install_actions(added) == {"update": [f"{name}-install" for name in BASE], "create": ["h4-install"]}, added.actions
    assert all(check["ok"] for check in added.verification.values()), added.verification
    assert tunnel.stats and lan.stats
    assert (tunnel.stats.lost, lan.stats.lost) == (0, 0), (tunnel.stats, lan.stats)
    assert tunnel.stats.transmitted >= 20, "the run was covered by the pinger"
    assert {name: wireguard_pids(lab, name) for name in BASE} == pids, "an existing peer was restarted"
    assert_whole(lab, (*BASE, "h4"))

    with Pinger(lab, "h1", h2.tunnel_address) as tunnel, Pinger(lab, "h2-lan", h3.lan_client) as lan:
        removed = deployed(stack, stack.config(BASE), verified=False)
    assert "h4-install" in removed.actions.get("delete", []), removed.actions
    assert (tunnel.stats and tunnel.stats.lost, lan.stats and lan.stats.lost) == (0, 0), (tunnel.stats, lan.stats)
    assert wg_show(lab, "h4") is None and wireguard_pids(lab, "h4") == []
    assert not (lab.host_dir(lab.host("h4")) / "etc-wireguard" / "wg0.conf").exists()
    assert {name: wireguard_pids(lab, name) for name in BASE} == pids
    assert_whole(lab, BASE)


# -------------------------------------------------------------------------------------------------- rotation


def test_rotating_one_peers_keys_leaves_the_mesh_whole(lab: Lab, stack: LabStack) -> None:
    base(stack)
    old = wg_show(lab, "h2")
    assert old is not None
    pid = wireguard_pids(lab, "h2")
    rotated = deployed(stack, stack.config(BASE, peer_settings={"h2": {"key_version": 2}}), verified=False)
    assert install_actions(rotated) == {"update": [f"{name}-install" for name in BASE]}, rotated.actions
    new = wg_show(lab, "h2")
    assert new is not None and new.public_key != old.public_key
    assert wireguard_pids(lab, "h2") == pid, "rotation restarted the interface"
    for name in ("h1", "h3"):
        interface = wg_show(lab, name)
        assert interface is not None
        assert new.public_key in interface.peers and old.public_key not in interface.peers, name
    assert all(check["ok"] for check in rotated.verification.values()), rotated.verification
    assert_whole(lab, BASE)


# ---------------------------------------------------------------------------------------------------- reboot


def test_a_peer_whose_wireguard_dies_comes_back_after_a_reboot(lab: Lab, stack: LabStack) -> None:
    base(stack)
    before = wg_show(lab, "h2")
    pids = wireguard_pids(lab, "h2")
    assert before is not None and pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while wg_show(lab, "h2") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert wg_show(lab, "h2") is None, "wg0 survived its wireguard-go"
    assert not ping(lab, "h1", lab.host("h2").tunnel_address), "h2 answers with its WireGuard dead"

    booted = lab.reboot("h2")
    assert booted["wg_up"] == ["wg0"]
    after = wg_show(lab, "h2")
    assert after is not None and wireguard_pids(lab, "h2") not in ([], pids)
    assert static(after) == static(before), "h2 came back with another config"
    assert_whole(lab, BASE)
    again = deployed(stack, stack.config(BASE), verified=False)
    assert set(again.actions) == {"same"}, f"the reboot lost something the next pulumi up had to redo: {again.actions}"


# ---------------------------------------------------------------------------------------------- broken config


BROKEN = {
    # A hook the program accepts (one line, no '#') but that is not valid bash.
    "hook": ({"post_up": ["iptables -A FORWARD -i %i -j ACCEPT -m comment --comment 'unclosed"]}, "hook is not valid bash"),
    # A routing table name this host does not define (a typo of a name in /etc/iproute2/rt_tables).
    "table": ({"table": "wgmesh-nosuch"}, "is not a routing table"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_config_is_rejected_and_the_old_one_stays_active(lab: Lab, stack: LabStack, case: str) -> None:
    base(stack)
    settings, reason = BROKEN[case]
    conf = lab.host_dir(lab.host("h1")) / "etc-wireguard" / "wg0.conf"
    old_bytes, old_mtime = conf.read_bytes(), conf.stat().st_mtime_ns
    old = wg_show(lab, "h1")
    pids = wireguard_pids(lab, "h1")
    with Pinger(lab, "h1", lab.host("h2").tunnel_address) as tunnel, Pinger(lab, "h1-lan", lab.host("h3").lan_client) as lan:
        failed = stack.up(stack.config(BASE, peer_settings={"h1": settings}))
    assert not failed.ok and set(failed.failures) == {"h1-install"}, (failed.failures, failed.actions)
    message = failed.failures["h1-install"]
    assert "wgmesh: rejected" in message and reason in message, message
    assert KEY_TEXT.search(message) is None, "a key in the failure message"
    shown = stack.workspace.export(show_secrets=True)
    keys = [peer["public_key"] for peer in stack.workspace.outputs()["peers"].values()]
    assert secrets_in_text(failed.stdout + (failed.error or ""), shown, keys) == [], "a secret in the engine's output"
    assert (conf.read_bytes(), conf.stat().st_mtime_ns) == (old_bytes, old_mtime), "the installed config changed"
    assert static(wg_show(lab, "h1")) == static(old) and wireguard_pids(lab, "h1") == pids, "the running interface changed"
    assert (tunnel.stats and tunnel.stats.lost, lan.stats and lan.stats.lost) == (0, 0), (tunnel.stats, lan.stats)
    assert_whole(lab, BASE)
    fixed = deployed(stack, stack.config(BASE), verified=False)
    # The engine kept h1-install's old inputs when its update failed: back at the good config, nothing to redo.
    assert "h1-install" in fixed.actions.get("same", []), f"the failed install was recorded as applied: {fixed.actions}"


# ------------------------------------------------------------------------------------------------------- NAT


def test_a_peer_behind_nat_without_endpoint_joins_through_its_keepalive(lab: Lab, stack: LabStack) -> None:
    base(stack)
    nat = lab.host(NAT_HOST)
    config = stack.config((*BASE, NAT_HOST), verify=False)
    assert "endpoint" not in next(peer for peer in config["wgmesh:mesh"]["peers"] if peer["name"] == NAT_HOST)
    joined = deployed(stack, config, verified=False)
    assert install_actions(joined) == {"update": [f"{name}-install" for name in BASE], "create": [f"{NAT_HOST}-install"]}
    assert [name for action, names in joined.actions.items() if action != "delete" for name in names if name.endswith("-verify")] == []
    own = wg_show(lab, NAT_HOST)
    assert own is not None and {peer.keepalive for peer in own.peers.values()} == {25}
    # Nobody sends it anything (the others have no endpoint for it): only its keepalive can make the handshakes.
    deadline = time.monotonic() + 30
    learned: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        for name in BASE:
            interface = wg_show(lab, name)
            peer = interface.peers.get(own.public_key) if interface else None
            learned[name] = peer.endpoint if peer and peer.latest_handshake else None
        if all(learned.values()):
            break
        time.sleep(0.5)
    assert all(learned.values()), f"no handshake from {NAT_HOST} within 30 s: {learned}"
    # They learned where it is from its handshake: the NAT router's public address, not the host's own.
    assert {endpoint.rsplit(":", 1)[0] for endpoint in learned.values() if endpoint} == {nat.public_address}
    assert nat.address != nat.public_address
    assert_whole(lab, (*BASE, NAT_HOST))


def test_the_lab_stack_file_is_what_the_tests_deploy(lab: Lab) -> None:
    """The config the tests edit is the lab's own Pulumi.lab.yaml (key path absolute, file 0600)."""
    assert lab.stack_path.stat().st_mode & 0o777 == 0o600
    text = lab.stack_path.read_text()
    assert f"wgmesh:sshPrivateKeyPath: {lab.key_path}" in text and Path(lab.key_path).is_absolute()


# -------------------------------------------------------------------------------------------- pinned host keys


def test_a_host_showing_a_new_ssh_host_key_is_refused_before_anything_is_sent(
    lab: Lab, stack: LabStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust on first use: the first `pulumi up` learned each host's key (ssh-keyscan, kept in state) and every
    connection pins it. A host that later shows another key (reinstalled, or someone else at its address) is refused
    by the next `pulumi up` during the key exchange: no login, so neither the config nor anything else reaches it."""
    base(stack)
    directory = lab.host_dir(lab.host("h2"))
    key = directory / "ssh_host_ed25519_key"
    learned = stack.workspace.resource_outputs("h2-host-key")["stdout"]
    assert learned == " ".join(key.with_name(key.name + ".pub").read_text().split()[:2]), "h2's key was not learned"

    new_host_key(lab, "h2")
    lab.reboot("h2")  # sshd comes back with the new key; wg0 with the installed config
    conf = directory / "etc-wireguard" / "wg0.conf"
    old_conf = (conf.read_bytes(), conf.stat().st_mtime_ns)
    log = directory / "sshd.log"
    logins = log.read_text().count("Accepted publickey")

    # pulumi-command counts a refused host key as a failed dial: 30 attempts, 1 s apart at most here instead of
    # 5 s (about 100 s of the test's 130): the same failure, sooner.
    monkeypatch.setenv("WGMESH_TEST_MAX_DIAL_PAUSE", "1")
    failed = stack.up(stack.config(BASE, peer_settings={"h2": {"mtu": 1380}}))  # a change only h2 gets
    monkeypatch.delenv("WGMESH_TEST_MAX_DIAL_PAUSE")
    assert not failed.ok and set(failed.failures) == {"h2-install"}, (failed.failures, failed.actions)
    assert "host key mismatch" in failed.failures["h2-install"], failed.failures
    assert (conf.read_bytes(), conf.stat().st_mtime_ns) == old_conf, "the config reached the host"
    assert log.read_text().count("Accepted publickey") == logins, "a session was opened on the host"
    assert stack.workspace.resource_outputs("h2-host-key")["stdout"] == learned, "the new key was learned silently"

    # Accepting the new key is a decision: `pulumi up --replace <h2-host-key>`. That run learns the new key and
    # installs over the pinned connection.
    accepted = deployed(stack, stack.config(BASE), verified=False, replace=[stack.workspace.urn("h2-host-key")])
    assert "h2-host-key" in accepted.actions.get("replace", []), accepted.actions
    assert "h2-install" in accepted.actions.get("update", []), accepted.actions
    assert stack.workspace.resource_outputs("h2-host-key")["stdout"] != learned
    assert all(check["ok"] for check in accepted.verification.values()), accepted.verification
    assert_whole(lab, BASE)


def new_host_key(lab: Lab, name: str) -> None:
    """Give a host a new SSH host key (as a reinstall would); sshd shows it from its next start."""
    key = lab.host_dir(lab.host(name)) / "ssh_host_ed25519_key"
    for path in (key, key.with_name(key.name + ".pub")):
        path.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}.new", "-f", str(key)], check=True, timeout=30)
    key.with_name(key.name + ".pub").chmod(0o600)


def test_a_reinstalled_public_host_is_installed_again_and_every_peer_verifies_again(lab: Lab, stack: LabStack) -> None:
    """A public peer's host is wiped and reinstalled (new SSH host key, no WireGuard) and its new key accepted: only
    its install runs again, but every peer verifies again, the one behind NAT included. The NAT peer still has a
    session with the old host and its keepalives, which the new host drops, never start a handshake; its verify's
    pings are data, which do, so the new host (which has no endpoint for it) reaches it within the same update."""
    names = (*BASE, NAT_HOST)
    base(stack)
    deployed(stack, stack.config(names))
    # A real replacement comes long after the last traffic. Right after it, the NAT peer's WireGuard would still be
    # waiting (15 s) for an answer to the data it sent, and would start a new handshake by itself.
    time.sleep(QUIET_SECONDS)
    directory = lab.host_dir(lab.host("h2"))
    new_host_key(lab, "h2")
    for path in (directory / "etc-wireguard").iterdir():
        path.unlink()
    lab.reboot("h2", handshake_timeout=0)
    assert wg_show(lab, "h2") is None, "h2 still has WireGuard after its reinstall"

    # Its new key accepted: `pulumi up --replace <h2-host-key>`.
    again = deployed(stack, stack.config(names), verified=False, replace=[stack.workspace.urn("h2-host-key")])
    assert install_actions(again) == {"update": ["h2-install"], "same": [f"{name}-install" for name in names if name != "h2"]}
    verified = sorted(name for name in again.actions.get("update", []) if name.endswith("-verify"))
    assert verified == [f"{name}-verify" for name in names], again.actions
    outcome = {name: (check["ok"], check["seconds"]) for name, check in again.verification.items()}
    assert {name: ok for name, (ok, _) in outcome.items()} == dict.fromkeys(names, True), again.verification
    print(f"verify after h2's reinstall (ok, seconds): {outcome}")
    assert_whole(lab, names)


def test_mesh_icmp_never_arrives_outside_the_tunnel(lab: Lab, stack: LabStack) -> None:
    """Why an AWS peer's security group has no ICMP rule for the mesh: a group filters the instance's interface, and
    ICMP from the tunnel network or another peer's subnets arrives inside the tunnel (on wg0) only. Here h1 drops
    such ICMP on every other interface, as a group without that rule would; the whole mesh still answers, and the
    drop rules count no packet."""
    base(stack)
    mesh = stack.config(BASE)["wgmesh:mesh"]
    sources = [mesh["network"], *(subnet for peer in mesh["peers"] if peer["name"] != "h1" for subnet in peer.get("subnets", []))]
    chain = "wgmesh-no-icmp-rule"
    setup = [f"iptables -w 5 -N {chain}"]
    setup += [f"iptables -w 5 -A {chain} ! -i wg0 -p icmp -s {source} -j DROP" for source in sources]
    setup += [f"iptables -w 5 -I {hook} 1 -j {chain}" for hook in ("INPUT", "FORWARD")]
    teardown = [f"iptables -w 5 -D {hook} -j {chain}" for hook in ("INPUT", "FORWARD")] + [
        f"iptables -w 5 -F {chain}",
        f"iptables -w 5 -X {chain}",
    ]
    assert in_lab(lab, "h1", ["sh", "-ec", "; ".join(setup)]).returncode == 0
    try:
        assert_whole(lab, BASE)
        counters = in_lab(lab, "h1", ["iptables", "-w", "5", "-nvxL", chain]).stdout
        dropped = [int(line.split()[0]) for line in counters.splitlines() if "DROP" in line]
        assert len(dropped) == len(sources) and sum(dropped) == 0, counters
    finally:
        in_lab(lab, "h1", ["sh", "-c", "; ".join(teardown)])
