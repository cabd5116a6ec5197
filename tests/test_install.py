"""hostside/install.py's scripts, run for real the way pulumi-command runs them: ``bash -c <script>``, config on stdin.

Each lab test builds its own small network: one namespace per host, joined by veth pairs to a bridge in a hub
namespace (underlay 172.31.0.0/24), with userspace WireGuard (wireguard-go, which wg-quick falls back to on this
kernel) and a per-test config directory whose name has a space and a quote in it (quoting is part of the test).
Interface names are distinct per host and per test, since wireguard-go's control sockets share /run/wireguard.

Every script runs under ``strace -f -e trace=execve``: the argv and environment of every process it starts are
recorded, and no private or preshared key may appear there, nor in stdout/stderr (a deterministic ``ps`` check).

What is proven, each by a check that fails when the feature breaks:

* fresh install: interface up with exactly the rendered config (``wg show dump``), file 0600 in a 0700 directory,
  no temp files left, the tunnel carries pings;
* re-install of the same config: reported unchanged, same wireguard-go process, file not rewritten;
* changed config (peer added, AllowedIPs changed, addresses changed, IPv6 added): applied with the same
  wireguard-go PID while a 20/s ping over the tunnel loses nothing; routes for new AllowedIPs appear, stale go;
* broken config (garbage, bad keys, bad Address, bad hook, empty): non-zero exit, a clear redacted message, the old
  file (bytes and mtime) and the running interface (dump and PID) unchanged;
* uninstall: interface, file and firewall rules gone, wireguard-go exits, a second run succeeds;
* verify: JSON and exit 0 when every peer handshakes and answers at every tunnel address (both families), exit 1
  within its timeout when one is down, each address reported on its own;
* wait_for_boot: instant without cloud-init, waits for it, times out, and leaves stdin for the install after it;
* the sudo re-exec passes the script and stdin through; every script passes ``bash -n``.

Nothing leaves the namespaces: endpoints are underlay addresses inside them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root_netns, require_tools, seeded_keys, seeded_private_key
from wgmesh.hostside.install import (
    inner_script,
    install_script,
    uninstall_script,
    user_data_script,
    verify_script,
    wait_for_boot_script,
)
from wgmesh.mesh import load_mesh
from wgmesh.mesh.model import Mesh
from wgmesh.mesh.render import MeshKeys, render_peer_config
from wgmesh.mesh.wgconf import parse_config

lab = pytest.mark.lab

HOSTS = ("a", "b", "c")
UNDERLAY = {"a": "172.31.0.1", "b": "172.31.0.2", "c": "172.31.0.3"}
KEYS = seeded_keys(HOSTS, "install")


def mesh_of(*names: str, network: str | list[str] = "10.255.0.0/24", mtu: int | None = None, **changes: dict[str, Any]) -> Mesh:
    """A mesh of the named lab hosts; ``changes`` overrides fields per peer (``a={"address": ...}``)."""
    peers = []
    for name in names:
        peer = {
            "name": name,
            "address": f"10.255.0.{HOSTS.index(name) + 1}",
            "endpoint": f"{UNDERLAY[name]}:51820",
            "subnets": [f"10.7.{HOSTS.index(name) + 1}.0/24"],
            "egress_interface": "eth0",
            "uplink_interface": "eth0",
        }
        peer.update(changes.get(name, {}))
        peers.append(peer)
    return load_mesh({"network": network, "peers": peers} | ({"mtu": mtu} if mtu else {}))


def secrets_of(text: str) -> list[str]:
    """The private and preshared keys in a wg-quick text: what must never show up outside the file."""
    config = parse_config(text)
    found = config.get_all("PrivateKey") + [key for section in config.peers if (key := section.get("PresharedKey"))]
    assert found, "a rendered config has at least a private key"
    return found


# ---------------------------------------------------------------------------------------------------------------
# Running scripts like pulumi-command does, under strace


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    execs: str  # every execve strace saw (argv and environment), one per line
    pid: int  # the script's shell ($$ inside it)

    def assert_clean(self, secrets: list[str]) -> None:
        """No secret in stdout, stderr, or the argv/environment of any process the script started."""
        for secret in secrets:
            assert secret not in self.stdout, "secret on stdout"
            assert secret not in self.stderr, "secret on stderr"
            assert secret not in self.execs, "secret on a command line or in an environment"


def run_script(namespace: str, script: str, stdin: str = "", *, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """``ip netns exec <ns> bash -c <script>`` with ``stdin`` piped in, traced for execve.

    strace stays attached to daemons the script leaves running (wireguard-go started by wg-quick up), so the run
    ends when the traced main process exits (strace logs it), and strace is then stopped, which detaches it:
    ``-I1`` lets SIGTERM through (with ``-o FILE PROG`` strace blocks it), and a killed strace would take its
    tracees with it.
    """
    with tempfile.TemporaryDirectory(prefix="wgmesh-run-") as scratch:
        out, err, log = (Path(scratch) / name for name in ("out", "err", "trace"))
        command = ["strace", "-I1", "-f", "--seccomp-bpf", "-v", "-s", "1000000", "-e", "trace=execve", "-e", "signal=none", "-o", str(log)]
        command += ["ip", "netns", "exec", namespace, "bash", "-c", script]
        started = time.monotonic()
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, env=env, text=True)
        try:
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(stdin)
                process.stdin.close()
            returncode, pid = _wait_for_main_exit(log, process, started + timeout)
        finally:
            if process.poll() is None:
                process.terminate()  # detaches from whatever the script left running
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        seconds = time.monotonic() - started
        execs = "\n".join(line for line in log.read_text().splitlines() if " execve(" in line)
        return Run(returncode, out.read_text(), err.read_text(), seconds, execs, pid)


def _wait_for_main_exit(log: Path, process: subprocess.Popen[str], deadline: float) -> tuple[int, int]:
    """(exit status, pid) of the traced command: `ip netns exec` execs bash in place, so it is the script's pid."""
    main_pid: str | None = None
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if main_pid is None and text:
            main_pid = text.split(maxsplit=1)[0]
        if main_pid is not None:
            match = re.search(rf"^{main_pid}\s+\+\+\+ (?:exited with (\d+)|killed by (\S+))", text, re.MULTILINE)
            if match:
                return (int(match.group(1)) if match.group(1) is not None else 128), int(main_pid)
        if process.poll() is not None and main_pid is None:
            raise AssertionError(f"strace failed to start the script (exit {process.returncode})")
        time.sleep(0.01)
    if main_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(main_pid), signal.SIGKILL)
    raise AssertionError("script did not finish in time")


def sh(*command: str, timeout: float = 20, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
    return result.stdout


# ---------------------------------------------------------------------------------------------------------------
# The lab


_tests = itertools.count(1)


@dataclass
class Lab:
    """Host namespaces on a bridge; per host: namespace, WireGuard interface name, config directory."""

    tag: str
    conf_root: Path
    namespaces: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, str] = field(default_factory=dict)

    def conf_dir(self, host: str) -> Path:
        return self.conf_root / host / "wire guard's dir"

    def conf_file(self, host: str) -> Path:
        return self.conf_dir(host) / f"{self.interfaces[host]}.conf"

    def install(self, host: str, config: str, **kwargs: Any) -> Run:
        return run_script(self.namespaces[host], install_script(self.interfaces[host], str(self.conf_dir(host))), config, **kwargs)

    def uninstall(self, host: str) -> Run:
        return run_script(self.namespaces[host], uninstall_script(self.interfaces[host], str(self.conf_dir(host))))

    def verify(self, host: str, mesh: Mesh, keys: MeshKeys, timeout_seconds: int) -> Run:
        peers = [(peer.name, keys.public_key(peer.name), [str(address.ip) for address in peer.addresses]) for peer in mesh.others(host)]
        return run_script(self.namespaces[host], verify_script(self.interfaces[host], peers, timeout_seconds=timeout_seconds))

    def ns(self, host: str, *command: str, timeout: float = 20, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.namespaces[host], *command, timeout=timeout, check=check)

    def wireguard_go_pids(self, host: str) -> list[int]:
        pids = [int(pid) for pid in sh("ip", "netns", "pids", self.namespaces[host]).split()]
        found = []
        for pid in pids:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "wireguard-go":
                    found.append(pid)
        return found

    def wireguard_go_pid(self, host: str) -> int:
        pids = self.wireguard_go_pids(host)
        assert len(pids) == 1, f"expected one wireguard-go in {host}, found {pids}"
        return pids[0]

    def dump(self, host: str) -> tuple[tuple[str, str], dict[str, tuple[str, str, str, str]]]:
        """(private key, listen port) and per peer public key: (psk, endpoint, allowed ips, keepalive)."""
        rows = [line.split("\t") for line in self.ns(host, "wg", "show", self.interfaces[host], "dump").splitlines()]
        private, _public, port, _fwmark = rows[0]
        peers = {row[0]: (row[1], row[2], row[3], row[7]) for row in rows[1:]}
        return (private, port), peers

    def udp_sockets(self, host: str) -> set[str]:
        """Inodes of the UDP sockets on the interface's listen port: the same inodes mean no rebind."""
        port = self.dump(host)[0][1]
        text = self.ns(host, "ss", "-uanpe")
        return {found for line in text.splitlines() if f":{port} " in line for found in re.findall(r"ino:(\d+)", line)}

    def addresses(self, host: str) -> set[str]:
        text = self.ns(host, "ip", "-o", "address", "show", "dev", self.interfaces[host])
        return {line.split()[3] for line in text.splitlines() if not line.split()[3].startswith("fe80:")}

    def routes(self, host: str) -> set[str]:
        """Routes on the interface that are not the kernel's connected ones (what wg-quick and install add)."""
        found = set()
        for family in ("-4", "-6"):
            text = self.ns(host, "ip", family, "route", "show", "dev", self.interfaces[host], "proto", "boot")
            found |= {line.split()[0] for line in text.splitlines()}
        return found

    def ping(self, host: str, address: str, count: int = 3) -> bool:
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespaces[host], "ping", "-c", str(count), "-i", "0.2", "-W", "1", address],
            capture_output=True,
            text=True,
            timeout=count + 10,
        )
        return result.returncode == 0


def expected_dump(mesh: Mesh, keys: MeshKeys, name: str) -> tuple[tuple[str, str], dict[str, tuple[str, str, str, str]]]:
    local = mesh.peer(name)
    peers = {}
    for remote in mesh.others(name):
        endpoint = str(remote.endpoint) if remote.endpoint is not None else "(none)"
        keepalive = str(mesh.keepalive_between(local, remote) or "off")
        allowed = ",".join(str(network) for network in remote.allowed_ips)
        peers[keys.public_key(remote.name)] = (keys.preshared_key(name, remote.name) or "(none)", endpoint, allowed, keepalive)
    return (keys.private_key(name), str(local.listen_port)), peers


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie does not (here nobody may reap orphans: pid 1 is not an init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_namespace(namespace: str, interfaces: list[str]) -> None:
    """Delete our WireGuard interfaces (wireguard-go exits), stop what is left in the namespace, bounded, delete it."""
    for interface in interfaces:
        subprocess.run(["ip", "-n", namespace, "link", "delete", interface], capture_output=True, timeout=10)
    listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10)
    pids = [int(pid) for pid in listed.stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid in pids if _running(pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.02)
    subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=10)


@pytest.fixture
def lab_net(tmp_path: Path) -> Iterator[Lab]:
    """Three host namespaces (a, b, c) bridged in a hub namespace; everything removed afterwards, even on failure."""
    require_root_netns()
    require_tools("wg", "wg-quick", "wireguard-go", "iptables", "iptables-save", "ping", "unshare", "strace", "bash")
    number = next(_tests)
    tag = f"{os.getpid() % 10000}{number}"
    lab = Lab(tag, tmp_path / "hosts")
    hub = f"wgmi-{tag}-hub"
    created = [hub]
    try:
        sh("ip", "netns", "add", hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for host in HOSTS:
            namespace = f"wgmi-{tag}-{host}"
            sh("ip", "netns", "add", namespace)
            created.append(namespace)
            lab.namespaces[host] = namespace
            lab.interfaces[host] = f"wg{host}{tag}"[:15]
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", f"v{host}", "netns", hub)
            sh("ip", "-n", hub, "link", "set", f"v{host}", "master", "br0", "up")
            sh("ip", "-n", namespace, "address", "add", f"{UNDERLAY[host]}/24", "dev", "eth0")
            sh("ip", "-n", namespace, "link", "set", "eth0", "up")
        yield lab
    finally:
        for namespace in reversed(created):
            _kill_namespace(namespace, list(lab.interfaces.values()))
        for interface in lab.interfaces.values():
            Path(f"/run/wireguard/{interface}.sock").unlink(missing_ok=True)


def install_ok(lab: Lab, host: str, config: str) -> Run:
    run = lab.install(host, config)
    assert run.returncode == 0, run.stderr
    run.assert_clean(secrets_of(config))
    return run


# ---------------------------------------------------------------------------------------------------------------
# Pure unit tests


def test_every_script_is_valid_bash() -> None:
    require_tools("bash")
    peers = [("b", KEYS.public_key("b"), ["10.255.0.2"]), ('it\'s "c"', KEYS.public_key("c"), ["10.255.0.3", "fd00:255::3"])]
    scripts = {
        "install": install_script(),
        "install odd dir": install_script("wg.9_=+-", "/srv/wire guard's $dir"),
        "uninstall": uninstall_script("wg1", "/tmp/x y"),
        "verify": verify_script("wg0", peers, timeout_seconds=5),
        "verify none": verify_script("wg0", []),
        "wait": wait_for_boot_script(30),
        "wait+install": wait_for_boot_script() + install_script(),
        "user data": user_data_script(extra_packages=["jq"]),
    }
    for name, script in scripts.items():
        result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        if name not in ("user data", "wait+install"):
            # What a login shell reads is POSIX sh; the bash inside is checked as bash.
            result = subprocess.run(["dash", "-n"], input=script, capture_output=True, text=True, timeout=10)
            assert result.returncode == 0, f"{name} (dash): {result.stderr}"
            result = subprocess.run(["bash", "-n"], input=inner_script(script), capture_output=True, text=True, timeout=10)
            assert result.returncode == 0, f"{name} (inner): {result.stderr}"
        assert "\t" not in script and all(line == line.rstrip() for line in script.splitlines()), f"{name}: diff noise"


def test_every_script_passes_shellcheck() -> None:
    require_tools("shellcheck")
    peers = [("b", KEYS.public_key("b"), ["10.255.0.2", "fd00:255::2"])]
    for script in (install_script(), uninstall_script(), verify_script("wg0", peers), wait_for_boot_script()):
        result = subprocess.run(["shellcheck", "-s", "sh", "-f", "gcc", "-"], input=script, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout
        result = subprocess.run(
            ["shellcheck", "-s", "bash", "-f", "gcc", "-"], input=inner_script(script), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout
    checked = ["shellcheck", "-s", "bash", "-f", "gcc", "-"]
    result = subprocess.run(checked, input=user_data_script(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="interface name"):
        install_script("wg0; rm -rf /")
    with pytest.raises(ValueError, match="interface name"):
        uninstall_script("a-very-long-interface-name")
    with pytest.raises(ValueError, match="absolute"):
        install_script("wg0", "relative/dir")
    with pytest.raises(ValueError, match="public key"):
        verify_script("wg0", [("b", "not-a-key", ["10.0.0.2"])])
    with pytest.raises(ValueError):
        verify_script("wg0", [("b", KEYS.public_key("b"), ["10.0.0.2", "10.0.0.300"])])
    with pytest.raises(ValueError, match="non-empty list"):
        verify_script("wg0", [("b", KEYS.public_key("b"), "10.0.0.2")])  # one string would be pinged letter by letter
    with pytest.raises(ValueError, match="non-empty list"):
        verify_script("wg0", [("b", KEYS.public_key("b"), [])])
    with pytest.raises(ValueError, match="package"):
        user_data_script(extra_packages=["jq; curl evil"])


def test_user_data_installs_wireguard_and_forwarding_and_holds_no_secret() -> None:
    text = user_data_script()
    assert text.startswith("#!/bin/bash\n")
    assert "wireguard-tools iptables" in text and "/etc/sysctl.d/99-wgmesh.conf" in text
    assert "net.ipv4.ip_forward=1" in text and "net.ipv6.conf.all.forwarding=1" in text
    assert "net.ipv6" not in user_data_script(ipv6_forwarding=False)
    assert "PrivateKey" not in text and "PresharedKey" not in text


# ---------------------------------------------------------------------------------------------------------------
# Lab tests


@lab
def test_fresh_install_brings_the_mesh_up(lab_net: Lab) -> None:
    mesh = mesh_of("a", "b")
    configs = {name: render_peer_config(mesh, name, KEYS) for name in ("a", "b")}
    for host in ("a", "b"):
        run = install_ok(lab_net, host, configs[host])
        assert run.stdout == f"wgmesh: {lab_net.interfaces[host]} up (1 peers)\n"
        assert '"wg-quick", "up"' in run.execs, "the trace sees the script's children"
        assert lab_net.dump(host) == expected_dump(mesh, KEYS, host)
        conf = lab_net.conf_file(host)
        assert conf.read_text() == configs[host]
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
        assert os.listdir(conf.parent) == [conf.name], "no temp files left"
        assert lab_net.routes(host) == {f"10.7.{2 if host == 'a' else 1}.0/24"}
        # Validation ran on a scratch device in its own namespace, which is gone with its socket.
        assert f'"wireguard-go", "-f", "wgmchk{run.pid}"' in run.execs
        assert not Path(f"/run/wireguard/wgmchk{run.pid}.sock").exists()
    assert lab_net.ping("a", "10.255.0.2")
    assert lab_net.ping("b", "10.255.0.1")


@lab
def test_reinstalling_the_same_config_is_a_no_op(lab_net: Lab) -> None:
    config = render_peer_config(mesh_of("a", "b"), "a", KEYS)
    install_ok(lab_net, "a", config)
    pid = lab_net.wireguard_go_pid("a")
    before = lab_net.conf_file("a").stat()
    dump = lab_net.dump("a")
    time.sleep(0.05)
    run = install_ok(lab_net, "a", config)
    assert run.stdout == f"wgmesh: {lab_net.interfaces['a']} unchanged (1 peers)\n"
    assert lab_net.wireguard_go_pid("a") == pid
    assert lab_net.dump("a") == dump
    after = lab_net.conf_file("a").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "file not rewritten"
    assert '"wg-quick", "up"' not in run.execs and '"ip", "link", "del' not in run.execs


@lab
def test_changed_config_is_applied_without_restart_and_without_losing_a_packet(lab_net: Lab) -> None:
    first = mesh_of("a", "b")
    for host in ("a", "b"):
        install_ok(lab_net, host, render_peer_config(first, host, KEYS))
    pids = {host: lab_net.wireguard_go_pid(host) for host in ("a", "b")}
    sockets = {host: lab_net.udp_sockets(host) for host in ("a", "b")}
    assert all(sockets.values())
    assert lab_net.ping("b", "10.255.0.1")

    # c joins, and b's routed subnet changes (AllowedIPs on a).
    second = mesh_of("a", "b", "c", b={"subnets": ["10.7.20.0/24", "10.9.0.0/16"]})
    ping = subprocess.Popen(
        ["ip", "netns", "exec", lab_net.namespaces["b"], "ping", "-i", "0.05", "-c", "120", "-W", "1", "10.255.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(0.5)
        runs = {host: install_ok(lab_net, host, render_peer_config(second, host, KEYS)) for host in ("a", "b")}
        print({host: round(run.seconds, 2) for host, run in runs.items()})
        assert ping.poll() is None, "both updates happened while the ping loop was running"
        output, _ = ping.communicate(timeout=20)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(timeout=5)
    assert re.search(r"120 packets transmitted, 120 received, 0% packet loss", output), output
    for host in ("a", "b"):
        assert runs[host].stdout.startswith(f"wgmesh: {lab_net.interfaces[host]} synced without restart (2 peers")
        assert '"wg", "addconf"' in runs[host].execs and '"wg-quick", "up"' not in runs[host].execs
        assert lab_net.wireguard_go_pid(host) == pids[host], "same wireguard-go process: no restart"
        assert lab_net.udp_sockets(host) == sockets[host], "same UDP sockets: wireguard-go did not rebind"
        assert lab_net.dump(host) == expected_dump(second, KEYS, host)
        assert os.listdir(lab_net.conf_dir(host)) == [lab_net.conf_file(host).name]
    assert lab_net.routes("a") == {"10.7.20.0/24", "10.9.0.0/16", "10.7.3.0/24"}, "new AllowedIPs routed, stale 10.7.2.0/24 gone"
    assert lab_net.routes("b") == {"10.7.1.0/24", "10.7.3.0/24"}
    assert "routes +3 -1" in runs["a"].stdout

    # c comes up with its first config: the three-way mesh works.
    install_ok(lab_net, "c", render_peer_config(second, "c", KEYS))
    assert lab_net.ping("c", "10.255.0.1") and lab_net.ping("c", "10.255.0.2")


@lab
def test_address_changes_are_reconciled_in_place(lab_net: Lab) -> None:
    first = mesh_of("a", "b")
    for host in ("a", "b"):
        install_ok(lab_net, host, render_peer_config(first, host, KEYS))
    pids = {host: lab_net.wireguard_go_pid(host) for host in ("a", "b")}
    assert lab_net.addresses("a") == {"10.255.0.1/24"}

    nat_rules = [line for line in lab_net.ns("a", "iptables-save", "-t", "nat").splitlines() if "MASQUERADE" in line]
    assert nat_rules and all("-o eth0" in line for line in nat_rules)
    lab_net.ns("a", "ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")  # the new egress interface exists

    # a moves to another IPv4 address, gains an IPv6 one and a new egress interface (its NAT hooks change);
    # b gets an IPv6 address too; the MTU changes everywhere.
    dual = ["10.255.0.0/24", "fd00:255::/64"]
    a = {"address": ["10.255.0.11", "fd00:255::1"], "egress_interface": "eth9"}
    second = mesh_of("a", "b", network=dual, mtu=1380, a=a, b={"address": ["10.255.0.2", "fd00:255::2"]})
    for host in ("a", "b"):
        run = install_ok(lab_net, host, render_peer_config(second, host, KEYS))
        assert "addresses +" in run.stdout and "mtu 1380" in run.stdout
        assert lab_net.wireguard_go_pid(host) == pids[host]
        assert " mtu 1380 " in lab_net.ns(host, "ip", "-o", "link", "show", "dev", lab_net.interfaces[host])
    nat_rules = [line for line in lab_net.ns("a", "iptables-save", "-t", "nat").splitlines() if "MASQUERADE" in line]
    assert nat_rules and all("-o eth9" in line for line in nat_rules), "the chain holds the new config's rules only"
    assert lab_net.addresses("a") == {"10.255.0.11/24", "fd00:255::1/64"}
    assert lab_net.addresses("b") == {"10.255.0.2/24", "fd00:255::2/64"}
    assert lab_net.dump("b") == expected_dump(second, KEYS, "b")
    assert lab_net.ping("b", "10.255.0.11") and lab_net.ping("b", "fd00:255::1")
    assert not lab_net.ping("b", "10.255.0.1", count=1), "the old address is gone"


BROKEN = {
    "garbage": lambda text: "this is not a wg-quick file\n",
    "unknown key": lambda text: text.replace("ListenPort", "ListenPrt"),
    "bad public key": lambda text: re.sub(r"(PublicKey = )(\S+)", lambda m: m.group(1) + m.group(2)[:20] + "=", text, count=1),
    "bad private key": lambda text: re.sub(r"(PrivateKey = )(\S+)", lambda m: m.group(1) + m.group(2)[:-3], text),
    "bad Address": lambda text: text.replace("Address = 10.255.0.1/24", "Address = 10.255.0.300/24"),
    "bad hook": lambda text: text.replace("[Peer]", "PostUp = echo 'unterminated\n\n[Peer]", 1),
    "empty": lambda text: "",
}
MESSAGES = {
    "garbage": "Line unrecognized",
    "unknown key": "Line unrecognized",
    "bad public key": "Key is not the correct length or format",
    "bad private key": "Key is not the correct length or format",
    "bad Address": "Address = 10.255.0.300/24 is not a usable address",
    "bad hook": "hook is not valid bash",
    "empty": "no config on stdin",
}


@lab
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_config_is_rejected_and_changes_nothing(lab_net: Lab, case: str) -> None:
    config = render_peer_config(mesh_of("a", "b"), "a", KEYS)
    install_ok(lab_net, "a", config)
    pid, dump, before = lab_net.wireguard_go_pid("a"), lab_net.dump("a"), lab_net.conf_file("a").stat()
    broken = BROKEN[case](config)
    assert broken != config
    run = lab_net.install("a", broken)
    assert run.returncode != 0
    assert run.stdout == ""
    assert MESSAGES[case] in run.stderr
    assert "nothing changed" in run.stderr
    run.assert_clean(secrets_of(config))
    for leaked in re.findall(r"PrivateKey = (\S+)", broken):
        assert leaked not in run.stderr, "a malformed key is redacted too"
    assert lab_net.conf_file("a").read_text() == config
    after = lab_net.conf_file("a").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert lab_net.wireguard_go_pid("a") == pid and lab_net.dump("a") == dump
    assert os.listdir(lab_net.conf_dir("a")) == [lab_net.conf_file("a").name], "no temp files left"


@lab
def test_a_broken_first_config_leaves_nothing_behind(lab_net: Lab) -> None:
    run = lab_net.install("a", BROKEN["bad Address"](render_peer_config(mesh_of("a", "b"), "a", KEYS)))
    assert run.returncode != 0 and "not a usable address" in run.stderr
    assert not lab_net.conf_file("a").exists() and os.listdir(lab_net.conf_dir("a")) == []
    assert lab_net.wireguard_go_pids("a") == []
    assert lab_net.ns("a", "ip", "link", "show", "dev", lab_net.interfaces["a"], check=False) == ""


@lab
def test_uninstall_removes_interface_file_and_rules_and_is_idempotent(lab_net: Lab) -> None:
    first = lab_net.uninstall("a")
    assert first.returncode == 0 and first.stdout == f"wgmesh: {lab_net.interfaces['a']} already absent\n"
    install_ok(lab_net, "a", render_peer_config(mesh_of("a", "b"), "a", KEYS))
    assert "wgmesh" in lab_net.ns("a", "iptables-save")
    pid = lab_net.wireguard_go_pid("a")
    run = lab_net.uninstall("a")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"wgmesh: {lab_net.interfaces['a']} removed\n"
    assert lab_net.ns("a", "ip", "link", "show", "dev", lab_net.interfaces["a"], check=False) == ""
    assert not lab_net.conf_file("a").exists() and os.listdir(lab_net.conf_dir("a")) == []
    assert "wgmesh" not in lab_net.ns("a", "iptables-save"), "PostDown ran"
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "wireguard-go exited"
    again = lab_net.uninstall("a")
    assert again.returncode == 0 and again.stdout == f"wgmesh: {lab_net.interfaces['a']} already absent\n"


@lab
def test_verify_reports_every_peer_and_fails_within_its_timeout_when_one_is_down(lab_net: Lab) -> None:
    mesh = mesh_of("a", "b", "c")
    for host in HOSTS:
        install_ok(lab_net, host, render_peer_config(mesh, host, KEYS))
    run = lab_net.verify("a", mesh, KEYS, timeout_seconds=20)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert run.stdout.count("\n") == 1 and report["ok"] is True
    assert set(report["peers"]) == {"b", "c"}
    for name, peer in report["peers"].items():
        assert peer["handshake"] is True and peer["ping"] is True and isinstance(peer["rtt_ms"], (int, float))
        assert list(peer["addresses"]) == [f"10.255.0.{HOSTS.index(name) + 1}"]
        assert peer["addresses"][f"10.255.0.{HOSTS.index(name) + 1}"] == {"ping": True, "rtt_ms": peer["rtt_ms"]}
    assert 0 <= report["seconds"] < 20

    assert lab_net.uninstall("c").returncode == 0
    run = lab_net.verify("a", mesh, KEYS, timeout_seconds=3)
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["ok"] is False
    rtt = report["peers"]["b"]["rtt_ms"]
    assert report["peers"]["b"] == {
        "handshake": True,
        "ping": True,
        "rtt_ms": rtt,
        "addresses": {"10.255.0.2": {"ping": True, "rtt_ms": rtt}},
    }
    assert report["peers"]["c"]["ping"] is False and report["peers"]["c"]["rtt_ms"] is None
    assert 3 <= report["seconds"] <= 5.5 and run.seconds < 8, "bounded: timeout + 1 s per unreachable address"
    # The failure names the peer, what was missing and what was tried (only c: b answered).
    said = [line for line in run.stderr.splitlines() if line.startswith("wgmesh: verify:")]
    assert len(said) == 1 and said[0].startswith("wgmesh: verify: peer c: "), run.stderr
    assert "no ping answer from: 10.255.0.3;" in said[0] and "every 0.5 s for 3s" in said[0]


@lab
def test_verify_pings_every_tunnel_address_of_a_dual_stack_peer_and_reports_each(lab_net: Lab) -> None:
    """Both families, each address on its own: a peer whose IPv6 tunnel address is gone fails the check, by address."""
    dual = ["10.255.0.0/24", "fd00:255::/64"]
    mesh = mesh_of(
        "a", "b", "c", network=dual, **{host: {"address": [f"10.255.0.{n}", f"fd00:255::{n}"]} for n, host in enumerate(HOSTS, 1)}
    )
    for host in HOSTS:
        install_ok(lab_net, host, render_peer_config(mesh, host, KEYS))
    run = lab_net.verify("a", mesh, KEYS, timeout_seconds=20)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    for n, name in enumerate(("b", "c"), 2):
        peer = report["peers"][name]
        assert list(peer["addresses"]) == [f"10.255.0.{n}", f"fd00:255::{n}"], "every address, in the peer's order"
        assert all(entry["ping"] is True and isinstance(entry["rtt_ms"], (int, float)) for entry in peer["addresses"].values())
        assert peer["ping"] is True and peer["rtt_ms"] == peer["addresses"][f"10.255.0.{n}"]["rtt_ms"]

    # c loses its IPv6 tunnel address: IPv4 still answers, so only a check of every address notices.
    lab_net.ns("c", "ip", "address", "del", "fd00:255::3/64", "dev", lab_net.interfaces["c"])
    run = lab_net.verify("a", mesh, KEYS, timeout_seconds=2)
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["ok"] is False and report["peers"]["b"]["ping"] is True
    c = report["peers"]["c"]
    assert c["handshake"] is True and c["ping"] is False and c["addresses"]["10.255.0.3"]["ping"] is True
    assert c["addresses"]["fd00:255::3"] == {"ping": False, "rtt_ms": None}


@lab
def test_wait_for_boot_without_cloud_init_with_it_and_its_timeout(lab_net: Lab, tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    base_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": base_path, "LANG": "C"}
    assert shutil.which("cloud-init", path=base_path) is None, "this host has cloud-init: the first case needs a host without"
    run = run_script(lab_net.namespaces["a"], wait_for_boot_script(30), env=env)
    assert run.returncode == 0 and run.seconds < 3, run.stderr

    # A cloud-init that takes a while, and greedily reads stdin: the install after it must still get the config.
    cloud_init = stubs / "cloud-init"
    cloud_init.write_text("#!/bin/bash\ncat > /dev/null\nexec sleep ${STUB_SLEEP:-1}\n")
    cloud_init.chmod(0o755)
    env = {"PATH": f"{stubs}:{base_path}", "LANG": "C", "STUB_SLEEP": "1"}
    config = render_peer_config(mesh_of("a", "b"), "a", KEYS)
    combined = wait_for_boot_script(30) + install_script(lab_net.interfaces["a"], str(lab_net.conf_dir("a")))
    run = run_script(lab_net.namespaces["a"], combined, config, env=env)
    assert run.returncode == 0, run.stderr
    assert run.seconds >= 1 and run.stdout == f"wgmesh: {lab_net.interfaces['a']} up (1 peers)\n"
    assert '"cloud-init", "status", "--wait"' in run.execs
    run.assert_clean(secrets_of(config))

    env["STUB_SLEEP"] = "30"
    run = run_script(lab_net.namespaces["a"], wait_for_boot_script(2), env=env, timeout=20)
    assert run.returncode == 1 and "cloud-init still running after 2s" in run.stderr
    assert run.seconds < 5


def test_non_root_user_is_re_executed_through_sudo_with_stdin(tmp_path: Path) -> None:
    """As an unprivileged user the script runs itself again through ``sudo -n``, passing stdin on (stub sudo)."""
    require_tools("setpriv", "bash")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    shared = Path(tempfile.mkdtemp(prefix="wgmesh-sudo-"))
    try:
        shared.chmod(0o777)
        sudo = shared / "sudo"
        sudo.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {shared}/argv\ncat > {shared}/stdin\n')
        sudo.chmod(0o755)
        script = install_script("wg0", "/nonexistent/wgmesh")
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", script],
            input="[Interface]\n# stdin reaches the root copy\n",
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": f"{shared}:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        # The wrapper ran bash by path without rc files; sudo gets the same bash and the inner script.
        assert (shared / "argv").read_text().split("\0")[:-1] == [
            "-n",
            "--",
            "/bin/bash",
            "--noprofile",
            "--norc",
            "-c",
            inner_script(script).rstrip("\n"),
        ]
        assert (shared / "stdin").read_text() == "[Interface]\n# stdin reaches the root copy\n"
        assert not Path("/nonexistent/wgmesh").exists()
    finally:
        shutil.rmtree(shared)


@lab
def test_the_secret_detector_would_catch_a_key_on_a_command_line(lab_net: Lab) -> None:
    """Positive control for :meth:`Run.assert_clean`: a key passed as an argument is seen in the trace."""
    secret = KEYS.private_key("a")
    run = run_script(lab_net.namespaces["a"], f"/bin/true {secret}")
    with pytest.raises(AssertionError, match="command line"):
        run.assert_clean([secret])


@lab
def test_verify_json_survives_odd_names_and_a_missing_interface(lab_net: Lab) -> None:
    """Peer names are JSON-encoded by Python, not by bash; no interface and no route: one round, exit 1, valid JSON."""
    odd = 'it\'s "c" \\ ü'
    script = verify_script(lab_net.interfaces["a"], [(odd, KEYS.public_key("c"), ["10.255.0.99"])], timeout_seconds=0)
    run = run_script(lab_net.namespaces["a"], script)
    assert run.returncode == 1 and run.seconds < 5
    report = json.loads(run.stdout)
    expected = {"handshake": False, "ping": False, "rtt_ms": None, "addresses": {"10.255.0.99": {"ping": False, "rtt_ms": None}}}
    assert report["ok"] is False and report["peers"] == {odd: expected}


@lab
def test_a_rotated_key_handshakes_at_once_whichever_side_applies_first(lab_net: Lab) -> None:
    """b rotates its key; a applies its new config first (a's new peer entry for b initiates at once and fails:
    b still has its old key, and WireGuard then waits 5 s, REKEY_TIMEOUT, before a retries). When b applies, it
    must sync its peers (the new preshared key) before its new private key and then start a handshake itself: the
    tunnel answers within a second of b's install, instead of when a's 5 s are up."""
    mesh = mesh_of("a", "b")
    for host in ("a", "b"):
        install_ok(lab_net, host, render_peer_config(mesh, host, KEYS))
    assert lab_net.ping("a", "10.255.0.2")
    rotated = MeshKeys({**KEYS.private_keys, "b": seeded_private_key("b", "rotated")}, KEYS.mesh_secret)
    install_ok(lab_net, "a", render_peer_config(mesh, "a", rotated))
    assert not lab_net.ping("a", "10.255.0.2", count=1), "a's first handshake with the new key must fail (b is not updated)"
    run = install_ok(lab_net, "b", render_peer_config(mesh, "b", rotated))
    assert "handshakes started with 1" in run.stdout, run.stdout
    answered = subprocess.run(
        ["ip", "netns", "exec", lab_net.namespaces["a"], "ping", "-c", "1", "-W", "1", "10.255.0.2"], capture_output=True, timeout=10
    )
    assert answered.returncode == 0, "no tunnel within a second of b's install: a waits out REKEY_TIMEOUT"
    assert lab_net.dump("a") == expected_dump(mesh, rotated, "a") and lab_net.dump("b") == expected_dump(mesh, rotated, "b")
